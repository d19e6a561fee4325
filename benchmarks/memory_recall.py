"""Memory experts vs LoRA at the same trainable-parameter budget: recall of injected facts, and the cost
to everything else. Real SmolLM2-135M-Instruct, offline, CPU.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/memory_recall.py      # the first layout, no replay
    # the committed results (docs/methods.md, "Memory experts", has every command): e.g.
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/memory_recall.py --facts 200 --epochs 10 --replay 0.25 \
        --gate --layers 8 16 24 --num-keys 104 --phrasings 6
    # each method in its own process, then one report (same settings, hence the same batches):
    .venv/bin/python benchmarks/memory_recall.py --combine mem.json lora.json --out results.json
    # smoke run on the tiny random model (seconds; no meaning in the numbers)
    .venv/bin/python benchmarks/memory_recall.py --model tiny --facts 8 --epochs 1 --general 4 \
        --layers -1 --num-keys 8 --topk 4 --key-dim 16 --value-dim 16 --out /tmp/smoke.json

1. `--facts` made-up facts (benchmarks/synthetic_facts.py: invented entity -> invented attribute, four
   relations), each trained as a chat (short system turn, question, answer sentence) with an
   assistant-only loss. Each of `--epochs` epochs asks every fact once, cycling through its
   `--phrasings` (3 to 6) training phrasings, plus `--replay` x facts real chatterbot exchanges (a
   fresh sample each epoch, never one of the general-loss exchanges of step 4), in a seeded shuffled
   order; batches of `--batch-size`.
2. Each method trains through lmtune's own training entry, `lmtune.train.sft.run` (what `lmtune train`
   runs: the data stage templates the chats from a JSONL file, assistant-only labels; the method's
   preparation; the preflight; transformers' Trainer with lmtune's collator, callbacks and NaN guard;
   the final save), from the same base, on the same batches in the same order for the same steps: the
   JSONL is laid out so that the Trainer's seeded shuffle yields the planned order
   (benchmarks/trainer_support.py), and a forward hook checks it (`batches_as_planned` in the
   report). Trainer settings: AdamW without weight decay (the method's own parameter groups), linear
   warm-up over 5% of the steps then linear decay, gradients clipped at 1, float32 weights (on CUDA
   the Trainer adds bf16 autocast, as `lmtune train` does). The methods: memory experts, and LoRA on
   every linear layer at the rank whose parameter count is nearest the memory's (both exact counts are
   reported).
3. Exact recall, on the trained weights loaded back through the method (`lmtune.weights.load.load_tuned`,
   as evaluation and export load them): the share of facts whose greedy answer (up to 20 new tokens,
   `lmtune.runtime.generation.greedy_generate`) contains the attribute, each fact asked once in one of
   its 2 held-out phrasings (never trained); for reference also in a trained phrasing, on a sample of 50
   facts; the base model is asked the same held-out sample. Also the share of held-out answers that
   contain the trained answer sentence up to the attribute.
4. General held-out loss (`lmtune.evaluate.loss.eval_loss`, the evaluation stage's eval loss):
   `--general` real chatterbot exchanges (assistant-only token-mean NLL), before and after, so the
   table shows what each method cost the rest of the model's behaviour.

Prints a table and writes benchmarks/results/memory_recall.json. The result files committed before the
benchmark trained through `sft.run` came from its own AdamW loop: the same batches in the same order
and the same optimizer settings, except that the loop's warm-up started at lr/warm-up steps where the
Trainer's starts at 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from synthetic_facts import Fact, held_out, make_facts, training_epochs
from trainer_support import FedBatches, batches_of, trainer_layout
from transformers import PreTrainedTokenizerBase

from lmtune.config.loader import build
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.methods.memory_experts import MemoryExpertsConfig
from lmtune.config.model import ModelConfig
from lmtune.config.run import RunConfig
from lmtune.data.encoding.template import encode_conversation
from lmtune.data.formats.assets import read_chatterbot
from lmtune.data.records import RawItem
from lmtune.evaluate.loss import eval_loss
from lmtune.methods.memory_experts import parameter_count
from lmtune.runtime.generation import greedy_generate, render_prompt
from lmtune.runtime.load import SMOLLM2_ALIAS, load_tokenizer
from lmtune.runtime.records import TrainSummaryLog
from lmtune.runtime.rundir import RunDir
from lmtune.runtime.stops import stop_token_ids
from lmtune.train import sft
from lmtune.weights.load import load_base, load_tuned

RESULTS = Path(__file__).resolve().parent / "results" / "memory_recall.json"
COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/memory_recall.py"
TARGET_RECALL = 0.95
"""The held-out recall the memory is asked to reach."""
WIDTHS = (11, 17, 16, 22, 9)
"""Widths of the table's number columns."""


def _rows(tokenizer: PreTrainedTokenizerBase, chats: list[list[dict[str, str]]]) -> list[dict[str, Any]]:
    rows = []
    for chat in chats:
        enc = encode_conversation(tokenizer, chat)
        rows.append(
            {"input_ids": enc.input_ids, "labels": enc.labels, "attention_mask": [1] * len(enc.input_ids)}
        )
    return rows


def general_chats(n: int, seed: int) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]:
    """Real chatterbot exchanges (a user turn and the assistant's reply): `n` for the general loss (a
    seeded sample), and the replay pool: every other exchange whose text differs from all of those."""
    chats = [
        item.value["messages"][:2]
        for item in read_chatterbot()
        if isinstance(item, RawItem) and len(item.value["messages"]) >= 2
    ]
    held = random.Random(seed).sample(chats, n)
    held_text = {json.dumps(c, sort_keys=True) for c in held}
    pool = [c for c in chats if json.dumps(c, sort_keys=True) not in held_text]
    return held, pool


def write_chats(path: Path, chats: list[list[dict[str, str]]]) -> None:
    """The chats as a `messages` JSONL file, one per line, in the given order."""
    with path.open("w", encoding="utf-8") as f:
        for chat in chats:
            f.write(json.dumps({"messages": chat}) + "\n")


def run_config(
    args: argparse.Namespace, name: str, method: Any, lr: float, steps: int, data: Path
) -> RunConfig:
    """What `lmtune train` gets for one method: the chats of `data`, all for training (no eval split,
    no PII scrubbing of the made-up facts), the benchmark's optimizer settings, float32 weights."""
    return build(
        RunConfig,
        {
            "name": name,
            "output_dir": str(args.work / "runs"),
            "seed": args.seed,
            "model": {"path": args.model, "dtype": "float32"},
            "data": {
                "sources": [{"path": str(data), "format": "messages"}],
                "eval_size": 0,
                "curation": {"pii": {"enabled": False}},
            },
            "method": method.model_dump(mode="json"),
            "trainer": {
                "max_steps": steps,
                "batch_size": args.batch_size,
                "learning_rate": lr,
                "lr_scheduler": "linear",
                "warmup_steps": max(1, steps // 20),
                "weight_decay": 0.0,
                "max_grad_norm": 1.0,
                "logging_steps": 25,
                "save_steps": steps + 1,  # no checkpoint: only the final weights are measured
                "gradient_checkpointing": False,
                "device": args.device,
            },
        },
    )


def train(cfg: RunConfig, planned: list[list[list[int]]]) -> dict[str, Any]:
    """Train `cfg` with `lmtune.train.sft.run`, watching what the Trainer fed (`FedBatches`). Training
    seconds: the Trainer's `train_runtime` (metrics.jsonl); run seconds: the whole `sft.run`.

    Raises:
        SystemExit: the data stage did not keep every chat (the planned order would not hold).
    """
    probe = FedBatches()
    t0 = time.perf_counter()
    result = sft.run(cfg, callbacks=[probe])
    run_s = time.perf_counter() - t0
    rundir = RunDir.for_config(cfg)
    stats = json.loads((rundir.data / "stats.json").read_text(encoding="utf-8"))
    rows = sum(len(b) for b in planned)
    if stats["split"]["train"] != rows:
        raise SystemExit(f"{cfg.name}: the data stage kept {stats['split']['train']} of {rows} chats")
    losses = probe.loss_values()
    runtime = [r.train_runtime for r in rundir.read_metrics() if isinstance(r, TrainSummaryLog)]
    return {
        "result": result,
        "run_seconds": run_s,
        "train_seconds": runtime[-1] if runtime and runtime[-1] is not None else run_s,
        "trainable_parameters": probe.trainable_params,
        "losses": losses,
        "batches_as_planned": probe.as_planned(planned),
    }


def recall(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, asked: list[tuple[Fact, list[dict[str, str]]]]
) -> tuple[float, float, list[dict[str, str]]]:
    """Share of questions whose greedy answer contains the fact's attribute (case-insensitive), share
    whose answer contains the fact's answer sentence up to the attribute ("The capital of X is": the
    right relation and entity, whatever the attribute), and the misses."""
    prompts = [render_prompt(tokenizer, chat[:-1]) for _, chat in asked]
    answers = greedy_generate(
        model, tokenizer, prompts, max_new_tokens=20, batch_size=100, stop_ids=stop_token_ids(tokenizer)
    )
    misses = [
        {"question": chat[-2]["content"], "expected": fact.attribute, "answer": a.text}
        for (fact, chat), a in zip(asked, answers, strict=True)
        if fact.attribute.lower() not in a.text.lower()
    ]
    framed = sum(
        fact.answer().split(fact.attribute)[0].strip().lower() in a.text.lower()
        for (fact, _), a in zip(asked, answers, strict=True)
    )
    return 1 - len(misses) / len(asked), framed / len(asked), misses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facts", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5, help="each epoch asks every fact once")
    parser.add_argument(
        "--phrasings", type=int, default=3, help="training phrasings per fact (3 to 6; the held-out 2 never)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--general", type=int, default=100, help="chatterbot exchanges for the general loss")
    parser.add_argument(
        "--replay",
        type=float,
        default=0.0,
        help="per epoch, this x facts chatterbot exchanges mixed in (never the general-loss ones)",
    )
    parser.add_argument("--memory-lr", type=float, default=1e-3, help="values train at this x value_lr_ratio")
    parser.add_argument("--lora-lr", type=float, default=3e-3)
    parser.add_argument("--layers", type=int, nargs="+", default=[-4], help="memory blocks")
    parser.add_argument("--num-keys", type=int, default=190)
    parser.add_argument("--topk", type=int, default=32)
    parser.add_argument("--value-dim", type=int, default=64)
    parser.add_argument("--value-lr-ratio", type=float, default=300.0)
    parser.add_argument(
        "--gate", action=argparse.BooleanOptionalAction, default=False, help="memory layers with a gate"
    )
    parser.add_argument("--query-noise", type=float, default=0.0, help="routing-query noise in training")
    parser.add_argument("--key-dim", type=int, default=128)
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda (float32 weights; no TF32; on cuda bf16 autocast)"
    )
    parser.add_argument("--model", default=SMOLLM2_ALIAS, help="model.path (e.g. `tiny` for a smoke run)")
    parser.add_argument("--work", type=Path, help="where the runs go (kept); default: a temporary folder")
    parser.add_argument("--methods", nargs="+", default=["memory_experts", "lora"])
    parser.add_argument("--out", type=Path, help=f"where the report goes (default {RESULTS.name})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--combine", type=Path, nargs="+", help="merge these result files (same settings) into --out and stop"
    )
    parser.add_argument(
        "--seeds",
        type=Path,
        nargs="+",
        help="result files of one setting at several seeds: per-seed table and summary (to --out if given)",
    )
    args = parser.parse_args(argv)
    if args.combine:
        combine(args.combine, args.out or RESULTS)
        return
    if args.seeds:
        seed_table(args.seeds, args.out)
        return
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="memory-recall-") as tmp:
            args.work = Path(tmp)
            measure(args)
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        measure(args)


def measure(args: argparse.Namespace) -> None:
    """Train each of `args.methods` through `sft.run` on the same batches, measure, write the report."""
    started = time.perf_counter()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)

    base_cfg = ModelConfig(path=args.model, dtype="float32")
    tokenizer = load_tokenizer(base_cfg)
    facts = make_facts(args.facts, seed=args.seed)
    rng = random.Random(args.seed)
    general_eval, pool = general_chats(args.general, args.seed)
    replay_per_epoch = round(args.replay * args.facts)
    order: list[list[dict[str, str]]] = []
    for epoch in training_epochs(facts, args.epochs, args.phrasings):
        chats = [chat for _, chat in epoch] + rng.sample(pool, replay_per_epoch)
        rng.shuffle(chats)
        order += chats
    # The batches, as the old loop cut them; the Trainer is made to feed them in this order.
    planned = batches_of([r["input_ids"] for r in _rows(tokenizer, order)], args.batch_size)
    data = args.work / "facts.jsonl"
    write_chats(data, trainer_layout(order, args.seed))
    steps = len(planned)
    asked = held_out(facts)
    # Recall in a phrasing that was trained (the last epoch's), on a sample: memorised vs generalised.
    seen = training_epochs(facts, args.epochs, args.phrasings)[-1][:: max(1, args.facts // 50)]
    general = _rows(tokenizer, general_eval)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    base = load_base(base_cfg).to(device)
    hidden = base.config.hidden_size
    # LoRA on every linear layer of the blocks (lmtune's default `all-linear`): rank r costs r x (in + out)
    # per linear; the rank whose count is nearest the memory's is used (both exact counts are reported).
    per_rank = sum(
        m.in_features + m.out_features
        for n, m in base.named_modules()
        if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")
    )
    base_general = eval_loss(base, general, batch_size=16, pad_id=pad).loss
    base_recall, _, _ = recall(base, tokenizer, asked[:: max(1, args.facts // 50)])
    del base
    print(f"base: general loss {base_general:.4f}, held-out recall {base_recall:.1%} (sample)", flush=True)

    memory_cfg = MemoryExpertsConfig(
        layers=args.layers,
        num_keys=args.num_keys,
        topk=args.topk,
        value_dim=args.value_dim,
        value_lr_ratio=args.value_lr_ratio,
        gate=args.gate,
        query_noise=args.query_noise,
        key_dim=args.key_dim,
    )
    rank = max(1, round(parameter_count(memory_cfg, hidden) / per_rank))
    configs: dict[str, tuple[Any, float]] = {
        "memory_experts": (memory_cfg, args.memory_lr),
        "lora": (LoraConfig(rank=rank, alpha=2 * rank), args.lora_lr),
    }
    results: dict[str, Any] = {}
    for name in args.methods:
        method, lr = configs[name]
        cfg = run_config(args, name, method, lr, steps, data)
        print(f"{name}: lr {lr}, {steps} steps through lmtune.train.sft.run", flush=True)
        trained = train(cfg, planned)
        losses, count = trained["losses"], trained["trainable_parameters"]
        tuned = load_tuned(trained["result"].weights_path, cfg.weights)
        model = tuned.model.to(device)
        held, framed, misses = recall(model, tokenizer, asked)
        seen_recall, _, _ = recall(model, tokenizer, seen)
        general_after = eval_loss(model, general, batch_size=16, pad_id=pad).loss
        results[name] = {
            "config": method.model_dump(mode="json"),
            "learning_rate": lr,
            "trainable_parameters": count,
            "train_seconds": round(trained["train_seconds"], 1),
            "run_seconds": round(trained["run_seconds"], 1),
            "final_train_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
            "batches_as_planned": trained["batches_as_planned"],
            "recall_held_out": held,
            "answer_frame_held_out": framed,
            "recall_trained_phrasing": seen_recall,
            "general_loss_before": base_general,
            "general_loss_after": general_after,
            "general_loss_change": general_after - base_general,
            "misses_sample": misses[:10],
        }
        print(
            f"{name}: {count:,} trainable parameters, batches as planned: {trained['batches_as_planned']}; "
            f"recall held-out {held:.1%} (answer frame {framed:.1%}; trained phrasing {seen_recall:.1%}), "
            f"general loss {base_general:.4f} -> {general_after:.4f}, {trained['train_seconds']:.0f} s",
            flush=True,
        )
        del model, tuned

    counts = [r["trainable_parameters"] for r in results.values()]
    report = {
        "command": " ".join([COMMAND, *sys.argv[1:]]),
        "seed": args.seed,
        "model": args.model,
        "facts": args.facts,
        "epochs": args.epochs,
        "training_phrasings": args.phrasings,
        "steps": steps,
        "batch_size": args.batch_size,
        "held_out_questions": len(asked),
        "trained_phrasing_questions": len(seen),
        "general_exchanges": args.general,
        "replay_per_epoch": replay_per_epoch,
        "replay_pool": len(pool),
        "base_general_loss": base_general,
        "base_recall_held_out_sample": base_recall,
        "budget_ratio": max(counts) / min(counts) if counts else math.nan,
        "methods": results,
        "machine": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s)"
        ),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    write_report(report, args.out or RESULTS)


def write_report(report: dict[str, Any], out: Path) -> None:
    """Write `report` as JSON to `out` and print its table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print()
    header = ("method", "trainable", "recall held-out", "recall trained", "general loss", "train s")
    print(f"{header[0]:<16}" + "".join(f"{h:>{w}}" for h, w in zip(header[1:], WIDTHS, strict=True)))
    base_recall, base_general = report["base_recall_held_out_sample"], report["base_general_loss"]
    print(f"{'base':<16}{0:>11,}{base_recall:>17.1%}{'':>16}{base_general:>22.4f}{'':>9}")
    for name, r in report["methods"].items():
        change = f"{r['general_loss_after']:.4f} ({r['general_loss_change']:+.4f})"
        print(
            f"{name:<16}{r['trainable_parameters']:>11,}{r['recall_held_out']:>17.1%}"
            f"{r['recall_trained_phrasing']:>16.1%}{change:>22}{r['train_seconds']:>9.0f}"
        )
    print(f"\nwrote {out} ({report['total_seconds']:.0f} s)")


SAME = (
    "model",
    "facts",
    "epochs",
    "training_phrasings",
    "steps",
    "batch_size",
    "held_out_questions",
    "general_exchanges",
    "replay_per_epoch",
    "replay_pool",
    "base_general_loss",
)
"""Fields two runs must share to be combined: then both trained on the same batches (the order depends
only on these settings and the seed) and were measured on the same questions."""


SEED_DEPENDENT = ("base_general_loss", "replay_pool")
"""Fields of `SAME` that change with the seed (the general-loss sample, hence the replay pool)."""


def read_reports(paths: list[Path], keys: Sequence[str], refusal: str) -> list[dict[str, Any]]:
    """The result files `paths`, read.

    Raises:
        SystemExit: a file differs from the first in one of `keys` ("<file>: <refusal> <first>: ...").
    """
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    for path, r in zip(paths[1:], reports[1:], strict=True):
        differ = [k for k in keys if r.get(k) != reports[0].get(k)]
        if differ:
            raise SystemExit(f"{path}: {refusal} {paths[0]}: {', '.join(differ)} differ")
    return reports


def combine(paths: list[Path], out: Path) -> None:
    """One report from runs of single methods made with the same settings (e.g. two processes, one per
    method, run side by side). Raises SystemExit when the settings differ."""
    reports = read_reports(paths, SAME, "cannot combine with")
    merged = dict(reports[0])
    merged["command"] = " && ".join(r["command"] for r in reports)
    merged["methods"] = {name: m for r in reports for name, m in r["methods"].items()}
    counts = [m["trainable_parameters"] for m in merged["methods"].values()]
    merged["budget_ratio"] = max(counts) / min(counts)
    merged["total_seconds"] = sum(r["total_seconds"] for r in reports)
    write_report(merged, out)


def report_seed(report: dict[str, Any]) -> int:
    """The seed a report was made with: its `seed` field, or (files written before it existed) the
    `--seed` of its command (0 when absent)."""
    if "seed" in report:
        return int(report["seed"])
    words = report["command"].split()
    return int(words[words.index("--seed") + 1]) if "--seed" in words else 0


def seed_table(paths: list[Path], out: Path | None) -> dict[str, Any]:
    """Per seed, each method's held-out recall and general-loss change, and for each method the mean,
    median and minimum recall over the seeds and how many reach `TARGET_RECALL`; with memory experts and
    LoRA at one seed, whether the memory's general-loss change is the smaller (in size). Printed, and
    written to `out` as JSON when given.

    Raises:
        SystemExit: the files differ in a setting other than the seed (`SAME` less `SEED_DEPENDENT`, plus
            each method's config), or one seed has a method twice.
    """
    fixed = [k for k in SAME if k not in SEED_DEPENDENT]
    reports = read_reports(paths, fixed, "not the same setting as")
    configs: dict[str, Any] = {}
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    for path, r in zip(paths, reports, strict=True):
        seed = report_seed(r)
        for name, m in r["methods"].items():
            if configs.setdefault(name, m["config"]) != m["config"]:
                raise SystemExit(f"{path}: {name} has another config than in the other files")
            if name in runs.setdefault(seed, {}):
                raise SystemExit(f"{path}: seed {seed} has {name} twice")
            runs[seed][name] = m
    methods_seen = sorted({name for by_method in runs.values() for name in by_method})
    summary: dict[str, Any] = {"files": [p.name for p in paths], "target_recall": TARGET_RECALL}
    summary["methods"] = {}
    for name in methods_seen:
        recalls = [by_method[name]["recall_held_out"] for by_method in runs.values() if name in by_method]
        summary["methods"][name] = {
            "seeds": len(recalls),
            "recall_mean": statistics.fmean(recalls),
            "recall_median": statistics.median(recalls),
            "recall_min": min(recalls),
            "seeds_at_target": sum(r >= TARGET_RECALL for r in recalls),
        }
    pairs = [m for m in runs.values() if {"memory_experts", "lora"} <= m.keys()]
    summary["paired_seeds"] = len(pairs)
    summary["memory_smaller_general_change"] = sum(
        abs(m["memory_experts"]["general_loss_change"]) < abs(m["lora"]["general_loss_change"]) for m in pairs
    )
    summary["per_seed"] = {
        str(seed): {
            name: {k: m[k] for k in ("recall_held_out", "general_loss_change", "trainable_parameters")}
            for name, m in sorted(by_method.items())
        }
        for seed, by_method in sorted(runs.items())
    }
    print(f"{'seed':<6}" + "".join(f"{name + ' recall':>24}{'general change':>16}" for name in methods_seen))
    for seed, by_method in sorted(runs.items()):
        cells = [
            f"{by_method[n]['recall_held_out']:>24.1%}{by_method[n]['general_loss_change']:>+16.4f}"
            if n in by_method
            else f"{'':>40}"
            for n in methods_seen
        ]
        print(f"{seed:<6}" + "".join(cells))
    for name, agg in summary["methods"].items():
        print(
            f"{name}: mean {agg['recall_mean']:.1%}, median {agg['recall_median']:.1%}, min "
            f"{agg['recall_min']:.1%}; {agg['seeds_at_target']} of {agg['seeds']} seeds at "
            f">= {TARGET_RECALL:.0%}"
        )
    if pairs:
        print(
            "memory experts' general-loss change smaller than LoRA's in "
            f"{summary['memory_smaller_general_change']} of {len(pairs)} seeds"
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    main()
