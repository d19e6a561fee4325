"""Where a stage runs: the one place that picks a device."""

from __future__ import annotations

from typing import Literal

from lmtune.errors import PreflightError


def pick_device(requested: Literal["auto", "cpu", "cuda"] = "auto") -> str:
    """`cuda` or `cpu` for a requested device (`auto` picks CUDA when present).

    Raises:
        PreflightError: `cuda` was asked for and no CUDA device is visible.
    """
    import torch  # deferred: torch is heavy and the config layer imports this module's callers lazily

    match requested:
        case "cpu":
            return "cpu"
        case "cuda":
            if not torch.cuda.is_available():
                raise PreflightError("trainer.device is 'cuda' but no CUDA device is available")
            return "cuda"
        case "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"


def inference_device() -> str:
    """Where evaluation, export checks and serving run: CUDA when present."""
    return pick_device("auto")
