"""The console the CLI's summaries print to: rich tables for people on a terminal, and lines that never
wrap when the output is piped or captured, so that what a script or a test reads does not depend on the
console width or on the length of a path."""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

UNWRAPPED_WIDTH = 100_000
"""The width used off a terminal: wide enough that no line of a summary ever wraps."""


def summary_console(file: IO[str] | None = None) -> Console:
    """A rich console on `file` (default: the current `sys.stdout`): at the terminal's width on a
    terminal; never wrapping when `file` is not a terminal (`COLUMNS` is then ignored)."""
    from rich.console import Console  # deferred: rich is only needed when a summary is printed

    out = file if file is not None else sys.stdout
    if out.isatty():
        return Console(file=out)
    return Console(file=out, width=UNWRAPPED_WIDTH, soft_wrap=True)
