"""Stage 6a on the tiny model: merged folder layout, merge equivalence, the export check and its failure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from tuned_run import GSM8K_STYLE, make_run, perturbed_lora

from lmtune.errors import ModelLoadError
from lmtune.export import formats as export_formats
from lmtune.export.check import BUILTIN_PROMPTS, ExportCheckError
from lmtune.export.run import ExportResult, run
from lmtune.runtime.generation import greedy_generate, render_prompt
from lmtune.runtime.rundir import RunDir


def test_merged_folder_is_standard_safetensors(lora_run: RunDir, exported: ExportResult) -> None:
    out = lora_run.merged
    assert exported.path == out and exported.merged
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    assert "adapter_config.json" not in names  # merged: loads without PEFT
    assert set(exported.files) == {"model.safetensors"}
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    gen = GenerationConfig.from_pretrained(out)
    assert gen.eos_token_id == im_end and gen.pad_token_id == im_end
    lineage = json.loads(lora_run.lineage.read_text())["export"]
    assert lineage["path"] == str(out) and lineage["merged"] is True and lineage["identical"] is True
    assert lineage["files"] == exported.files


def test_export_check_identical_for_perturbed_adapter(
    lora_run: RunDir, exported: ExportResult, tiny_model_dir: Path
) -> None:
    check = json.loads((lora_run.export / "export_check.json").read_text())
    assert set(check) == {
        "prompts",
        "before",
        "after",
        "identical",
        "max_logit_diff",
        "serving",
        "contract_differences",
    }
    assert check["contract_differences"] == [] and check["serving"]["stop_tokens"] == ["<|im_end|>"]
    assert check["identical"] is True
    assert check["before"] == check["after"]
    assert len(check["prompts"]) == 4  # export.check_prompts
    assert all(len(b["token_ids"]) > 0 for b in check["before"])
    assert check["max_logit_diff"] < 1e-4
    # the prompts are the held-out ones (all turns but the reference answer)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert check["prompts"] == [render_prompt(tok, c[:-1]) for c in GSM8K_STYLE[:4]]
    # ... and the adapter really changes the answers, so the check compared the tuned model
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    plain = greedy_generate(base, tok, check["prompts"], max_new_tokens=8, batch_size=2, stop_ids=[2])
    assert [g.token_ids for g in plain] != [b["token_ids"] for b in check["before"]]


def test_merged_logits_equal_unmerged(tiny_model_dir: Path, tiny_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = perturbed_lora(tiny_model_dir, scale=0.5)
    ids = torch.tensor([tiny_tokenizer(render_prompt(tiny_tokenizer, GSM8K_STYLE[0]))["input_ids"]])
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids).logits
        merged_model = model.merge_and_unload()
        merged = merged_model(input_ids=ids).logits
    assert (unmerged - base).abs().max() > 1e-2  # the adapter is not a no-op
    assert torch.allclose(merged, unmerged, atol=1e-4)
    merged_model.save_pretrained(tmp_path / "m")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, unmerged, atol=1e-4)


def test_unmerged_export_saves_the_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    rundir = make_run(tmp_path, tiny_model_dir, export={"merge": False, "check_prompts": 2})
    result = run(rundir)
    assert not result.merged and result.path == rundir.export / "adapter"
    names = {p.name for p in result.path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "generation_config.json"} <= names
    assert set(result.files) == {"adapter_model.safetensors"}
    assert result.check.identical and len(result.check.prompts) == 2
    assert not rundir.merged.exists()


def test_full_fine_tuning_is_saved_as_is(tmp_path: Path, tiny_model_dir: Path) -> None:
    rundir = make_run(tmp_path, tiny_model_dir, method="full", scale=0.05, export={"check_prompts": 2})
    result = run(rundir)
    assert result.merged and result.path == rundir.merged
    assert result.check.identical and result.check.max_logit_diff == 0.0
    from safetensors.torch import load_file

    saved, trained = (
        load_file(rundir.merged / "model.safetensors"),
        load_file(rundir.model / "model.safetensors"),
    )
    assert saved.keys() == trained.keys()
    assert all(torch.equal(saved[k], trained[k]) for k in saved)


def test_prompts_fall_back_to_builtins(tmp_path: Path, tiny_model_dir: Path) -> None:
    rundir = make_run(tmp_path, tiny_model_dir, export={"check_prompts": 7})
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    topped_up = run(rundir).check.prompts  # 5 held-out prompts, then built-ins
    assert topped_up == [render_prompt(tok, c[:-1]) for c in GSM8K_STYLE] + [
        render_prompt(tok, c) for c in BUILTIN_PROMPTS[:2]
    ]
    shutil.rmtree(rundir.data)
    only_builtin = run(rundir).check.prompts
    assert only_builtin == [render_prompt(tok, c) for c in BUILTIN_PROMPTS]


def test_a_differing_export_fails_with_a_clear_error(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export that changed the weights (here: noise added while saving) must be caught."""
    rundir = make_run(tmp_path, tiny_model_dir, export={"check_prompts": 2})
    real_save = export_formats.save_folder

    def corrupting_save(model, tokenizer, out):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            model.lm_head.weight.add_(torch.randn_like(model.lm_head.weight))
        return real_save(model, tokenizer, out)

    monkeypatch.setattr(export_formats, "save_folder", corrupting_save)
    with pytest.raises(ExportCheckError, match=r"export/merged: the export does not reproduce the trained"):
        run(rundir)
    check = json.loads((rundir.export / "export_check.json").read_text())
    assert check["identical"] is False and check["max_logit_diff"] > 1e-2
    assert json.loads(rundir.lineage.read_text())["export"]["identical"] is False


def _edit_generation_config(out: Path, **fields: object) -> None:
    path = out / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


PLANTED = {
    "chat_template": (
        lambda tok, out: setattr(tok, "chat_template", tok.chat_template + "{# changed #}"),
        None,
        "chat_template_sha256: trained",
    ),
    "eos_token": (lambda tok, out: setattr(tok, "eos_token", "<|im_start|>"), None, "eos_token: trained"),
    "generation_eos": (
        None,
        lambda out: _edit_generation_config(out, eos_token_id=0),
        "generation_config.eos_token_id: trained",
    ),
    "sampling": (
        None,
        lambda out: _edit_generation_config(out, do_sample=True, temperature=0.7),
        "generation_config.do_sample: trained None, exported True",
    ),
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_an_export_that_changes_the_serving_contract_fails(
    planted: str, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each difference from training planted in the export (template, EOS, generation config) is named."""
    before_save, after_save, message = PLANTED[planted]
    rundir = make_run(tmp_path, tiny_model_dir, export={"check_prompts": 1})
    real_save = export_formats.save_folder

    def planting_save(model, tokenizer, out, *rest):  # type: ignore[no-untyped-def]
        if before_save is not None:
            before_save(tokenizer, out)
        hashes = real_save(model, tokenizer, out, *rest)
        if after_save is not None:
            after_save(out)
        return hashes

    monkeypatch.setattr(export_formats, "save_folder", planting_save)
    with pytest.raises(ExportCheckError, match=r"the export changes what training served with: .*" + message):
        run(rundir)
    check = json.loads((rundir.export / "export_check.json").read_text())
    assert any(d.startswith(message.split(":")[0]) for d in check["contract_differences"])
    assert json.loads(rundir.lineage.read_text())["export"]["serving_contract_kept"] is False


def test_missing_weights_are_reported(tmp_path: Path, tiny_model_dir: Path) -> None:
    rundir = make_run(tmp_path, tiny_model_dir)
    shutil.rmtree(rundir.adapter)
    with pytest.raises(ModelLoadError, match=r"run/model: no trained weights .* run `lmtune train` first"):
        run(rundir)
    assert not rundir.export.exists()


def test_zero_check_prompts_skips_the_check(tmp_path: Path, tiny_model_dir: Path) -> None:
    rundir = make_run(tmp_path, tiny_model_dir, export={"check_prompts": 0})
    result = run(rundir)
    check = json.loads((rundir.export / "export_check.json").read_text())
    serving = check.pop("serving")
    assert check == {
        "prompts": [],
        "before": [],
        "after": [],
        "identical": True,
        "max_logit_diff": None,
        "contract_differences": [],  # the serving contract is checked even with no prompt to generate
    }
    assert serving["stop_tokens"] == ["<|im_end|>"]
    assert (result.path / "model.safetensors").is_file()
