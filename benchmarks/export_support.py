"""What the export-quality benchmarks share (gguf_quality.py, quantized_quality.py): their options, and
the run they measure with its export settings widened to those options."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmtune.config.deploy import ExportConfig
from lmtune.export.run import exported
from lmtune.runtime.rundir import RunDir


def checked_run(description: str) -> tuple[argparse.Namespace, RunDir, ExportConfig]:
    """Parse `--run --prompts --max-new-tokens --texts`; the run (which must hold a checked merged
    export) and its export config with `check_prompts`/`check_max_new_tokens` from the options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run", default="runs/quickstart")
    parser.add_argument("--prompts", type=int, default=16, help="check prompts (greedy answers compared)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--texts", type=int, default=40, help="held-out conversations scored")
    args = parser.parse_args()
    rundir = RunDir(Path(args.run))
    if not exported(rundir):
        raise SystemExit(f"{args.run}: no checked merged export; run `make quickstart` first")
    config = rundir.load_config().export.model_copy(
        update={"check_prompts": args.prompts, "check_max_new_tokens": args.max_new_tokens}
    )
    return args, rundir, config
