"""Class-weighted loss (`data.mixture.class_weights`): the data stage writes each train row's weight, the
loss weights each example's tokens by it, and training runs with it."""

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from lmtune.config import loader
from lmtune.config.run import RunConfig
from lmtune.data.prepare import prepare
from lmtune.errors import ConfigError
from lmtune.runtime.rundir import RunDir
from lmtune.train.weighted import weighted_token_loss


def test_weighted_token_loss_closed_form() -> None:
    """Two examples, vocabulary 2, uniform logits (nll = log 2 per token): example 0 has 1 labelled token,
    example 1 has 2; with w = (3, 1) the loss is (3*log2 + 1*2*log2) / (3*1 + 1*2) = log 2; then a
    non-uniform case computed by hand."""
    logits = torch.zeros(2, 3, 2)
    labels = torch.tensor([[-100, 1, -100], [-100, 0, 1]])
    assert weighted_token_loss(logits, labels, torch.tensor([3.0, 1.0])).item() == pytest.approx(math.log(2))
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 0, 1], [-100, 1, -100]])
    # example 0: positions 0 and 1 predict labels 0 (p = e^0/(e^0+e^0)) and 1 (p = 1/(1+e^2));
    # example 1: position 0 predicts label 1 with logits (0, 1).
    nll0 = [math.log(2), math.log(1 + math.exp(2))]
    nll1 = [math.log(1 + math.exp(-1))]
    want = (2 * sum(nll0) + 0.5 * sum(nll1)) / (2 * 2 + 0.5 * 1)
    got = weighted_token_loss(logits, labels, torch.tensor([2.0, 0.5]))
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_unit_weights_equal_the_models_own_loss(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.randint(0, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :4] = -100
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
        ours = weighted_token_loss(out.logits, labels, torch.ones(3))
    assert ours.item() == pytest.approx(out.loss.item(), abs=1e-5)


def _labelled(tmp_path: Path) -> Path:
    labels = ["pos"] * 30 + ["neg"] * 6
    random.Random(0).shuffle(labels)
    rows = [{"prompt": f"classify review {k}", "completion": y, "label": y} for k, y in enumerate(labels)]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(tmp_path: Path, source: Path, **data: Any) -> RunConfig:
    return loader.build(
        RunConfig,
        {
            "name": "cw",
            "output_dir": str(tmp_path / "runs"),
            "model": {"path": "tiny"},
            "data": {
                "sources": [{"path": str(source), "format": "prompt_completion"}],
                "max_length": 64,
                "eval_size": 6,
                "mixture": {"label_field": "label", "class_weights": True},
                **data,
            },
            "method": {"type": "lora", "rank": 4, "alpha": 8},
            "trainer": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-2, "logging_steps": 1},
        },
    )


def test_train_rows_carry_their_class_weight(tmp_path: Path, tiny_tokenizer: Any) -> None:
    cfg = _cfg(tmp_path, _labelled(tmp_path))
    prepared = prepare(cfg.data, RunDir.for_config(cfg), tiny_tokenizer, seed=cfg.seed)
    weights = prepared.stats["mixture"]["class_weights"]
    assert weights["neg"] > 1 > weights["pos"]
    rows = list(zip(prepared.train["messages"], prepared.train["weight"], strict=True))
    assert len(rows) == prepared.stats["split"]["train"]
    assert all(w == pytest.approx(weights[m[-1]["content"]]) for m, w in rows)  # the completion is the label
    assert "weight" not in prepared.eval.column_names  # evaluation stays unweighted


def test_training_with_class_weights_runs_and_logs_a_finite_loss(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from lmtune.train.sft import run

    cfg = _cfg(tmp_path, _labelled(tmp_path))
    result = run(cfg)
    assert result.steps == 4
    losses = [
        json.loads(line)["loss"]
        for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
        if '"train"' in line
    ]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)


def test_weighted_loss_with_gradient_accumulation_is_a_mean_not_a_sum(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Two micro-batches of 2 log about the loss of one batch of 4 (the same rows, a near-zero learning
    rate), not twice it: each micro-batch's weighted mean is divided by the accumulation steps."""
    from lmtune.runtime.rundir import RunDir
    from lmtune.train.run_metrics import train_losses
    from lmtune.train.sft import run

    source = _labelled(tmp_path)
    cfg = _cfg(tmp_path, source)

    def variant(name: str, **trainer: Any) -> RunConfig:
        loop = cfg.trainer.model_copy(update={"max_steps": 2, "learning_rate": 1e-9, **trainer})
        return cfg.model_copy(update={"name": name, "trainer": loop})

    whole, accumulated = variant("whole"), variant("accumulated", batch_size=2, grad_accum=2)
    one = train_losses(RunDir(run(whole).run_dir))
    two = train_losses(RunDir(run(accumulated).run_dir))
    assert sorted(one) == sorted(two) == [1, 2]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=0.25), (step, one, two)


def test_class_weights_with_packing_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"a packed row holds several examples: set data\.packing: false"):
        _cfg(tmp_path, tmp_path / "x.jsonl", packing=True)
