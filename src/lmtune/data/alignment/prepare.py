"""Alignment data for the trainers: sources -> checked records -> one `datasets.Dataset` in TRL's
conversational layout, with per-source counts (read = accepted + rejected).

| kind         | columns                                                                          |
| ------------ | -------------------------------------------------------------------------------- |
| `preference` | prompt (messages ending with a user turn), chosen, rejected (assistant messages) |
| `kto`        | prompt, completion (assistant messages), label (bool)                            |
| `prompt`     | prompt, and answer (string, null where a record has none) when any record has one |

A prompt longer than `max_prompt_length` tokens (rendered by the chat template with the generation
prompt, after the system prompt is added) is rejected with reason `prompt_too_long`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, assert_never

from lmtune.config.data import AlignFormat, SourceConfig
from lmtune.data.encoding.template import render
from lmtune.data.formats.checks import check_format
from lmtune.data.formats.preference import with_system
from lmtune.data.formats.validate import AcceptedAlign, read_align_records
from lmtune.data.records import Conversation, RecordRejected, Reject, RejectLog, SourceCounts
from lmtune.data.split import split_indices
from lmtune.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset, Features
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class AlignData:
    """The accepted records of every source, as one dataset, with the counts per source."""

    kind: AlignFormat
    dataset: Dataset
    sources: list[SourceCounts]

    def stats(self) -> dict[str, Any]:
        """Totals and per-source counts, for the run's data stats."""
        by_reason: Counter[str] = sum((s.by_reason for s in self.sources), Counter())
        return {
            "kind": self.kind,
            "read": sum(s.read for s in self.sources),
            "accepted": sum(s.accepted for s in self.sources),
            "rejected": sum(s.rejected for s in self.sources),
            "rejected_by_reason": dict(sorted(by_reason.items())),
            "sources": [s.as_dict() for s in self.sources],
        }


@dataclass(frozen=True)
class _Pending:
    source: int
    accepted: AcceptedAlign
    row: dict[str, Any]


def prepare_align(
    sources: list[SourceConfig],
    kind: AlignFormat,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_prompt_length: int,
    system_prompt: str | None,
    rejects: RejectLog,
    max_length: int | None = None,
) -> AlignData:
    """Read and check every source, add the system prompt, drop over-long prompts, build the dataset.

    Args:
        sources: the alignment sources, concatenated in order; each must have format `kind`.
        kind: `preference` (DPO, ORPO, SimPO, reward model), `kto`, or `prompt` (GRPO, RLOO, PPO).
        tokenizer: the policy's tokenizer (with a chat template), for prompt lengths.
        max_prompt_length: the longest prompt kept, in tokens (with the generation prompt).
        max_length: the longest prompt + answer kept, in tokens (each side of a pair; the completion of a
            KTO record); a longer record is rejected as `too_long` rather than truncated, since cutting
            the end of an answer can remove the very part a pair differs in. None: no limit.
        system_prompt: a system message put in front of every prompt that has none.
        rejects: where every rejected record goes (reason, detail, source, line).

    Raises:
        DataError: no sources, an unreadable source, a source whose format is not `kind`, a tokenizer
            without a chat template, or no record accepted at all.
    """
    _check_inputs(sources, kind, tokenizer)
    counts = [SourceCounts(src.path, src.format) for src in sources]
    pending: list[_Pending] = []
    for k, src in enumerate(sources):
        for result in read_align_records(src):
            counts[k].read += 1
            if isinstance(result, Reject):
                _reject(result, k, rejects, counts)
                continue
            row = result.example.as_row() | {"prompt": with_system(result.example.prompt, system_prompt)}
            pending.append(_Pending(k, result, row))

    lengths = prompt_lengths(tokenizer, [p.row["prompt"] for p in pending])
    full = _answer_lengths(tokenizer, kind, [p.row for p in pending]) if max_length else [None] * len(pending)
    rows = []
    for p, length, longest in zip(pending, lengths, full, strict=True):
        reason, detail = _length_problem(length, max_prompt_length)
        if reason is None and longest is not None and max_length is not None and longest > max_length:
            reason, detail = (
                "too_long",
                f"prompt + answer is {longest} tokens, more than max_length={max_length}",
            )
        if reason is None:
            rows.append(p.row)
            continue
        item = p.accepted.item
        _reject(Reject(item.where, reason, detail, item.raw), p.source, rejects, counts)

    if not rows:
        read = sum(c.read for c in counts)
        raise DataError(
            f"alignment data: no record accepted ({read} read, all rejected; see the rejects file)"
        )
    has_answer = kind == "prompt" and any(row["answer"] is not None for row in rows)
    return AlignData(kind=kind, dataset=_dataset(rows, kind, has_answer), sources=counts)


def prompt_lengths(tokenizer: PreTrainedTokenizerBase, prompts: list[Conversation]) -> list[int | str]:
    """Token count of each prompt rendered with the generation prompt; a template failure is its detail.

    Returns:
        Per prompt, its length in tokens, or the template's error message (a string) when the chat
        template refused it.
    """
    texts: dict[int, str] = {}
    errors: dict[int, str] = {}
    for i, prompt in enumerate(prompts):
        try:
            texts[i] = render(tokenizer, prompt, add_generation_prompt=True)
        except RecordRejected as exc:
            errors[i] = exc.detail
    ids = tokenizer(list(texts.values()), add_special_tokens=False)["input_ids"] if texts else []
    lengths = {i: len(row) for i, row in zip(texts, ids, strict=True)}
    return [lengths[i] if i in lengths else errors[i] for i in range(len(prompts))]


def _answer_lengths(
    tokenizer: PreTrainedTokenizerBase, kind: AlignFormat, rows: list[dict[str, Any]]
) -> list[int | None]:
    """Per row, the token count of its longest prompt + answer conversation (None for prompt data or
    when the template refuses it: that is reported as the prompt's `template_error`)."""
    if kind == "prompt":
        return [None] * len(rows)
    answers = ("chosen", "rejected") if kind == "preference" else ("completion",)
    out: list[int | None] = []
    for row in rows:
        try:
            texts = [render(tokenizer, [*row["prompt"], *row[a]]) for a in answers]
        except RecordRejected:
            out.append(None)
            continue
        out.append(max(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]))
    return out


def split_align(dataset: Dataset, eval_size: float, seed: int) -> tuple[Dataset, Dataset]:
    """Seeded train/eval split, the same rule as `data.eval_size`: a fraction below 1, else a count.

    Returns:
        (train, eval): rows in their original order; the same dataset, size and seed give the same split.
    """
    train, evals = split_indices(len(dataset), eval_size, seed)
    return dataset.select(train), dataset.select(evals)


def _check_inputs(sources: list[SourceConfig], kind: AlignFormat, tokenizer: PreTrainedTokenizerBase) -> None:
    if not sources:
        raise DataError("align.data.sources is empty: add at least one source")
    for src in sources:
        check_format(src.format, src.columns, where=src.path)
        if src.format != kind:
            raise DataError(
                f"{src.path}: format '{src.format}' does not fit this objective, which reads '{kind}' data"
            )
    if not tokenizer.chat_template:
        raise DataError(
            f"tokenizer {tokenizer.name_or_path}: has no chat template; alignment needs a chat model"
        )


def _length_problem(length: int | str, limit: int) -> tuple[Any, str]:
    if isinstance(length, str):
        return "template_error", length
    if length > limit:
        return "prompt_too_long", f"prompt is {length} tokens, more than max_prompt_length={limit}"
    return None, ""


def _reject(reject: Reject, source: int, rejects: RejectLog, counts: list[SourceCounts]) -> None:
    rejects.add(reject)
    counts[source].by_reason[reject.reason] += 1


def _dataset(rows: list[dict[str, Any]], kind: AlignFormat, has_answer: bool) -> Dataset:
    # deferred: datasets only when this runs (keeps `import lmtune...` light)
    from datasets import Dataset

    if kind == "prompt" and not has_answer:
        rows = [{"prompt": row["prompt"]} for row in rows]
    return Dataset.from_list(rows, features=align_features(kind, has_answer))


def align_features(kind: AlignFormat, has_answer: bool = False) -> Features:
    """The dataset schema of each kind (conversations as lists of {role, content})."""
    # deferred: datasets only when this runs (keeps `import lmtune...` light)
    from datasets import Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    match kind:
        case "preference":
            return Features({"prompt": messages, "chosen": messages, "rejected": messages})
        case "kto":
            return Features({"prompt": messages, "completion": messages, "label": Value("bool")})
        case "prompt":
            answer = {"answer": Value("string")} if has_answer else {}
            return Features({"prompt": messages, **answer})
        case _:
            assert_never(kind)
