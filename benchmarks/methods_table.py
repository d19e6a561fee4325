"""Trainable parameters and peak memory of every fine-tuning method, on SmolLM2-135M-Instruct.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/methods_table.py            # every method
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/methods_table.py --only lora,full --no-write

Each method trains through lmtune's own `lmtune.train.sft.run` (the path `lmtune train` takes) for a
few steps at one fixed setting: GSM8K rows as prompt/completion, batch 4, sequences truncated to 256
tokens, float32 on the CPU. Each method runs in a fresh subprocess, one after another, so peaks do not
mix. Measured per method:

- trainable parameters: elements of the parameters with `requires_grad` when training begins (as the
  optimizer sees them), and their share of the base model's parameters;
- peak memory: the subprocess's peak resident set (`ru_maxrss`) minus its resident set after the
  imports, i.e. base model + method + data + optimizer state + activations of those steps.

Writes benchmarks/results/methods_table.json and replaces the block between
`<!-- methods-table:start -->` and `<!-- methods-table:end -->` in docs/methods.md. Every method type
of the `lmtune.methods.AnyMethod` union must have a row: the script refuses to run otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "methods_table.json"
DOCS = ROOT / "docs" / "methods.md"
START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"

MODEL = "smollm2-135m-instruct"
BATCH, SEQ, ROWS = 4, 256, 40
"""Micro-batch, longest sequence (longer GSM8K rows are truncated) and GSM8K rows read (4 held out)."""


@dataclass(frozen=True)
class Row:
    """One method at its benchmark setting."""

    label: str
    method: dict[str, Any]
    """The `method:` section of a run config."""
    choose: str
    """When to choose it (the table's last column)."""
    model: dict[str, Any] = field(default_factory=dict)
    """Extra `model:` settings (e.g. a quantized base for QLoRA)."""


LORA16 = {"type": "lora", "rank": 16, "alpha": 32, "target_modules": "all-linear"}

ROWS_TABLE: tuple[Row, ...] = (
    Row(
        "full fine-tuning",
        {"type": "full"},
        "Memory for weights + gradients + two AdamW moments, and the task needs every weight to move.",
    ),
    Row(
        "Half Fine-Tuning",
        {"type": "hft", "round_steps": 100},
        "Full fine-tuning's reach with less forgetting of what the base knew; less optimizer state.",
    ),
    Row(
        "freeze (last 2 of 30 layers)",
        {"type": "freeze", "trainable": ["model.layers.28", "model.layers.29"]},
        "A whole-model result without adapters, training only the top layers; no PEFT needed to serve.",
    ),
    Row(
        "LoRA r16 all-linear",
        LORA16,
        "The default: small adapter, merges exactly, several adapters per base (switch, stack, combine).",
    ),
    Row(
        "DoRA r16 all-linear",
        {**LORA16, "use_dora": True},
        "LoRA's size with quality closer to full fine-tuning at low rank; a slower step.",
    ),
    Row(
        "QLoRA (LoRA r16, nf4 base)",
        LORA16,
        "The base does not fit in memory at 16/32 bits (a large model on one GPU).",
        model={"quantization": "nf4"},
    ),
    Row(
        "VeRA r256",
        {"type": "vera", "rank": 256},
        "Many adapters to store or serve: shared frozen random matrices, only scaling vectors train.",
    ),
    Row(
        "LoHa r8 all-linear",
        {"type": "loha", "rank": 8, "alpha": 8},
        "A higher-rank update than LoRA for the same parameter count (Hadamard product of two low ranks).",
    ),
    Row(
        "LoKr r8 all-linear",
        {"type": "lokr", "rank": 8, "alpha": 8},
        "The smallest structured update (Kronecker product); style/domain shifts more than new skills.",
    ),
    Row(
        "IA3",
        {"type": "ia3"},
        "The fewest trained parameters of the reparametrising methods (rescaling vectors); light tasks.",
    ),
    Row(
        "prompt tuning (20 tokens)",
        {"type": "prompt_tuning", "num_virtual_tokens": 20},
        "Steer a frozen model with learned soft tokens; tiny to store, weakest on small models.",
    ),
    Row(
        "prefix tuning (20 tokens)",
        {"type": "prefix_tuning", "num_virtual_tokens": 20},
        "Learned keys/values at every layer: more capacity than prompt tuning, still no weight changes.",
    ),
    Row(
        "memory experts",
        {"type": "memory_experts", "layers": [-8], "num_keys": 64, "topk": 32, "key_dim": 128},
        "Inject many new facts into a large key-value memory while the base's weights stay untouched.",
    ),
    Row(
        "LoRA experts (4 x r8)",
        {"type": "lora_experts", "num_experts": 4, "rank": 8, "alpha": 16},
        "Mixed tasks where a router picking among several small adapters beats one adapter.",
    ),
    Row(
        "MoE upcycling (4 experts, top-2)",
        {"type": "upcycle", "num_experts": 4, "top_k": 2, "train": "all"},
        "Grow a dense model into a mixture of experts: more capacity at similar compute per token.",
    ),
)


def method_types() -> set[str]:
    """The `type` tag of every method in lmtune's method union."""
    from lmtune.config.methods import AnyMethod

    return {cls.model_fields["type"].default for cls in typing.get_args(AnyMethod)}


def run_config(row: Row, steps: int, out: Path) -> Any:
    """The RunConfig this row trains with (GSM8K, batch 4, <= 256 tokens, `steps` steps)."""
    from lmtune.config import loader
    from lmtune.config.run import RunConfig

    data = {
        "name": "bench",
        "output_dir": str(out),
        "model": {"path": MODEL, **row.model},
        "data": {
            "sources": [
                {
                    "path": "gsm8k",
                    "format": "prompt_completion",
                    "columns": {"prompt": "question", "completion": "answer"},
                    "limit": ROWS,
                }
            ],
            "max_length": SEQ,
            "truncation": "truncate",
            "eval_size": 4,
        },
        "method": row.method,
        "trainer": {
            "max_steps": steps,
            "batch_size": BATCH,
            "learning_rate": 1e-4,
            "logging_steps": 1,
            "save_steps": 10_000,
            "device": "cpu",
        },
    }
    return loader.build(RunConfig, data)


def rss_bytes() -> int:
    """This process's resident set now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def worker(row: Row, steps: int) -> dict[str, Any]:
    """Train `row` for `steps` steps in this (fresh) process and measure it."""
    import resource

    import torch  # noqa: F401  (imported before the baseline so it is not counted)
    import transformers  # noqa: F401
    from transformers import TrainerCallback

    from lmtune.train import sft

    baseline = rss_bytes()

    class Probe(TrainerCallback):
        """Trainable parameters and resident set when training begins; wall time of each step."""

        def __init__(self) -> None:
            self.trainable = 0
            self.rss_at_start = 0
            self.step_seconds: list[float] = []
            self._t = 0.0

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            self.rss_at_start = rss_bytes()

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.step_seconds.append(time.perf_counter() - self._t)

    probe = Probe()
    with tempfile.TemporaryDirectory(prefix="methods-table-") as out:
        cfg = run_config(row, steps, Path(out))
        result = sft.run(cfg, callbacks=[probe])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {
        "steps": result.steps,
        "train_loss": result.train_loss,
        "trainable_params": probe.trainable,
        "rss_after_imports_bytes": baseline,
        "rss_at_train_start_bytes": probe.rss_at_start,
        "peak_rss_bytes": peak,
        "peak_rss_delta_bytes": peak - baseline,
        "step_seconds": [round(t, 2) for t in probe.step_seconds],
    }


def base_parameter_count() -> int:
    """Parameters of the base model, read from its safetensors headers (tied weights stored once)."""
    from safetensors import safe_open

    from lmtune.runtime.load import resolve_model_path

    total = 0
    for f in sorted(Path(resolve_model_path(MODEL)).glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():  # noqa: SIM118  (safe_open is not a mapping)
                n = 1
                for d in st.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


def measure(row: Row, steps: int) -> dict[str, Any]:
    """Run `worker` for `row` in a fresh subprocess; its last stdout line is the JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", row.label, "--steps", str(steps)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=1800,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        return {"error": tail[0][:300], "seconds": round(seconds, 1)}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "seconds": round(seconds, 1)}


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The docs block: setting, command and one table row per method."""
    mib = 1024 * 1024
    lines = [
        f"Measured by `{meta['command']}` on {meta['model']} ({meta['base_params'] / 1e6:.1f} M parameters): "
        f"{meta['steps']} training steps through `lmtune train`'s code path, GSM8K rows, batch {BATCH}, "
        f"sequences <= {SEQ} tokens, float32, CPU ({meta['cpu']}), one fresh process per method. "
        "Peak memory = peak resident set of that process minus its resident set after the imports "
        "(base model + method + data + optimizer state + activations). Raw numbers: "
        "`benchmarks/results/methods_table.json`.",
        "",
        "At this size and setting the activations (every layer's inputs for 4 x 256 tokens in float32, and "
        "the 49,152-way logits) dominate the peak: methods that backpropagate through every layer peak "
        "close together whatever they train, and those that train only top layers (freeze, memory experts) "
        "stop the backward pass early and peak lowest. Trainable parameters decide the optimizer state and "
        "the size of what is saved.",
        "",
        "| method | `method.type` | trainable params | % of base | peak memory (MiB) | when to choose it |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        quant = r["model"].get("quantization")
        kind = f"`{r['method']['type']}`" + (f" + `model.quantization: {quant}`" if quant else "")
        if "error" in r:
            lines.append(f"| {r['label']} | {kind} | failed: {r['error']} | | | {r['choose']} |")
            continue
        share = 100 * r["trainable_params"] / meta["base_params"]
        lines.append(
            f"| {r['label']} | {kind} | {r['trainable_params']:,} | {share:.2f} | "
            f"{r['peak_rss_delta_bytes'] / mib:,.0f} | {r['choose']} |"
        )
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """`text` with everything between the START and END markers replaced by `block`."""
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{DOCS}: markers {START} ... {END} not found")
    return f"{head}{START}\n{block}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per method")
    parser.add_argument("--only", help="comma-separated labels or method types to run (implies --no-write)")
    parser.add_argument("--no-write", action="store_true", help="print the table; write nothing")
    parser.add_argument(
        "--render", action="store_true", help="rewrite the docs block from the saved JSON (no training)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    by_label = {r.label: r for r in ROWS_TABLE}

    if args.render:
        saved = json.loads(RESULTS.read_text())
        for r in saved["rows"]:  # the texts kept here may have changed since the measurement
            r["choose"] = by_label[r["label"]].choose if r["label"] in by_label else r["choose"]
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")
        DOCS.write_text(replace_block(DOCS.read_text(), markdown(saved["rows"], saved["meta"])))
        return 0

    if args.worker:
        print(json.dumps(worker(by_label[args.worker], args.steps)))
        return 0

    missing = method_types() - {r.method["type"] for r in ROWS_TABLE}
    if missing:
        raise SystemExit(f"no benchmark row for method type(s) {sorted(missing)}: add them to ROWS_TABLE")
    chosen = [
        r
        for r in ROWS_TABLE
        if not args.only or r.label in args.only.split(",") or r.method["type"] in args.only.split(",")
    ]
    results = []
    for row in chosen:
        print(f"{row.label} ...", file=sys.stderr, flush=True)
        got = measure(row, args.steps)
        print(f"  {json.dumps(got)}", file=sys.stderr, flush=True)
        results.append(
            {"label": row.label, "method": row.method, "model": row.model, "choose": row.choose, **got}
        )

    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/methods_table.py" + (
        f" --steps {args.steps}" if args.steps != 3 else ""
    )
    meta = {
        "command": command,
        "model": MODEL,
        "base_params": base_parameter_count(),
        "steps": args.steps,
        "batch": BATCH,
        "max_length": SEQ,
        "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    block = markdown(results, meta)
    print(block)
    if args.only or args.no_write:
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "rows": results}, indent=2) + "\n")
    DOCS.write_text(replace_block(DOCS.read_text(), block))
    return 0


if __name__ == "__main__":
    sys.exit(main())
