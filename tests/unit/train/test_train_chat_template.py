"""Fine-tuning a base model (no chat template) on conversations with `data.chat_template`: the tokens the
template adds, the grown embeddings, what is saved with the weights, and that the export reproduces it;
on the tiny base model and (marker `real`) on SmolLM2 with its template removed."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from lmtune.config.run import RunConfig
from lmtune.errors import ConfigError, DataError
from lmtune.evaluate.run import run as evaluate
from lmtune.export.run import run as export
from lmtune.runtime import chat_templates
from lmtune.runtime.rundir import RunDir
from lmtune.runtime.tiny import save_tiny
from lmtune.train.sft import run

HOW_TO = "has no chat template; set data.chat_template (chatml, llama3, gemma, mistral or a Jinja file)"
SHORT = {"max_steps": 3, "logging_steps": 1, "save_steps": 3}


@pytest.fixture(scope="module")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Llama with a base tokenizer: no chat template, no turn markers, 512 tokens."""
    return save_tiny(tmp_path_factory.mktemp("tiny_base") / "model", base=True)


def _losses(rundir: RunDir) -> list[float]:
    records = map(json.loads, rundir.metrics.read_text(encoding="utf-8").splitlines())
    return [r["loss"] for r in records if r.get("kind") == "train"]


def _tensor_shapes(path: Path) -> dict[str, list[int]]:
    with safe_open(str(path), "pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)


def test_a_base_model_without_template_stops_with_how_to_set_one(
    run_config: Callable[..., RunConfig], tiny_base_dir: Path
) -> None:
    how_to = re.escape(f"{HOW_TO}, use format `text`, or use a chat model")
    with pytest.raises(DataError, match=f"^tokenizer .*: {how_to}$"):
        run(run_config(model={"path": str(tiny_base_dir)}))


def test_chatml_on_a_base_model_trains_the_new_tokens_and_the_export_reproduces_it(
    run_config: Callable[..., RunConfig], tiny_base_dir: Path
) -> None:
    cfg = run_config(
        model={"path": str(tiny_base_dir)},
        data={"chat_template": "chatml"},
        trainer={"max_steps": 12, "logging_steps": 2, "save_steps": 6},
        export={"check_prompts": 2, "check_max_new_tokens": 8},
    )
    result = run(cfg)
    rundir = RunDir.for_config(cfg)
    losses = _losses(rundir)
    assert len(losses) == 6 and losses[-1] < losses[0], "loss falls"

    # The tokenizer saved with the adapter carries the template and the two added tokens.
    saved = AutoTokenizer.from_pretrained(result.weights_path)
    assert saved.chat_template == chat_templates.CHATML and len(saved) == 514
    assert saved.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [512, 513]
    assert {"<|im_start|>", "<|im_end|>"} <= set(saved.all_special_tokens)
    # Their embedding and (untied) output-head rows trained as PEFT trainable tokens, saved without
    # the whole embedding matrices.
    adapter_config = json.loads((result.weights_path / "adapter_config.json").read_text())
    assert adapter_config["trainable_token_indices"] == {
        "model.embed_tokens": [512, 513],
        "lm_head": [512, 513],
    }
    shapes = _tensor_shapes(result.weights_path / "adapter_model.safetensors")
    token_rows = {k: v for k, v in shapes.items() if "trainable_tokens_delta" in k}
    assert len(token_rows) == 2 and all(v == [2, 64] for v in token_rows.values())
    assert all(v[0] < 512 for v in shapes.values()), "no whole embedding matrix in the adapter"

    exported = export(rundir)
    assert exported.merged and exported.check.identical
    assert exported.check.max_logit_diff is not None and exported.check.max_logit_diff < 1e-4
    merged: Any = AutoModelForCausalLM.from_pretrained(exported.path)
    assert merged.config.vocab_size == 514
    assert merged.get_input_embeddings().weight.shape[0] == 514
    assert merged.get_output_embeddings().weight.shape[0] == 514
    assert AutoTokenizer.from_pretrained(exported.path).chat_template == chat_templates.CHATML
    eos = GenerationConfig.from_pretrained(exported.path).eos_token_id
    assert (eos if isinstance(eos, list) else [eos])[0] == 513, "a plain generate stops at <|im_end|>"


def test_full_fine_tuning_saves_the_grown_model_and_the_base_evaluates_beside_it(
    run_config: Callable[..., RunConfig], tiny_base_dir: Path
) -> None:
    cfg = run_config(
        model={"path": str(tiny_base_dir)},
        method={"type": "full"},
        data={"chat_template": "llama3"},
        trainer={**SHORT, "learning_rate": 1e-3},
        evaluate={"max_samples": 2, "max_new_tokens": 4},
    )
    result = run(cfg)
    config = AutoConfig.from_pretrained(result.weights_path)
    assert config.vocab_size == 515, "three llama3 tokens added"
    eos = GenerationConfig.from_pretrained(result.weights_path).eos_token_id
    assert isinstance(eos, list) and eos[0] == 514, "generation stops at <|eot_id|>, then eos"
    summary = evaluate(RunDir.for_config(cfg))  # the base is loaded apart, grown to the tokenizer
    assert summary.base is not None
    base_loss = summary.base["eval_loss"]
    assert isinstance(base_loss, float) and math.isfinite(base_loss)


def test_a_jinja_file_template_trains_and_is_saved_with_the_weights(
    run_config: Callable[..., RunConfig], tiny_base_dir: Path, tmp_path: Path
) -> None:
    jinja = (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    )
    path = tmp_path / "turns.jinja"
    path.write_text(jinja, encoding="utf-8")
    # The file names no role token literally but `<|end|>` and `<|assistant|>`: those are added.
    cfg = run_config(model={"path": str(tiny_base_dir)}, data={"chat_template": str(path)}, trainer=SHORT)
    result = run(cfg)
    assert all(math.isfinite(x) for x in _losses(RunDir.for_config(cfg)))
    saved = AutoTokenizer.from_pretrained(result.weights_path)
    assert saved.chat_template == jinja and len(saved) == 514
    assert {"<|end|>", "<|assistant|>"} <= set(saved.all_special_tokens)


def test_an_adapter_that_keeps_no_new_rows_is_refused_unless_the_template_adds_none(
    run_config: Callable[..., RunConfig], tiny_base_dir: Path
) -> None:
    ia3 = {"type": "ia3"}
    with pytest.raises(ConfigError) as info:
        run(run_config(model={"path": str(tiny_base_dir)}, method=ia3, data={"chat_template": "chatml"}))
    assert str(info.value) == (
        "data.chat_template 'chatml' adds <|im_start|>, <|im_end|> to the vocabulary, and method 'ia3' keeps "
        "no new embedding rows: use lora or a method that trains the whole model, or a template whose tokens "
        "the tokenizer has (mistral adds none)"
    )
    cfg = run_config(
        name="mistral",
        model={"path": str(tiny_base_dir)},
        method=ia3,
        data={"chat_template": "mistral"},
        trainer=SHORT,
    )
    result = run(cfg)
    assert len(AutoTokenizer.from_pretrained(result.weights_path)) == 512


@pytest.mark.real
def test_real_smollm2_without_its_template_fine_tunes_with_chatml(
    smollm2_dir: Path, run_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    base = tmp_path / "smollm2-base"
    base.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (base / name).symlink_to(smollm2_dir / name)
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    size = len(tok)
    tok.chat_template = None
    tok.save_pretrained(base)
    assert AutoTokenizer.from_pretrained(base).chat_template is None

    with pytest.raises(DataError, match=re.escape(HOW_TO)):
        run(run_config(model={"path": str(base)}))
    cfg = run_config(
        name="templated",
        model={"path": str(base)},
        data={"chat_template": "chatml"},
        trainer={"max_steps": 2, "logging_steps": 1, "learning_rate": 5e-4, "save_steps": 2},
    )
    result = run(cfg)
    losses = _losses(RunDir.for_config(cfg))
    assert len(losses) == 2 and all(math.isfinite(x) and 0 < x < 10 for x in losses)
    saved = AutoTokenizer.from_pretrained(result.weights_path)
    assert saved.chat_template == chat_templates.CHATML
    assert len(saved) == size, "SmolLM2 has the ChatML tokens already: nothing added, nothing grown"
    ids = [saved.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>")]
    adapter_config = json.loads((result.weights_path / "adapter_config.json").read_text())
    # Tied embeddings: the rows train once, in the input embeddings (the head follows).
    assert adapter_config["trainable_token_indices"] == {"model.embed_tokens": sorted(ids)}
