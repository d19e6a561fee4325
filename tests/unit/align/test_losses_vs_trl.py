"""lmtune's alignment losses equal TRL 1.16's on the same batch, within 1e-6.

TRL computes these losses inline in its trainers, so each test builds the TRL trainer on the tiny
random Llama (float64 weights, CPU), takes one batch from the trainer's own data collator, lets the
trainer compute its loss, and computes lmtune's loss from the same batch with
`lmtune.align.logprobs` on the same policy and reference models. The policy (or the reference) is
the tiny model plus seeded noise, so log-ratios are far from zero and every term matters.

Precision: TRL's fused LM head computes log-probs in float32 whatever the weights' dtype. For
DPO, KTO, the reward model, ORPO and CPO/SimPO the losses are O(1) and the comparison runs end to
end. GRPO and RLOO weight exp(logp - old) by advantages of order 1, where the float32 rounding of
TRL's own summed log-probs is already ~1e-6; those tests feed TRL's per-token log-probs to
lmtune's loss (checking the loss math at 1e-6) and check `token_logps` against TRL's per-token
log-probs separately, at float32 tolerance (1e-5).

GRPO and RLOO compute advantages inside `_generate_and_score_completions`; the tests call it on a
2-prompt x 4-generation batch (6 new tokens) and record the rewards the reward function returned.
PPO (removed from TRL in 1.13), GAE, whitening and the clipped value loss have no TRL 1.16
counterpart: they are covered by the closed forms in test_losses.py only.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from lmtune.align.logprobs import sequence_logps, token_logps
from lmtune.align.policy_losses import (
    group_advantages,
    grpo_token_loss,
    kl_penalty,
    ppo_policy_loss,
    rloo_advantages,
)
from lmtune.align.preference_losses import (
    cpo_loss,
    dpo_loss,
    kto_kl_estimate,
    kto_loss,
    orpo_loss,
    pairwise_reward_loss,
    preference_accuracy,
)

TOL = 1e-6

PAIRS = [
    {"prompt": "the cat sat on", "chosen": " the mat today", "rejected": " a dog"},
    {"prompt": "a bird can", "chosen": " fly high", "rejected": " swim in the deep sea now"},
    {"prompt": "water is", "chosen": " wet", "rejected": " dry and hot"},
    {"prompt": "one plus one is", "chosen": " two", "rejected": " three or four"},
]
PROMPTS = ["the cat sat on", "a bird can"]


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _causal_lm(path: Path, noise_seed: int | None = None) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)
    if noise_seed is not None:
        generator = torch.Generator().manual_seed(noise_seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model


def _common(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    return {
        "output_dir": str(tmp_path),
        "use_cpu": True,
        "bf16": False,
        "report_to": [],
        "gradient_checkpointing": False,
        **kwargs,
    }


def _dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(rows)


def _metric(trainer: Any, key: str) -> float:
    mode = "train" if trainer.model.training else "eval"
    return float(trainer._metrics[mode][key][-1])


def _masked_logps(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: torch.Tensor
) -> Any:
    labels = input_ids.masked_fill(keep == 0, -100)
    return sequence_logps(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)


# --- DPO -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust"])
def test_dpo_matches_trl(loss_type: str, tiny_model_dir: Path, tiny_tokenizer: Any, tmp_path: Path) -> None:
    from trl import DPOConfig, DPOTrainer

    policy, ref = _causal_lm(tiny_model_dir, noise_seed=0), _causal_lm(tiny_model_dir)
    beta, smoothing = 0.5, (0.2 if loss_type == "robust" else 0.0)
    args = DPOConfig(
        **_common(tmp_path, per_device_train_batch_size=4),
        loss_type=[loss_type],
        beta=beta,
        label_smoothing=smoothing,
    )
    trainer = DPOTrainer(
        model=policy, ref_model=ref, args=args, train_dataset=_dataset(PAIRS), processing_class=tiny_tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        ids, attn, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        policy_chosen, policy_rejected = _masked_logps(policy, ids, attn, completion).chunk(2)
        ref_chosen, ref_rejected = _masked_logps(ref, ids, attn, completion).chunk(2)
    chosen_lengths, rejected_lengths = completion.sum(dim=1).chunk(2)
    terms = dpo_loss(
        policy_chosen,
        policy_rejected,
        ref_chosen,
        ref_rejected,
        beta,
        loss_type,  # type: ignore[arg-type]
        label_smoothing=smoothing,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    assert abs(terms.losses.mean().item() - trl_loss) < TOL
    assert abs(terms.chosen_rewards.mean().item() - _metric(trainer, "rewards/chosen")) < TOL
    assert abs(terms.rejected_rewards.mean().item() - _metric(trainer, "rewards/rejected")) < TOL
    accuracy = preference_accuracy(terms.chosen_rewards, terms.rejected_rewards).item()
    assert accuracy == _metric(trainer, "rewards/accuracies")
    # the batch is informative: log-ratios far from 0 and not all pairs ranked the same way
    assert (policy_chosen - ref_chosen).abs().min() > 0.1
    assert 0 < accuracy < 1


# --- reward model --------------------------------------------------------------------------------


def test_reward_model_loss_matches_trl(tiny_model_dir: Path, tiny_tokenizer: Any, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=1, dtype=torch.float64
    )
    model.config.pad_token_id = tiny_tokenizer.pad_token_id
    rows = [dict(row, margin=m) for row, m in zip(PAIRS, [0.5, 0.0, 1.0, 0.25], strict=True)]
    args = RewardConfig(**_common(tmp_path, per_device_train_batch_size=4), center_rewards_coefficient=0.01)
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=_dataset(rows), processing_class=tiny_tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(
            -1
        )
    chosen, rejected = rewards.chunk(2)
    ours = pairwise_reward_loss(chosen, rejected, batch["margin"], center_rewards_coefficient=0.01)
    assert abs(ours.mean().item() - trl_loss) < TOL
    assert preference_accuracy(chosen, rejected).item() == _metric(trainer, "accuracy")


# --- KTO -----------------------------------------------------------------------------------------

KTO_ROWS = [
    {"prompt": "the cat sat on", "completion": " the mat today", "label": True},
    {"prompt": "a bird can", "completion": " swim in the deep sea now", "label": False},
    {"prompt": "water is", "completion": " wet", "label": True},
    {"prompt": "one plus one is", "completion": " three or four", "label": False},
]


# noise on the reference gives this batch a positive KL estimate, noise on the policy a negative one (clamped)
@pytest.mark.parametrize(("policy_noise", "ref_noise", "kl_positive"), [(None, 0, True), (0, None, False)])
def test_kto_matches_trl(
    policy_noise: int | None,
    ref_noise: int | None,
    kl_positive: bool,
    tiny_model_dir: Path,
    tiny_tokenizer: Any,
    tmp_path: Path,
) -> None:
    from trl import KTOConfig, KTOTrainer

    policy, ref = _causal_lm(tiny_model_dir, policy_noise), _causal_lm(tiny_model_dir, ref_noise)
    args = KTOConfig(
        **_common(tmp_path, per_device_train_batch_size=4),
        beta=0.5,
        desirable_weight=1.3,
        undesirable_weight=0.7,
    )
    trainer = KTOTrainer(
        model=policy,
        ref_model=ref,
        args=args,
        train_dataset=_dataset(KTO_ROWS),
        processing_class=tiny_tokenizer,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch)).item()

        def logps(model: Any, prefix: str = "") -> torch.Tensor:
            return _masked_logps(
                model,
                batch[f"{prefix}input_ids"],
                batch[f"{prefix}attention_mask"],
                batch[f"{prefix}completion_mask"],
            )

        kl = kto_kl_estimate(logps(policy, "KL_"), logps(ref, "KL_"))
        losses = kto_loss(logps(policy), logps(ref), batch["label"], kl, 0.5, 1.3, 0.7)
    assert (kl.item() > 0.1) is kl_positive
    assert abs(losses.mean().item() - trl_loss) < TOL
    # TRL's logged KL is the float32 mean of summed float32 log-probs (~40 nats each)
    assert abs(kl.item() - _metric(trainer, "kl")) < 1e-5


# --- ORPO and CPO / SimPO --------------------------------------------------------------------------


def _concatenated_logits(trainer: Any, model: Any, batch: dict[str, Any], pad_id: int) -> tuple[Any, Any]:
    cat = trainer.concatenated_inputs(batch, padding_value=pad_id)
    logits = model(
        input_ids=cat["concatenated_input_ids"], attention_mask=cat["concatenated_attention_mask"]
    ).logits
    return cat, logits


def _token_mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return -token_logps(logits, labels).sum() / (labels[:, 1:] != -100).sum()


def test_orpo_matches_trl(tiny_model_dir: Path, tiny_tokenizer: Any, tmp_path: Path) -> None:
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    policy = _causal_lm(tiny_model_dir, noise_seed=0)
    args = ORPOConfig(**_common(tmp_path, per_device_train_batch_size=4), beta=0.5)
    trainer = ORPOTrainer(
        model=policy, args=args, train_dataset=_dataset(PAIRS), processing_class=tiny_tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    n = batch["chosen_input_ids"].size(0)
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        cat, logits = _concatenated_logits(trainer, policy, batch, trainer.padding_value)
        avg = sequence_logps(logits, cat["concatenated_labels"], average=True)
        # ORPO's NLL covers the whole chosen sequence, prompt included (padding excluded)
        full = cat["concatenated_input_ids"].masked_fill(cat["concatenated_attention_mask"] == 0, -100)
        nll = _token_mean_nll(logits[:n], full[:n])
    terms = orpo_loss(avg[:n], avg[n:], nll, 0.5)
    assert abs(terms.losses.mean().item() - trl_loss) < TOL
    assert terms.log_odds.abs().min() > 0.01


@pytest.mark.parametrize(
    ("loss_type", "cpo_alpha", "smoothing"),
    [("sigmoid", 1.0, 0.1), ("simpo", 0.0, 0.0), ("hinge", 0.5, 0.0), ("ipo", 0.0, 0.0)],
)
def test_cpo_and_simpo_match_trl(
    loss_type: str,
    cpo_alpha: float,
    smoothing: float,
    tiny_model_dir: Path,
    tiny_tokenizer: Any,
    tmp_path: Path,
) -> None:
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    policy = _causal_lm(tiny_model_dir, noise_seed=0)
    args = CPOConfig(
        **_common(tmp_path, per_device_train_batch_size=4),
        beta=0.5,
        loss_type=loss_type,
        cpo_alpha=cpo_alpha,
        simpo_gamma=0.3,
        label_smoothing=smoothing,
    )
    trainer = CPOTrainer(
        model=policy, args=args, train_dataset=_dataset(PAIRS), processing_class=tiny_tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    n = batch["chosen_input_ids"].size(0)
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        cat, logits = _concatenated_logits(trainer, policy, batch, trainer.pad_token_id)
        labels = cat["concatenated_labels"]
        logps = sequence_logps(logits, labels, average=loss_type in ("simpo", "ipo"))
        # CPO's NLL covers the chosen completion only
        nll = _token_mean_nll(logits[:n], labels[:n])
    terms = cpo_loss(
        logps[:n],
        logps[n:],
        0.5,
        loss_type,  # type: ignore[arg-type]
        simpo_gamma=0.3,
        label_smoothing=smoothing,
        chosen_nll=nll,
        cpo_alpha=cpo_alpha,
    )
    assert abs(terms.losses.mean().item() - trl_loss) < TOL


# --- GRPO and RLOO -------------------------------------------------------------------------------


def _generate(trainer: Any, recorded: list[list[float]]) -> tuple[dict[str, Any], torch.Tensor]:
    recorded.clear()
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions([{"prompt": p} for p in PROMPTS for _ in range(4)])
    assert len(recorded) == 1
    return out, torch.tensor(recorded[0], dtype=torch.float64)


def _recording_reward(recorded: list[list[float]]) -> Any:
    def reward_len_mod_7(completions: list[str], **_: Any) -> list[float]:
        rewards = [float(len(c) % 7) for c in completions]
        recorded.append(rewards)
        return rewards

    return reward_len_mod_7


def _trl_token_logps(trainer: Any, model: Any, out: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's per-token completion log-probs and lmtune's, for the same sequences and model."""
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    width = out["completion_ids"].size(1)
    with torch.no_grad():
        trl = trainer._get_per_token_logps_and_entropies(model, ids, attention, width)[0]
        ours = token_logps(model(input_ids=ids, attention_mask=attention).logits, ids)[:, -width:]
    return trl.double(), ours


def _grpo_trainer(
    tmp_path: Path, path: Path, tokenizer: Any, recorded: list[list[float]], **kwargs: Any
) -> Any:
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        **_common(tmp_path, per_device_train_batch_size=8),
        num_generations=4,
        max_completion_length=6,
        **kwargs,
    )
    return GRPOTrainer(
        model=_causal_lm(path, noise_seed=0),
        reward_funcs=_recording_reward(recorded),
        args=args,
        train_dataset=_dataset([{"prompt": p} for p in PROMPTS]),
        processing_class=tokenizer,
    )


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_advantages_match_trl(
    scale: str, tiny_model_dir: Path, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    recorded: list[list[float]] = []
    trainer = _grpo_trainer(tmp_path, tiny_model_dir, tiny_tokenizer, recorded, beta=0.0, scale_rewards=scale)
    out, rewards = _generate(trainer, recorded)
    ours = group_advantages(rewards, group_size=4, scale=scale)  # type: ignore[arg-type]
    assert rewards.view(2, 4).std(dim=1).min() > 0  # both groups carry signal
    assert (ours - out["advantages"].double()).abs().max() < TOL


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "bnpo", "dr_grpo"])
def test_grpo_loss_matches_trl(
    loss_type: str, tiny_model_dir: Path, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    recorded: list[list[float]] = []
    trainer = _grpo_trainer(
        tmp_path, tiny_model_dir, tiny_tokenizer, recorded, beta=0.04, epsilon_high=0.28, loss_type=loss_type
    )
    out, _ = _generate(trainer, recorded)
    logps, ours_logps = _trl_token_logps(trainer, trainer.model, out)
    mask = out["completion_mask"]
    assert ((logps - ours_logps) * mask).abs().max() < 1e-5
    # off-policy: the sampling policy differs, so some ratios leave [1 - 0.2, 1 + 0.28] and get clipped
    noise = torch.randn(logps.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out["old_per_token_logps"] = (logps + 0.3 * noise).float()
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, out).item()
    terms = grpo_token_loss(
        logps,
        out["old_per_token_logps"].double(),
        out["ref_per_token_logps"].double(),
        out["advantages"].double(),
        mask,
        epsilon_low=0.2,
        epsilon_high=0.28,
        beta=0.04,
        loss_type=loss_type,  # type: ignore[arg-type]
        max_completion_length=6,
        num_items=out["num_items_in_batch"],
    )
    assert 0 < terms.clip_ratio.item() < 1
    assert abs(terms.loss.item() - trl_loss) < TOL


@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_and_loss_match_trl(
    normalize: bool, tiny_model_dir: Path, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    from trl import RLOOConfig, RLOOTrainer

    recorded: list[list[float]] = []
    args = RLOOConfig(
        **_common(tmp_path, per_device_train_batch_size=8),
        num_generations=4,
        max_completion_length=6,
        beta=0.05,
        normalize_advantages=normalize,
    )
    trainer = RLOOTrainer(
        model=_causal_lm(tiny_model_dir, noise_seed=0),
        reward_funcs=_recording_reward(recorded),
        args=args,
        train_dataset=_dataset([{"prompt": p} for p in PROMPTS]),
        processing_class=tiny_tokenizer,
    )
    out, rewards = _generate(trainer, recorded)
    mask = out["completion_mask"]
    logps, ours_logps = _trl_token_logps(trainer, trainer.model, out)
    ref_logps, _ = _trl_token_logps(trainer, trainer.ref_model, out)
    assert ((logps - ours_logps) * mask).abs().max() < 1e-5
    # RLOO puts beta * (summed k1 KL) into the reward before the leave-one-out baseline
    penalised = rewards - 0.05 * (kl_penalty(logps, ref_logps, "k1") * mask).sum(dim=1)
    advantages = rloo_advantages(penalised, group_size=4, normalize=normalize)
    assert (advantages - out["advantages"].double()).abs().max() < TOL

    # RLOO's loss is PPO's clipped surrogate on sequence log-probs
    sequence = (logps * mask).sum(dim=1, keepdim=True)
    # off-policy by fixed offsets: ratios exp(-offset) from 0.67 to 1.49, half of them outside [0.8, 1.2]
    offsets = torch.tensor([-0.4, 0.4, -0.05, 0.05, -0.3, 0.3, 0.0, 0.15], dtype=torch.float64)
    out["old_logps"] = (sequence.squeeze(1) + offsets).float()
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, out).item()
    loss, clipfrac = ppo_policy_loss(
        sequence,
        out["old_logps"].double().unsqueeze(1),
        out["advantages"].double().unsqueeze(1),
        torch.ones_like(sequence),
        clip_eps=0.2,
    )
    assert 0 < clipfrac.item() < 1
    assert abs(loss.item() - trl_loss) < TOL
