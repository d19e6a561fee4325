"""Does Half Fine-Tuning forget less than full fine-tuning? Measured on the real SmolLM2-135M-Instruct.

Task B (what we fine-tune on): GSM8K problems, prompt -> worked solution, through lmtune's own data stage
and training entry point (`train.sft.run`). General data A (what we would like to keep): chatterbot
conversations, a held-out set of `--a-size` conversations prepared by the same data stage (chat template,
loss on assistant turns only). Every run uses the same data, seed, learning rate, schedule and number of
steps; only `method` differs (full, then HFT for each `--round-steps`).

Reported, on held-out rows: the token-weighted mean loss on A and on B before (the base model) and after
each run, the rise of A's loss (forgetting) and the fall of B's loss (learning), and the training time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hft_forgetting.py

Writes benchmarks/results/hft_forgetting.json. Offline: the model is the packaged `smollm2-135m-instruct`
alias and the data the installed GSM8K and chatterbot packages.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import AutoModelForCausalLM

from lmtune.config.loader import build
from lmtune.config.run import RunConfig
from lmtune.data.prepare import load_prepared, prepare
from lmtune.evaluate.loss import eval_loss
from lmtune.runtime.load import SMOLLM2_ALIAS, load_tokenizer, resolve_model_path
from lmtune.runtime.rundir import RunDir
from lmtune.train.sft import run

Row = dict[str, list[int]]
"""A prepared row: `input_ids`, `labels` (-100 where no loss) and `attention_mask`."""
RESULTS = Path(__file__).resolve().parent / "results" / "hft_forgetting.json"


def mean_loss(model: torch.nn.Module, rows: list[Row], pad_id: int, batch_size: int) -> float:
    """Token-weighted mean next-token loss over the labelled tokens of `rows`, by the product's evaluation
    (`lmtune.evaluate.loss.eval_loss`, what `lmtune evaluate` reports as eval_loss):
    L = sum_rows sum_{t: label_t != -100} -log p(label_t | tokens_<t) / (number of labelled tokens).
    Rows are batched in order of length (less padding; the sum does not depend on it)."""
    model.eval()
    rows = sorted(rows, key=lambda r: len(r["input_ids"]))
    return eval_loss(model, rows, batch_size=batch_size, pad_id=pad_id).loss


def _rows(dataset: Any) -> list[Row]:
    return [{k: r[k] for k in ("input_ids", "labels", "attention_mask")} for r in dataset]


def _run_config(args: argparse.Namespace, work: Path, name: str, method: dict[str, Any]) -> RunConfig:
    return build(
        RunConfig,
        {
            "name": name,
            "output_dir": str(work / "runs"),
            "seed": args.seed,
            "model": {"path": SMOLLM2_ALIAS},
            "data": {
                "sources": [
                    {
                        "path": "gsm8k",
                        "format": "prompt_completion",
                        "columns": {"prompt": "question", "completion": "answer"},
                    }
                ],
                "max_length": args.max_length,
                "eval_size": args.b_size,
            },
            "method": method,
            "trainer": {
                "max_steps": args.steps,
                "batch_size": args.batch_size,
                "learning_rate": args.lr,
                "lr_scheduler": "cosine",
                "warmup_steps": args.warmup,
                "logging_steps": 10,
                "save_steps": args.steps + 1,  # no checkpoint: only the final weights are measured
                "device": "cpu",
            },
        },
    )


def _general_rows(args: argparse.Namespace, work: Path, tokenizer: Any) -> list[Row]:
    """The held-out chatterbot conversations (A), through the data stage: templated, assistant-only labels."""
    cfg = build(
        RunConfig,
        {
            "name": "general",
            "output_dir": str(work / "runs"),
            "seed": args.seed,
            "model": {"path": SMOLLM2_ALIAS},
            "data": {
                "sources": [{"path": "chatterbot", "format": "messages"}],
                "max_length": args.max_length,
                "eval_size": args.a_size,
            },
        },
    )
    return _rows(prepare(cfg.data, RunDir.for_config(cfg), tokenizer, seed=cfg.seed).eval)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--round-steps", type=int, nargs="+", default=[20], help="one HFT run per value")
    parser.add_argument("--a-size", type=int, default=100, help="held-out chatterbot conversations (A)")
    parser.add_argument("--b-size", type=int, default=50, help="held-out GSM8K problems (B)")
    parser.add_argument("--eval-batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="hft-forgetting-") as tmp:
        work = Path(tmp)
        base_dir = resolve_model_path(SMOLLM2_ALIAS)
        tokenizer = load_tokenizer(_run_config(args, work, "tok", {"type": "full"}).model)
        pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        general = _general_rows(args, work, tokenizer)

        methods = [{"type": "full"}] + [{"type": "hft", "round_steps": r} for r in args.round_steps]
        results: list[dict[str, Any]] = []
        task_rows: list[Row] = []
        for method in methods:
            name = method["type"] + (f"-r{method['round_steps']}" if "round_steps" in method else "")
            cfg = _run_config(args, work, name, method)
            started = time.perf_counter()
            trained = run(cfg)
            train_seconds = time.perf_counter() - started
            task_rows = _rows(load_prepared(RunDir.for_config(cfg)).eval)  # same split for every run
            model = AutoModelForCausalLM.from_pretrained(trained.weights_path, dtype=torch.float32)
            results.append(
                {
                    "method": name,
                    "steps": trained.steps,
                    "train_seconds": round(train_seconds, 1),
                    "A_after": mean_loss(model, general, pad_id, args.eval_batch_size),
                    "B_after": mean_loss(model, task_rows, pad_id, args.eval_batch_size),
                }
            )
            del model
            print(json.dumps(results[-1]), flush=True)

        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        before = {
            "A": mean_loss(base, general, pad_id, args.eval_batch_size),
            "B": mean_loss(base, task_rows, pad_id, args.eval_batch_size),
        }

    for r in results:
        r["A_rise"] = r["A_after"] - before["A"]
        r["B_drop"] = before["B"] - r["B_after"]
    report = {
        "command": "OMP_NUM_THREADS={} .venv/bin/python {}".format(
            os.environ.get("OMP_NUM_THREADS", "?"), " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
        ),
        "model": SMOLLM2_ALIAS,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "held_out": {"A_conversations": len(general), "B_problems": len(task_rows)},
        "machine": {"torch_threads": torch.get_num_threads(), "platform": platform.platform()},
        "before": before,
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"\nbase model: A (chatterbot) loss {before['A']:.4f}, B (GSM8K) loss {before['B']:.4f}")
    print(f"{'method':<10} {'A after':>8} {'A rise':>8} {'B after':>8} {'B drop':>8} {'train s':>8}")
    for r in results:
        print(
            f"{r['method']:<10} {r['A_after']:>8.4f} {r['A_rise']:>+8.4f} {r['B_after']:>8.4f} "
            f"{r['B_drop']:>+8.4f} {r['train_seconds']:>8.1f}"
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
