"""Every offline objective (DPO loss variants, KTO, ORPO, CPO, SimPO) trains through `lmtune.align.run`
on the tiny model: the loss falls on a repeated batch and the trained adapter is saved."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lmtune import align
from lmtune.config import loader
from lmtune.config.run import RunConfig

OBJECTIVES = [
    ({"type": "dpo", "loss_type": "ipo"}, "preference"),
    ({"type": "dpo", "loss_type": "hinge"}, "preference"),
    ({"type": "dpo", "loss_type": "robust", "label_smoothing": 0.1}, "preference"),
    ({"type": "kto"}, "kto"),
    ({"type": "orpo"}, "preference"),
    ({"type": "cpo"}, "preference"),
    ({"type": "cpo", "loss_type": "simpo", "cpo_alpha": 0.0}, "preference"),
]


@pytest.mark.parametrize(
    ("objective", "kind"),
    OBJECTIVES,
    ids=lambda o: o if isinstance(o, str) else "-".join(map(str, o.values())),
)
def test_objective_trains_and_saves(
    objective: dict[str, object],
    kind: str,
    tmp_path: Path,
    tiny_model_dir: Path,
    pairs_file: Path,
    kto_file: Path,
) -> None:
    data = pairs_file if kind == "preference" else kto_file
    cfg = loader.build(
        RunConfig,
        {
            "name": "o",
            "output_dir": str(tmp_path),
            "model": {"path": "tiny"},
            "align": {
                **objective,
                "data": {"sources": [{"path": str(data), "format": kind}], "eval_size": 4},
                "method": {"type": "lora", "rank": 4, "alpha": 8},
                "trainer": {
                    "max_steps": 8,
                    "batch_size": 4,
                    "learning_rate": 1e-2,
                    "lr_scheduler": "constant",
                    "logging_steps": 1,
                    "save_steps": 100,
                },
            },
        },
    )
    result = align.run(cfg)
    assert result.steps == 8
    root = tmp_path / "o" / "align"
    losses = [
        json.loads(line)["loss"]
        for line in (root / "metrics.jsonl").read_text().splitlines()
        if '"train"' in line
    ]
    assert len(losses) == 8 and all(loss == loss for loss in losses)  # logged every step, finite
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # it learns the (small, repeated) data
    weights = load_file(root / "adapter" / "adapter_model.safetensors")
    assert not any(".ref." in name for name in weights)
    assert "eval_loss" in result.metrics
