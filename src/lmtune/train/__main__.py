"""`python -m lmtune.train CONFIG [key=value ...] [--resume]`: the training stage without the full CLI."""

from __future__ import annotations

import argparse
import sys

from lmtune.errors import LmtuneError


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, print where the weights went; user errors print one line and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m lmtune.train", description="fine-tune one run config")
    parser.add_argument("config", help="the run's YAML file")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.max_steps=50")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    args = parser.parse_args(argv)
    from lmtune.config.loader import load
    from lmtune.schema import RunConfig
    from lmtune.train.sft import run

    try:
        result = run(load(RunConfig, args.config, args.overrides), resume=args.resume)
    except LmtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {result.steps} steps -> {result.weights_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
