"""Training support for mixture-of-experts models: the router load-balancing loss (part of the training
loss, and logged) and exact resume of MoE checkpoints.

transformers' MoE models (Mixtral, Qwen2-MoE, Qwen3-MoE, ...) add `router_aux_loss_coef * aux_loss` to
the loss when called with `output_router_logits=True`, where aux_loss is the Switch Transformer
load-balancing loss N * sum_e f_e P_e (f_e: fraction of routed token slots sent to expert e, P_e: mean
router probability of e, N experts). `RouterAuxLoss` passes that flag on every training forward only
(evaluation losses stay pure language-model losses, and no saved config changes behaviour) and adds the
mean unweighted aux loss of the logging window to each train log as `router_aux_loss`.

transformers 5.23's Trainer writes MoE checkpoints in the hub layout (one tensor per expert) but
resumes by loading that file straight into the fused model (huggingface/transformers#48805): the expert
weights silently stay as they were. `MoeCheckpointReload` loads them again through `from_pretrained`,
which converts the layout.

Imports transformers at module level: import this module only inside a stage's `run()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lmtune.runtime.load import causal_lm

if TYPE_CHECKING:
    from transformers import PretrainedConfig


def moe_head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The causal-LM module of an MoE model (the one that weighs the aux loss), or None for a dense
    model. Looks through wrappers such as PEFT's."""
    return next((m for m in model.modules() if hasattr(m, "router_aux_loss_coef")), None)


class RouterAuxLoss(TrainerCallback):
    """Train MoE models with the router load-balancing loss and log it as `router_aux_loss`.

    Must come before `MetricsCallback` in the trainer's callbacks: it adds its value to the log record
    that `MetricsCallback` then writes.
    """

    def __init__(self, coef: float | None) -> None:
        """Args:
        coef: the loss weight; None keeps the model's own (`router_aux_loss_coef` in its config).
        """
        self.coef = coef
        self._handles: list[Any] = []
        self._sum: torch.Tensor | float = 0.0  # a tensor: no device sync per forward, one per log
        self._count = 0

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        head = moe_head(model) if model is not None else None
        if model is None or head is None or self._handles:
            return
        if self.coef is not None:
            # The model reads its own attribute at forward time (copied from the config at init); the
            # config is updated too, so the saved config records the weight used.
            head.router_aux_loss_coef = self.coef  # type: ignore[assignment]
            cast("PretrainedConfig", head.config).router_aux_loss_coef = self.coef
        self._handles = [
            model.register_forward_pre_hook(self._ask_for_router_logits, with_kwargs=True),
            model.register_forward_hook(self._record),
        ]

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is None or "loss" not in logs or not self._count:
            return
        logs["router_aux_loss"] = round(float(self._sum) / self._count, 6)
        self._sum, self._count = 0.0, 0

    def _ask_for_router_logits(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if module.training:
            kwargs["output_router_logits"] = True
        return args, kwargs

    def _record(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        aux = getattr(output, "aux_loss", None)
        if module.training and isinstance(aux, torch.Tensor):
            self._sum = self._sum + aux.detach().float()
            self._count += 1


class MoeCheckpointReload(TrainerCallback):
    """On resume, load the checkpoint's weights again with the layout conversion Trainer skips.

    Must come before `FinishedRunStop` (which ends `on_train_begin` when the checkpoint is the last step,
    and the weights are then saved as they are).
    """

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        # deferred: transformers only when this runs (keeps `import lmtune...` light)
        from transformers import PreTrainedModel

        folder = Path(args.output_dir or ".") / f"checkpoint-{state.global_step}"
        weights = [folder / "model.safetensors", folder / "model.safetensors.index.json"]
        if (
            not isinstance(model, PreTrainedModel)
            or state.global_step == 0
            or not any(w.is_file() for w in weights)
        ):
            return  # a fresh start, or an adapter checkpoint (PEFT loads its own keys)
        reloaded = causal_lm(folder, model.dtype)
        # In place: the optimizer (already built and restored) holds these very tensors.
        model.load_state_dict(reloaded.state_dict(), strict=True)


def callbacks(model: torch.nn.Module, coef: float | None) -> list[TrainerCallback]:
    """The MoE callbacks (`MoeCheckpointReload`, `RouterAuxLoss(coef)`) when `model` is a mixture of
    experts, else nothing. Put them before lmtune's own callbacks."""
    return [MoeCheckpointReload(), RouterAuxLoss(coef)] if moe_head(model) is not None else []
