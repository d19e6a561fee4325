"""Effective (non-pad) tokens per second with packed rows vs padded batches, on real chat data.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/packing_throughput.py            # CPU (or CUDA if present)

GSM8K + chatterbot conversations, prepared by lmtune's data stage with SmolLM2's chat template at
`--max-length`, once with `data.packing: false` (one conversation per row, batches padded to their
longest row) and once with `data.packing: true` (whole conversations packed into rows of up to
`--max-length`, position ids restarting per conversation). SmolLM2-135M-Instruct with LoRA r16 trains on
each for `--steps` optimizer steps (after `--warmup` untimed ones), alternating the two so both see the
same machine load, with batches of the same token budget: `--padded-batch` conversations vs
`--packed-batch` packed rows. Reported: effective tokens (non-pad input tokens) per second, the share of
padding, and the ratio. Writes benchmarks/results/packing_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import AutoModelForCausalLM, set_seed

from lmtune import methods
from lmtune.config.loader import build
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.run import RunConfig
from lmtune.data.prepare import prepare
from lmtune.runtime.load import SMOLLM2_ALIAS, load_tokenizer, resolve_model_path
from lmtune.runtime.rundir import RunDir
from lmtune.train.collator import PadCollator

RESULTS = Path(__file__).resolve().parent / "results" / "packing_throughput.json"


def prepared_rows(packing: bool, max_length: int, root: Path) -> tuple[list[dict[str, Any]], Any]:
    cfg = build(
        RunConfig,
        {
            "name": f"packing-{packing}",
            "output_dir": str(root),
            "model": {"path": SMOLLM2_ALIAS},
            "data": {
                "sources": [
                    {
                        "path": "gsm8k",
                        "format": "prompt_completion",
                        "columns": {"prompt": "question", "completion": "answer"},
                    },
                    {"path": "chatterbot", "format": "messages"},
                ],
                "max_length": max_length,
                "packing": packing,
                "eval_size": 8,
            },
        },
    )
    tokenizer = load_tokenizer(cfg.model)
    data = prepare(cfg.data, RunDir.for_config(cfg), tokenizer, seed=cfg.seed)
    columns = [c for c in ("input_ids", "labels", "position_ids") if c in data.train.column_names]
    return list(data.train.select_columns(columns)), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--padded-batch", type=int, default=8, help="conversations per padded batch")
    parser.add_argument("--packed-batch", type=int, default=2, help="packed rows per batch")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        padded_rows, tokenizer = prepared_rows(False, args.max_length, Path(tmp))
        packed_rows, _ = prepared_rows(True, args.max_length, Path(tmp))
    collate = PadCollator(pad_id=tokenizer.pad_token_id)
    rng = random.Random(0)
    rng.shuffle(padded_rows)
    rng.shuffle(packed_rows)
    sizes = {"padded": args.padded_batch, "packed": args.packed_batch}
    rows = {"padded": padded_rows, "packed": packed_rows}
    runs = {name: [rows[name][i : i + n] for i in range(0, len(rows[name]), n)] for name, n in sizes.items()}
    models = {}
    for name in runs:
        set_seed(0)
        base = AutoModelForCausalLM.from_pretrained(resolve_model_path(SMOLLM2_ALIAS), dtype=torch.float32)
        model = methods.prepare(base, LoraConfig(rank=16, alpha=32)).to(device).train()
        model.config.use_cache = False
        models[name] = (model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4))
    stats = {name: {"seconds": 0.0, "tokens": 0, "slots": 0} for name in runs}
    for step in range(args.warmup + args.steps):
        for name, batches in runs.items():
            model, optimizer = models[name]
            batch = {k: v.to(device) for k, v in collate(batches[step]).items()}
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(**batch, use_cache=False).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                stats[name]["seconds"] += time.perf_counter() - t0
                stats[name]["tokens"] += sum(len(r["input_ids"]) for r in batches[step])
                stats[name]["slots"] += batch["input_ids"].numel()
        print(f"step {step + 1}/{args.warmup + args.steps}", flush=True)
    report: dict[str, Any] = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/packing_throughput.py "
        + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s)",
        "model": SMOLLM2_ALIAS,
        "method": "lora r16",
        "max_length": args.max_length,
        "rows": {"padded": len(padded_rows), "packed": len(packed_rows)},
        "steps": args.steps,
    }
    for name, s in stats.items():
        report[name] = s | {
            "tokens_per_s": s["tokens"] / s["seconds"],
            "padding_share": 1 - s["tokens"] / s["slots"],
        }
        r = report[name]
        print(f"{name:<7} {r['tokens_per_s']:8.0f} effective tok/s  padding {r['padding_share']:.1%}")
    report["ratio_packed_over_padded"] = report["packed"]["tokens_per_s"] / report["padded"]["tokens_per_s"]
    print(f"packed / padded: {report['ratio_packed_over_padded']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
