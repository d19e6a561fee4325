"""Preflight refusals (exact messages) and the memory estimate against its closed form."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from lmtune import methods
from lmtune.config.methods.full import FullConfig
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.run import RunConfig
from lmtune.errors import PreflightError
from lmtune.runtime.device import pick_device
from lmtune.train import preflight
from lmtune.train.preflight import GIB, check, estimate_memory, layer_activation_elements

IM_END = "<|im_end|>"


@pytest.fixture
def full_model(tiny_model_dir: Path) -> Any:
    return methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), FullConfig())


@pytest.fixture
def lora_model(tiny_model_dir: Path) -> Any:
    return methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(rank=4, alpha=8))


def _with_labels(dataset: Any, index: int, labels: list[int]) -> Any:
    rows = dataset.to_dict()
    rows["labels"][index] = labels
    return type(dataset).from_dict(rows)


def test_a_good_split_passes_and_counts_trained_tokens(
    lora_model: Any, tiny_tokenizer: Any, make_rows: Callable[..., Any], run_config: Callable[..., RunConfig]
) -> None:
    rows = make_rows()
    report = check(lora_model, tiny_tokenizer, rows, run_config())
    assert report.rows == len(rows)
    assert report.trained_tokens == sum(sum(1 for x in r[1:] if x != -100) for r in rows["labels"]) > 0
    assert report.total_tokens == sum(len(r) for r in rows["input_ids"])
    assert report.eos_ids == (tiny_tokenizer.convert_tokens_to_ids(IM_END),)
    assert report.available_source == "available RAM"
    assert 0 < report.memory.total < report.available_bytes


def test_refuses_when_no_token_is_trained(
    lora_model: Any, tiny_tokenizer: Any, make_rows: Callable[..., Any], run_config: Callable[..., RunConfig]
) -> None:
    rows = make_rows()
    rows = rows.map(lambda r: {"labels": [-100] * len(r["labels"])})
    with pytest.raises(PreflightError) as err:
        check(lora_model, tiny_tokenizer, rows, run_config())
    assert str(err.value) == (
        "no token would be trained on: every label in the 8 training examples is -100 "
        "(check the data format and the assistant-only loss mask)"
    )


def test_refuses_an_empty_split(
    lora_model: Any, tiny_tokenizer: Any, make_rows: Callable[..., Any], run_config: Callable[..., RunConfig]
) -> None:
    with pytest.raises(PreflightError, match=r"^the training split is empty: no example to train on$"):
        check(lora_model, tiny_tokenizer, make_rows().select([]), run_config())


def test_refuses_an_assistant_turn_that_does_not_end_with_eos(
    lora_model: Any, tiny_tokenizer: Any, make_rows: Callable[..., Any], run_config: Callable[..., RunConfig]
) -> None:
    rows = make_rows()
    labels = list(rows["labels"][3])
    end = max(i for i, x in enumerate(labels) if x != -100)
    assert tiny_tokenizer.convert_ids_to_tokens(labels[end]) == IM_END
    labels[end] = -100  # the end-of-turn token is no longer trained: the span now ends on the answer
    last = labels[end - 1]
    token = tiny_tokenizer.convert_ids_to_tokens(last)
    with pytest.raises(PreflightError) as err:
        check(lora_model, tiny_tokenizer, _with_labels(rows, 3, labels), run_config())
    assert str(err.value) == (
        f"training example 3: a labelled span ends with token {token!r} (id {last}), not an end-of-turn "
        f"token the model stops on ('<|im_end|>' (id 2)); the model will never stop generating. "
        "Check the chat template and that each assistant turn ends with the eos token"
    )


def test_a_span_cut_by_truncation_at_max_length_is_allowed(
    lora_model: Any, tiny_tokenizer: Any, make_rows: Callable[..., Any], run_config: Callable[..., RunConfig]
) -> None:
    rows = make_rows()
    full = rows["input_ids"][0]
    labels = list(rows["labels"][0])
    end = max(i for i, x in enumerate(labels) if x != -100)
    cut = make_rows().to_dict()
    cut["input_ids"][0], cut["labels"][0], cut["attention_mask"][0] = full[:end], labels[:end], [1] * end
    cut_rows = type(rows).from_dict(cut)
    truncating = run_config(data={"truncation": "truncate", "max_length": end})
    assert check(lora_model, tiny_tokenizer, cut_rows, truncating).rows == len(rows)
    # the same row under `drop` (or shorter than max_length) is a template problem
    with pytest.raises(PreflightError, match=r"^training example 0: a labelled span ends with token"):
        check(lora_model, tiny_tokenizer, cut_rows, run_config(data={"max_length": end}))
    with pytest.raises(PreflightError, match=r"^training example 0: "):
        check(lora_model, tiny_tokenizer, cut_rows, run_config(data={"truncation": "truncate"}))


def test_eos_ids_come_from_the_generation_config(tiny_model_dir: Path, tiny_tokenizer: Any) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.generation_config.eos_token_id = [2, 7]
    assert preflight.eos_token_ids(model, tiny_tokenizer) == (2, 7)
    assert preflight.first_bad_span_end([-100, 5, 7, -100, 9, 2], (2, 7)) is None
    assert preflight.first_bad_span_end([-100, 5, 8, -100, 9, 2], (2, 7)) == 8
    assert preflight.first_bad_span_end([-100, 5, 8], (2, 7), exempt_row_end=True) is None


def test_refuses_a_run_that_does_not_fit_in_memory_with_both_numbers(
    full_model: Any,
    tiny_tokenizer: Any,
    make_rows: Callable[..., Any],
    run_config: Callable[..., RunConfig],
) -> None:
    model = full_model
    rows = make_rows()
    cfg = run_config(
        method={"type": "full"}, trainer={"memory_limit_gb": 0.001, "gradient_checkpointing": False}
    )
    longest = max(len(r) for r in rows["input_ids"])
    est = estimate_memory(model, cfg.trainer.batch_size * longest, gradient_checkpointing=False)
    with pytest.raises(PreflightError) as err:
        check(model, tiny_tokenizer, rows, cfg)
    assert str(err.value) == (
        f"estimated peak training memory {est.total / GIB:.2f} GiB (weights {est.weights / GIB:.2f} + "
        f"gradients {est.gradients / GIB:.2f} + optimizer {est.optimizer / GIB:.2f} + activations "
        f"{est.activations / GIB:.2f}) exceeds the 0.00 GiB available (trainer.memory_limit_gb); lower "
        "trainer.batch_size or data.max_length, turn on trainer.gradient_checkpointing, or use a LoRA method"
    )
    roomy = run_config(method={"type": "full"}, trainer={"memory_limit_gb": 1.0})
    assert check(model, tiny_tokenizer, rows, roomy).available_bytes == GIB


def test_auto_checkpointing_turns_on_only_when_the_run_does_not_fit(
    full_model: Any,
    tiny_tokenizer: Any,
    make_rows: Callable[..., Any],
    run_config: Callable[..., RunConfig],
) -> None:
    model = full_model
    rows = make_rows()
    tokens = 4 * max(len(r) for r in rows["input_ids"])
    without = estimate_memory(model, tokens, gradient_checkpointing=False).total
    with_ckpt = estimate_memory(model, tokens, gradient_checkpointing=True).total
    assert with_ckpt < without

    def decide(limit_bytes: float) -> preflight.PreflightReport:
        cfg = run_config(method={"type": "full"}, trainer={"memory_limit_gb": limit_bytes / GIB})
        assert cfg.trainer.gradient_checkpointing == "auto"  # the default
        return check(model, tiny_tokenizer, rows, cfg)

    roomy = decide(without * 1.01)
    assert not roomy.gradient_checkpointing and roomy.memory.total == without
    tight = decide((without + with_ckpt) / 2)
    assert tight.gradient_checkpointing and tight.memory.total == with_ckpt
    with pytest.raises(
        PreflightError, match=r"with gradient checkpointing\) exceeds the .* GiB available"
    ) as err:
        decide(with_ckpt * 0.99)
    assert "turn on trainer.gradient_checkpointing" not in str(err.value)


def test_processes_on_one_cpu_machine_share_its_ram(
    lora_model: Any, tiny_tokenizer: Any, make_rows: Callable[..., Any], run_config: Callable[..., RunConfig]
) -> None:
    alone = check(lora_model, tiny_tokenizer, make_rows(), run_config())
    shared = check(lora_model, tiny_tokenizer, make_rows(), run_config(), local_processes=2)
    assert shared.available_bytes == pytest.approx(alone.available_bytes / 2, rel=0.05)
    assert shared.available_source == "available RAM, shared by 2 processes"


def test_trainer_gets_the_preflight_decision(run_config: Callable[..., RunConfig], tmp_path: Path) -> None:
    from lmtune.runtime.rundir import RunDir
    from lmtune.train.sft import training_arguments

    cfg = run_config()
    rundir = RunDir(tmp_path / "run")
    assert training_arguments(cfg.trainer, cfg, rundir, False)["activation_checkpointing"] is False  # auto
    assert training_arguments(cfg.trainer, cfg, rundir, False, True)["activation_checkpointing"] is True
    on = run_config(trainer={"gradient_checkpointing": True})
    assert training_arguments(on.trainer, on, rundir, False)["activation_checkpointing"] is True


def test_memory_estimate_matches_its_closed_form(tiny_model_dir: Path) -> None:
    full = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), FullConfig())
    n = sum(p.numel() for p in full.parameters())
    c = full.config
    tokens = 4 * 50
    est = estimate_memory(full, tokens, gradient_checkpointing=False)
    assert (est.weights, est.gradients, est.optimizer) == (4 * n, 4 * n, 8 * n)
    logits = tokens * c.vocab_size * 4 * 3
    kv = c.num_key_value_heads * c.hidden_size // c.num_attention_heads
    per_layer = 7 * c.hidden_size + 3 * kv + 4 * c.intermediate_size
    assert layer_activation_elements(c) == per_layer
    assert est.activations == tokens * c.num_hidden_layers * per_layer * 4 + logits
    checkpointed = estimate_memory(full, tokens, gradient_checkpointing=True)
    assert checkpointed.activations == tokens * 4 * (c.num_hidden_layers * c.hidden_size + per_layer) + logits
    assert checkpointed.total < est.total
    fused = estimate_memory(full, tokens, gradient_checkpointing=False, fused_loss=True)
    # Liger: leaner layers, and the fused loss holds its input's gradient and one logits chunk, never all
    fused_layer = 6 * c.hidden_size + 2 * kv + 3 * c.intermediate_size
    assert layer_activation_elements(c, fused=True) == fused_layer < per_layer
    chunk = 1 << (math.ceil(tokens / math.ceil(c.vocab_size / c.hidden_size)) - 1).bit_length()
    fused_loss = tokens * c.hidden_size * 4 + chunk * c.vocab_size * 10
    assert fused.activations == tokens * c.num_hidden_layers * fused_layer * 4 + fused_loss
    assert fused.total < est.total
    sharded = estimate_memory(full, tokens, gradient_checkpointing=False, shards=(4, 4))  # FSDP on 4
    assert (sharded.weights, sharded.gradients, sharded.optimizer) == (n, n, 2 * n)
    zero2 = estimate_memory(full, tokens, gradient_checkpointing=False, shards=(1, 2))
    assert (zero2.weights, zero2.gradients) == (4 * n, 2 * n)

    lora = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(rank=4, alpha=8))
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    est_lora = estimate_memory(lora, tokens, gradient_checkpointing=False)
    assert est_lora.weights == 4 * sum(p.numel() for p in lora.parameters())
    assert (est_lora.gradients, est_lora.optimizer) == (4 * trainable, 8 * trainable)
    assert est_lora.total < est.total, "LoRA needs less memory than full training"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal when no CUDA device exists")
def test_cuda_requested_without_a_device(run_config: Callable[..., RunConfig]) -> None:
    with pytest.raises(PreflightError, match=r"^trainer.device is 'cuda' but no CUDA device is available$"):
        pick_device(run_config(trainer={"device": "cuda"}).trainer.device)


def test_liger_and_compile_reach_the_trainer_arguments(
    run_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from lmtune.errors import ConfigError
    from lmtune.runtime.rundir import RunDir
    from lmtune.train.preflight import use_liger
    from lmtune.train.sft import training_arguments

    rundir = RunDir(tmp_path / "run")
    cfg = run_config()  # device cpu, liger auto, compile off
    args = training_arguments(cfg.trainer, cfg, rundir, False)
    assert (args["use_liger_kernel"], args["torch_compile"]) == (False, False)
    compiled = run_config(trainer={"compile": True})
    assert training_arguments(compiled.trainer, compiled, rundir, False)["torch_compile"] is True
    forced = run_config(trainer={"liger": True})
    with pytest.raises(ConfigError, match=r"^trainer.liger: true needs CUDA"):
        training_arguments(forced.trainer, forced, rundir, False)
    # On CUDA: auto follows whether the package is installed; true without it names the extra.
    real_find_spec = importlib.util.find_spec
    for installed in (True, False):
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a, _i=installed: (
                (object() if _i else None) if name == "liger_kernel" else real_find_spec(name, *a)
            ),
        )
        assert use_liger(cfg.trainer, on_cuda=True) is installed
        assert use_liger(run_config(trainer={"liger": False}).trainer, on_cuda=True) is False
    with pytest.raises(ConfigError, match=r"pip install 'lmtune\[gpu\]'"):
        use_liger(forced.trainer, on_cuda=True)


def test_liger_stays_off_for_an_adapter_over_sharded_weights(
    run_config: Callable[..., RunConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Liger's fused loss reads the output head's weight directly: under FSDP that is a shard (seen on an
    H100: `aten.mm.out got mixed torch.Tensor and DTensor`), so auto leaves Liger off and true is refused."""
    from lmtune.errors import ConfigError
    from lmtune.train.preflight import sharded_adapter, use_liger

    lora, full = run_config(), run_config(method={"type": "full"})
    assert not sharded_adapter(lora)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert sharded_adapter(lora) and not sharded_adapter(full)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    assert use_liger(lora.trainer, on_cuda=True, sharded_adapter=True) is False
    assert use_liger(full.trainer, on_cuda=True, sharded_adapter=False) is True
    forced = run_config(trainer={"liger": True})
    with pytest.raises(ConfigError, match=r"^trainer.liger: true cannot train an adapter over FSDP"):
        use_liger(forced.trainer, on_cuda=True, sharded_adapter=True)
