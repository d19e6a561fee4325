"""Stage 1 entry point: sources -> validated records -> template + mask -> split -> run directory.

Writes, under `rundir.data`: `train/` and `eval/` (Arrow, `Dataset.save_to_disk`), `rejects.jsonl`
(one line per rejected record: source, line or index, reason, detail, raw) and `stats.json` (counts by
reason and source, token counts, split sizes, fingerprint), written last: a run directory holds
prepared data once `stats.json` exists. Columns of both splits: `input_ids`, `labels`,
`attention_mask`, `messages` (the normalised conversation; for a packed train row, the turns of its
examples in order), and `position_ids` in the train split when `data.packing` is on (eval is never packed).

Records stream: sources are read lazily, in chunks of `stream.CHUNK_SIZE` records, curated (per record
steps chunk by chunk; dedup and decontamination need every record first), tokenised in `data.num_proc`
worker processes and appended to an Arrow file that is memory-mapped for the split; the saved splits
load back memory-mapped. What stays in memory for the whole run is one small entry per accepted record
(its source index, and its label when `data.mixture.label_field` is set). See docs/data-curation.md
("Scale and speed").
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.config.data import CHAT_TEMPLATE_FAMILIES, DataConfig
from lmtune.data.curation.curate import curate
from lmtune.data.encoding.stream import (
    CHUNK_SIZE,
    ChunkEncoder,
    EncodedChunk,
    add_curation_stats,
    chunked,
    encode_chunks,
)
from lmtune.data.fingerprint import fingerprint, tokenizer_identity
from lmtune.data.formats import assets
from lmtune.data.formats.checks import check_format
from lmtune.data.formats.preference import is_align_format
from lmtune.data.formats.validate import read_records
from lmtune.data.mixture import record_label, resample
from lmtune.data.records import Conversation, Location, Reject, RejectLog, SourceCounts, open_rejects
from lmtune.data.split import split_indices
from lmtune.data.storage import (
    arrow_stream,
    load_split,
    memory_mapped,
    packed_rows,
    save_split,
    split_features,
    token_counts,
)
from lmtune.errors import DataError
from lmtune.runtime.processing import Processor, text_tokenizer
from lmtune.runtime.rundir import RunDir, atomic_write_text

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """The prepared splits and the stats written next to them."""

    train: Dataset
    eval: Dataset
    stats: dict[str, Any]


@dataclass(frozen=True)
class _Pending:
    """An accepted record waiting for tokenisation."""

    source: int
    where: Location
    raw: Any
    messages: Conversation
    is_text: bool


@dataclass(frozen=True)
class _Kept:
    """What the split and the mixture need of an accepted record (its tokens are in the Arrow file)."""

    source: int
    raw: Any
    """`{label_field: label}` when `data.mixture.label_field` is set and the record has it, else None."""


def _example_weights(
    train_idx: list[int], kept: list[_Kept], data: DataConfig, weights: dict[str, float]
) -> list[float]:
    """Each train row's loss weight: its label's class weight (1.0 for a record without a label)."""
    field = data.mixture.label_field if data.mixture is not None else None
    labels = [record_label(kept[i].raw, field) if field else None for i in train_idx]
    return [weights.get(label, 1.0) if label is not None else 1.0 for label in labels]


@dataclass
class _Curation:
    """The curation stats block, filled in as the curated chunks are consumed."""

    stats: dict[str, Any] = field(default_factory=dict)


def prepare(data: DataConfig, rundir: RunDir, processor: Processor, *, seed: int) -> PreparedData:
    """Read every source, validate, template + mask, split, and write the prepared data to `rundir.data`.

    Args:
        data: The run's data section.
        rundir: Where the prepared data, rejects, stats and lineage go.
        processor: Encodes the records (a tokenizer is the text case).
        seed: The run's seed (the train/eval split and the mixture's resampling).

    Raises:
        DataError: no sources, an unreadable source, unknown format, a tokenizer that cannot encode the
            formats used, or no record accepted at all (the rejects file says why).
    """
    tokenizer = text_tokenizer(processor)
    _check_inputs(data, tokenizer)
    rundir.data.mkdir(parents=True, exist_ok=True)
    (rundir.data / "stats.json").unlink(missing_ok=True)  # until rewritten, the data is incomplete

    sink = open_rejects(rundir.rejects)
    rejects = RejectLog(sink)
    per_source = [SourceCounts(s.path, s.format) for s in data.sources]
    identity = tokenizer_identity(tokenizer)
    settings = {"tokenizer": identity, "max_length": data.max_length, "truncation": data.truncation}
    encoded_path = rundir.data / ".encoded.arrow"
    kept: list[_Kept] = []
    try:
        chunks, curation = _curated_chunks(data, rejects, per_source)
        encoder = ChunkEncoder(
            tokenizer, data.max_length, data.truncation, split_features(packed=False).arrow_schema
        )
        with arrow_stream(encoded_path, encoder.schema) as writer:
            # records stream through: read -> curate -> encode (workers) -> Arrow; the fingerprint is
            # taken over the accepted records as they pass
            accepted = _encoded(
                encode_chunks(chunks, encoder, data.num_proc), writer, rejects, per_source, data, kept
            )
            digest = fingerprint(accepted, settings)
    finally:
        if sink is not None:
            sink.close()

    read = sum(s.read for s in per_source)
    if not kept:
        encoded_path.unlink(missing_ok=True)
        raise DataError(f"no record accepted ({read} read, {rejects.count} rejected; see {rundir.rejects})")

    encoded = memory_mapped(encoded_path)
    train_idx, eval_idx = split_indices(len(kept), data.eval_size, seed)
    # after the split, so over-sampled copies of a record never reach eval
    train_idx, mixture = resample(train_idx, kept, data, seed)
    train_rows = encoded.select(train_idx)
    if data.packing:
        train_rows = packed_rows(encoded, train_idx, data.max_length)
    if mixture.get("class_weights"):
        train_rows = train_rows.add_column(
            "weight", _example_weights(train_idx, kept, data, mixture["class_weights"])
        )
    save_split(train_rows, rundir.data / "train")
    save_split(encoded.select(eval_idx), rundir.data / "eval")
    del encoded, train_rows
    encoded_path.unlink()
    train, evals = load_split(rundir.data / "train"), load_split(rundir.data / "eval")

    stats = {
        "read": read,
        "accepted": len(kept),
        "rejected": rejects.count,
        "rejected_by_reason": dict(sorted(rejects.by_reason.items())),
        "sources": [s.as_dict() for s in per_source],
        "split": {
            "train": len(train_idx),
            "eval": len(eval_idx),
            "eval_size": data.eval_size,
            "seed": seed,
        },
        "tokens": {"train": token_counts(train), "eval": token_counts(evals)},
        "packing": {"enabled": data.packing, "train_rows": len(train)},
        "curation": curation.stats,
        "mixture": mixture,
        "fingerprint": digest,
        "prepare_key": prepare_key(data, tokenizer, seed=seed),
    }
    atomic_write_text(rundir.data / "stats.json", json.dumps(stats, indent=2))
    counts = {k: stats[k] for k in ("read", "accepted", "rejected")} | {
        "train": len(train_idx),
        "eval": len(eval_idx),
    }
    rundir.update_lineage(data_fingerprint=digest, data_counts=counts)
    log.info("data: %d read, %d accepted, %d rejected", read, len(kept), rejects.count)
    return PreparedData(train=train, eval=evals, stats=stats)


def load_prepared(rundir: RunDir) -> PreparedData:
    """Read back what `prepare` wrote.

    Raises:
        DataError: the run directory holds no complete prepared data.
    """
    stats_path = rundir.data / "stats.json"
    if (
        not stats_path.is_file()
        or not (rundir.data / "train").is_dir()
        or not (rundir.data / "eval").is_dir()
    ):
        raise DataError(f"{rundir.data}: no prepared data (run the data stage first)")
    train, evals = load_split(rundir.data / "train"), load_split(rundir.data / "eval")
    return PreparedData(train=train, eval=evals, stats=json.loads(stats_path.read_text(encoding="utf-8")))


def load_or_prepare(data: DataConfig, rundir: RunDir, processor: Processor, *, seed: int) -> PreparedData:
    """Reuse the prepared data when it was made from the same data config, seed, tokenizer and source
    files (sizes and modification times); otherwise prepare again."""
    try:
        prepared = load_prepared(rundir)
    except DataError:
        return prepare(data, rundir, processor, seed=seed)
    if prepared.stats.get("prepare_key") != prepare_key(data, processor, seed=seed):
        return prepare(data, rundir, processor, seed=seed)
    return prepared


def prepare_key(data: DataConfig, processor: Processor, *, seed: int) -> str:
    """A cheap key for "would prepare give the same result": settings, tokenizer and source file stats."""
    files = [_file_stamp(src.path) for src in data.sources]
    files += [_file_stamp(es.path) for es in data.curation.decontamination.eval_sets]
    key = {
        "data": data.model_dump(mode="json"),
        "seed": seed,
        "tokenizer": tokenizer_identity(text_tokenizer(processor)),
    }
    blob = json.dumps(key | {"files": files}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _file_stamp(path: str) -> list[tuple[str, int, int]]:
    if path == assets.GSM8K:
        paths = [assets.gsm8k_path()]
    elif path == assets.CHATTERBOT:
        paths = assets.chatterbot_files()
    else:
        root = Path(path).expanduser()
        paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.exists()]


def _check_inputs(data: DataConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    if not data.sources:
        raise DataError("data.sources is empty: add at least one source")
    for src in data.sources:
        check_format(src.format, src.columns, where=src.path)
        if is_align_format(src.format):
            raise DataError(f"{src.path}: format '{src.format}' is for align.data.sources, not data.sources")
    if not tokenizer.is_fast:
        raise DataError(f"tokenizer {tokenizer.name_or_path}: a fast tokenizer is needed (offset mapping)")
    if tokenizer.eos_token_id is None:
        raise DataError(f"tokenizer {tokenizer.name_or_path}: has no eos token")
    if any(src.format != "text" for src in data.sources) and not tokenizer.chat_template:
        raise DataError(
            f"tokenizer {tokenizer.name_or_path}: has no chat template; set data.chat_template "
            f"({', '.join(CHAT_TEMPLATE_FAMILIES)} or a Jinja file), use format `text`, or use a chat model"
        )


def _read(data: DataConfig, rejects: RejectLog, per_source: list[SourceCounts]) -> Iterator[_Pending]:
    """Every accepted record of every source, in order, read lazily; read rejects go to the log."""
    for k, src in enumerate(data.sources):
        for result in read_records(src):
            per_source[k].read += 1
            if isinstance(result, Reject):
                rejects.add(result)
                per_source[k].by_reason[result.reason] += 1
                continue
            messages = result.messages
            is_text = src.format == "text"
            if data.system_prompt and not is_text and messages[0]["role"] != "system":
                messages = [{"role": "system", "content": data.system_prompt}, *messages]
            yield _Pending(k, result.item.where, result.item.raw, messages, is_text)


def _curated_chunks(
    data: DataConfig, rejects: RejectLog, per_source: list[SourceCounts]
) -> tuple[Iterator[list[_Pending]], _Curation]:
    """Chunks of curated records, and the curation stats (complete once the chunks are consumed).

    Quality filters and PII scrubbing judge each record alone: they run chunk by chunk, so records
    stream. Exact/near dedup and decontamination compare records with each other (and build an index
    once): with any of them on, every record is read into memory first and curated as a whole.
    """
    cfg = data.curation
    tally = _Curation()
    records = _read(data, rejects, per_source)

    def whole() -> Iterator[list[_Pending]]:
        kept, tally.stats = curate(list(records), cfg, rejects, per_source)
        yield from chunked(kept, CHUNK_SIZE)

    def each() -> Iterator[list[_Pending]]:
        total: dict[str, Any] | None = None
        for chunk in chunked(records, CHUNK_SIZE):
            kept, stats = curate(chunk, cfg, rejects, per_source)
            total = tally.stats = add_curation_stats(total, stats)
            if kept:
                yield kept
        if total is None:
            _, tally.stats = curate([], cfg, rejects, per_source)

    pairwise = cfg.exact_dedup.enabled or cfg.near_dedup.enabled or bool(cfg.decontamination.eval_sets)
    return (whole() if pairwise else each()), tally


def _encoded(
    results: Iterator[tuple[list[_Pending], EncodedChunk]],
    writer: Any,
    rejects: RejectLog,
    per_source: list[SourceCounts],
    data: DataConfig,
    kept: list[_Kept],
) -> Iterator[dict[str, Any]]:
    """Write each encoded chunk's rows to the Arrow stream and its rejects to the log; note each accepted
    record in `kept` and yield its fingerprint entry."""
    # deferred: tqdm only when this runs (keeps `import lmtune...` light)
    from tqdm.auto import tqdm

    field = data.mixture.label_field if data.mixture is not None else None
    bar = tqdm(desc="preparing data", unit=" records", disable=None)  # None: hidden when not a terminal
    for chunk, result in results:
        bar.update(len(chunk))
        for pos, reason, detail in result.rejected:
            item = chunk[pos]
            rejects.add(Reject(item.where, reason, detail, item.raw))
            per_source[item.source].by_reason[reason] += 1
        writer.write_batch(result.batch)
        for pos in result.accepted:
            item = chunk[pos]
            label = record_label(item.raw, field) if field is not None else None
            kept.append(_Kept(item.source, None if label is None else {field: label}))
            yield {"messages": item.messages, "text": item.is_text}
    bar.close()
