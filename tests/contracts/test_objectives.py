"""The contract every alignment objective must pass, parametrised over every member of
`lmtune.config.align.AnyObjective` (a new objective without a case here fails
`test_every_objective_is_covered`): on the tiny model, through `lmtune.align.run`,

- it starts from the right weights (`start_from: base` -> the configured base model);
- it learns: the offline objectives' loss falls on a small repeated data set; the online ones (which
  sample their batches) move the policy away from the start and log finite losses;
- save -> load equal: the final weights equal the last checkpoint's;
- resume equal: dropping the last checkpoint and the final weights and resuming gives the same final
  weights as the uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from safetensors.torch import load_file

from lmtune import align
from lmtune.config import loader
from lmtune.config.align import AnyObjective
from lmtune.config.run import RunConfig
from lmtune.runtime.load import resolve_model_path
from lmtune.runtime.records import TrainLog
from lmtune.runtime.rundir import RunDir

STEPS = 4
ONLINE = {"grpo", "rloo", "ppo"}
OBJECTIVES: dict[str, tuple[str, dict[str, Any]]] = {
    "dpo": ("preference", {}),
    "kto": ("kto", {}),
    "orpo": ("preference", {}),
    "cpo": ("preference", {}),
    "reward": ("preference", {}),
    "grpo": (
        "prompt",
        {
            "rewards": [{"type": "length_penalty", "target_chars": 12}],
            "num_generations": 2,
            "max_completion_length": 8,
        },
    ),
    "rloo": (
        "prompt",
        {
            "rewards": [{"type": "length_penalty", "target_chars": 12}],
            "num_generations": 2,
            "max_completion_length": 8,
        },
    ),
    "ppo": (
        "prompt",
        {
            "rewards": [{"type": "length_penalty", "target_chars": 12}],
            "max_new_tokens": 8,
            "rollout_batch_size": 4,
            "mini_batch_size": 2,
        },
    ),
}


def test_every_objective_is_covered() -> None:
    tags = {cls.model_fields["type"].default for cls in get_args(AnyObjective)}
    assert tags == set(OBJECTIVES)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("objective_data")
    rows = {
        "preference": [
            {
                "prompt": f"What is {i} plus {i}?",
                "chosen": f"The answer is {2 * i}.",
                "rejected": f"It is {2 * i + 1}.",
            }
            for i in range(12)
        ],
        "kto": [
            {
                "prompt": f"What is {i} plus {i}?",
                "completion": f"The answer is {2 * i + (i % 2)}.",
                "label": i % 2 == 0,
            }
            for i in range(12)
        ],
        "prompt": [{"prompt": f"What is {i} plus {i}?", "answer": f"#### {2 * i}"} for i in range(12)],
    }
    files = {}
    for kind, records in rows.items():
        files[kind] = root / f"{kind}.jsonl"
        files[kind].write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return files


def objective_config(kind: str, out: Path, data: Path, extra: dict[str, Any]) -> RunConfig:
    return loader.build(
        RunConfig,
        {
            "name": kind,
            "output_dir": str(out),
            "model": {"path": "tiny"},
            "align": {
                "type": kind,
                "start_from": "base",
                "eval_before": False,
                "data": {"sources": [{"path": str(data), "format": OBJECTIVES[kind][0]}], "eval_size": 4},
                "method": {"type": "lora", "rank": 4, "alpha": 8},
                "trainer": {
                    "max_steps": STEPS,
                    "batch_size": 4,
                    "learning_rate": 1e-2,
                    "lr_scheduler": "constant",
                    "logging_steps": 1,
                    "save_steps": STEPS // 2,
                    "save_total_limit": None,
                },
                **extra,
            },
        },
    )


def weights_of(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors files in `folder` (adapter or model, whatever the objective
    saved), named without PEFT's adapter name (`.default`), as the saved adapter names them."""
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors |= {k.replace(".default", ""): v for k, v in load_file(file).items()}
    assert tensors, f"{folder}: no weights"
    return tensors


def merged_reward_model(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The reward model a LoRA checkpoint holds, merged as the final save merges it."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(resolve_model_path("tiny"), num_labels=1)
    return dict(PeftModel.from_pretrained(base, str(checkpoint)).merge_and_unload().state_dict())


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.parametrize("kind", sorted(OBJECTIVES))
def test_objective_contract(kind: str, tmp_path: Path, data_files: dict[str, Path]) -> None:
    data_kind, extra = OBJECTIVES[kind]
    cfg = objective_config(kind, tmp_path / "a", data_files[data_kind], extra)
    result = align.run(cfg)
    aligned = RunDir(Path(cfg.output_dir) / kind / "align")
    assert result.steps == STEPS

    # starts from the right weights
    assert json.loads((aligned.root / "start.json").read_text())["model_path"] == "tiny"

    # learns
    losses = [r.loss for r in aligned.read_metrics() if isinstance(r, TrainLog) and r.loss is not None]
    assert len(losses) == STEPS and all(torch.isfinite(torch.tensor(losses)))
    final = weights_of(result.weights_path)
    first = weights_of(aligned.checkpoints / f"checkpoint-{STEPS // 2}")
    if kind in ONLINE:
        moved = max_diff(final, {k: first[k] for k in final})
        assert moved > 0  # the policy moved between step 2 and step 4
    else:
        assert losses[-1] < losses[0]

    # save -> load equal: the final weights are the state at the last step
    checkpoint = aligned.checkpoints / f"checkpoint-{STEPS}"
    last = merged_reward_model(checkpoint) if kind == "reward" else weights_of(checkpoint)
    shared = {k: v for k, v in last.items() if k in final}
    assert len(shared) == len(final), "the last checkpoint holds every final tensor under the same name"
    assert max_diff({k: final[k] for k in shared}, shared) < 1e-5

    # resume equal
    copy_root = tmp_path / "b"
    shutil.copytree(Path(cfg.output_dir), copy_root)
    resumed_dir = copy_root / kind / "align"
    shutil.rmtree(resumed_dir / "checkpoints" / f"checkpoint-{STEPS}")
    shutil.rmtree(resumed_dir / result.weights_path.name)
    resumed = align.run(cfg.model_copy(update={"output_dir": str(copy_root)}), resume=True)
    assert resumed.steps == STEPS
    assert max_diff(weights_of(resumed.weights_path), final) < 1e-6
