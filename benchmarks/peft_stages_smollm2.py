"""The PEFT-family example configs end to end on the real SmolLM2-135M-Instruct and GSM8K: a short
training run of each shipped config, then evaluation and export, through lmtune's own stage functions.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peft_stages_smollm2.py                 # every config
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peft_stages_smollm2.py --only sft_lora,sft_dora

Every config runs at one setting (GSM8K rows truncated to 128 tokens, batch 4, float32 on the CPU,
`--steps` optimizer steps, 4 held-out rows) in a fresh subprocess, one after another. Measured per
config: seconds per optimizer step (transformers' `train_runtime` / steps: the training loop only, not
loading), first and last logged training loss, held-out loss of the base and the tuned model, and
whether export merged and its check came out identical. Writes benchmarks/results/peft_stages_smollm2.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "peft_stages_smollm2.json"
CONFIGS = (
    "sft_lora",
    "sft_dora",
    "sft_lora_variants",
    "sft_qlora",
    "sft_freeze",
    "sft_ia3",
    "sft_vera",
    "sft_loha",
    "sft_lokr",
    "sft_prompt_tuning",
    "sft_prefix_tuning",
)


def run_config(name: str, steps: int, out: Path) -> Any:
    """The shipped config `name`, shortened: `steps` steps on 24 GSM8K rows (4 held out)."""
    from lmtune.config.loader import build, read_yaml
    from lmtune.config.run import RunConfig

    data = read_yaml(ROOT / "configs" / f"{name}.yaml")
    data["name"] = name
    data["output_dir"] = str(out)
    data["data"]["sources"] = [{**data["data"]["sources"][0], "limit": 24}]
    data["data"].update({"max_length": 128, "truncation": "truncate", "eval_size": 4})
    data["trainer"].update(
        {"max_steps": steps, "save_steps": steps, "logging_steps": 1, "warmup_steps": 0, "device": "cpu"}
    )
    data["evaluate"] = {"max_samples": 2, "max_new_tokens": 16, "batch_size": 2}
    data["export"] = {"check_prompts": 2, "check_max_new_tokens": 8}
    return build(RunConfig, data)


def worker(name: str, steps: int) -> dict[str, Any]:
    """Train, evaluate and export one config; the numbers it produced."""
    from lmtune.evaluate.run import run as evaluate
    from lmtune.export.run import run as export
    from lmtune.runtime.records import TrainLog, TrainSummaryLog
    from lmtune.runtime.rundir import RunDir
    from lmtune.train.sft import run as train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = run_config(name, steps, Path(tmp))
        trained = train(cfg)
        rundir = RunDir.for_config(cfg)
        records = rundir.read_metrics()
        losses = [r.loss for r in records if isinstance(r, TrainLog) and r.loss is not None]
        runtime = next(r.train_runtime or 0.0 for r in records if isinstance(r, TrainSummaryLog))
        evaluated = evaluate(rundir)
        exported = export(rundir)
        return {
            "config": name,
            "method": cfg.method.model_dump(),
            "quantization": cfg.model.quantization,
            "steps": trained.steps,
            "seconds_per_step": round(runtime / trained.steps, 2),
            "first_loss": losses[0],
            "last_loss": losses[-1],
            "eval_loss_base": evaluated.base["eval_loss"] if evaluated.base else None,
            "eval_loss_tuned": evaluated.tuned["eval_loss"],
            "export_merged": exported.merged,
            "export_identical": exported.check.identical,
            "export_max_logit_diff": exported.check.max_logit_diff,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated config names (default: all)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.steps)), flush=True)
        return
    names = args.only.split(",") if args.only else list(CONFIGS)
    results = []
    for name in names:
        cmd = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{name}: failed (exit {proc.returncode})")
        result = json.loads(line[len("RESULT ") :])
        results.append(result)
        print(json.dumps(result), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"steps": args.steps, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
