"""GRPO and RLOO through `lmtune align` on the tiny model, and the verifiable rewards they use."""

import json
from pathlib import Path
from typing import Any

import pytest

from lmtune.align import grpo, rewards, rloo
from lmtune.align.online import trl_reward
from lmtune.align.rewards import total_reward
from lmtune.config import loader
from lmtune.config.align.rewards import FormatReward, LengthPenalty, NumericMatchReward
from lmtune.config.run import RunConfig
from lmtune.errors import ConfigError


def online_config(out: Path, prompts: Path, objective: str, steps: int, **extra: object) -> RunConfig:
    return loader.build(
        RunConfig,
        {
            "name": objective,
            "output_dir": str(out),
            "model": {"path": "tiny"},
            "align": {
                "type": objective,
                "data": {"sources": [{"path": str(prompts), "format": "prompt"}], "eval_size": 4},
                "rewards": [{"type": "format", "weight": 0.0}],
                "num_generations": 8,
                "max_completion_length": 12,
                "method": {"type": "lora", "rank": 8, "alpha": 16},
                "trainer": {
                    "max_steps": steps,
                    "batch_size": 16,
                    "learning_rate": 5e-2,
                    "lr_scheduler": "constant",
                    "logging_steps": 1,
                    "save_steps": 100,
                },
                **extra,
            },
        },
    )


def share_of_e(completions: list[str], answers: list[str | None]) -> list[float]:
    """A reward the tiny random model can move: the share of `e` characters in the completion."""
    return [c.count("e") / max(1, len(c)) for c in completions]


def test_grpo_raises_the_held_out_mean_reward(
    tmp_path: Path, tiny_model_dir: Path, prompts_file: Path
) -> None:
    cfg = online_config(tmp_path, prompts_file, "grpo", steps=10)
    result = grpo.run(cfg, cfg.align, extra_rewards=[share_of_e])  # type: ignore[arg-type]
    assert result.steps == 10
    assert result.metrics["eval_reward"] > result.metrics["eval_reward_before"]
    records = [
        json.loads(line) for line in (tmp_path / "grpo" / "align" / "metrics.jsonl").read_text().splitlines()
    ]
    rewards = [r["reward"] for r in records if r["kind"] == "train"]
    assert len(rewards) == 10
    assert sum(rewards[-5:]) / 5 > rewards[0]
    assert (tmp_path / "grpo" / "align" / "adapter" / "adapter_model.safetensors").is_file()


def test_rloo_trains_and_reports_its_kl(tmp_path: Path, tiny_model_dir: Path, prompts_file: Path) -> None:
    cfg = online_config(tmp_path, prompts_file, "rloo", steps=2)
    result = rloo.run(cfg, cfg.align, extra_rewards=[share_of_e])  # type: ignore[arg-type]
    assert result.steps == 2
    records = [
        json.loads(line) for line in (tmp_path / "rloo" / "align" / "metrics.jsonl").read_text().splitlines()
    ]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 2 and all("kl" in r and "reward" in r for r in train)


def test_batch_must_hold_whole_groups(tmp_path: Path, prompts_file: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"batch_size \(12\) counts completions and must be a multiple of align.num_generations \(8\)",
    ):
        loader.build(
            RunConfig,
            {
                "align": {
                    "type": "grpo",
                    "rewards": [{"type": "format"}],
                    "num_generations": 8,
                    "trainer": {"batch_size": 12},
                }
            },
        )


def test_online_objectives_need_a_reward() -> None:
    with pytest.raises(ConfigError, match=r"config field 'align\.grpo\.rewards'"):
        loader.build(RunConfig, {"align": {"type": "grpo", "rewards": []}})


def test_numeric_match_compares_final_numbers() -> None:
    completions = ["3 + 4 = 7\n#### 7", "so 1,200 apples", "#### 8", "no number"]
    answers = ["#### 7", "#### 1200", "#### 7", "#### 7"]
    assert rewards.score(NumericMatchReward(), completions, answers) == [1.0, 1.0, 0.0, 0.0]
    assert rewards.score(NumericMatchReward(), ["#### 7"], [None]) == [0.0]


def test_format_and_length_rewards() -> None:
    assert rewards.score(FormatReward(), ["x #### 12", "x = 12"], [None, None]) == [1.0, 0.0]
    assert rewards.score(LengthPenalty(target_chars=10), ["a" * 10, "a" * 15, "a" * 40], [None] * 3) == [
        0.0,
        -0.5,
        -1.0,
    ]


def test_total_reward_weights_and_extra_callables() -> None:
    specs = [FormatReward(weight=2.0), LengthPenalty(target_chars=4, weight=1.0)]
    got = total_reward(specs, ["#### 1", "abc"], [None, None], extra=[lambda c, a: [0.25] * len(c)])
    assert got == [2.0 - 0.5 + 0.25, 0.0 + 0.0 + 0.25]


def test_trl_reward_reads_message_completions_and_the_answer_column() -> None:
    fn = trl_reward([NumericMatchReward()], [])
    completions = [[{"role": "assistant", "content": "#### 4"}], [{"role": "assistant", "content": "#### 5"}]]
    assert fn(prompts=[[], []], completions=completions, answer=["#### 4", "#### 4"]) == [1.0, 0.0]
    assert fn(prompts=[[]], completions=[[{"role": "assistant", "content": "#### 4"}]]) == [0.0]


def test_grpo_resume_samples_the_same_sequence(
    tmp_path: Path, tiny_model_dir: Path, prompts_file: Path
) -> None:
    """GRPO's sampling state is checkpointed: dropping the last checkpoint of a 4-step run and resuming from
    step 2 regenerates the same completions and ends with the same adapter."""
    import shutil

    from safetensors.torch import load_file

    cfg = online_config(tmp_path / "a", prompts_file, "grpo", steps=4)
    cfg = cfg.model_copy(
        update={
            "align": cfg.align.model_copy(
                update={"trainer": cfg.align.trainer.model_copy(update={"save_steps": 2})}
            )
        }  # type: ignore[union-attr]
    )
    full = grpo.run(cfg, cfg.align, extra_rewards=[share_of_e])  # type: ignore[arg-type]
    copy = tmp_path / "b" / "grpo"
    shutil.copytree(tmp_path / "a" / "grpo", copy)
    shutil.rmtree(copy / "align" / "checkpoints" / "checkpoint-4")
    shutil.rmtree(copy / "align" / "adapter")
    kept = copy / "align" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"
    stamp = kept.stat().st_mtime_ns
    resumed_cfg = cfg.model_copy(update={"output_dir": str(tmp_path / "b")})
    resumed = grpo.run(resumed_cfg, resumed_cfg.align, resume=True, extra_rewards=[share_of_e])  # type: ignore[arg-type]
    assert resumed.steps == 4
    assert kept.stat().st_mtime_ns == stamp  # steps 1-2 were not trained again
    want = load_file(full.weights_path / "adapter_model.safetensors")
    got = load_file(resumed.weights_path / "adapter_model.safetensors")
    assert max((want[k] - got[k]).abs().max().item() for k in want) < 1e-6
    rewards = [
        [
            r["reward"]
            for r in map(json.loads, (root / "align" / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "train"
        ]
        for root in (tmp_path / "a" / "grpo", copy)
    ]
    assert rewards[0] == rewards[1]  # steps 3-4 sampled the same completions (same rewards) after resume


def test_grpo_samples_through_the_engine_as_trls_own_generation(
    tmp_path: Path, prompts_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GRPO's groups come from the runtime's engine (`grpo.rollout`, TRL's `rollout_func`): it is called
    during training, and from the same random state it samples token for token what TRL's own
    generation path samples."""
    import torch

    from lmtune.align import trl_run
    from lmtune.runtime.generation import Generator

    calls: list[int] = []
    real_generate = Generator.generate

    def counting(self: Generator, prompts: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(prompts))
        return real_generate(self, prompts, *args, **kwargs)

    trainers: list[Any] = []
    real_finish = trl_run.session.finish

    def keep(s: Any, trainer: Any, *args: Any, **kwargs: Any) -> Any:
        trainers.append(trainer)
        return real_finish(s, trainer, *args, **kwargs)

    monkeypatch.setattr(Generator, "generate", counting)
    monkeypatch.setattr(trl_run.session, "finish", keep)
    cfg = online_config(tmp_path, prompts_file, "grpo", steps=1)
    grpo.run(cfg, cfg.align, extra_rewards=[share_of_e])  # type: ignore[arg-type]
    assert 16 in calls  # one training batch: 2 prompts x 8 generations

    trainer = trainers[0]
    trainer.model.eval()
    messages = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(4) for _ in range(2)]
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        ids, _, _ = trainer._tokenize_prompts(messages)
        theirs, _ = trainer._generate_single_turn(ids, None, {}, 2)
        torch.manual_seed(seed)
        ours = grpo.rollout(messages, trainer)
        assert ours["prompt_ids"] == ids
        assert ours["completion_ids"] == theirs
