"""Open the serving back-end a config names (configs: `lmtune.config.backends`) through one exhaustive
`match`."""

from __future__ import annotations

from pathlib import Path
from typing import assert_never

from lmtune.config.backends import AnyBackend, TransformersBackend
from lmtune.serve.engine import Engine, TransformersEngine


def open_engine(backend: AnyBackend, model_dir: str | Path) -> Engine:
    """The back-end `backend` serving the model folder `model_dir`.

    Raises:
        ModelLoadError: the folder cannot be served.
    """
    match backend:
        case TransformersBackend():
            return TransformersEngine(model_dir, backend)
        case _:
            assert_never(backend)
