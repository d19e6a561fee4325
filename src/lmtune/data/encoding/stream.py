"""Streaming tokenisation for the SFT data stage: bounded chunks of records -> worker pool -> Arrow batches.

`prepare` reads its sources lazily and hands records to `encode_chunks` in chunks of `CHUNK_SIZE`. Each
chunk is encoded by `ChunkEncoder` (in a pool of `data.num_proc` worker processes, or in this process)
into one Arrow record batch of the accepted rows plus the rejected positions; prepare appends the
batches to an Arrow stream file that is then memory-mapped. At most `2 * num_proc` chunks are in
flight, so memory holds a few chunks of records, never the whole corpus.

The encoding is `encode_example`'s (template + assistant-only mask, truncation policy, trainable check),
made fast: the chat template's stop tokens are computed once per worker, not per record, and the
rendered texts of a whole chunk are tokenised in one call to the Rust tokenizer (`encode_batch`) instead
of one `tokenizer(...)` call per record. `encode_batch` gives the same ids, labels and rejects as
`encode_example` for every record (tests/unit/data/test_data_scale.py checks it on real data).
"""

from __future__ import annotations

import multiprocessing
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from lmtune.data.encoding.examples import _longest_token, _visible_chars, encode_example
from lmtune.data.encoding.template import (
    IGNORE,
    Encoded,
    _content_span,
    content_span,
    label_end_of_turn,
    label_span,
    render,
    stop_token_ids,
)
from lmtune.data.records import Conversation, RecordRejected, RejectReason

if TYPE_CHECKING:
    import pyarrow as pa
    from transformers import PreTrainedTokenizerBase

CHUNK_SIZE = 512
"""Records per chunk: the unit handed to a worker and written as one Arrow record batch."""

Truncation = Literal["drop", "truncate"]
T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items, pulled lazily from `items`."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass(frozen=True)
class EncodedChunk:
    """One encoded chunk: an Arrow batch of its accepted rows and the positions of rejected records."""

    batch: pa.RecordBatch
    """Columns `input_ids`, `labels`, `attention_mask`, `messages` of the accepted records, in order."""
    accepted: list[int]
    """Position in the chunk of each row of `batch`."""
    rejected: list[tuple[int, RejectReason, str]]
    """(position in the chunk, reason, detail) of each rejected record."""


class ChunkEncoder:
    """Encodes chunks of (messages, is_text) records into Arrow batches with a fixed tokenizer and policy."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        truncation: Truncation,
        schema: pa.Schema,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation: Truncation = truncation
        self.schema = schema
        self.stops = stop_token_ids(tokenizer)

    def encode(self, records: Sequence[tuple[Conversation, bool]]) -> EncodedChunk:
        """Encode one chunk (each record: its normalised messages and whether it is plain text)."""
        results = encode_batch(self.tokenizer, records, self.max_length, self.truncation, self.stops)
        accepted: list[int] = []
        rows: list[Encoded] = []
        rejected: list[tuple[int, RejectReason, str]] = []
        for k, result in enumerate(results):
            if isinstance(result, RecordRejected):
                rejected.append((k, result.reason, result.detail))
            else:
                accepted.append(k)
                rows.append(result)
        return EncodedChunk(self._batch(rows, [records[k][0] for k in accepted]), accepted, rejected)

    def _batch(self, rows: list[Encoded], messages: list[Conversation]) -> pa.RecordBatch:
        """The Arrow batch of encoded rows, its list columns built from flat arrays (no per-token lists)."""
        # deferred: numpy, pyarrow only when this runs (keeps `import lmtune...` light)
        import numpy as np
        import pyarrow as pa

        lengths = np.fromiter((len(r.input_ids) for r in rows), dtype=np.int32, count=len(rows))
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]), pa.int32())

        def lists(values: Any) -> pa.Array:
            return pa.ListArray.from_arrays(offsets, pa.array(values, pa.int64()))

        columns = [
            lists(list(chain.from_iterable(r.input_ids for r in rows))),
            lists(list(chain.from_iterable(r.labels for r in rows))),
            lists(np.ones(int(lengths.sum()), dtype=np.int64)),
            pa.array(messages, self.schema.field("messages").type),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


def encode_batch(
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[tuple[Conversation, bool]],
    max_length: int,
    truncation: Truncation,
    stops: set[int] | None = None,
) -> list[Encoded | RecordRejected]:
    """`encode_example` over many records, with one batched tokenizer call for all of them.

    Args:
        tokenizer: a fast tokenizer (with a chat template unless every record is plain text).
        records: (normalised messages, is_text) per record.
        max_length: the longest example allowed, in tokens.
        truncation: `drop` rejects a longer example; `truncate` keeps its first `max_length` tokens.
        stops: `stop_token_ids(tokenizer)`, when the caller already has it.

    Returns:
        Per record, in order: its `Encoded` example, or the `RecordRejected` that `encode_example` raises
        for it (too_long, no_trainable_tokens, template_error).
    """
    stops = stop_token_ids(tokenizer) if stops is None else stops
    results: list[Encoded | RecordRejected | None] = [None] * len(records)
    convs: list[tuple[int, Conversation]] = []
    texts: list[tuple[int, str]] = []
    limit = max_length * _longest_token(tokenizer)
    for k, (messages, is_text) in enumerate(records):
        if truncation == "drop" and sum(_visible_chars(t["content"]) for t in messages) > limit:
            results[k] = _encode_one(tokenizer, messages, is_text, max_length, truncation)
        elif is_text:
            texts.append((k, messages[-1]["content"]))
        else:
            convs.append((k, messages))
    chats: list[tuple[int, str, list[tuple[int, int]]]] = []
    for k, found in zip((k for k, _ in convs), _located(tokenizer, [m for _, m in convs]), strict=True):
        if isinstance(found, RecordRejected):
            results[k] = found
        else:
            chats.append((k, *found))
    backend = tokenizer.backend_tokenizer
    eos = tokenizer.eos_token_id
    if chats:
        encodings = backend.encode_batch([full for _, full, _ in chats], add_special_tokens=False)
        for (k, full, spans), enc in zip(chats, encodings, strict=True):
            results[k] = _policy(_conversation(enc, full, spans, stops, eos), max_length, truncation)
    if texts:
        encodings = backend.encode_batch([text for _, text in texts], add_special_tokens=True)
        for (k, _), enc in zip(texts, encodings, strict=True):
            ids = list(enc.ids)
            if eos is not None and (not ids or ids[-1] != eos):
                ids.append(eos)
            results[k] = _policy(Encoded(ids, list(ids)), max_length, truncation)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _encode_one(
    tokenizer: PreTrainedTokenizerBase,
    messages: Conversation,
    is_text: bool,
    max_length: int,
    truncation: Truncation,
) -> Encoded | RecordRejected:
    try:
        return encode_example(tokenizer, messages, is_text, max_length, truncation)
    except RecordRejected as exc:
        return exc


def _located(
    tokenizer: PreTrainedTokenizerBase, convs: list[Conversation]
) -> list[tuple[str, list[tuple[int, int]]] | RecordRejected]:
    """Per conversation: its rendered text and the character span of each assistant turn's content, as
    `encode_conversation` finds them, or the `template_error` it raises.

    The texts and the prefixes (the turns before each assistant turn, with the generation prompt) are
    rendered in two batched `apply_chat_template` calls; if the template fails on any conversation of
    the batch, each is rendered on its own, so the failure is that record's reject.
    """
    if not convs:
        return []
    heads = [
        (c, i)
        for c, messages in enumerate(convs)
        for i, turn in enumerate(messages)
        if i > 0 and turn["role"] == "assistant"
    ]
    try:
        fulls = tokenizer.apply_chat_template(convs, tokenize=False)
        before = [convs[c][:i] for c, i in heads]
        prefixes = (
            tokenizer.apply_chat_template(before, tokenize=False, add_generation_prompt=True)
            if before
            else []
        )
    except Exception:  # a chat template is arbitrary Jinja: find the record it fails on
        return [_located_one(tokenizer, messages) for messages in convs]
    prefix_of = dict(zip(heads, prefixes, strict=True))
    out: list[tuple[str, list[tuple[int, int]]] | RecordRejected] = []
    for c, (messages, full) in enumerate(zip(convs, fulls, strict=True)):
        spans, cursor = [], 0
        try:
            for i, turn in enumerate(messages):
                if turn["role"] == "assistant":
                    start, cursor = content_span(turn["content"], i, prefix_of.get((c, i)), str(full), cursor)
                    spans.append((start, cursor))
        except RecordRejected as exc:
            out.append(exc)
            continue
        out.append((str(full), spans))
    return out


def _located_one(
    tokenizer: PreTrainedTokenizerBase, messages: Conversation
) -> tuple[str, list[tuple[int, int]]] | RecordRejected:
    try:
        full = render(tokenizer, messages)
        spans, cursor = [], 0
        for i, turn in enumerate(messages):
            if turn["role"] == "assistant":
                start, cursor = _content_span(tokenizer, messages, i, full, cursor)
                spans.append((start, cursor))
    except RecordRejected as exc:
        return exc
    return full, spans


def _conversation(
    enc: Any, full: str, spans: list[tuple[int, int]], stops: set[int], eos: int | None
) -> Encoded:
    """Labels from the tokenised text, exactly as `encode_conversation` sets them.

    Each span labels every token overlapping it, up to the first token starting at or after its end
    (`after`); then whitespace tokens up to a stop token, and that stop token. Offsets of a byte-level
    BPE encoding never decrease, so both bounds are found by bisection; an encoding whose offsets do
    decrease is labelled token by token.
    """
    ids: list[int] = enc.ids
    offsets: list[tuple[int, int]] = enc.offsets
    n = len(ids)
    labels = [IGNORE] * n
    starts, ends = zip(*offsets, strict=True) if offsets else ((), ())
    monotonic = list(starts) == sorted(starts) and list(ends) == sorted(ends)
    closed = True
    for start, end in spans:
        if monotonic:
            after = bisect_left(starts, end)
            first = bisect_right(ends, start)
            if first < after:
                labels[first:after] = ids[first:after]
        else:
            after = label_span(ids, offsets, labels, start, end)
        closed = label_end_of_turn(ids, offsets, labels, full, after, stops)
    if not closed and eos is not None:
        ids.append(eos)
        labels.append(eos)
    return Encoded(ids, labels)


def _policy(enc: Encoded, max_length: int, truncation: Truncation) -> Encoded | RecordRejected:
    """`encode_example`'s length policy and trainable check on an encoded record."""
    if len(enc.input_ids) > max_length:
        if truncation == "drop":
            detail = f"{len(enc.input_ids)} tokens, more than data.max_length={max_length}"
            return RecordRejected("too_long", detail)
        enc = Encoded(enc.input_ids[:max_length], enc.labels[:max_length])
    if enc.labels[1:].count(IGNORE) == max(len(enc.labels) - 1, 0):
        return RecordRejected("no_trainable_tokens", "no token carries a label (nothing to learn from)")
    return enc


_WORKER: ChunkEncoder | None = None


def _start_worker(encoder: ChunkEncoder) -> None:
    global _WORKER
    _WORKER = encoder


def _encode_in_worker(records: list[tuple[Conversation, bool]]) -> EncodedChunk:
    assert _WORKER is not None
    return _WORKER.encode(records)


class StreamItem(Protocol):
    """What `encode_chunks` needs of a record (prepare's pending records have it)."""

    @property
    def messages(self) -> Conversation: ...
    @property
    def is_text(self) -> bool: ...


S = TypeVar("S", bound=StreamItem)


def encode_chunks(
    chunks: Iterable[list[S]], encoder: ChunkEncoder, num_proc: int | None
) -> Iterator[tuple[list[S], EncodedChunk]]:
    """Encode chunks in order, each paired with its result; with `num_proc`, in that many processes.

    Chunks are pulled from `chunks` only as results are taken: at most `2 * num_proc` are in flight.
    """
    if not num_proc:
        for chunk in chunks:
            yield chunk, encoder.encode([(item.messages, item.is_text) for item in chunk])
        return
    window: deque[tuple[list[S], Any]] = deque()
    with multiprocessing.Pool(num_proc, initializer=_start_worker, initargs=(encoder,)) as pool:
        for chunk in chunks:
            records = [(item.messages, item.is_text) for item in chunk]
            window.append((chunk, pool.apply_async(_encode_in_worker, (records,))))
            if len(window) >= 2 * num_proc:
                done, result = window.popleft()
                yield done, result.get()
        while window:
            done, result = window.popleft()
            yield done, result.get()


def add_curation_stats(total: dict[str, Any] | None, part: dict[str, Any]) -> dict[str, Any]:
    """Sum two `curate` stats blocks of the per-record steps (quality, decontamination, PII) run on
    consecutive chunks; settings (enabled, thresholds, languages) are taken from `part`."""
    if total is None:
        return part
    out = {**part, "steps": {name: dict(step) for name, step in part["steps"].items()}}
    for key in ("in", "kept", "removed"):
        out[key] = total[key] + part[key]
    out["removed_by_reason"] = _sum_counts(total["removed_by_reason"], part["removed_by_reason"])
    for name, step in out["steps"].items():
        step["removed"] = total["steps"][name]["removed"] + step["removed"]
    pii_total, pii_part = total["steps"]["pii"], part["steps"]["pii"]
    out["steps"]["pii"]["records_with_pii"] = pii_total["records_with_pii"] + pii_part["records_with_pii"]
    out["steps"]["pii"]["replacements"] = _sum_counts(pii_total["replacements"], pii_part["replacements"])
    sets_total = total["steps"]["decontamination"]["eval_sets"]
    out["steps"]["decontamination"]["eval_sets"] = {
        name: {**block, "removed": sets_total[name]["removed"] + block["removed"]}
        for name, block in part["steps"]["decontamination"]["eval_sets"].items()
    }
    return out


def _sum_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return dict(sorted((Counter(a) + Counter(b)).items()))
