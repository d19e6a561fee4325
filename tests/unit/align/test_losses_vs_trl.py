"""The losses lmtune's TRL-based objectives train with are TRL 1.16's own; here they are checked, on
lmtune's batches, against closed forms written out in each test (within 1e-6).

lmtune ships no copy of these losses: the reward model, DPO, KTO, ORPO, CPO/SimPO, GRPO and RLOO run
TRL's trainers, so that is what is tested. Each test

1. asks the lmtune objective (`lmtune.align.dpo.run`, ...) which TRL config and trainer classes it runs
   and with which of the objective's arguments, by recording its call to `run_trl` (the reward model,
   which builds its trainer itself, passes its one argument the way `lmtune.align.reward.run` does);
2. builds the data with lmtune's alignment data path (`lmtune.data.alignment.prepare.prepare_align` on the
   fixture files of `tests/unit/align/conftest.py`: checked records in TRL's conversational layout);
3. builds that TRL trainer on the tiny random Llama (float64 weights, CPU) and the tiny ChatML
   tokenizer, takes one batch from the trainer's own collator and lets TRL compute the loss;
4. computes the loss from its equation on log-probs that `lmtune.align.logprobs` computes from the same
   models and batch, and asserts that both agree.

The policy (or the reference) is the tiny model plus seeded noise, so log-ratios are far from zero and
every term of each equation matters.

Precision: TRL's fused LM head computes log-probs in float32 whatever the weights' dtype. For the reward
model, DPO, KTO, ORPO and CPO/SimPO the losses are O(1) and the comparison runs end to end. GRPO and RLOO
weight exp(logp - old) by advantages of order 1, where the float32 rounding of TRL's own summed
log-probs is already ~1e-6; their closed forms take TRL's per-token log-probs, and lmtune's
`token_logps` is checked against those separately at float32 tolerance (1e-5).

GRPO and RLOO compute advantages inside `_generate_and_score_completions`; the tests call it on 2
lmtune prompts x 4 generations (6 new tokens), with lmtune's reward function (`online.trl_reward`) and
record the rewards it returned. PPO is lmtune's own loop: its losses are in test_losses.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from lmtune.align import cpo, dpo, grpo, kto, online, orpo, rloo
from lmtune.align.logprobs import sequence_logps, token_logps
from lmtune.config.align.base import AlignBase
from lmtune.config.align.cpo import CpoConfig
from lmtune.config.align.dpo import DpoConfig
from lmtune.config.align.grpo import GrpoConfig
from lmtune.config.align.kto import KtoConfig
from lmtune.config.align.orpo import OrpoConfig
from lmtune.config.align.reward import RewardConfig
from lmtune.config.align.rloo import RlooConfig
from lmtune.config.data import AlignFormat, SourceConfig
from lmtune.data.alignment.prepare import prepare_align
from lmtune.data.records import RejectLog

TOL = 1e-6
BATCH = 4
GENERATIONS = 4
ONLINE_REWARDS = [{"type": "length_penalty", "target_chars": 12}]


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """log sigma(x) = -log(1 + e^-x), written out (TRL uses F.logsigmoid)."""
    return -torch.log1p(torch.exp(-x))


# --- what lmtune runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrlCall:
    """What an lmtune objective hands `run_trl`: TRL's classes, the objective's arguments, the options."""

    config_cls: type
    trainer_cls: type
    args: dict[str, Any]
    options: dict[str, Any]


def trl_call(monkeypatch: pytest.MonkeyPatch, run: Callable[..., Any], objective: AlignBase) -> TrlCall:
    """Run `run(cfg, objective)` with `run_trl` replaced by a recorder (GRPO and RLOO reach it through
    `online.run_online`), and return what it was called with."""
    calls: list[TrlCall] = []

    def record(
        cfg: object, obj: object, classes: tuple[type, type], args: dict[str, Any], resume: bool, **kw: Any
    ) -> None:
        calls.append(TrlCall(classes[0], classes[1], dict(args), kw))

    for module in (online, dpo, kto, orpo, cpo):  # the modules that call run_trl
        monkeypatch.setattr(module, "run_trl", record)
    run(None, objective)
    assert len(calls) == 1
    return calls[0]


def lmtune_data(path: Path, kind: AlignFormat, tokenizer: Any, objective: AlignBase) -> Any:
    """The dataset `lmtune.align.session.datasets` hands TRL, before its train/eval split."""
    data = objective.data
    prepared = prepare_align(
        [SourceConfig(path=str(path), format=kind)],
        kind,
        tokenizer,
        max_prompt_length=data.max_prompt_length,
        system_prompt=data.system_prompt,
        rejects=RejectLog(),
        max_length=data.max_length,
    )
    return prepared.dataset


def causal_lm(path: Path, noise_seed: int | None = None) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)
    if noise_seed is not None:
        generator = torch.Generator().manual_seed(noise_seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model


def common(tmp_path: Path, batch_size: int) -> dict[str, Any]:
    """Loop settings of the TRL config (the loss does not depend on them)."""
    return {
        "output_dir": str(tmp_path),
        "use_cpu": True,
        "bf16": False,
        "report_to": [],
        "gradient_checkpointing": False,
        "per_device_train_batch_size": batch_size,
    }


def offline_trainer(
    call: TrlCall, objective: AlignBase, tmp_path: Path, data: Any, tokenizer: Any, **models: Any
) -> Any:
    """The TRL trainer as `run_trl` builds it for offline data (which also passes `max_length`)."""
    args = call.config_cls(
        **common(tmp_path, BATCH), **{"max_length": objective.data.max_length, **call.args}
    )
    return call.trainer_cls(args=args, train_dataset=data, processing_class=tokenizer, **models)


def metric(trainer: Any, key: str) -> float:
    mode = "train" if trainer.model.training else "eval"
    return float(trainer._metrics[mode][key][-1])


def masked_logps(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: torch.Tensor
) -> Any:
    labels = input_ids.masked_fill(keep == 0, -100)
    return sequence_logps(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)


# --- DPO -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust"])
def test_dpo_runs_trl_dpo_trainer_whose_loss_is_the_closed_form(
    loss_type: str,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    tiny_tokenizer: Any,
    pairs_file: Path,
    tmp_path: Path,
) -> None:
    from trl import DPOTrainer

    beta, eps = 0.5, (0.2 if loss_type == "robust" else 0.0)
    objective = DpoConfig(beta=beta, loss_type=loss_type, label_smoothing=eps)
    call = trl_call(monkeypatch, dpo.run, objective)
    assert call.trainer_cls is DPOTrainer
    assert call.options.get("reference", True)  # DPO is trained against a reference
    policy, ref = causal_lm(tiny_model_dir, noise_seed=0), causal_lm(tiny_model_dir)
    data = lmtune_data(pairs_file, "preference", tiny_tokenizer, objective)
    trainer = offline_trainer(call, objective, tmp_path, data, tiny_tokenizer, model=policy, ref_model=ref)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        ids, attn, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        pc, pr = masked_logps(policy, ids, attn, completion).chunk(2)  # batch = [chosen..., rejected...]
        rc, rr = masked_logps(ref, ids, attn, completion).chunk(2)
    hc, hr = pc - rc, pr - rr  # log-ratios to the reference
    z = beta * (hc - hr)
    if loss_type == "sigmoid":  # DPO: -log sigma(beta ((pc - rc) - (pr - rr)))
        losses = -log_sigmoid(z)
    elif loss_type == "hinge":  # SLiC: max(0, 1 - beta d)
        losses = torch.clamp(1 - z, min=0)
    elif loss_type == "ipo":  # IPO, each log-ratio divided by its completion's token count (as TRL)
        len_c, len_r = completion.sum(dim=1).to(hc.dtype).chunk(2)
        losses = (hc / len_c - hr / len_r - 1 / (2 * beta)) ** 2
    else:  # robust DPO: (-(1 - eps) log sigma(z) + eps log sigma(-z)) / (1 - 2 eps)
        losses = (-(1 - eps) * log_sigmoid(z) + eps * log_sigmoid(-z)) / (1 - 2 * eps)
    assert abs(losses.mean().item() - trl_loss) < TOL
    # TRL's implicit rewards and their accuracy: beta h, and the share of pairs with beta h_c > beta h_r
    assert abs((beta * hc).mean().item() - metric(trainer, "rewards/chosen")) < TOL
    assert abs((beta * hr).mean().item() - metric(trainer, "rewards/rejected")) < TOL
    accuracy = (hc > hr).double().mean().item()
    assert accuracy == metric(trainer, "rewards/accuracies")
    # the batch is informative: 4 of lmtune's pairs, margins far from 0, not all ranked the same way
    assert batch["input_ids"].size(0) == 2 * BATCH
    assert (hc - hr).abs().min() > 0.1
    assert 0 < accuracy < 1


# --- reward model --------------------------------------------------------------------------------


def test_reward_model_runs_trl_reward_trainer_whose_loss_is_bradley_terry(
    tiny_model_dir: Path, tiny_tokenizer: Any, pairs_file: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer

    objective = RewardConfig(center_rewards_coefficient=0.01)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=1, dtype=torch.float64
    )
    model.config.pad_token_id = tiny_tokenizer.pad_token_id
    # as lmtune.align.reward.run passes them
    args = TrlRewardConfig(
        **common(tmp_path, BATCH),
        max_length=objective.data.max_length,
        center_rewards_coefficient=objective.center_rewards_coefficient,
    )
    data = lmtune_data(pairs_file, "preference", tiny_tokenizer, objective)
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tiny_tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "margin" not in batch  # lmtune's preference data has no margin column
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    chosen, rejected = scores.squeeze(-1).chunk(2)
    # -log sigma(r_c - r_r), plus c (r_c + r_r)^2, batch means
    c = 0.01
    expected = (-log_sigmoid(chosen - rejected)).mean() + c * ((chosen + rejected) ** 2).mean()
    assert abs(expected.item() - trl_loss) < TOL
    assert (chosen > rejected).double().mean().item() == metric(trainer, "accuracy")
    assert ((chosen + rejected) ** 2).mean() > 1e-4  # the centring term counts


# --- KTO -----------------------------------------------------------------------------------------


# noise on the policy gives this batch a positive KL estimate, noise on the reference a negative one
# (clamped to 0)
@pytest.mark.parametrize(("policy_noise", "ref_noise", "kl_positive"), [(0, None, True), (None, 0, False)])
def test_kto_runs_trl_kto_trainer_whose_loss_is_the_closed_form(
    policy_noise: int | None,
    ref_noise: int | None,
    kl_positive: bool,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    tiny_tokenizer: Any,
    kto_file: Path,
    tmp_path: Path,
) -> None:
    from trl import KTOTrainer

    beta, w_d, w_u = 0.5, 1.3, 0.7
    objective = KtoConfig(beta=beta, desirable_weight=w_d, undesirable_weight=w_u)
    call = trl_call(monkeypatch, kto.run, objective)
    assert call.trainer_cls is KTOTrainer and call.options["kind"] == "kto"
    policy, ref = causal_lm(tiny_model_dir, policy_noise), causal_lm(tiny_model_dir, ref_noise)
    data = lmtune_data(kto_file, "kto", tiny_tokenizer, objective)
    trainer = offline_trainer(call, objective, tmp_path, data, tiny_tokenizer, model=policy, ref_model=ref)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch)).item()

        def logps(model: Any, prefix: str = "") -> torch.Tensor:
            return masked_logps(
                model,
                batch[f"{prefix}input_ids"],
                batch[f"{prefix}attention_mask"],
                batch[f"{prefix}completion_mask"],
            )

        # z0 = max(0, mean_j [log pi(y'_j|x_j) - log ref(y'_j|x_j)]) on mismatched (prompt, completion) pairs
        z0 = (logps(policy, "KL_") - logps(ref, "KL_")).mean().clamp(min=0)
        h = logps(policy) - logps(ref)
    label = batch["label"].bool()
    # desirable: w_D (1 - sigma(beta (h - z0))); undesirable: w_U (1 - sigma(beta (z0 - h)))
    losses = torch.where(
        label, w_d * (1 - torch.sigmoid(beta * (h - z0))), w_u * (1 - torch.sigmoid(beta * (z0 - h)))
    )
    assert label.any() and not label.all()  # both kinds of example in the batch
    assert (z0.item() > 0.1) is kl_positive
    assert abs(losses.mean().item() - trl_loss) < TOL
    # TRL's logged KL is the float32 mean of summed float32 log-probs (~40 nats each)
    assert abs(z0.item() - metric(trainer, "kl")) < 1e-5


# --- ORPO and CPO / SimPO --------------------------------------------------------------------------


def concatenated_logits(trainer: Any, model: Any, batch: dict[str, Any], pad_id: int) -> tuple[Any, Any]:
    cat = trainer.concatenated_inputs(batch, padding_value=pad_id)
    logits = model(
        input_ids=cat["concatenated_input_ids"], attention_mask=cat["concatenated_attention_mask"]
    ).logits
    return cat, logits


def token_mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return -token_logps(logits, labels).sum() / (labels[:, 1:] != -100).sum()


def test_orpo_runs_trl_orpo_trainer_whose_loss_is_the_closed_form(
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    tiny_tokenizer: Any,
    pairs_file: Path,
    tmp_path: Path,
) -> None:
    from trl.experimental.orpo import ORPOTrainer

    beta = 0.5
    objective = OrpoConfig(beta=beta)
    call = trl_call(monkeypatch, orpo.run, objective)
    assert call.trainer_cls is ORPOTrainer and call.options["reference"] is False
    policy = causal_lm(tiny_model_dir, noise_seed=0)
    data = lmtune_data(pairs_file, "preference", tiny_tokenizer, objective)
    trainer = offline_trainer(call, objective, tmp_path, data, tiny_tokenizer, model=policy)
    batch = next(iter(trainer.get_train_dataloader()))
    n = batch["chosen_input_ids"].size(0)
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        cat, logits = concatenated_logits(trainer, policy, batch, trainer.padding_value)
        lp = sequence_logps(logits, cat["concatenated_labels"], average=True)  # mean token log-prob
        # ORPO's NLL covers the whole chosen sequence, prompt included (padding excluded)
        full = cat["concatenated_input_ids"].masked_fill(cat["concatenated_attention_mask"] == 0, -100)
        nll = token_mean_nll(logits[:n], full[:n])
    # log odds(y) = log(p / (1 - p)) with p = exp(lp); loss = NLL(y_w) - beta mean log sigma(lo_w - lo_l)
    log_odds = lp - torch.log(1 - torch.exp(lp))
    ratio = log_odds[:n] - log_odds[n:]
    expected = nll - beta * log_sigmoid(ratio).mean()
    assert abs(expected.item() - trl_loss) < TOL
    assert ratio.abs().min() > 0.01


@pytest.mark.parametrize(
    ("loss_type", "cpo_alpha", "eps"),
    [("sigmoid", 1.0, 0.1), ("simpo", 0.0, 0.0), ("hinge", 0.5, 0.0), ("ipo", 0.0, 0.0)],
)
def test_cpo_and_simpo_run_trl_cpo_trainer_whose_loss_is_the_closed_form(
    loss_type: str,
    cpo_alpha: float,
    eps: float,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    tiny_tokenizer: Any,
    pairs_file: Path,
    tmp_path: Path,
) -> None:
    from trl.experimental.cpo import CPOTrainer

    beta, gamma = 0.5, 0.3
    objective = CpoConfig(
        loss_type=loss_type,
        beta=beta,
        simpo_gamma=gamma,
        cpo_alpha=cpo_alpha,
        label_smoothing=eps,
    )
    call = trl_call(monkeypatch, cpo.run, objective)
    assert call.trainer_cls is CPOTrainer and call.options["reference"] is False
    policy = causal_lm(tiny_model_dir, noise_seed=0)
    data = lmtune_data(pairs_file, "preference", tiny_tokenizer, objective)
    trainer = offline_trainer(call, objective, tmp_path, data, tiny_tokenizer, model=policy)
    batch = next(iter(trainer.get_train_dataloader()))
    n = batch["chosen_input_ids"].size(0)
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        cat, logits = concatenated_logits(trainer, policy, batch, trainer.pad_token_id)
        labels = cat["concatenated_labels"]
        # SimPO and IPO score an answer by its mean token log-prob, CPO by the sum
        logps = sequence_logps(logits, labels, average=loss_type in ("simpo", "ipo"))
        # CPO's NLL covers the chosen completion only
        nll = token_mean_nll(logits[:n], labels[:n])
    d = logps[:n] - logps[n:]
    if loss_type == "sigmoid":  # CPO: -(1 - eps) log sigma(beta d) - eps log sigma(-beta d)
        losses = -(1 - eps) * log_sigmoid(beta * d) - eps * log_sigmoid(-beta * d)
    elif loss_type == "simpo":  # SimPO: -log sigma(beta d - gamma) on mean log-probs
        losses = -log_sigmoid(beta * d - gamma)
    elif loss_type == "hinge":
        losses = torch.clamp(1 - beta * d, min=0)
    else:  # ipo
        losses = (d - 1 / (2 * beta)) ** 2
    expected = losses.mean() + cpo_alpha * nll
    assert abs(expected.item() - trl_loss) < TOL
    assert d.abs().min() > 0.01


# --- GRPO and RLOO -------------------------------------------------------------------------------


def online_trainer(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    objective: GrpoConfig | RlooConfig,
    tmp_path: Path,
    tiny_model_dir: Path,
    prompts_file: Path,
    recorded: list[list[float]],
) -> Any:
    """The TRL trainer lmtune's GRPO/RLOO builds (sampling settings, reward function, objective args),
    with its reward function recording what it returns."""
    from transformers import AutoTokenizer

    call = trl_call(monkeypatch, module.run, objective)
    assert call.options["kind"] == "prompt" and call.options["reference"] is False
    (reward,) = call.options["trainer_kwargs"]["reward_funcs"]

    def recording(*args: Any, **kwargs: Any) -> list[float]:
        values: list[float] = reward(*args, **kwargs)
        recorded.append(values)
        return values

    recording.__name__ = reward.__name__
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)  # not the shared fixture: padding changes
    tokenizer.padding_side = "left"  # as run_trl sets it for prompt data
    data = lmtune_data(prompts_file, "prompt", tokenizer, objective)
    args = call.config_cls(**common(tmp_path, BATCH * 2), **call.args)
    return call.trainer_cls(
        model=causal_lm(tiny_model_dir, noise_seed=0),
        reward_funcs=[recording],
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
    )


def generate(trainer: Any, recorded: list[list[float]]) -> tuple[dict[str, Any], torch.Tensor]:
    """Two of lmtune's prompts (with their reference answers) x 4 generations: TRL's sampled batch and
    the rewards lmtune's reward function gave it."""
    recorded.clear()
    rows = [dict(trainer.train_dataset[i]) for i in range(2)]
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions([row for row in rows for _ in range(GENERATIONS)])
    assert len(recorded) == 1
    rewards = torch.tensor(recorded[0], dtype=torch.float64)
    assert rewards.view(2, GENERATIONS).std(dim=1).min() > 0  # both groups carry signal
    return out, rewards


def trl_token_logps(trainer: Any, model: Any, out: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's per-token completion log-probs and lmtune's, for the same sequences and model."""
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    width = out["completion_ids"].size(1)
    with torch.no_grad():
        trl = trainer._get_per_token_logps_and_entropies(model, ids, attention, width)[0]
        ours = token_logps(model(input_ids=ids, attention_mask=attention).logits, ids)[:, -width:]
    return trl.double(), ours


def grpo_objective(**kwargs: Any) -> GrpoConfig:
    return GrpoConfig(
        rewards=ONLINE_REWARDS,
        num_generations=GENERATIONS,
        max_completion_length=6,
        trainer={"batch_size": BATCH * 2},
        **kwargs,
    )


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_runs_trl_grpo_trainer_whose_advantages_are_the_closed_form(
    scale: str,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    prompts_file: Path,
    tmp_path: Path,
) -> None:
    from trl import GRPOTrainer

    recorded: list[list[float]] = []
    objective = grpo_objective(scale_rewards=scale)
    trainer = online_trainer(monkeypatch, grpo, objective, tmp_path, tiny_model_dir, prompts_file, recorded)
    assert isinstance(trainer, GRPOTrainer)
    out, rewards = generate(trainer, recorded)
    # A_i = (r_i - mean of its group) / (s + 1e-4), s the Bessel-corrected std of the group or the batch
    grouped = rewards.view(-1, GENERATIONS)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
    if scale == "group":
        expected = centred / (grouped.std(dim=1).repeat_interleave(GENERATIONS) + 1e-4)
    elif scale == "batch":
        expected = centred / (rewards.std() + 1e-4)
    else:
        expected = centred
    assert (expected - out["advantages"].double()).abs().max() < TOL


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "bnpo", "dr_grpo"])
def test_grpo_loss_is_the_clipped_surrogate_plus_k3_kl_closed_form(
    loss_type: str,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    prompts_file: Path,
    tmp_path: Path,
) -> None:
    recorded: list[list[float]] = []
    beta, eps = 0.04, 0.2
    objective = grpo_objective(beta=beta, epsilon=eps, loss_type=loss_type)
    trainer = online_trainer(monkeypatch, grpo, objective, tmp_path, tiny_model_dir, prompts_file, recorded)
    out, _ = generate(trainer, recorded)
    # completions of different lengths, as when some end early at an EOS (the tiny model rarely samples
    # one), so that the four aggregations differ
    lengths = torch.tensor([6, 3, 5, 1, 6, 2, 4, 6])
    out["completion_mask"] = out["completion_mask"] * (torch.arange(6) < lengths.unsqueeze(1))
    out["num_items_in_batch"] = out["completion_mask"].sum()
    logps, ours = trl_token_logps(trainer, trainer.model, out)
    mask = out["completion_mask"].double()
    assert mask.sum(dim=1).tolist() == lengths.tolist()
    assert ((logps - ours) * mask).abs().max() < 1e-5  # lmtune's log-probs agree with TRL's
    # off-policy: the sampling policy differs, so some ratios leave [1 - eps, 1 + eps] and get clipped
    noise = torch.randn(logps.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out["old_per_token_logps"] = (logps + 0.3 * noise).float()
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, out).item()
    old, ref = out["old_per_token_logps"].double(), out["ref_per_token_logps"].double()
    adv = out["advantages"].double().unsqueeze(1)
    # per token: -min(rho A, clip(rho, 1 - eps, 1 + eps) A) + beta rho k3, rho = exp(logp - old),
    # k3 = exp(ref - logp) - (ref - logp) - 1 (weighted by rho: TRL's use_bias_correction_kl, on by default)
    rho = torch.exp(logps - old)
    u = ref - logps
    per_token = -torch.min(rho * adv, rho.clamp(1 - eps, 1 + eps) * adv) + beta * rho * (torch.exp(u) - u - 1)
    masked = per_token * mask
    if loss_type == "grpo":  # mean over each sequence's tokens, then over sequences
        expected = (masked.sum(dim=1) / mask.sum(dim=1)).mean()
    elif loss_type == "bnpo":  # mean over the batch's tokens
        expected = masked.sum() / mask.sum()
    elif loss_type == "dr_grpo":  # over B x max_completion_length
        expected = masked.sum() / (mask.size(0) * objective.max_completion_length)
    else:  # dapo: over the generation batch's tokens (here this batch)
        expected = masked.sum() / mask.sum()
    assert abs(expected.item() - trl_loss) < TOL
    clipped = ((rho < 1 - eps) & (adv < 0)) | ((rho > 1 + eps) & (adv > 0))
    assert 0 < clipped[mask.bool()].double().mean() < 1  # the clip is active on some tokens, not all


def test_rloo_runs_trl_rloo_trainer_whose_advantages_and_loss_are_the_closed_form(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, prompts_file: Path, tmp_path: Path
) -> None:
    from trl import RLOOTrainer

    recorded: list[list[float]] = []
    beta, eps = 0.05, 0.2
    objective = RlooConfig(
        rewards=ONLINE_REWARDS,
        num_generations=GENERATIONS,
        max_completion_length=6,
        trainer={"batch_size": BATCH * 2},
        beta=beta,
        epsilon=eps,
    )
    trainer = online_trainer(monkeypatch, rloo, objective, tmp_path, tiny_model_dir, prompts_file, recorded)
    assert isinstance(trainer, RLOOTrainer)
    out, rewards = generate(trainer, recorded)
    mask = out["completion_mask"].double()
    logps, ours = trl_token_logps(trainer, trainer.model, out)
    ref_logps, _ = trl_token_logps(trainer, trainer.ref_model, out)
    assert ((logps - ours) * mask).abs().max() < 1e-5  # lmtune's log-probs agree with TRL's
    # RLOO folds beta x the summed k1 KL into the reward: r' = r - beta sum_t (logp_t - ref_t)
    penalised = rewards - beta * ((logps - ref_logps) * mask).sum(dim=1)
    # A_i = r'_i - mean of the other k - 1 completions of its prompt
    grouped = penalised.view(-1, GENERATIONS)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (GENERATIONS - 1)
    advantages = (grouped - baseline).reshape(-1)
    assert (advantages - out["advantages"].double()).abs().max() < TOL

    # the loss is PPO's clipped surrogate on sequence log-probs, averaged over sequences
    sequence = (logps * mask).sum(dim=1)
    # off-policy by fixed offsets: ratios exp(-offset) from 0.67 to 1.49, half of them outside [0.8, 1.2]
    offsets = torch.tensor([-0.4, 0.4, -0.05, 0.05, -0.3, 0.3, 0.0, 0.15], dtype=torch.float64)
    out["old_logps"] = (sequence + offsets).float()
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, out).item()
    rho = torch.exp(sequence - out["old_logps"].double())
    adv = out["advantages"].double()
    expected = (-torch.min(rho * adv, rho.clamp(1 - eps, 1 + eps) * adv)).mean()
    assert abs(expected.item() - trl_loss) < TOL
    clipped = ((rho < 1 - eps) & (adv < 0)) | ((rho > 1 + eps) & (adv > 0))
    assert 0 < clipped.double().mean() < 1
