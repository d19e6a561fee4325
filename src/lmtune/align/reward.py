"""Reward model: a sequence classifier with one output, trained on preference pairs with the
Bradley-Terry loss on TRL's `RewardTrainer` (TRL's own loss, `RewardTrainer.compute_loss`, with the
optional `center_rewards_coefficient` term; checked against the closed form in
`tests/unit/align/test_losses_vs_trl.py`).

Its output is a standard `AutoModelForSequenceClassification` folder (`<run>/align/model/`, LoRA merged
in), which PPO reads as its reward model and which loads in transformers without lmtune.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from lmtune.align import session
from lmtune.config.align.reward import RewardConfig
from lmtune.config.methods.full import FullConfig
from lmtune.config.methods.lora import LoraConfig
from lmtune.errors import ConfigError
from lmtune.methods.lora import peft_config
from lmtune.methods.peft_adapter import peft_call
from lmtune.runtime.load import resolve_model_path, torch_dtype
from lmtune.weights.save import save_folder

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from lmtune.align.session import AlignResult, Session
    from lmtune.config.run import RunConfig


def run(cfg: RunConfig, objective: RewardConfig, resume: bool = False) -> AlignResult:
    """Train a reward model on `objective.data` (preference pairs); the held-out pairwise accuracy is in
    the result's metrics (`eval_accuracy`)."""
    # deferred: trl only when this runs (keeps `import lmtune...` light)
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer

    started = time.perf_counter()
    s = session.open_session(cfg, objective, resume)
    tok = session.tokenizer(s)
    train, evals = session.datasets(s, tok, "preference")
    model = scorer(s, tok.pad_token_id)
    args = TrlRewardConfig(
        **session.trainer_arguments(
            s,
            evals is not None,
            max_length=objective.data.max_length,
            center_rewards_coefficient=objective.center_rewards_coefficient,
        )
    )
    guard, callbacks = session.callbacks(s, model)
    trainer = RewardTrainer(
        model=model,  # type: ignore[arg-type]
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tok,
        callbacks=callbacks,
    )
    result = session.finish(s, trainer, guard, model, tok, started, save=False)
    save_scorer(model, tok, s.aligned.model)
    return result


def scorer(s: Session, pad_token_id: int | None) -> torch.nn.Module:
    """The start model as a one-output sequence classifier (a new, seeded score head) with the method
    applied: LoRA on the body with the score head fully trained, or everything trained."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(s.cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(s.view.model.path),
        num_labels=1,
        dtype=torch_dtype(s.view.model.dtype),
        trust_remote_code=s.view.model.trust_remote_code,
    )
    model.config.pad_token_id = pad_token_id
    method = s.view.method
    if isinstance(method, FullConfig):
        return model
    if not isinstance(method, LoraConfig):  # refused at config load; kept for the type checker
        raise ConfigError(f"align.method: a reward model trains with `lora` or `full`, not `{method.type}`")
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import get_peft_model

    with peft_call():
        return get_peft_model(model, peft_config(method, task_type="SEQ_CLS"))  # the score head trains fully


def save_scorer(model: torch.nn.Module, tokenizer: object, out: Path) -> None:
    """Save the reward model as a plain transformers sequence-classification folder (LoRA merged in)."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import PeftModel

    plain: PreTrainedModel = model.merge_and_unload() if isinstance(model, PeftModel) else model  # type: ignore[assignment]
    save_folder(plain, tokenizer, out)  # type: ignore[arg-type]


def load_scorer(path: str | Path, dtype: str = "float32") -> PreTrainedModel:
    """Load a saved reward model (frozen, eval mode)."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch_dtype(dtype)).eval()
    model.requires_grad_(False)
    return model
