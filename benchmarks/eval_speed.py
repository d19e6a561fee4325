"""How fast does `lmtune evaluate` answer GSM8K on this CPU, and what does batching buy?

Drives the product's own generation path (`lmtune.runtime.generation.greedy_generate`, what the
evaluation suites and the export check call: the one generation engine, batched in order of prompt
length) on the real SmolLM2-135M-Instruct and the packaged GSM8K test problems (`gsm8k` task alias),
with the chat template and stop tokens a run uses. Two measurements, each on the same problems:

1. batched (`--batch-size`, default 16) against one prompt at a time, on the first `--compare` problems:
   seconds, the speed-up, and how many greedy answers are token for token identical;
2. `--all`: every one of the 1,319 problems, batched: total seconds, answers per second and exact match.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/eval_speed.py --compare 32 [--all]

Writes benchmarks/results/eval_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmtune.evaluate.metrics import score
from lmtune.evaluate.tasks import read_task_file
from lmtune.runtime.generation import greedy_generate, render_prompt
from lmtune.runtime.load import SMOLLM2_ALIAS, resolve_model_path
from lmtune.runtime.stops import stop_token_ids

OUT = Path(__file__).parent / "results" / "eval_speed.json"


def answers(
    model: Any, tok: Any, prompts: list[str], batch_size: int, max_new_tokens: int
) -> tuple[list[Any], float]:
    started = time.perf_counter()
    done = greedy_generate(
        model,
        tok,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        stop_ids=stop_token_ids(tok),
    )
    return done, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--compare", type=int, default=32, help="problems for batched vs one at a time")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--all", action="store_true", help="also answer all 1,319 problems, batched")
    args = parser.parse_args()

    folder = resolve_model_path(SMOLLM2_ALIAS)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    items = read_task_file("gsm8k")
    prompts = [render_prompt(tok, item.messages) for item in items]
    subset = prompts[: args.compare]

    batched, t_batched = answers(model, tok, subset, args.batch_size, args.max_new_tokens)
    single, t_single = answers(model, tok, subset, 1, args.max_new_tokens)
    same = sum(a.token_ids == b.token_ids for a, b in zip(batched, single, strict=True))
    result: dict[str, Any] = {
        "device": f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "date": time.strftime("%Y-%m-%d"),
        "model": SMOLLM2_ALIAS,
        "max_new_tokens": args.max_new_tokens,
        "compare": {
            "problems": len(subset),
            "batch_size": args.batch_size,
            "batched_s": round(t_batched, 1),
            "one_at_a_time_s": round(t_single, 1),
            "speedup": round(t_single / t_batched, 2),
            "identical_answers": same,
            "generated_tokens": sum(a.completion_tokens for a in batched),
        },
    }
    print(json.dumps(result["compare"], indent=2), flush=True)
    if args.all:
        every, t_all = answers(model, tok, prompts, args.batch_size, args.max_new_tokens)
        result["all"] = {
            "problems": len(prompts),
            "batch_size": args.batch_size,
            "seconds": round(t_all, 1),
            "answers_per_s": round(len(prompts) / t_all, 3),
            "generated_tokens": sum(a.completion_tokens for a in every),
            "exact_match": round(
                sum(score(a.text, item.reference).correct for a, item in zip(every, items, strict=True))
                / len(items),
                4,
            ),
        }
        print(json.dumps(result["all"], indent=2), flush=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
