"""`python -m lmtune.train CONFIG [key=value ...] [--resume]`: the training stage without the full CLI (and
what each process of `lmtune train --nproc N` / `accelerate launch -m lmtune.train` runs)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lmtune.errors import LmtuneError


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, print where the weights went; user errors print one line and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m lmtune.train", description="fine-tune one run config")
    parser.add_argument("config", help="the run's YAML file")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.max_steps=50")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    args = parser.parse_args(argv)
    if int(os.environ.get("RANK", "0")) == 0:  # lmtune's own progress lines (preflight, processes), once
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("lmtune: %(message)s"))
        logging.getLogger("lmtune").addHandler(handler)
        logging.getLogger("lmtune").setLevel(logging.INFO)
    from lmtune.config.loader import load
    from lmtune.schema import RunConfig
    from lmtune.train.sft import run

    try:
        result = run(load(RunConfig, args.config, args.overrides), resume=args.resume)
    except LmtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:  # one line per run, not per process (`--nproc`)
        print(f"trained {result.steps} steps -> {result.weights_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
