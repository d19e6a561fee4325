"""Errors a user can cause. The CLI prints their message as one line and exits 2 — never a traceback."""


class LmtuneError(Exception):
    """Base class: a user-facing problem with a message that says what to fix."""


class ConfigError(LmtuneError):
    """The run configuration is invalid (unknown key, wrong type, bad combination)."""


class DataError(LmtuneError):
    """A data source cannot be read at all (missing file, unknown format)."""


class ModelLoadError(LmtuneError):
    """The model path cannot be resolved or loaded."""


class PreflightError(LmtuneError):
    """A check before training found a run that would waste compute or cannot work."""


class TrainingError(LmtuneError):
    """Training stopped on a condition the user must look at (non-finite loss, no complete checkpoint)."""


class ExportError(LmtuneError):
    """An export or deployment file cannot be written (nothing exported yet, a tool missing, a limit)."""
