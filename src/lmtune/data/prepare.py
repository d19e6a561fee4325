"""Stage 1 entry point: sources -> validated records -> template + mask -> split -> run directory.

Writes, under `rundir.data`: `train/` and `eval/` (Arrow, `Dataset.save_to_disk`), `rejects.jsonl`
(one line per rejected record: source, line or index, reason, detail, raw) and `stats.json` (counts by
reason and source, token counts, split sizes, fingerprint), written last: a run directory holds
prepared data once `stats.json` exists. Columns of both splits: `input_ids`, `labels`,
`attention_mask`, `messages` (the normalised conversation; for a packed train row, the turns of its
examples in order), and `position_ids` in the train split when `data.packing` is on (eval is never packed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.config.data import DataConfig
from lmtune.data import assets
from lmtune.data.curate import curate
from lmtune.data.examples import encode_example
from lmtune.data.fingerprint import fingerprint, tokenizer_identity
from lmtune.data.formats import check_format
from lmtune.data.mixture import resample
from lmtune.data.packing import pack
from lmtune.data.preference import is_align_format
from lmtune.data.records import Conversation, Location, RecordRejected, Reject, RejectLog, open_rejects
from lmtune.data.split import split_indices
from lmtune.data.template import IGNORE
from lmtune.data.validate import read_records
from lmtune.errors import DataError
from lmtune.rundir import RunDir, atomic_write_text
from lmtune.schema import RunConfig

if TYPE_CHECKING:
    from datasets import Dataset, Features
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """The prepared splits and the stats written next to them."""

    train: Dataset
    eval: Dataset
    stats: dict[str, Any]


@dataclass
class _SourceCounts:
    """Per-source counts for stats.json."""

    path: str
    format: str
    read: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        rejected = sum(self.by_reason.values())
        return {
            "path": self.path,
            "format": self.format,
            "read": self.read,
            "accepted": self.read - rejected,
            "rejected": rejected,
            "rejected_by_reason": dict(sorted(self.by_reason.items())),
        }


@dataclass(frozen=True)
class _Pending:
    """An accepted record waiting for tokenisation."""

    source: int
    where: Location
    raw: Any
    messages: Conversation
    is_text: bool


def prepare(cfg: RunConfig, rundir: RunDir, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Read every source, validate, template + mask, split, and write the prepared data to `rundir.data`.

    Raises:
        DataError: no sources, an unreadable source, unknown format, a tokenizer that cannot encode the
            formats used, or no record accepted at all (the rejects file says why).
    """
    data = cfg.data
    _check_inputs(data, tokenizer)
    rundir.data.mkdir(parents=True, exist_ok=True)
    (rundir.data / "stats.json").unlink(missing_ok=True)  # until rewritten, the data is incomplete

    sink = open_rejects(rundir.rejects)
    rejects = RejectLog(sink)
    per_source = [_SourceCounts(s.path, s.format) for s in data.sources]
    try:
        pending = _read_all(data, rejects, per_source)
        pending, curation = curate(pending, data.curation, rejects, per_source)
        encoded = _encode(pending, data, tokenizer)
        examples = []
        for item, (ids, labels, reason, detail) in zip(pending, encoded, strict=True):
            if reason:
                rejects.add(Reject(item.where, reason, detail, item.raw))  # type: ignore[arg-type]
                per_source[item.source].by_reason[reason] += 1
            else:
                examples.append((item, ids, labels))
    finally:
        if sink is not None:
            sink.close()

    read = sum(s.read for s in per_source)
    if not examples:
        raise DataError(f"no record accepted ({read} read, {rejects.count} rejected; see {rundir.rejects})")

    train_idx, eval_idx = split_indices(len(examples), data.eval_size, cfg.seed)
    # after the split, so over-sampled copies of a record never reach eval
    train_idx, mixture = resample(train_idx, [e[0] for e in examples], data, cfg.seed)
    train = _dataset([examples[i] for i in train_idx], data.max_length if data.packing else None)
    evals = _dataset([examples[i] for i in eval_idx], None)
    _save(train, rundir.data / "train")
    _save(evals, rundir.data / "eval")

    identity = tokenizer_identity(tokenizer)
    settings = {"tokenizer": identity, "max_length": data.max_length, "truncation": data.truncation}
    digest = fingerprint(({"messages": e[0].messages, "text": e[0].is_text} for e in examples), settings)
    stats = {
        "read": read,
        "accepted": len(examples),
        "rejected": rejects.count,
        "rejected_by_reason": dict(sorted(rejects.by_reason.items())),
        "sources": [s.as_dict() for s in per_source],
        "split": {
            "train": len(train_idx),
            "eval": len(eval_idx),
            "eval_size": data.eval_size,
            "seed": cfg.seed,
        },
        "tokens": {"train": _token_counts(train), "eval": _token_counts(evals)},
        "packing": {"enabled": data.packing, "train_rows": len(train)},
        "curation": curation,
        "mixture": mixture,
        "fingerprint": digest,
        "prepare_key": prepare_key(cfg, tokenizer),
    }
    atomic_write_text(rundir.data / "stats.json", json.dumps(stats, indent=2))
    counts = {k: stats[k] for k in ("read", "accepted", "rejected")} | {
        "train": len(train_idx),
        "eval": len(eval_idx),
    }
    rundir.update_lineage(data_fingerprint=digest, data_counts=counts)
    log.info("data: %d read, %d accepted, %d rejected", read, len(examples), rejects.count)
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
    train, evals = _load_split(rundir.data / "train"), _load_split(rundir.data / "eval")
    return PreparedData(train=train, eval=evals, stats=json.loads(stats_path.read_text(encoding="utf-8")))


def load_or_prepare(cfg: RunConfig, rundir: RunDir, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Reuse the prepared data when it was made from the same data config, seed, tokenizer and source
    files (sizes and modification times); otherwise prepare again."""
    try:
        prepared = load_prepared(rundir)
    except DataError:
        return prepare(cfg, rundir, tokenizer)
    if prepared.stats.get("prepare_key") != prepare_key(cfg, tokenizer):
        return prepare(cfg, rundir, tokenizer)
    return prepared


def prepare_key(cfg: RunConfig, tokenizer: PreTrainedTokenizerBase) -> str:
    """A cheap key for "would prepare give the same result": settings, tokenizer and source file stats."""
    files = [_file_stamp(src.path) for src in cfg.data.sources]
    files += [_file_stamp(es.path) for es in cfg.data.curation.decontamination.eval_sets]
    key = {
        "data": cfg.data.model_dump(mode="json"),
        "seed": cfg.seed,
        "tokenizer": tokenizer_identity(tokenizer),
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
            f"tokenizer {tokenizer.name_or_path}: has no chat template; use format `text` or a chat model"
        )


def _read_all(data: DataConfig, rejects: RejectLog, per_source: list[_SourceCounts]) -> list[_Pending]:
    pending = []
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
            pending.append(_Pending(k, result.item.where, result.item.raw, messages, is_text))
    return pending


def _encode(
    pending: list[_Pending], data: DataConfig, tokenizer: PreTrainedTokenizerBase
) -> list[tuple[list[int], list[int], str, str]]:
    """Tokenise all records through `datasets.map` (batched, progress bar, optional worker processes)."""
    from datasets import Dataset, Features, Value

    if not pending:
        return []
    table = Dataset.from_dict(
        {"messages": [p.messages for p in pending], "is_text": [p.is_text for p in pending]},
        features=Features({"messages": _messages_feature(), "is_text": Value("bool")}),
    )
    key = hashlib.sha256(json.dumps(data.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    mapped = table.map(
        _encode_batch,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "max_length": data.max_length, "truncation": data.truncation},
        remove_columns=["messages", "is_text"],
        num_proc=data.num_proc if len(pending) > 1 else None,
        desc="Tokenising",
        new_fingerprint=key[:16],
    )
    cols = mapped.to_dict()
    return list(zip(cols["input_ids"], cols["labels"], cols["reason"], cols["detail"], strict=True))


def _encode_batch(
    batch: dict[str, list[Any]], tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: Any
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "reason": [], "detail": []}
    for messages, is_text in zip(batch["messages"], batch["is_text"], strict=True):
        try:
            enc = encode_example(tokenizer, messages, is_text, max_length, truncation)
            ids, labels, reason, detail = enc.input_ids, enc.labels, "", ""
        except RecordRejected as exc:
            ids, labels, reason, detail = [], [], exc.reason, exc.detail
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["reason"].append(reason)
        out["detail"].append(detail)
    return out


def _messages_feature() -> Any:
    from datasets import List, Value

    return List({"role": Value("string"), "content": Value("string")})


def _features(packed: bool) -> Features:
    from datasets import Features, List, Value

    ints = List(Value("int64"))
    cols = {"input_ids": ints, "labels": ints, "attention_mask": ints}
    if packed:
        cols["position_ids"] = ints
    return Features({**cols, "messages": _messages_feature()})


def _dataset(examples: list[tuple[_Pending, list[int], list[int]]], pack_to: int | None) -> Dataset:
    """Build a split; with `pack_to`, examples are packed into rows of at most that many tokens."""
    from datasets import Dataset

    if pack_to is None:
        columns: dict[str, list[Any]] = {
            "input_ids": [ids for _, ids, _ in examples],
            "labels": [labels for _, _, labels in examples],
            "attention_mask": [[1] * len(ids) for _, ids, _ in examples],
            "messages": [item.messages for item, _, _ in examples],
        }
        return Dataset.from_dict(columns, features=_features(packed=False))
    rows = pack([ids for _, ids, _ in examples], [labels for _, _, labels in examples], pack_to)
    columns = {
        "input_ids": [r.input_ids for r in rows],
        "labels": [r.labels for r in rows],
        "attention_mask": [[1] * len(r.input_ids) for r in rows],
        "position_ids": [r.position_ids for r in rows],
        "messages": [[turn for i in r.members for turn in examples[i][0].messages] for r in rows],
    }
    return Dataset.from_dict(columns, features=_features(packed=True))


def _save(dataset: Dataset, path: Path) -> None:
    """Save next to `path`, then swap it in, so a crash never leaves a half-written split."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _load_split(path: Path) -> Dataset:
    """Load a saved split; an empty split (saved with no data files) loads as an empty Dataset."""
    from datasets import Dataset, Features, load_from_disk

    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    if not state.get("_data_files"):
        info = json.loads((path / "dataset_info.json").read_text(encoding="utf-8"))
        features = Features.from_dict(info["features"])
        return Dataset.from_dict({name: [] for name in features}, features=features)
    return load_from_disk(str(path))


def _token_counts(dataset: Dataset) -> dict[str, int]:
    labels = dataset["labels"]
    return {
        "total": sum(len(row) for row in dataset["input_ids"]),
        "labelled": sum(sum(1 for label in row if label != IGNORE) for row in labels),
    }
