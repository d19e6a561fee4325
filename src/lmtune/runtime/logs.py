"""How lmtune's own progress lines reach the console: `lmtune: message` on stderr, set up once by the
CLI for every verb (and for each process of `lmtune train --nproc N`, which enter through the same CLI).

Only the `lmtune` loggers are configured: the libraries keep their own levels and handlers, so their
debug and info output stays out of the normal output; `LIBRARY_NOISE` names the few library warnings a
user cannot act on, which are dropped.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

ROOT = "lmtune"
"""The logger every lmtune module's `logging.getLogger(__name__)` descends from."""
LIBRARY_NOISE = {
    # Logged when bitsandbytes is imported (by PEFT, for any method) on a CPU with AVX512-BF16: an
    # optional faster 4-bit CPU kernel lives in the `kernels` package, downloaded from the Hub. Nothing
    # depends on it (4-bit on CPU runs without it), and lmtune runs offline.
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
    # Logged when transformers imports torchao (for any model load, torchao being installed for the
    # torchao export): its CUDA-only kernels (Hopper cutlass, mxfp8) cannot load without a GPU, and
    # its enums trip a torch.compile deprecation notice. The int8 weight-only export runs without them.
    "torchao": ("Failed to load ",),
    "torch.utils._pytree": ("<enum '",),
}
"""Library logger -> the starts of its messages that `console_logging` drops."""


def process_rank() -> int:
    """This process's global rank in a multi-process run (`RANK`, set by the launcher); 0 otherwise."""
    return int(os.environ.get("RANK", "0") or 0)


class _Drop(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


class _CurrentStderr(logging.StreamHandler):
    """A stream handler on whatever `sys.stderr` is when a record is written (not when the handler was
    made), so that a CLI called in-process (tests, notebooks) writes where its caller's stderr now is."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # logging.StreamHandler assigns it in __init__
        pass


@contextmanager
def console_logging(rank: int | None = None) -> Iterator[None]:
    """lmtune's loggers write `lmtune: message` lines to stderr while the block runs: INFO and above on
    the main process (`rank` 0, the default when not launched), errors only on the other processes of a
    multi-process run (their progress and warnings repeat the main process's). `LIBRARY_NOISE` is
    dropped meanwhile. The previous levels, handlers and filters are restored afterwards, so an
    in-process caller keeps its own logging set-up."""
    rank = process_rank() if rank is None else rank
    logger = logging.getLogger(ROOT)
    handler = _CurrentStderr()
    handler.setFormatter(
        logging.Formatter("lmtune: %(message)s" if rank == 0 else f"lmtune[{rank}]: %(message)s")
    )
    previous = logger.level
    logger.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    logger.addHandler(handler)
    noise = [(logging.getLogger(name), _Drop(starts)) for name, starts in LIBRARY_NOISE.items()]
    for library, drop in noise:
        library.addFilter(drop)
    try:
        yield
    finally:
        for library, drop in noise:
            library.removeFilter(drop)
        logger.removeHandler(handler)
        logger.setLevel(previous)
