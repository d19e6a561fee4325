"""SFT data stage throughput: lmtune's `prepare` against TRL's SFT preprocessing, same data, one run.

Data: real conversations, repeated with small deterministic variations until `--n` (default 100,000):
the GSM8K test set (question -> worked answer, ~200 tokens) and the English chatterbot corpus (each
exchange cut into its consecutive user -> assistant pairs, short). Repetition k of a base conversation
gets one of several system prompts (or none: SmolLM2's template then injects its default one) and one
of several user-turn prefixes, so no two rows render the same. Every conversation has exactly one
assistant turn, the last, so TRL's prompt-completion format (prompt = the turns before it, completion =
that turn, `completion_only_loss=True`) trains on the same turn lmtune trains on.

Both sides start from a JSONL file of the same conversations (lmtune: `{"messages": [...]}`; TRL:
`{"prompt": [...], "completion": [...]}`) and use the SmolLM2-135M-Instruct tokenizer and the same
`num_proc`:

- lmtune: `lmtune.data.prepare.prepare` (read + validate, template + mask, split 90/10, save both Arrow
  splits, rejects and stats); curation off (PII scrubbing is on by default: it is turned off here
  because TRL has no such step).
- TRL: `datasets.load_dataset("json")` + `SFTTrainer._prepare_dataset` (the method SFTTrainer's
  constructor runs on its datasets), on a trainer built once beforehand (untimed) with a 2-row dataset;
  a fresh datasets cache folder, so nothing is reused.

Both sides first run once, untimed, on the first 1,000 conversations (first-use costs such as imports
and template compilation would otherwise fall on whichever side runs first).

Checks: for every row, the input ids are identical and so are the labels, except for one principled
difference: TRL's completion is everything after the prompt, so it also labels the "\\n" the ChatML
template writes after the final `<|im_end|>`; lmtune labels the content and `<|im_end|>` (the token the
model must stop on) and not the newline after it. The check asserts that the last token of every row
is that newline, masks it in TRL's labels, then requires equality. Prints examples/s for both and the
ratio, and writes benchmarks/results/data_throughput.json. With `--twice` each side runs twice in the
order TRL, lmtune, lmtune, TRL (on a machine shared with other work the load drifts; this order gives
both sides the same drift) and the rates are taken from the mean times.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_throughput.py --n 100000 --num-proc 2 --twice

With `--memory N [N ...]` it measures memory instead: for each N, a fresh process runs lmtune's prepare
on N conversations while a thread samples its anonymous resident memory (RssAnon: not the file-backed
pages of the memory-mapped Arrow files) every 50 ms; writes benchmarks/results/data_memory.json.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_throughput.py --memory 20000 80000 320000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "data_throughput.json"

SYSTEM_PROMPTS = [
    None,  # SmolLM2's template injects its default system prompt
    "You are a helpful assistant.",
    "You are a careful tutor. Explain each step.",
    "Answer briefly and politely.",
    "You are a friendly chat partner.",
]
USER_PREFIXES = ["", "Question: ", "Please help: ", "Hi! ", "Quick one. ", "Can you answer this? "]


def base_conversations() -> list[tuple[str, str]]:
    """(user, assistant) pairs: GSM8K question -> answer, then chatterbot consecutive exchanges."""
    import yaml

    from lmtune.data.formats import assets

    pairs = []
    for line in assets.gsm8k_path().read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        pairs.append((row["question"], row["answer"]))
    for path in assets.chatterbot_files():
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for turns in doc.get("conversations", []):
            texts = [str(t).strip() for t in turns]
            for k in range(0, len(texts) - 1, 2):
                if texts[k] and texts[k + 1]:
                    pairs.append((texts[k], texts[k + 1]))
    return pairs


def conversations(n: int) -> list[list[dict[str, str]]]:
    """`n` conversations: the base pairs in order, repetition k varied by system prompt and user prefix."""
    base = base_conversations()
    out = []
    for i in range(n):
        k, (user, answer) = divmod(i, len(base))[0], base[i % len(base)]
        system = SYSTEM_PROMPTS[k % len(SYSTEM_PROMPTS)]
        prefix = USER_PREFIXES[(k // len(SYSTEM_PROMPTS)) % len(USER_PREFIXES)]
        conv = [{"role": "system", "content": system}] if system else []
        conv += [{"role": "user", "content": prefix + user}, {"role": "assistant", "content": answer}]
        out.append(conv)
    return out


def write_files(convs: list[list[dict[str, str]]], folder: Path) -> tuple[Path, Path]:
    ours, theirs = folder / "lmtune.jsonl", folder / "trl.jsonl"
    with ours.open("w", encoding="utf-8") as a, theirs.open("w", encoding="utf-8") as b:
        for conv in convs:
            a.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
            b.write(json.dumps({"prompt": conv[:-1], "completion": conv[-1:]}, ensure_ascii=False) + "\n")
    return ours, theirs


def run_lmtune(path: Path, folder: Path, tokenizer: Any, num_proc: int, max_length: int) -> dict[str, Any]:
    from lmtune.config.run import RunConfig
    from lmtune.data.prepare import prepare
    from lmtune.runtime.rundir import RunDir

    cfg = RunConfig.model_validate(
        {
            "output_dir": str(folder / "runs"),
            "name": "bench",
            "data": {
                "sources": [{"path": str(path)}],
                "max_length": max_length,
                "num_proc": num_proc,
                "curation": {"pii": {"enabled": False}},
            },
        }
    )
    t0 = time.perf_counter()
    prepared = prepare(cfg.data, RunDir.for_config(cfg), tokenizer, seed=cfg.seed)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "prepared": prepared, "seed": cfg.seed, "eval_size": cfg.data.eval_size}


def run_trl(path: Path, folder: Path, tokenizer: Any, model_dir: str, num_proc: int, max_length: int) -> dict:
    from datasets import Dataset, load_dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(folder / "trl_out"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        dataset_num_proc=num_proc,
        completion_only_loss=True,
        max_length=max_length,
        report_to=[],
    )
    first = json.loads(path.read_text(encoding="utf-8").split("\n", 1)[0])
    tiny = Dataset.from_list([first, first])
    trainer = SFTTrainer(model=model_dir, args=args, train_dataset=tiny, processing_class=tokenizer)
    cache = folder / "hf_cache"
    t0 = time.perf_counter()
    raw = load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))
    prepared = trainer._prepare_dataset(raw, tokenizer, trainer.args, False, None, "train")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "prepared": prepared}


def compare(ours: Any, theirs: Any, seed: int, eval_size: float, newline_id: int) -> dict[str, Any]:
    """Reassemble lmtune's train + eval rows in reading order and compare ids and labels with TRL's."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from lmtune.data.split import split_indices

    n = len(theirs)
    train_idx, eval_idx = split_indices(n, eval_size, seed)
    if len(ours.train) + len(ours.eval) != n:
        raise AssertionError(f"lmtune kept {len(ours.train)} + {len(ours.eval)} rows, TRL {n}")
    order = np.argsort(np.array(train_idx + eval_idx))  # position of row i in train ++ eval

    def column(ds: Any, name: str) -> pa.ChunkedArray:
        return ds.data.table.column(name)

    def ours_column(name: str) -> pa.Array:
        both = pa.chunked_array(column(ours.train, name).chunks + column(ours.eval, name).chunks)
        return both.take(pa.array(order)).combine_chunks()

    ids_a, ids_b = ours_column("input_ids"), column(theirs, "input_ids").combine_chunks()
    lab_a, lab_b = ours_column("labels"), column(theirs, "labels").combine_chunks()
    ids_equal = ids_a.cast(pa.list_(pa.int64())).equals(ids_b.cast(pa.list_(pa.int64())))
    lengths = pc.list_value_length(ids_b).to_numpy()
    ends = np.cumsum(lengths) - 1
    flat_ids = pc.list_flatten(ids_b).to_numpy()
    flat_b = pc.list_flatten(lab_b).to_numpy().astype(np.int64).copy()
    trailing_newline = bool((flat_ids[ends] == newline_id).all() and (flat_b[ends] == newline_id).all())
    flat_b[ends] = -100  # the principled difference (module doc)
    flat_a = pc.list_flatten(lab_a).to_numpy().astype(np.int64)
    same_len = bool((pc.list_value_length(lab_a).to_numpy() == lengths).all())
    labels_equal = same_len and bool((flat_a == flat_b).all())
    rows_differing = 0
    if not labels_equal and same_len:
        bad = np.flatnonzero(flat_a != flat_b)
        rows_differing = len(np.unique(np.searchsorted(ends, bad)))
    return {
        "rows_compared": n,
        "tokens_compared": int(lengths.sum()),
        "input_ids_identical": ids_equal,
        "trl_last_token_is_labelled_newline": trailing_newline,
        "labels_identical_after_masking_that_newline": labels_equal,
        "rows_with_label_differences": rows_differing,
        "labelled_tokens": int((flat_a != -100).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="conversations (default 100,000)")
    parser.add_argument("--num-proc", type=int, default=2, help="worker processes, both sides")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument(
        "--twice",
        action="store_true",
        help="run each side twice (TRL, lmtune, lmtune, TRL); rates from the means",
    )
    parser.add_argument(
        "--memory",
        type=int,
        nargs="+",
        metavar="N",
        help="instead: lmtune's peak anonymous memory preparing N conversations, one fresh process per N",
    )
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(_memory_child(args.memory_child, args.num_proc, args.max_length)))
        return 0
    if args.memory:
        return _memory(args.memory, args.num_proc, args.max_length, argv)

    from transformers import AutoTokenizer

    from lmtune.runtime.load import SMOLLM2_ALIAS, resolve_model_path

    model_dir = str(resolve_model_path(SMOLLM2_ALIAS))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    folder = Path(tempfile.mkdtemp(prefix="lmtune-data-bench-"))
    try:
        convs = conversations(args.n)
        ours_file, trl_file = write_files(convs, folder)
        print(f"{args.n} conversations written to {folder}", flush=True)
        # untimed warm-up of both sides on 1,000 rows (first-use costs: imports, template compilation)
        warm = folder / "warm"
        warm.mkdir()
        warm_ours, warm_trl = write_files(convs[:1000], warm)
        run_trl(warm_trl, warm / "trl", tokenizer, model_dir, args.num_proc, args.max_length)
        run_lmtune(warm_ours, warm / "lmtune", tokenizer, args.num_proc, args.max_length)
        # A B B A: on a shared machine the load drifts; this order gives both sides the same drift
        trl_s, ours_s = [], []
        for side in ("trl", "lmtune", "lmtune", "trl")[: 4 if args.twice else 2]:
            if side == "trl":
                trl = run_trl(
                    trl_file,
                    folder / f"trl{len(trl_s)}",
                    tokenizer,
                    model_dir,
                    args.num_proc,
                    args.max_length,
                )
                trl_s.append(trl["seconds"])
            else:
                ours = run_lmtune(
                    ours_file, folder / f"lmtune{len(ours_s)}", tokenizer, args.num_proc, args.max_length
                )
                ours_s.append(ours["seconds"])
            print(f"{side}: {(trl_s if side == 'trl' else ours_s)[-1]:.1f} s", flush=True)
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
        check = compare(ours["prepared"], trl["prepared"], ours["seed"], ours["eval_size"], newline[0])
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    ours_rate, trl_rate = args.n / statistics.mean(ours_s), args.n / statistics.mean(trl_s)
    result = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_throughput.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "conversations": args.n,
        "num_proc": args.num_proc,
        "max_length": args.max_length,
        "tokenizer": "SmolLM2-135M-Instruct",
        "lmtune": {"seconds": [round(x, 2) for x in ours_s], "examples_per_s": round(ours_rate, 1)},
        "trl": {"seconds": [round(x, 2) for x in trl_s], "examples_per_s": round(trl_rate, 1)},
        "ratio": round(ours_rate / trl_rate, 3),
        "check": check,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "2-core machine shared with other benchmarks during the run",
        },
        "versions": _versions(),
    }
    print(json.dumps({k: result[k] for k in ("lmtune", "trl", "ratio", "check")}, indent=2))
    print(f"throughput ratio lmtune / TRL: {result['ratio']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    ok = check["input_ids_identical"] and check["labels_identical_after_masking_that_newline"]
    return 0 if ok else 1


def _memory(sizes: list[int], num_proc: int, max_length: int, argv: list[str] | None) -> int:
    """Peak anonymous (not file-backed) resident memory of the process running `prepare`, per size."""
    import subprocess

    rows = []
    for n in sizes:
        folder = Path(tempfile.mkdtemp(prefix="lmtune-data-mem-"))
        try:
            write_files(conversations(n), folder)
            cmd = [sys.executable, __file__, "--memory-child", str(folder), "--num-proc", str(num_proc)]
            cmd += ["--max-length", str(max_length)]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]) | {"conversations": n})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "benchmarks" / "results" / "data_memory.json"
    result = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_throughput.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "what": "RssAnon of the process running lmtune's prepare (workers not included), sampled every "
        "50 ms: before = after loading the tokenizer, peak = highest while preparing",
        "runs": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _memory_child(folder: Path, num_proc: int, max_length: int) -> dict[str, Any]:
    import threading

    from transformers import AutoTokenizer

    from lmtune.runtime.load import SMOLLM2_ALIAS, resolve_model_path

    def anon_mb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) // 1024
        return 0

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path(SMOLLM2_ALIAS)))
    peak, before, done = [0], anon_mb(), threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], anon_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    ours = run_lmtune(folder / "lmtune.jsonl", folder, tokenizer, num_proc, max_length)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    tokens = sum(ours["prepared"].stats["tokens"][split]["total"] for split in ("train", "eval"))
    return {
        "seconds": round(seconds, 1),
        "tokens": tokens,
        "jsonl_mb": round((folder / "lmtune.jsonl").stat().st_size / 2**20, 1),
        "anon_before_mb": before,
        "anon_peak_mb": max(peak[0], anon_mb()),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("trl", "transformers", "datasets", "tokenizers", "pyarrow")}


if __name__ == "__main__":
    raise SystemExit(main())
