"""Each PEFT-family method through the real stages on the tiny model: `lmtune.train.sft.run` (two steps),
then `lmtune.evaluate.run.run` and `lmtune.export.run.run` on the run directory it wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmtune.config.loader import build
from lmtune.config.run import RunConfig
from lmtune.runtime.rundir import RunDir

CHATS = [
    [
        {"role": "user", "content": f"she has {a} apples and buys {b} more. how many apples?"},
        {"role": "assistant", "content": f"she has {a + b} apples. #### {a + b}"},
    ]
    for a, b in [(1, 2), (3, 4), (5, 1), (2, 7), (6, 3), (8, 1), (4, 4), (9, 2), (7, 7), (2, 2)]
]

CASES: dict[str, tuple[dict[str, Any], dict[str, Any], bool]] = {
    # id: (method, model overrides, export merges)
    "lora-dora": ({"type": "lora", "rank": 4, "alpha": 8, "use_dora": True}, {}, True),
    "lora-pissa": ({"type": "lora", "rank": 4, "alpha": 8, "init": "pissa"}, {}, True),
    "qlora-nf4": ({"type": "lora", "rank": 4, "alpha": 8}, {"quantization": "nf4"}, True),
    "qlora-int8": ({"type": "lora", "rank": 4, "alpha": 8}, {"quantization": "int8"}, False),
    "ia3": ({"type": "ia3"}, {}, True),
    "vera": ({"type": "vera", "rank": 16}, {}, True),
    "loha": ({"type": "loha", "rank": 4, "alpha": 8}, {}, True),
    "lokr": ({"type": "lokr", "rank": 4, "alpha": 8}, {}, True),
    "prompt_tuning": ({"type": "prompt_tuning", "num_virtual_tokens": 4}, {}, False),
    "prefix_tuning": ({"type": "prefix_tuning", "num_virtual_tokens": 4}, {}, False),
    "freeze": ({"type": "freeze", "trainable": ["model.layers.1", "lm_head"]}, {}, True),
}


@pytest.fixture
def chats_file(tmp_path: Path) -> Path:
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CHATS), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_train_evaluate_export(case: str, tmp_path: Path, tiny_model_dir: Path, chats_file: Path) -> None:
    from lmtune.evaluate.run import run as evaluate
    from lmtune.export.run import run as export
    from lmtune.train.sft import run as train

    method, model, merges = CASES[case]
    cfg = build(
        RunConfig,
        {
            "name": case,
            "output_dir": str(tmp_path / "runs"),
            "model": {"path": str(tiny_model_dir), **model},
            "data": {"sources": [{"path": str(chats_file)}], "max_length": 64, "eval_size": 2},
            "method": method,
            "trainer": {
                "max_steps": 2,
                "batch_size": 4,
                "learning_rate": 1e-2,
                "save_steps": 2,
                "device": "cpu",
            },
            "evaluate": {"max_samples": 2, "max_new_tokens": 4, "batch_size": 2},
            "export": {"check_prompts": 2, "check_max_new_tokens": 4},
        },
    )
    trained = train(cfg)
    assert trained.steps == 2
    rundir = RunDir.for_config(cfg)

    result = evaluate(rundir)
    assert result.base is not None and result.tuned["eval_loss"] is not None
    assert result.tuned["eval_loss"] != result.base["eval_loss"], "the tuned model is not the base"

    exported = export(rundir)
    assert exported.merged is merges
    assert exported.path == (rundir.merged if merges else rundir.export / "adapter")
    assert exported.check.identical
    assert json.loads((rundir.export / "export_check.json").read_text())["identical"]
