"""Scale and speed of the SFT data stage: streamed chunks, worker processes, memory-mapped splits.

References kept here: `encode_example` (the per-record encoder) for the batched encoder, and an
in-memory prepare (read every record, encode one by one, split) for the streamed `prepare`.
Fixtures: small JSONL sources written by the tests (a few broken lines planted at known line numbers),
real GSM8K + chatterbot conversations with the SmolLM2 tokenizer (skipped when the assets are absent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmtune.config.data import SourceConfig
from lmtune.config.run import RunConfig
from lmtune.data import prepare as prepare_module
from lmtune.data.curation.curate import curate
from lmtune.data.encoding.examples import encode_example
from lmtune.data.encoding.stream import ChunkEncoder, add_curation_stats, encode_batch
from lmtune.data.formats.validate import Accepted, read_records
from lmtune.data.records import Location, RawItem, RecordRejected, Reject, RejectLog, SourceCounts
from lmtune.data.split import split_indices
from lmtune.runtime.rundir import RunDir


def _same(result: Any, reference: Any) -> bool:
    if isinstance(reference, RecordRejected):
        return isinstance(result, RecordRejected) and (result.reason, result.detail) == (
            reference.reason,
            reference.detail,
        )
    return not isinstance(result, RecordRejected) and (result.input_ids, result.labels) == (
        reference.input_ids,
        reference.labels,
    )


def _reference(tokenizer: Any, records: list[tuple[list, bool]], max_length: int, truncation: Any) -> list:
    out: list[Any] = []
    for messages, is_text in records:
        try:
            out.append(encode_example(tokenizer, messages, is_text, max_length, truncation))
        except RecordRejected as exc:
            out.append(exc)
    return out


def _edge_records(i: int) -> list[tuple[list[dict[str, str]], bool]]:
    """Conversations whose masks are easy to get wrong: whitespace around content, several assistant
    turns, an answer repeated in the prompt, a system turn, plain text."""
    u, a = f"what is {i} plus {i}?", f"{2 * i}, since {i} + {i} = {2 * i}."
    return [
        ([{"role": "user", "content": u}, {"role": "assistant", "content": a}], False),
        ([{"role": "user", "content": u}, {"role": "assistant", "content": f"  {a}\n"}], False),
        ([{"role": "user", "content": a}, {"role": "assistant", "content": a}], False),
        (
            [
                {"role": "system", "content": "be brief."},
                {"role": "user", "content": u},
                {"role": "assistant", "content": a},
                {"role": "user", "content": "and twice that?"},
                {"role": "assistant", "content": str(4 * i)},
            ],
            False,
        ),
        ([{"role": "assistant", "content": f"the dogs sold {i} books.\n"}], True),
        ([{"role": "user", "content": u}, {"role": "assistant", "content": "two " * (10 + i)}], False),
    ]


@pytest.mark.parametrize(("max_length", "truncation"), [(512, "drop"), (24, "drop"), (24, "truncate")])
def test_encode_batch_equals_encode_example_tiny(
    tiny_tokenizer: Any, max_length: int, truncation: Any
) -> None:
    records = [r for i in range(12) for r in _edge_records(i)]
    got = encode_batch(tiny_tokenizer, records, max_length, truncation)
    want = _reference(tiny_tokenizer, records, max_length, truncation)
    assert [_same(g, w) for g, w in zip(got, want, strict=True)] == [True] * len(records)
    kinds = {w.reason if isinstance(w, RecordRejected) else "ok" for w in want}
    assert "ok" in kinds
    if max_length == 24:  # the policy is exercised, not only the happy path
        assert kinds & {"too_long", "no_trainable_tokens"}


def test_encode_batch_equals_encode_example_smollm2(smollm2_tokenizer: Any) -> None:
    """Every real GSM8K problem and chatterbot exchange (multi-turn ones whole) plus the edge cases."""
    from lmtune.data.formats import assets

    records: list[tuple[list[dict[str, str]], bool]] = []
    for line in assets.gsm8k_path().read_text(encoding="utf-8").splitlines()[:400]:
        row = json.loads(line)
        turns = [
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": row["answer"]},
        ]
        records.append((turns, False))
    for item in assets.read_chatterbot():
        if isinstance(item, RawItem):
            turns = [{"role": t["role"], "content": str(t["content"])} for t in item.value["messages"]]
            if len(turns) % 2 == 0 and all(t["content"].strip() for t in turns):
                records.append((turns, False))
    records += [r for i in range(5) for r in _edge_records(i)]
    assert sum(1 for messages, _ in records if len(messages) > 2) > 30  # multi-turn is covered
    got = encode_batch(smollm2_tokenizer, records, 1024, "drop")
    want = _reference(smollm2_tokenizer, records, 1024, "drop")
    mismatched = [k for k, (g, w) in enumerate(zip(got, want, strict=True)) if not _same(g, w)]
    assert mismatched == []


def _chat(i: int) -> str:
    turns = [
        {"role": "user", "content": f"how many apples {i}?"},
        {"role": "assistant", "content": f"{i} apples." + " more" * (i % 7)},
    ]
    return json.dumps({"messages": turns})


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    chat = tmp_path / "chat.jsonl"
    lines = [_chat(i) for i in range(60)]
    lines.insert(5, '{"messages": [')  # malformed_json, line 6
    lines.insert(20, json.dumps({"messages": [{"role": "user", "content": "q"}]}))  # line 21
    lines.insert(40, _chat(7).replace("7 apples.", "two " * 80))  # too_long, line 41
    chat.write_text("\n".join(lines) + "\n")
    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps({"text": f"the dogs sold {i} books."}) + "\n" for i in range(9)))
    return {"chat": chat, "text": text}


def _cfg(tmp_path: Path, sources: dict[str, Path], **data: Any) -> RunConfig:
    return RunConfig.model_validate(
        {
            "output_dir": str(tmp_path / "runs"),
            "seed": 5,
            "data": {
                "sources": [{"path": str(sources["chat"])}, {"path": str(sources["text"]), "format": "text"}],
                "max_length": 64,
                "eval_size": 0.2,
                "system_prompt": "be brief.",
                **data,
            },
        }
    )


def _in_memory_reference(cfg: RunConfig, tokenizer: Any) -> tuple[list[dict], list[dict], list[tuple]]:
    """The stage as it was before streaming: read everything, encode one by one, split."""
    data = cfg.data
    examples, rejects = [], []
    for src in data.sources:
        is_text = src.format == "text"
        for result in read_records(src):
            if isinstance(result, Reject):
                rejects.append((result.where.position, result.reason))
                continue
            messages = result.messages
            if data.system_prompt and not is_text and messages[0]["role"] != "system":
                messages = [{"role": "system", "content": data.system_prompt}, *messages]
            try:
                enc = encode_example(tokenizer, messages, is_text, data.max_length, data.truncation)
            except RecordRejected as exc:
                rejects.append((result.item.where.position, exc.reason))
                continue
            examples.append({"input_ids": enc.input_ids, "labels": enc.labels, "messages": messages})
    train, evals = split_indices(len(examples), data.eval_size, cfg.seed)
    return [examples[i] for i in train], [examples[i] for i in evals], rejects


def _rows(dataset: Any) -> list[dict]:
    return [{k: row[k] for k in ("input_ids", "labels", "messages")} for row in dataset]


@pytest.mark.parametrize("num_proc", [None, 2])
def test_streamed_prepare_equals_in_memory_reference(
    tmp_path: Path, sources: dict, tiny_tokenizer: Any, monkeypatch: pytest.MonkeyPatch, num_proc: int | None
) -> None:
    monkeypatch.setattr(prepare_module, "CHUNK_SIZE", 7)  # many chunks, one of them partly rejected
    cfg = _cfg(tmp_path, sources, num_proc=num_proc)
    rundir = RunDir(tmp_path / "r")
    prepared = prepare_module.prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)
    train, evals, rejects = _in_memory_reference(cfg, tiny_tokenizer)
    assert _rows(prepared.train) == train
    assert _rows(prepared.eval) == evals
    written = [json.loads(line) for line in rundir.rejects.read_text().splitlines()]
    assert (
        sorted((r["line"], r["reason"]) for r in written)
        == sorted(rejects)
        == [
            (6, "malformed_json"),
            (21, "no_final_assistant"),
            (41, "too_long"),
        ]
    )
    stats = prepared.stats
    assert (stats["read"], stats["accepted"], stats["rejected"]) == (72, 69, 3)
    assert stats["tokens"]["train"]["total"] == sum(len(r["input_ids"]) for r in train)
    assert stats["tokens"]["eval"]["labelled"] == sum(sum(t != -100 for t in r["labels"]) for r in evals)
    assert not (rundir.data / ".encoded.arrow").exists()


def test_num_proc_2_gives_the_same_output_as_num_proc_1(
    tmp_path: Path, sources: dict, tiny_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepare_module, "CHUNK_SIZE", 5)
    one = RunDir(tmp_path / "one")
    two = RunDir(tmp_path / "two")
    a = prepare_module.prepare(
        _cfg(tmp_path, sources, num_proc=1, packing=True).data, one, tiny_tokenizer, seed=5
    )
    b = prepare_module.prepare(
        _cfg(tmp_path, sources, num_proc=2, packing=True).data, two, tiny_tokenizer, seed=5
    )
    assert a.train.to_dict() == b.train.to_dict() and a.eval.to_dict() == b.eval.to_dict()
    assert {k: v for k, v in a.stats.items() if k != "prepare_key"} == {
        k: v for k, v in b.stats.items() if k != "prepare_key"
    }
    assert one.rejects.read_text() == two.rejects.read_text()


def test_records_stream_and_splits_are_memory_mapped(
    tmp_path: Path, tiny_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generator source of 3,000 records: the reader is never more than one chunk ahead of the
    encoder, so the corpus is never held in memory; the saved and returned splits are memory-mapped."""
    n, chunk = 3000, 100
    produced = 0
    lags: list[int] = []
    encoded = 0

    def generated(src: SourceConfig) -> Iterator[Accepted]:
        nonlocal produced
        for i in range(n):
            produced += 1
            messages = [
                {"role": "user", "content": f"count to {i}"},
                {"role": "assistant", "content": f"{i} {i + 1}"},
            ]
            yield Accepted(RawItem(Location("gen", i, "index"), {"messages": messages}, None), messages)

    original = ChunkEncoder.encode

    def spy(self: ChunkEncoder, records: Any) -> Any:
        nonlocal encoded
        lags.append(produced - encoded)
        encoded += len(records)
        return original(self, records)

    monkeypatch.setattr(prepare_module, "read_records", generated)
    monkeypatch.setattr(prepare_module, "CHUNK_SIZE", chunk)
    monkeypatch.setattr(ChunkEncoder, "encode", spy)
    cfg = RunConfig.model_validate({"data": {"sources": [{"path": "gen"}], "eval_size": 0.1}})
    rundir = RunDir(tmp_path / "r")
    prepared = prepare_module.prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)
    assert prepared.stats["accepted"] == n and encoded == n
    assert len(lags) == n // chunk
    assert max(lags) <= chunk  # at most the chunk being encoded is alive, not 3,000 records
    loaded = prepare_module.load_prepared(rundir)
    for split in (prepared.train, prepared.eval, loaded.train, loaded.eval):
        assert split.cache_files and all(Path(f["filename"]).is_file() for f in split.cache_files)
        assert type(split.data).__name__ == "MemoryMappedTable"


def test_chunked_curation_equals_curating_everything(
    tmp_path: Path, tiny_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quality filters and PII run chunk by chunk; their removals, replacements and stats add up to
    what one `curate` over all records gives."""
    path = tmp_path / "pii.jsonl"
    lines = []
    for i in range(40):
        answer = f"write to user{i}@example.com" if i % 3 == 0 else f"{i} apples."
        if i % 5 == 0:
            answer = "As an AI language model, I cannot help with that."
        turns = [{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": turns}))
    path.write_text("\n".join(lines) + "\n")
    curation = {"quality": {"enabled": True}, "pii": {"enabled": True}}
    cfg = RunConfig.model_validate(
        {"data": {"sources": [{"path": str(path)}], "curation": curation, "eval_size": 0}}
    )
    monkeypatch.setattr(prepare_module, "CHUNK_SIZE", 6)
    prepared = prepare_module.prepare(cfg.data, RunDir(tmp_path / "r"), tiny_tokenizer, seed=cfg.seed)

    items = [
        prepare_module._Pending(0, r.item.where, r.item.raw, r.messages, False)
        for r in read_records(cfg.data.sources[0])
        if isinstance(r, Accepted)
    ]
    tally = [SourceCounts("x", "messages")]
    kept, whole = curate(items, cfg.data.curation, RejectLog(), tally)
    assert prepared.stats["curation"] == whole
    assert whole["removed_by_reason"] == {"boilerplate": 8} and whole["steps"]["pii"]["replacements"]
    assert prepared.train["messages"][:] == [item.messages for item in kept]


def test_add_curation_stats_sums_counts_and_keeps_settings() -> None:
    def block(n_in: int, removed: int, emails: int) -> dict[str, Any]:
        return {
            "in": n_in,
            "kept": n_in - removed,
            "removed": removed,
            "removed_by_reason": {"too_short": removed} if removed else {},
            "steps": {
                "quality": {"enabled": True, "removed": removed, "languages": []},
                "exact_dedup": {"enabled": False, "removed": 0},
                "near_dedup": {"enabled": False, "removed": 0, "threshold": 0.8},
                "decontamination": {"enabled": False, "removed": 0, "ngram": 13, "eval_sets": {}},
                "pii": {
                    "enabled": True,
                    "action": "replace",
                    "removed": 0,
                    "records_with_pii": emails,
                    "replacements": {"EMAIL": emails} if emails else {},
                },
            },
        }

    total = add_curation_stats(add_curation_stats(None, block(10, 2, 1)), block(5, 1, 0))
    assert total == block(15, 3, 1)


def test_a_template_that_fails_on_one_record_rejects_only_that_record(tiny_tokenizer: Any) -> None:
    """The batched render fails as a whole; each record is then rendered alone, as `encode_example` does."""
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    guard = (
        "{% for m in messages %}{% if 'BOOM' in m['content'] %}"
        "{{ raise_exception('no BOOM') }}{% endif %}{% endfor %}"
    )
    tokenizer.chat_template = guard + tiny_tokenizer.chat_template
    records = [r for i in range(3) for r in _edge_records(i)]
    records.insert(4, ([{"role": "user", "content": "BOOM"}, {"role": "assistant", "content": "ok"}], False))
    got = encode_batch(tokenizer, records, 512, "drop")
    want = _reference(tokenizer, records, 512, "drop")
    assert [_same(g, w) for g, w in zip(got, want, strict=True)] == [True] * len(records)
    failed = [k for k, g in enumerate(got) if isinstance(g, RecordRejected)]
    assert failed == [4] and got[4].reason == "template_error" and "no BOOM" in got[4].detail
