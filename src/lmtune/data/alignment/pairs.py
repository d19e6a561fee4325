"""Preference pairs from problems with a reference solution, such as GSM8K (`lmtune data pairs`): each
record's solution is `chosen` and a corrupted copy (`lmtune.data.alignment.corruption`) is `rejected`.
A record that cannot be corrupted (no `#### N` line; for `step`, no usable step) is written to the
rejects file with reason `uncorruptible`, so read = pairs + rejected.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmtune.config.data import SourceConfig
from lmtune.data.alignment.corruption import (
    Corruption,
    Layout,
    _text_field,
    corrupt_solution,
    pair_record,
    prompt_record,
)
from lmtune.data.formats.sources import read_source
from lmtune.data.records import RecordRejected, Reject, RejectLog, open_rejects


@dataclass
class PairsReport:
    """Counts of one `build_pairs` run; `read == pairs + rejected`."""

    read: int = 0
    pairs: int = 0
    prompts: int = 0
    by_corruption: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    out: str = ""
    prompts_out: str | None = None
    rejects_path: str = ""

    @property
    def rejected(self) -> int:
        return sum(self.by_reason.values())


def build_pairs(
    path: str,
    out: str | Path,
    *,
    corruption: Corruption = "mixed",
    seed: int = 0,
    limit: int | None = None,
    layout: Layout = "messages",
    prompts_out: str | Path | None = None,
    rejects_path: str | Path | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
) -> PairsReport:
    """Write one preference pair per record of `path` (a file or the `gsm8k` alias) to `out` (JSONL).

    Args:
        path: records with a question and a reference solution ending in `#### N`.
        out: the pairs file, in the `preference` format; its folder is created.
        corruption: how `rejected` is made: `final`, `step` or `mixed`.
        seed: seeds every random choice (per record: seed and position).
        limit: read at most this many records.
        layout: `messages` (prompt/chosen/rejected as lists of role/content turns) or `plain` (strings).
        prompts_out: also write the `prompt` format (question + reference answer) here, for GRPO/PPO:
            every record with both fields, including those that give no pair.
        rejects_path: where records that give no pair go (default: `<out stem>.rejects.jsonl`).
        question_field: the records' question field.
        answer_field: the records' reference solution field.

    Raises:
        DataError: the input cannot be read.
    """
    out = Path(out)
    rejects_file = Path(rejects_path) if rejects_path else out.with_name(f"{out.stem}.rejects.jsonl")
    report = PairsReport(
        out=str(out), prompts_out=str(prompts_out) if prompts_out else None, rejects_path=str(rejects_file)
    )
    items = read_source(SourceConfig(path=path, format="prompt"))
    out.parent.mkdir(parents=True, exist_ok=True)
    sink = open_rejects(rejects_file)
    log = RejectLog(sink)
    prompts_path = Path(prompts_out) if prompts_out else None
    if prompts_path is not None:
        prompts_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        prompts_cm = prompts_path.open("w", encoding="utf-8") if prompts_path else nullcontext()
        with out.open("w", encoding="utf-8") as pairs_f, prompts_cm as prompts_f:
            for position, item in enumerate(items):
                if limit is not None and position >= limit:
                    break
                report.read += 1
                if isinstance(item, Reject):
                    log.add(item)
                    continue
                try:
                    question = _text_field(item.value, question_field)
                    answer = _text_field(item.value, answer_field)
                    if prompts_f is not None:
                        prompts_f.write(_dumps(prompt_record(question, answer, layout)))
                        report.prompts += 1
                    rejected, kind = corrupt_solution(answer, corruption, random.Random(f"{seed}:{position}"))
                except RecordRejected as exc:
                    log.add(Reject(item.where, exc.reason, exc.detail, item.raw))
                    continue
                pairs_f.write(_dumps(pair_record(question, answer, rejected, layout) | {"corruption": kind}))
                report.pairs += 1
                report.by_corruption[kind] += 1
    finally:
        if sink is not None:
            sink.close()
    report.by_reason = log.by_reason
    return report


def format_pairs_report(report: PairsReport) -> str:
    """A short text table: read, pairs by corruption, rejected by reason, then where the files went."""
    rows = [("read", report.read), ("pairs", report.pairs)]
    rows += [(f"  {kind}", n) for kind, n in sorted(report.by_corruption.items())]
    rows += [("rejected", report.rejected)]
    rows += [(f"  {reason}", n) for reason, n in sorted(report.by_reason.items())]
    width = max(len(name) for name, _ in rows)
    lines = [f"pairs written to {report.out} (preference format)"]
    lines += [f"{name:<{width}}  {n:>8}" for name, n in rows]
    if report.prompts_out is not None:
        lines.append(f"{report.prompts} prompts written to {report.prompts_out} (prompt format)")
    if report.rejected:
        lines.append(f"rejects written to {report.rejects_path}")
    return "\n".join(lines)


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"
