"""Several LoRA adapters on one base: switch, stack, weight-combine (lmtune.methods.adapters), and the
combination exported like a run (lmtune.export.combine, `lmtune export --combine`).

The reference for every equivalence is computed here by hand from the saved adapter files:
W_i' = W_i + sum_k w_k (alpha_k / r_k) B_k A_k, loaded into a plain transformers model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import IA3Config, PeftModel, get_peft_model
from peft import LoraConfig as PeftLoraConfig
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from tuned_run import make_run

from lmtune.cli import main
from lmtune.config import loader
from lmtune.config.deploy import CombineConfig, CombineSource
from lmtune.config.run import RunConfig
from lmtune.errors import ConfigError, ModelLoadError
from lmtune.export import combine as export_combine
from lmtune.export.run import run as export_run
from lmtune.methods import adapters
from lmtune.runtime.tiny import save_tiny

TOL = 1e-4
QV_DOWN = ["q_proj", "v_proj", "down_proj"]


def make_adapter(base_dir: Path, out: Path, *, rank: int, alpha: float, seed: int, **extra: object) -> Path:
    """A LoRA adapter on the tiny model with lora_B ~ N(0, 0.3^2) (not a no-op), saved to `out`."""
    torch.manual_seed(seed)  # lora_A's initialisation
    targets = extra.pop("target_modules", "all-linear")
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        PeftLoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, task_type="CAUSAL_LM", **extra),  # type: ignore[arg-type]
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(out)
    return out


def updates(folder: Path) -> dict[str, torch.Tensor]:
    """{layer weight name: s B A} read straight from an adapter's files (s = alpha/r, or alpha/sqrt(r)
    for rsLoRA)."""
    config = json.loads((folder / "adapter_config.json").read_text())
    scaling = config["lora_alpha"] / (math.sqrt(config["r"]) if config["use_rslora"] else config["r"])
    tensors = load_file(folder / "adapter_model.safetensors")
    out = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            layer = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            out[f"{layer}.weight"] = scaling * (b @ a)
    return out


def weighted_sum(sources: list[tuple[Path, float]]) -> dict[str, torch.Tensor]:
    """{layer weight name: sum_k w_k (alpha_k/r_k) B_k A_k} over the layers any source adapts."""
    total: dict[str, torch.Tensor] = {}
    for folder, weight in sources:
        for name, delta in updates(folder).items():
            total[name] = total.get(name, torch.zeros_like(delta)) + weight * delta
    return total


def explicit_model(base_dir: Path, sources: list[tuple[Path, float]]) -> torch.nn.Module:
    """A plain model with W + sum_k w_k (alpha_k/r_k) B_k A_k written into every adapted weight."""
    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, delta in weighted_sum(sources).items():
            params[name].add_(delta)
    return model


def logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture(scope="module")
def ids(tiny_tokenizer) -> torch.Tensor:  # type: ignore[no-untyped-def]
    text = "<|im_start|>user\nshe has three apples and buys four more. how many apples?<|im_end|>\n"
    return torch.tensor([tiny_tokenizer(text)["input_ids"]])


@pytest.fixture(scope="module")
def lora_a(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """r=4, alpha=8 on every linear layer."""
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("a") / "a", rank=4, alpha=8, seed=1)


@pytest.fixture(scope="module")
def lora_b(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """r=8, alpha=4 on q/v/down projections only: another rank, scaling and set of layers."""
    out = tmp_path_factory.mktemp("b") / "b"
    return make_adapter(tiny_model_dir, out, rank=8, alpha=4, seed=2, target_modules=QV_DOWN)


@pytest.fixture(scope="module")
def lora_c(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """r=4 like `lora_a` (so `linear` can mix them), alpha=16."""
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("c") / "c", rank=4, alpha=16, seed=3)


# --- switch, stack, combine on one loaded model ------------------------------------------------------


def test_switching_gives_each_adapter_alone(
    tiny_model_dir: Path, lora_a: Path, lora_b: Path, ids: torch.Tensor
) -> None:
    model = adapters.load_adapters(tiny_model_dir, {"a": lora_a, "b": lora_b})
    assert model.active_adapters == ["a"] and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    alone = {
        name: logits(
            PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(f)), ids
        )
        for name, f in (("a", lora_a), ("b", lora_b))
    }
    assert (alone["a"] - alone["b"]).abs().max() > 1e-2  # two different adapters
    for name in ("b", "a", "b"):
        adapters.switch(model, name)
        assert model.active_adapters == [name]
        assert torch.allclose(logits(model, ids), alone[name], atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())  # switching keeps them frozen


def test_stacking_applies_the_sum_of_both_updates(
    tiny_model_dir: Path, lora_a: Path, lora_b: Path, ids: torch.Tensor
) -> None:
    model = adapters.load_adapters(tiny_model_dir, {"a": lora_a, "b": lora_b})
    adapters.stack(model, ["a", "b"])
    assert model.active_adapters == ["a", "b"]
    stacked = logits(model, ids)
    expected = logits(explicit_model(tiny_model_dir, [(lora_a, 1.0), (lora_b, 1.0)]), ids)
    only_a = logits(explicit_model(tiny_model_dir, [(lora_a, 1.0)]), ids)
    assert (expected - only_a).abs().max() > 1e-2  # b contributes
    assert (stacked - expected).abs().max() < TOL
    # merging the stacked model folds both in ...
    assert (logits(model.merge_and_unload(), ids) - expected).abs().max() < TOL
    # ... and so does merging a first, then applying b on top of the merged model
    merged_a = adapters.load_adapters(tiny_model_dir, {"a": lora_a}).merge_and_unload()
    a_then_b = PeftModel.from_pretrained(merged_a, str(lora_b)).eval()
    assert (logits(a_then_b, ids) - expected).abs().max() < TOL


def test_stacking_unknown_adapter_is_refused(tiny_model_dir: Path, lora_a: Path) -> None:
    model = adapters.load_adapters(tiny_model_dir, {"a": lora_a})
    with pytest.raises(ConfigError, match=r"^cannot stack \['a', 'z'\]: loaded adapters are \['a'\]$"):
        adapters.stack(model, ["a", "z"])


@pytest.mark.parametrize("weights", [(0.7, 0.3), (1.5, -0.5)], ids=["0.7+0.3", "1.5-0.5"])
def test_cat_combination_equals_the_explicit_weighted_sum(
    tiny_model_dir: Path, lora_a: Path, lora_b: Path, ids: torch.Tensor, weights: tuple[float, float]
) -> None:
    """The key equivalence: W + sum_k w_k (alpha_k/r_k) B_k A_k, within 1e-4 on the logits, for the
    combined adapter and for its merge."""
    wa, wb = weights
    model = adapters.load_adapters(tiny_model_dir, {"a": lora_a, "b": lora_b})
    adapters.combine(model, {"a": wa, "b": wb}, "ab", "cat")
    assert model.active_adapters == ["ab"]
    assert model.peft_config["ab"].r == 4 + 8  # cat keeps every rank
    explicit = explicit_model(tiny_model_dir, [(lora_a, wa), (lora_b, wb)])
    expected = logits(explicit, ids)
    assert len(weighted_sum([(lora_a, wa), (lora_b, wb)])) == 14  # every linear layer of the tiny model
    base = logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), ids)
    assert (expected - base).abs().max() > 1e-2
    assert (logits(model, ids) - expected).abs().max() < TOL
    assert (logits(model.merge_and_unload(), ids) - expected).abs().max() < TOL


def test_svd_combination_is_the_best_low_rank_approximation(
    tiny_model_dir: Path, lora_a: Path, lora_b: Path
) -> None:
    """svd keeps rank max(r_k) = 8: each layer's update is the rank-8 truncation of the exact sum (so
    exact where only `a`, rank 4, adapts the layer)."""
    model = adapters.load_adapters(tiny_model_dir, {"a": lora_a, "b": lora_b})
    adapters.combine(model, {"a": 0.7, "b": 0.3}, "ab", "svd")
    assert model.peft_config["ab"].r == 8
    exact = weighted_sum([(lora_a, 0.7), (lora_b, 0.3)])
    layers = dict(model.base_model.model.named_modules())
    truncated_somewhere = False
    for name, delta in exact.items():
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        best = u[:, :8] @ torch.diag(s[:8]) @ vh[:8]
        got = layers[name.removesuffix(".weight")].get_delta_weight("ab")
        assert (got - best).abs().max() < TOL, name
        truncated_somewhere |= bool((best - delta).abs().max() > 1e-3)
    assert truncated_somewhere  # q/v/down carry rank 12 > 8


def test_linear_combination_mixes_a_and_b_separately(
    tiny_model_dir: Path, lora_a: Path, lora_c: Path, ids: torch.Tensor
) -> None:
    """PEFT's `linear`: B = sum_k sqrt(w_k s_k) B_k, A = sum_k sqrt(w_k s_k) A_k, so B A has the cross
    terms B_a A_c and B_c A_a: it is not the weighted sum of the two updates."""
    wa, wc = 0.7, 0.3
    model = adapters.load_adapters(tiny_model_dir, {"a": lora_a, "c": lora_c})
    adapters.combine(model, {"a": wa, "c": wc}, "ac", "linear")
    assert model.peft_config["ac"].r == 4
    ta, tc = load_file(lora_a / "adapter_model.safetensors"), load_file(lora_c / "adapter_model.safetensors")
    ka, kc = math.sqrt(wa * 8 / 4), math.sqrt(wc * 16 / 4)
    layer = "model.layers.0.self_attn.q_proj"
    key = f"base_model.model.{layer}.lora_{{}}.weight"
    b = ka * ta[key.format("B")] + kc * tc[key.format("B")]
    a = ka * ta[key.format("A")] + kc * tc[key.format("A")]
    got = dict(model.base_model.model.named_modules())[layer].get_delta_weight("ac")
    assert torch.allclose(got, b @ a, atol=1e-6)
    exact = weighted_sum([(lora_a, wa), (lora_c, wc)])[f"{layer}.weight"]
    assert (got - exact).abs().max() > 1e-2
    expected = logits(explicit_model(tiny_model_dir, [(lora_a, wa), (lora_c, wc)]), ids)
    assert (logits(model, ids) - expected).abs().max() > 1e-2


def test_linear_refuses_adapters_of_different_ranks(tiny_model_dir: Path, lora_a: Path, lora_b: Path) -> None:
    model = adapters.load_adapters(tiny_model_dir, {"a": lora_a, "b": lora_b})
    with pytest.raises(
        ConfigError,
        match=r"^combination 'linear' needs adapters of one rank, got ranks \[4, 8\]; use 'cat' \(exact\) or",
    ):
        adapters.combine(model, {"a": 0.5, "b": 0.5}, "ab", "linear")
    assert "ab" not in model.peft_config


def test_combine_refuses_unknown_names_and_non_finite_weights(tiny_model_dir: Path, lora_a: Path) -> None:
    model = adapters.load_adapters(tiny_model_dir, {"a": lora_a})
    with pytest.raises(ConfigError, match=r"^cannot combine \['a', 'x'\]: loaded adapters are \['a'\]$"):
        adapters.combine(model, {"a": 0.5, "x": 0.5}, "ax", "cat")
    with pytest.raises(ConfigError, match=r"^adapter weights must be finite numbers, got \{'a': inf\}$"):
        adapters.combine(model, {"a": math.inf}, "ainf", "cat")
    with pytest.raises(ConfigError, match=r"^an adapter named 'a' is already loaded$"):
        adapters.combine(model, {"a": 0.5}, "a", "cat")


# --- what may be combined --------------------------------------------------------------------------


def test_only_lora_adapters_without_dora_are_read(tmp_path: Path, tiny_model_dir: Path) -> None:
    dora = make_adapter(tiny_model_dir, tmp_path / "dora", rank=4, alpha=8, seed=4, use_dora=True)
    with pytest.raises(ConfigError, match=r"/dora: a DoRA adapter; its magnitude vectors do not combine"):
        adapters.read_adapter(dora)
    model = adapters.load_adapters(tiny_model_dir, {"dora": dora})
    with pytest.raises(ConfigError, match=r"^\['dora'\]: a DoRA adapter; its magnitude vectors"):
        adapters.combine(model, {"dora": 0.5}, "half", "cat")
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ia3 = get_peft_model(plain, IA3Config(task_type="CAUSAL_LM"))
    ia3.save_pretrained(tmp_path / "ia3")
    with pytest.raises(ConfigError, match=r"/ia3: a IA3 adapter; only LoRA adapters can be combined$"):
        adapters.read_adapter(tmp_path / "ia3")
    with pytest.raises(ModelLoadError, match=r"/empty: not an adapter folder \(no adapter_config.json\)$"):
        adapters.read_adapter(tmp_path / "empty")


def test_rslora_sources_combine_with_unit_scaling(
    tmp_path: Path, tiny_model_dir: Path, lora_b: Path, ids: torch.Tensor
) -> None:
    """PEFT copies the first source's config into the combination; with rsLoRA first it would scale the
    combination by alpha/sqrt(r). `combine` resets it to 1, in memory and in the saved config."""
    rs = make_adapter(tiny_model_dir, tmp_path / "rs", rank=4, alpha=8, seed=6, use_rslora=True)
    model = adapters.load_adapters(tiny_model_dir, {"rs": rs, "b": lora_b})
    adapters.combine(model, {"rs": 0.6, "b": 0.4}, "mix", "cat")
    expected = logits(explicit_model(tiny_model_dir, [(rs, 0.6), (lora_b, 0.4)]), ids)
    assert (logits(model, ids) - expected).abs().max() < TOL
    model.save_pretrained(tmp_path / "saved", selected_adapters=["mix"])
    saved = tmp_path / "saved" / "mix"
    assert json.loads((saved / "adapter_config.json").read_text())["use_rslora"] is False
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(saved))
    assert (logits(reloaded.eval(), ids) - expected).abs().max() < TOL


def test_adapters_of_another_base_are_refused(tmp_path: Path, tiny_model_dir: Path, lora_a: Path) -> None:
    other_base = save_tiny(tmp_path / "other-base")
    other = make_adapter(other_base, tmp_path / "other", rank=4, alpha=8, seed=5)
    infos = [adapters.read_adapter(lora_a), adapters.read_adapter(other)]
    assert infos[0].base == str(tiny_model_dir) and infos[1].base == str(other_base)
    with pytest.raises(ConfigError, match=r"/other: trained on base '.*/other-base', not on '.*/model'; "):
        adapters.check_combinable(infos, "cat", str(tiny_model_dir))
    assert adapters.check_combinable(infos[:1], "cat", str(tiny_model_dir)) == 4


@pytest.mark.parametrize(
    ("combination", "ranks", "expected"),
    [("cat", [4, 8], 12), ("svd", [4, 8], 8), ("linear", [4, 4], 4), ("cat", [4], 4)],
)
def test_combination_rank(combination: str, ranks: list[int], expected: int) -> None:
    assert adapters.combination_rank(ranks, combination) == expected  # type: ignore[arg-type]


# --- the --combine spec and its sources --------------------------------------------------------------


def test_parse_spec() -> None:
    spec = export_combine.parse_spec("runs/math:0.7, /abs/chat:0.3,x:y:-1e-1", "svd")
    assert spec == CombineConfig(
        adapters=[
            CombineSource(path="runs/math", weight=0.7),
            CombineSource(path="/abs/chat", weight=0.3),
            CombineSource(path="x:y", weight=-0.1),
        ],
        combination="svd",
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("runs/a", r"^--combine 'runs/a': expected PATH:WEIGHT, e.g. runs/math:0.7$"),
        (":0.5", r"^--combine ':0.5': expected PATH:WEIGHT"),
        ("a:0.5,b:heavy", r"^--combine 'b:heavy': weight 'heavy' is not a number$"),
        ("a:nan", r"^--combine 'a:nan': weight must be a finite, non-zero number$"),
        ("a:0", r"^--combine 'a:0': weight must be a finite, non-zero number$"),
    ],
)
def test_parse_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        export_combine.parse_spec(spec)


def test_adapter_folder_resolves_run_directories(tmp_path: Path, lora_a: Path) -> None:
    assert export_combine.adapter_folder(str(lora_a)) == lora_a
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    assert export_combine.adapter_folder(str(run)) == run / "adapter"
    with pytest.raises(ModelLoadError, match=r"^/nope/a: no such adapter folder or run directory$"):
        export_combine.adapter_folder("/nope/a")
    (tmp_path / "full" / "model").mkdir(parents=True)
    with pytest.raises(ModelLoadError, match=r"/full: a run that saved whole weights \(model/\), not a LoRA"):
        export_combine.adapter_folder(str(tmp_path / "full"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(
        ModelLoadError, match=r"/plain: neither an adapter folder \(adapter_config.json\) nor a run"
    ):
        export_combine.adapter_folder(str(tmp_path / "plain"))


def test_config_rejects_a_zero_weight() -> None:
    with pytest.raises(ConfigError, match=r"export\.combine\.adapters\.0\.weight.*a weight of 0 leaves"):
        loader.build(RunConfig, {"export": {"combine": {"adapters": [{"path": "runs/a", "weight": 0}]}}})


# --- exported like a run ----------------------------------------------------------------------------


def test_cli_exports_the_combination_like_a_run(
    tmp_path: Path, tiny_model_dir: Path, lora_b: Path, ids: torch.Tensor, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lmtune export --combine ADAPTER:0.7,RUN:0.3 RUN_DIR`: a merged folder equal to the explicit weighted
    sum, the export check, the combined adapter and its record."""
    rundir = make_run(tmp_path, tiny_model_dir, export={"check_prompts": 2})
    source_run = make_run(tmp_path, tiny_model_dir, name="other")  # its adapter/ is used
    spec = f"{lora_b}:0.7,{source_run.root}:0.3"
    capsys.readouterr()
    assert main(["export", "--combine", spec, str(rundir.root)]) == 0
    assert capsys.readouterr().out.strip() == f"exported a cat combination of {spec} -> {rundir.merged}"

    expected = logits(explicit_model(tiny_model_dir, [(lora_b, 0.7), (source_run.adapter, 0.3)]), ids)
    merged = AutoModelForCausalLM.from_pretrained(rundir.merged).eval()
    assert (logits(merged, ids) - expected).abs().max() < TOL
    assert not (rundir.merged / "adapter_config.json").exists()
    check = json.loads((rundir.export / "export_check.json").read_text())
    assert check["identical"] is True and len(check["prompts"]) == 2
    combined = rundir.export / "combined"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "combine.json"} <= {
        p.name for p in combined.iterdir()
    }
    exact, got = weighted_sum([(lora_b, 0.7), (source_run.adapter, 0.3)]), updates(combined)
    assert got.keys() == exact.keys()  # the combined adapter's update is the weighted sum, layer by layer
    assert all((got[k] - exact[k]).abs().max() < 1e-5 for k in exact)
    record = json.loads((combined / "combine.json").read_text())
    assert record == json.loads(rundir.lineage.read_text())["combine"]
    assert record["combination"] == "cat" and record["rank"] == 8 + 4
    assert [(a["path"], a["weight"], a["rank"], a["quantization"]) for a in record["adapters"]] == [
        (str(lora_b.resolve()), 0.7, 8, "none"),
        (str(source_run.adapter.resolve()), 0.3, 4, "none"),
    ]
    # the run's own trained adapter is untouched
    assert (rundir.adapter / "adapter_model.safetensors").is_file()


def test_config_form_exports_the_combination(
    tmp_path: Path, tiny_model_dir: Path, lora_a: Path, lora_c: Path
) -> None:
    """`export.combine` in the run's config: the plain `export.run.run` (which `lmtune export` and
    `lmtune pipeline` call) exports the combination."""
    rundir = make_run(tmp_path, tiny_model_dir, export={"check_prompts": 1})
    cfg = rundir.load_config()
    combine = CombineConfig(
        adapters=[CombineSource(path=str(lora_a), weight=0.5), CombineSource(path=str(lora_c), weight=0.5)],
        combination="linear",
    )
    rundir.write_config(cfg.model_copy(update={"export": cfg.export.model_copy(update={"combine": combine})}))
    result = export_run(rundir)
    assert result.merged and result.path == rundir.merged and result.check.identical
    assert json.loads(rundir.lineage.read_text())["combine"]["combination"] == "linear"
    assert json.loads((rundir.export / "combined" / "adapter_config.json").read_text())["r"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--combine", "/nope/a:0.5"], "lmtune: error: /nope/a: no such adapter folder or run directory"),
        (["--combine", "a:lots"], "lmtune: error: --combine 'a:lots': weight 'lots' is not a number"),
        (["--combination", "svd"], "lmtune: error: --combination only applies with --combine"),
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    rundir = make_run(tmp_path, tiny_model_dir)
    capsys.readouterr()
    assert main(["export", *args, str(rundir.root)]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not rundir.export.exists()


def test_cli_refuses_linear_over_different_ranks(
    tmp_path: Path, tiny_model_dir: Path, lora_a: Path, lora_b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rundir = make_run(tmp_path, tiny_model_dir)
    capsys.readouterr()
    spec = f"{lora_a}:0.5,{lora_b}:0.5"
    assert main(["export", "--combine", spec, "--combination", "linear", str(rundir.root)]) == 2
    assert capsys.readouterr().err.strip() == (
        "lmtune: error: combination 'linear' needs adapters of one rank, got ranks [4, 8]; "
        "use 'cat' (exact) or 'svd'"
    )
    assert not rundir.export.exists()


def qlora_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter trained (here: perturbed) on the tiny model loaded 4-bit nf4, saved by lmtune's LoRA
    method (which records the quantized base next to the adapter)."""
    from lmtune import methods
    from lmtune.config.methods.lora import LoraConfig
    from lmtune.config.model import ModelConfig
    from lmtune.runtime.load import load_model

    torch.manual_seed(seed)
    cfg = LoraConfig(rank=4, alpha=8)
    model = methods.prepare(load_model(ModelConfig(path=str(base_dir), quantization="nf4")), cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    methods.save_weights(model, cfg, out)
    return out


def test_qlora_adapters_combine_on_their_quantized_base(
    tmp_path: Path, tiny_model_dir: Path, lora_a: Path
) -> None:
    """Adapters trained on an nf4 base combine on that base (and export through the QLoRA merge); an
    adapter of the float base does not mix with them."""
    q1 = qlora_adapter(tiny_model_dir, tmp_path / "q1", seed=7)
    q2 = qlora_adapter(tiny_model_dir, tmp_path / "q2", seed=8)
    assert adapters.read_adapter(q1).quantization == "nf4"
    rundir = make_run(tmp_path, tiny_model_dir, export={"check_prompts": 2})
    spec = export_combine.parse_spec(f"{q1}:0.5,{lora_a}:0.5")
    with pytest.raises(
        ConfigError, match=r"/a: trained on a base quantized 'none', but .*/q1 on one quantized"
    ):
        export_combine.run(rundir, spec)

    result = export_combine.run(rundir, export_combine.parse_spec(f"{q1}:0.5,{q2}:0.5"))
    assert result.merged and result.check.identical
    assert result.check.max_logit_diff is not None and result.check.max_logit_diff < TOL
    combined = rundir.export / "combined"
    assert json.loads((combined / "base_quantization.json").read_text()) == {"quantization": "nf4"}
    exact = weighted_sum([(q1, 0.5), (q2, 0.5)])
    got = updates(combined)
    assert got.keys() == exact.keys()
    assert all((got[k] - exact[k]).abs().max() < 1e-5 for k in exact)
