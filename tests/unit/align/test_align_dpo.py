"""DPO through `lmtune align` on the tiny model: data -> TRL's DPOTrainer with lmtune's callbacks ->
`<run>/align/`; the reference is the policy with its adapter disabled; resume is exact."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmtune import align
from lmtune.align import session
from lmtune.config import loader
from lmtune.config.run import RunConfig


def dpo_config(out: Path, pairs: Path, **trainer: object) -> RunConfig:
    data = {
        "name": "dpo",
        "output_dir": str(out),
        "model": {"path": "tiny"},
        "align": {
            "type": "dpo",
            "data": {"sources": [{"path": str(pairs), "format": "preference"}], "eval_size": 4},
            "method": {"type": "lora", "rank": 4, "alpha": 8},
            "trainer": {
                "max_steps": 6,
                "batch_size": 4,
                "learning_rate": 5e-3,
                "lr_scheduler": "constant",
                "logging_steps": 1,
                "save_steps": 3,
                "save_total_limit": None,
                **trainer,
            },
        },
    }
    return loader.build(RunConfig, data)


@pytest.fixture(scope="module")
def dpo_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, pairs_file: Path
) -> tuple[RunConfig, align.session.AlignResult]:
    cfg = dpo_config(tmp_path_factory.mktemp("runs"), pairs_file)
    return cfg, align.run(cfg)


def test_dpo_writes_weights_checkpoints_metrics_and_data_counts(dpo_run) -> None:  # type: ignore[no-untyped-def]
    cfg, result = dpo_run
    root = Path(cfg.output_dir) / "dpo" / "align"
    assert result.steps == 6
    assert result.weights_path == root / "adapter"
    assert (root / "adapter" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (root / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-3",
        "checkpoint-6",
    ]
    assert all((p / "manifest.json").is_file() for p in (root / "checkpoints").glob("checkpoint-*"))
    stats = json.loads((root / "data" / "stats.json").read_text())
    assert stats["read"] == stats["accepted"] + stats["rejected"] == 26
    assert stats["rejected_by_reason"] == {"empty_side": 1, "identical_pair": 1}
    assert stats["train"] + stats["eval"] == stats["accepted"] == 24
    rejects = [json.loads(line) for line in (root / "data" / "rejects.jsonl").read_text().splitlines()]
    assert sorted(r["reason"] for r in rejects) == ["empty_side", "identical_pair"]
    train = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in train if r["kind"] == "train"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert all("rewards/accuracies" in r for r in steps)  # TRL's own numbers reach metrics.jsonl
    assert "eval_rewards/accuracies" in result.metrics
    assert (root.parent / "config.yaml").is_file()  # the run dir is complete for evaluate / export


def test_saved_adapter_holds_only_the_trained_adapter(dpo_run) -> None:  # type: ignore[no-untyped-def]
    _, result = dpo_run
    weights = load_file(result.weights_path / "adapter_model.safetensors")
    assert weights and not any(".ref." in name for name in weights)
    assert any(w.abs().max() > 0 for n, w in weights.items() if "lora_B" in n)  # it trained


def test_reference_is_the_policy_with_its_adapter_disabled(
    tiny_model_dir: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """No reference model is loaded for a LoRA policy, TRL's frozen "ref" adapter copy is removed, and the
    reference log-probs TRL computes are the start model's own."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    cfg = dpo_config(tmp_path, pairs_file)
    s = session.open_session(cfg, cfg.align, resume=False)  # type: ignore[arg-type]
    tok = session.tokenizer(s)
    train, _ = session.datasets(s, tok, "preference")
    model = session.policy(s)
    assert session.reference(s, model) is None
    args = DPOConfig(**session.trainer_arguments(s, False, max_length=64))
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=train, processing_class=tok)
    assert "ref" in model.peft_config
    session.drop_reference_adapter(model)
    assert list(model.peft_config) == ["default"]
    with torch.no_grad():  # make the adapter non-zero, so "adapter disabled" differs from "adapter on"
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(model, batch)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].float(), -1)
    target = labels[:, 1:]
    token = logps.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (target != -100)
    expected = token.sum(-1)
    assert torch.allclose(torch.cat([ref_chosen, ref_rejected]), expected, atol=1e-4)


def test_resume_continues_exactly(dpo_run, tmp_path: Path, pairs_file: Path) -> None:  # type: ignore[no-untyped-def]
    """Drop the last checkpoint and the final weights of a finished 6-step run, resume from step 3: the
    resumed adapter equals the uninterrupted one."""
    cfg, result = dpo_run
    copy = tmp_path / "dpo"
    shutil.copytree(Path(cfg.output_dir) / "dpo", copy)
    shutil.rmtree(copy / "align" / "checkpoints" / "checkpoint-6")
    shutil.rmtree(copy / "align" / "adapter")
    kept = copy / "align" / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors"
    stamp = kept.stat().st_mtime_ns
    resumed = align.run(cfg.model_copy(update={"output_dir": str(tmp_path)}), resume=True)
    assert resumed.steps == 6
    assert kept.stat().st_mtime_ns == stamp  # steps 1-3 were not trained again
    records = [json.loads(line) for line in (copy / "align" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    want = load_file(result.weights_path / "adapter_model.safetensors")
    got = load_file(resumed.weights_path / "adapter_model.safetensors")
    assert not any(k.endswith("_before") for k in resumed.metrics)  # no "before" for a resumed run
    assert want.keys() == got.keys()
    assert max((want[k] - got[k]).abs().max().item() for k in want) < 1e-6


def test_finished_checkpoint_is_not_overwritten(dpo_run) -> None:  # type: ignore[no-untyped-def]
    from lmtune.errors import TrainingError

    cfg, _ = dpo_run
    with pytest.raises(TrainingError, match="already holds the complete checkpoint checkpoint-6"):
        align.run(cfg)


def test_non_finite_training_stops_and_saves_nothing(
    tmp_path: Path, tiny_model_dir: Path, pairs_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NaN in the policy makes the loss and gradients non-finite: the run stops with TrainingError at
    step 1, and neither a checkpoint nor final weights are written."""
    from lmtune.errors import TrainingError

    real_policy = session.policy

    def poisoned(s: session.Session) -> torch.nn.Module:
        model = real_policy(s)
        with torch.no_grad():
            next(p for n, p in model.named_parameters() if "lora_A" in n)[0, 0] = float("nan")
        return model

    monkeypatch.setattr(session, "policy", poisoned)
    cfg = dpo_config(tmp_path, pairs_file)
    with pytest.raises(TrainingError, match=r"training stopped at step 1: non-finite"):
        align.run(cfg)
    root = tmp_path / "dpo" / "align"
    assert not (root / "adapter").exists()
    assert not list((root / "checkpoints").glob("checkpoint-*"))
