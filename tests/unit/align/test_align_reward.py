"""Reward model through `lmtune align` on the tiny model: a one-output sequence classifier trained on
preference pairs, saved as a plain transformers folder."""

from pathlib import Path

import pytest
import torch

from lmtune import align
from lmtune.align.reward import load_scorer
from lmtune.config import loader
from lmtune.config.run import RunConfig


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, pairs_file: Path):  # type: ignore[no-untyped-def]
    cfg = loader.build(
        RunConfig,
        {
            "name": "rm",
            "output_dir": str(tmp_path_factory.mktemp("runs")),
            "model": {"path": "tiny"},
            "align": {
                "type": "reward",
                "data": {"sources": [{"path": str(pairs_file), "format": "preference"}], "eval_size": 8},
                "method": {"type": "lora", "rank": 4, "alpha": 8},
                "trainer": {"max_steps": 30, "batch_size": 8, "learning_rate": 3e-3, "logging_steps": 5},
            },
        },
    )
    return cfg, align.run(cfg)


def test_reward_model_learns_the_training_pairs(reward_run) -> None:  # type: ignore[no-untyped-def]
    _, result = reward_run
    losses = [r["loss"] for r in _records(Path(result.run_dir), "train")]
    assert losses[-1] < losses[0]
    assert "eval_accuracy" in result.metrics  # held-out pairwise accuracy (chosen scored above rejected)
    assert 0.0 <= result.metrics["eval_accuracy"] <= 1.0
    # eval_before (default on): the same held-out evaluation before training, kept with a suffix
    assert "eval_accuracy_before" in result.metrics and "eval_loss_before" in result.metrics
    before = _records(Path(result.run_dir), "align_eval_before")
    assert len(before) == 1 and before[0]["step"] == 0
    assert before[0]["eval_loss"] == result.metrics["eval_loss_before"]


def test_saved_reward_model_loads_in_plain_transformers_and_scores(reward_run) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, result = reward_run
    folder = Path(result.run_dir) / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert model.config.num_labels == 1
    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok(["The answer is 4.", "It is 5."], return_tensors="pt", padding=True)
    with torch.no_grad():
        scores = model(**batch).logits
    assert scores.shape == (2, 1) and torch.isfinite(scores).all()
    again = load_scorer(folder)
    with torch.no_grad():
        assert torch.allclose(again(**batch).logits, scores)


def _records(root: Path, kind: str) -> list[dict[str, float]]:
    import json

    lines = (root / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]
