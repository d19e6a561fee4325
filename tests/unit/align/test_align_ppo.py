"""PPO (lmtune's own loop) on the tiny model: config refusals, the rollout's pure pieces against closed
forms, the reference = the adapter-disabled policy, learning (the reward rises), exact resume, and the
non-finite guard."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from lmtune import align
from lmtune.align import ppo, ppo_checkpoint
from lmtune.align.rollout import (
    Sampling,
    Scorer,
    prompt_indices,
    sample,
    step_seed,
    token_rewards,
)
from lmtune.align.value_head import ValueHead, completion_logps_values
from lmtune.config import loader
from lmtune.config.align.rewards import LengthPenalty
from lmtune.config.run import RunConfig
from lmtune.errors import ConfigError, TrainingError
from lmtune.runtime.rundir import RunDir
from lmtune.train import checkpoints
from lmtune.weights.view import final_view

LENGTH = [{"type": "length_penalty", "target_chars": 30}]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 prompts with reference answers."""
    rows: list[dict[str, object]] = [
        {"prompt": f"How many apples did {i} friends buy?", "answer": str(i)} for i in range(40)
    ]
    path = tmp_path_factory.mktemp("ppo_data") / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def ppo_config(
    out: Path, prompts: Path, trainer: dict[str, Any] | None = None, **objective: Any
) -> RunConfig:
    data = {
        "name": "ppo",
        "output_dir": str(out),
        "model": {"path": "tiny"},
        "align": {
            "type": "ppo",
            "data": {"sources": [{"path": str(prompts), "format": "prompt"}], "eval_size": 8},
            "method": {"type": "lora", "rank": 4, "alpha": 8},
            "trainer": {
                "max_steps": 4,
                "learning_rate": 1e-2,
                "lr_scheduler": "constant",
                "save_steps": 2,
                "save_total_limit": None,
                **(trainer or {}),
            },
            "rewards": LENGTH,
            "max_new_tokens": 16,
            "rollout_batch_size": 8,
            "mini_batch_size": 4,
            **objective,
        },
    }
    return loader.build(RunConfig, data)


def records(root: Path, kind: str) -> list[dict[str, Any]]:
    lines = (root / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


# --- config ---------------------------------------------------------------------------------------


def test_ppo_defaults() -> None:
    cfg = loader.build(RunConfig, {"align": {"type": "ppo", "rewards": [{"type": "numeric_match"}]}})
    objective = cfg.align
    assert isinstance(objective, ppo.PpoConfig)
    assert (objective.kl_coef, objective.gamma, objective.lam, objective.clip_eps) == (0.05, 1.0, 0.95, 0.2)
    assert (objective.value_clip, objective.vf_coef, objective.ppo_epochs) == (0.2, 0.1, 2)
    assert (objective.rollout_batch_size, objective.mini_batch_size, objective.max_new_tokens) == (8, 4, 64)
    assert (objective.temperature, objective.top_p, objective.whiten_advantages) == (0.7, 1.0, True)
    assert objective.method.type == "lora"


def test_ppo_without_a_reward_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^config field 'align.ppo': Value error, no reward: set align.reward_model \(a reward model "
        r"folder\) or align.rewards \(verifiable rewards such as numeric_match\), or both$",
    ):
        loader.build(RunConfig, {"align": {"type": "ppo"}})


def test_ppo_mini_batch_larger_than_rollout_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"align.mini_batch_size \(9\) is larger than align.rollout_batch_size \(8\)"
    ):
        loader.build(RunConfig, {"align": {"type": "ppo", "rewards": LENGTH, "mini_batch_size": 9}})


def test_missing_reward_model_folder_is_a_config_error(tmp_path: Path, prompts_file: Path) -> None:
    cfg = ppo_config(tmp_path, prompts_file, rewards=[], reward_model=str(tmp_path / "nope"))
    with pytest.raises(
        ConfigError, match=r"align.reward_model: '.*nope' is not a model folder \(no config.json\)"
    ):
        align.run(cfg)


# --- pure pieces ----------------------------------------------------------------------------------


def test_token_rewards_closed_form() -> None:
    scores = torch.tensor([2.0, -1.0])
    kl = torch.tensor([[0.5, 1.0, 3.0], [2.0, 7.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    got = token_rewards(scores, kl, mask, kl_coef=0.1)
    want = torch.tensor([[-0.05, -0.1, -0.3 + 2.0], [-0.2 - 1.0, 0.0, 0.0]])
    assert torch.allclose(got, want)


def test_prompt_order_is_seeded_epochs_of_permutations() -> None:
    n, size = 10, 4
    stream = [i for step in range(1, 6) for i in prompt_indices(n, size, step, seed=3)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]  # each epoch has its own order
    assert prompt_indices(n, size, 4, seed=3) == stream[12:16]  # a step is a function of (seed, step) alone
    assert prompt_indices(n, size, 1, seed=4) != prompt_indices(n, size, 1, seed=3)
    assert step_seed(3, 1) != step_seed(3, 2) != step_seed(4, 1)


def test_completion_logps_and_values_are_those_of_the_tokens_before(tiny_model_dir: Path) -> None:
    """logp_t = log softmax(logits[P+t-1] / tau)[y_t] and V_t = head(h[P+t-1]), with left-padded prompts."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    head = ValueHead(model.config.hidden_size)
    assert head(torch.randn(2, 3, model.config.hidden_size)).abs().max() == 0  # starts at V = 0
    torch.nn.init.normal_(head.summary.weight)
    ids = torch.tensor([[0, 0, 5, 6, 7, 8, 9], [11, 12, 13, 14, 15, 16, 0]])
    attention = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0]])
    prompt_length, tau = 4, 0.7
    with torch.no_grad():
        logps, values = completion_logps_values(model, head, ids, attention, prompt_length, tau)
    assert logps.shape == values.shape == (2, 3)  # type: ignore[union-attr]
    for row in range(2):
        keep = attention[row].bool()
        real = ids[row][keep].unsqueeze(0)
        with torch.no_grad():
            out = model(input_ids=real, output_hidden_states=True)
        start = int(prompt_length - (~keep[:prompt_length]).sum())  # where the completion starts in `real`
        for t in range(int(keep[prompt_length:].sum())):
            logits = out.logits[0, start + t - 1] / tau
            want = torch.log_softmax(logits, -1)[real[0, start + t]]
            assert torch.allclose(logps[row, t], want, atol=1e-5)
            value = head(out.hidden_states[-1][0, start + t - 1].unsqueeze(0).unsqueeze(0))[0, 0]
            assert torch.allclose(values[row, t], value, atol=1e-5)  # type: ignore[index]


def test_sampling_is_fixed_by_seed_and_step_and_leaves_the_global_rng_alone(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [[{"role": "user", "content": "how many apples"}], [{"role": "user", "content": "two cats"}]]
    sampling = Sampling(max_new_tokens=12, temperature=1.0, top_p=1.0, seed=5)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a, b, c = (sample(model, tok, prompts, sampling, step) for step in (1, 1, 2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.input_ids, b.input_ids) and a.completions == b.completions
    assert not torch.equal(a.input_ids, c.input_ids)
    assert a.input_ids.size(1) == a.prompt_length + a.mask.size(1)
    assert torch.equal(a.attention_mask[:, a.prompt_length :], a.mask)


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A (random) one-output sequence classifier on the tiny model, saved like a `type: reward` run."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("rm") / "model"
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rm.config.pad_token_id = tok.pad_token_id
    rm.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_scorer_adds_the_reward_model_score_to_the_verifiable_rewards(reward_model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm = AutoModelForSequenceClassification.from_pretrained(reward_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(reward_model_dir)
    prompts = [[{"role": "user", "content": "how many apples"}], [{"role": "user", "content": "two cats"}]]
    completions = ["three apples", "one"]
    got = Scorer(reward_model_dir, [LengthPenalty(target_chars=5)])(prompts, completions, [None, None])
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        text = tok.apply_chat_template([*p, {"role": "assistant", "content": c}], tokenize=False)
        with torch.no_grad():
            score = rm(**tok(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0]
        penalty = [-1.0, 0.0][i]  # "three apples" runs 7 characters past 5 (capped at -1), "one" does not
        assert torch.allclose(got[i], score + penalty, atol=1e-5)


# --- runs on the tiny model -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, prompts_file: Path):  # type: ignore[no-untyped-def]
    cfg = ppo_config(tmp_path_factory.mktemp("runs"), prompts_file)
    return cfg, align.run(cfg)


def test_run_writes_weights_value_head_checkpoints_metrics_and_eval(lora_run) -> None:  # type: ignore[no-untyped-def]
    cfg, result = lora_run
    root = Path(cfg.output_dir) / "ppo" / "align"
    assert result.steps == 4
    assert result.weights_path == root / "adapter"
    assert (root / "adapter" / "adapter_model.safetensors").is_file()
    assert (root / "value_head.safetensors").is_file()
    found = sorted(p.name for p in (root / "checkpoints").glob("checkpoint-*"))
    assert found == ["checkpoint-2", "checkpoint-4"]
    assert all(checkpoints.verify(root / "checkpoints" / name) is None for name in found)
    state = json.loads((root / "checkpoints" / "checkpoint-2" / ppo_checkpoint.STATE_FILE).read_text())
    assert state["step"] == 2
    assert state["sampling"] == {"max_new_tokens": 16, "temperature": 0.7, "top_p": 1.0, "seed": cfg.seed}
    train = records(root, "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    for key in ("reward", "kl", "policy_loss", "value_loss", "clipfrac", "loss", "grad_norm"):
        assert all(math.isfinite(r[key]) for r in train), key
    assert result.train_loss == train[-1]["loss"]
    summary = records(root, "train_summary")
    assert len(summary) == 1 and summary[0]["steps_run"] == 4 and summary[0]["train_runtime"] > 0
    run = RunDir(root.parent)
    assert run.config.is_file()  # a lone `align` writes the run's config too
    view, weights = final_view(run)  # what evaluate / export / serve load
    assert weights == result.weights_path and view.method == cfg.align.method
    saved = json.loads((root / "eval.json").read_text())
    assert saved == {"steps": 4, **result.metrics}
    assert set(result.metrics) == {"eval_reward_before", "eval_kl_before", "eval_reward", "eval_kl"}


def test_kl_is_zero_before_the_first_update_and_reported_after(lora_run) -> None:  # type: ignore[no-untyped-def]
    cfg, result = lora_run
    train = records(Path(cfg.output_dir) / "ppo" / "align", "train")
    assert train[0]["kl"] == 0.0  # step 1 samples from the untouched policy: identical to the reference
    assert result.metrics["eval_kl_before"] == 0.0
    assert result.metrics["eval_kl"] != 0.0 and math.isfinite(result.metrics["eval_kl"])


def test_one_step_changes_the_policy_and_the_value_head(tmp_path: Path, prompts_file: Path) -> None:
    result = align.run(ppo_config(tmp_path, prompts_file, trainer={"max_steps": 1, "save_steps": 1}))
    assert result.steps == 1
    adapter = load_file(result.weights_path / "adapter_model.safetensors")
    assert any(w.abs().max() > 0 for n, w in adapter.items() if "lora_B" in n)
    head = load_file(Path(result.run_dir) / "value_head.safetensors")
    assert head["summary.weight"].abs().max() > 0


def test_a_reward_model_alone_is_a_reward_source(
    tmp_path: Path, prompts_file: Path, reward_model_dir: Path
) -> None:
    cfg = ppo_config(
        tmp_path,
        prompts_file,
        {"max_steps": 2},
        rewards=[],
        reward_model=str(reward_model_dir),
        eval_before=False,
    )
    result = align.run(cfg)
    train = records(Path(result.run_dir), "train")
    assert [r["step"] for r in train] == [1, 2]
    assert all(math.isfinite(r["reward"]) and r["reward"] != 0.0 for r in train)  # the model's scores
    assert set(result.metrics) == {"eval_reward", "eval_kl"}  # eval_before: false
    assert records(Path(result.run_dir), "align_eval_before") == []


def test_a_method_that_needs_trainer_callbacks_is_refused(tmp_path: Path, prompts_file: Path) -> None:
    cfg = ppo_config(tmp_path, prompts_file, method={"type": "hft", "round_steps": 2})
    with pytest.raises(
        ConfigError, match=r"PPO runs its own loop, which does not drive the trainer callbacks that `hft`"
    ):
        align.run(cfg)


def test_reference_is_the_policy_with_its_adapter_disabled(lora_run, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """After training, the reference log-probs PPO computes (adapter disabled, no second model) are the start
    model's, while the policy's differ."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmtune import methods

    cfg, result = lora_run
    objective = cfg.align
    policy = methods.load_for_inference(tiny_model_dir, result.weights_path, objective.method)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    sampling = Sampling(16, 0.7, 1.0, cfg.seed)
    batch = sample(policy, tok, [[{"role": "user", "content": "how many apples"}]] * 3, sampling, 1)
    loop = SimpleNamespace(model=policy, method=objective.method, frozen_reference=None, objective=objective)
    with torch.no_grad():
        ref = ppo.reference_logps(loop, batch)  # type: ignore[arg-type]
        args = (batch.input_ids, batch.attention_mask, batch.prompt_length, objective.temperature)
        want, _ = completion_logps_values(base, None, *args)
        mine, _ = completion_logps_values(policy, None, *args)
    assert torch.allclose(ref, want, atol=1e-5)
    assert not torch.allclose(mine, want, atol=1e-3)


def test_resume_reproduces_the_uninterrupted_run(lora_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Drop checkpoint-4 and the final weights of the 4-step run and resume from checkpoint-2: the same
    adapter and value head (within 1e-6), and steps 1-2 are not run again."""
    cfg, result = lora_run
    copy = tmp_path / "ppo" / "align"
    shutil.copytree(Path(cfg.output_dir) / "ppo", tmp_path / "ppo")
    shutil.rmtree(copy / "checkpoints" / "checkpoint-4")
    shutil.rmtree(copy / "adapter")
    (copy / "value_head.safetensors").unlink()
    (copy / "eval.json").unlink()
    kept = copy / "checkpoints" / "checkpoint-2" / ppo_checkpoint.POLICY_FILE
    stamp = kept.stat().st_mtime_ns
    resumed = align.run(cfg.model_copy(update={"output_dir": str(tmp_path)}), resume=True)
    assert resumed.steps == 4
    assert kept.stat().st_mtime_ns == stamp  # checkpoint-2 was read, not written again
    train = records(copy, "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4]  # steps 1-2 were not re-run (nor re-logged)
    original = records(Path(cfg.output_dir) / "ppo" / "align", "train")
    assert [r["reward"] for r in train] == pytest.approx([r["reward"] for r in original], abs=1e-6)
    assert len(records(copy, "align_eval_before")) == 1  # the evaluation before training is not repeated
    assert resumed.metrics == pytest.approx(result.metrics, abs=1e-6)
    for name, folder in (("adapter_model.safetensors", "adapter"), ("value_head.safetensors", "")):
        want = load_file(Path(result.run_dir) / folder / name)
        got = load_file(copy / folder / name)
        assert want.keys() == got.keys()
        assert max((want[k] - got[k]).abs().max().item() for k in want) < 1e-6


def test_resume_with_other_generation_settings_is_refused(lora_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = lora_run
    shutil.copytree(Path(cfg.output_dir) / "ppo", tmp_path / "ppo")
    objective = cfg.align.model_copy(update={"temperature": 0.9})
    changed = cfg.model_copy(update={"output_dir": str(tmp_path), "align": objective})
    with pytest.raises(
        TrainingError, match=r"checkpoint-4: sampled with .*'temperature': 0.7.*, but the config now says"
    ):
        align.run(changed, resume=True)


def test_finished_checkpoint_is_not_overwritten(lora_run) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = lora_run
    with pytest.raises(TrainingError, match="already holds the complete checkpoint checkpoint-4"):
        align.run(cfg)


def test_mean_reward_rises_with_a_length_penalty(tmp_path: Path, prompts_file: Path) -> None:
    """Shorter completions score higher; full fine-tuning (reference: a frozen copy) at a high learning
    rate learns to stop early within 16 steps."""
    cfg = ppo_config(
        tmp_path,
        prompts_file,
        trainer={"max_steps": 16, "learning_rate": 3e-3, "save_steps": 100},
        method={"type": "full"},
        kl_coef=0.01,
        max_new_tokens=24,
    )
    result = align.run(cfg)
    assert result.weights_path.name == "model"
    rewards = [r["reward"] for r in records(Path(result.run_dir), "train")]
    assert sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 + 0.2
    assert result.metrics["eval_reward"] > result.metrics["eval_reward_before"]
    assert result.metrics["eval_kl_before"] == 0.0 and result.metrics["eval_kl"] > 0


def test_non_finite_loss_stops_and_saves_nothing_from_that_step(tmp_path: Path, prompts_file: Path) -> None:
    """A reward that turns NaN at step 2 (its 3rd call: held-out evaluation, step 1, step 2) stops the run
    with TrainingError; checkpoint-1 stays complete and finite, and no later checkpoint or final weights."""
    calls: list[int] = []

    def poisoned(completions: Any, answers: Any) -> list[float]:
        calls.append(len(completions))
        return [math.nan if len(calls) >= 3 else 0.0] * len(completions)

    cfg = ppo_config(tmp_path, prompts_file, trainer={"save_steps": 1})
    with pytest.raises(TrainingError, match=r"^training stopped at step 2: non-finite loss \(nan\); nothing"):
        ppo.run(cfg, cfg.align, extra_rewards=[poisoned])  # type: ignore[arg-type]
    root = tmp_path / "ppo" / "align"
    assert [p.name for p in (root / "checkpoints").iterdir()] == ["checkpoint-1"]
    assert checkpoints.verify(root / "checkpoints" / "checkpoint-1") is None
    saved = load_file(root / "checkpoints" / "checkpoint-1" / ppo_checkpoint.POLICY_FILE)
    assert all(torch.isfinite(w).all() for w in saved.values())
    assert not (root / "adapter").exists() and not (root / "value_head.safetensors").exists()
    assert [r["step"] for r in records(root, "train")] == [1]
