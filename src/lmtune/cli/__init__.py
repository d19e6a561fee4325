"""The `lmtune` command: one explicit list of verbs (`parser`); each verb loads its config and calls a
stage (`verbs`).

User mistakes (LmtuneError) print one line and exit 2 — never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lmtune.cli.parser import build_parser
from lmtune.errors import LmtuneError
from lmtune.runtime.logs import console_logging


def main(argv: Sequence[str] | None = None) -> int:
    """Every verb's entry, each process of `lmtune train --nproc N` included: lmtune's progress lines on
    stderr, a user error as one `lmtune: error: ...` line and status 2."""
    args = build_parser().parse_args(argv)
    with console_logging():
        try:
            return int(args.fn(args))
        except LmtuneError as exc:
            print(f"lmtune: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("lmtune: interrupted", file=sys.stderr)
            return 130
