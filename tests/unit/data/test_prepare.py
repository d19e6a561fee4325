"""prepare() writes the run directory contract: Arrow splits, rejects, stats, lineage."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lmtune.config.run import RunConfig
from lmtune.data.encoding.template import IGNORE
from lmtune.data.prepare import load_or_prepare, load_prepared, prepare
from lmtune.errors import DataError
from lmtune.runtime.rundir import RunDir


def _chat(i: int) -> str:
    turns = [
        {"role": "user", "content": f"how many apples {i}?"},
        {"role": "assistant", "content": f"{i} apples."},
    ]
    return json.dumps({"messages": turns})


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    chat = tmp_path / "chat.jsonl"
    lines = [_chat(i) for i in range(12)]
    lines.insert(3, '{"messages": [')  # malformed_json at line 4
    lines.insert(
        7, json.dumps({"messages": [{"role": "user", "content": "q"}]})
    )  # no_final_assistant, line 8
    lines.append(_chat(99).replace("99 apples.", "two " * 80))  # too_long at line 15
    chat.write_text("\n".join(lines) + "\n")
    alpaca = tmp_path / "alpaca.csv"
    alpaca.write_text("instruction,input,output\nadd two and two,,four\nsay hi,to the cat,hi cat\n")
    text = tmp_path / "text.json"
    text.write_text(json.dumps({"data": [{"body": "the dogs sold three books."}]}))
    return {"chat": chat, "alpaca": alpaca, "text": text}


def _cfg(tmp_path: Path, sources: dict[str, Path], **data: Any) -> RunConfig:
    return RunConfig.model_validate(
        {
            "output_dir": str(tmp_path / "runs"),
            "seed": 3,
            "data": {
                "sources": [
                    {"path": str(sources["chat"])},
                    {"path": str(sources["alpaca"]), "format": "alpaca"},
                    {"path": str(sources["text"]), "format": "text", "columns": {"text": "body"}},
                ],
                "max_length": 64,
                "eval_size": 3,
                **data,
            },
        }
    )


def test_prepare_writes_splits_rejects_stats_and_lineage(
    tmp_path: Path, sources: dict, tiny_tokenizer: Any
) -> None:
    cfg = _cfg(tmp_path, sources)
    rundir = RunDir.for_config(cfg)
    prepared = prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)

    stats = json.loads((rundir.data / "stats.json").read_text())
    assert (stats["read"], stats["accepted"], stats["rejected"]) == (18, 15, 3)
    assert stats["rejected_by_reason"] == {"malformed_json": 1, "no_final_assistant": 1, "too_long": 1}
    assert [(s["read"], s["accepted"], s["rejected"]) for s in stats["sources"]] == [
        (15, 12, 3),
        (2, 2, 0),
        (1, 1, 0),
    ]
    assert stats["split"]["train"] == 12 and stats["split"]["eval"] == 3

    rejects = [json.loads(line) for line in rundir.rejects.read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (4, "malformed_json"),
        (8, "no_final_assistant"),
        (15, "too_long"),
    ]
    assert rejects[2]["detail"].endswith("more than data.max_length=64")

    lineage = json.loads(rundir.lineage.read_text())
    assert lineage["data_fingerprint"] == stats["fingerprint"]
    assert lineage["data_counts"] == {"read": 18, "accepted": 15, "rejected": 3, "train": 12, "eval": 3}

    loaded = load_prepared(rundir)
    for split in (loaded.train, loaded.eval):
        assert split.column_names == ["input_ids", "labels", "attention_mask", "messages"]
    assert loaded.train["input_ids"][:] == prepared.train["input_ids"][:]
    assert len(loaded.train) == 12 and len(loaded.eval) == 3
    total = sum(len(r) for r in loaded.train["input_ids"]) + sum(len(r) for r in loaded.eval["input_ids"])
    assert total == stats["tokens"]["train"]["total"] + stats["tokens"]["eval"]["total"]

    rows = [*loaded.train, *loaded.eval]
    alpaca = next(r for r in rows if r["messages"][-1]["content"] == "hi cat")
    assert alpaca["messages"][0] == {"role": "user", "content": "say hi\n\nto the cat"}
    text = next(r for r in rows if r["messages"][-1]["content"].startswith("the dogs"))
    assert text["labels"] == text["input_ids"]
    chat = next(r for r in rows if r["messages"][-1]["content"] == "5 apples.")
    labelled = [t for t in chat["labels"] if t != IGNORE]
    assert tiny_tokenizer.decode(labelled) == "5 apples.<|im_end|>"
    assert chat["attention_mask"] == [1] * len(chat["input_ids"])


def test_split_and_fingerprint_are_deterministic(tmp_path: Path, sources: dict, tiny_tokenizer: Any) -> None:
    cfg = _cfg(tmp_path, sources)
    a = prepare(cfg.data, RunDir(tmp_path / "a"), tiny_tokenizer, seed=cfg.seed)
    b = prepare(cfg.data, RunDir(tmp_path / "b"), tiny_tokenizer, seed=cfg.seed)
    assert a.stats["fingerprint"] == b.stats["fingerprint"]
    assert a.eval["messages"][:] == b.eval["messages"][:]
    other = prepare(cfg.data, RunDir(tmp_path / "c"), tiny_tokenizer, seed=4)
    assert other.eval["messages"][:] != a.eval["messages"][:]
    shorter = _cfg(tmp_path, sources, max_length=32)
    assert (
        prepare(shorter.data, RunDir(tmp_path / "d"), tiny_tokenizer, seed=shorter.seed).stats["fingerprint"]
        != a.stats["fingerprint"]
    )


def test_packing_keeps_every_train_token_and_eval_unpacked(
    tmp_path: Path, sources: dict, tiny_tokenizer: Any
) -> None:
    plain = prepare(_cfg(tmp_path, sources).data, RunDir(tmp_path / "plain"), tiny_tokenizer, seed=3)
    packed = prepare(
        _cfg(tmp_path, sources, packing=True).data, RunDir(tmp_path / "packed"), tiny_tokenizer, seed=3
    )
    assert packed.train.column_names == ["input_ids", "labels", "attention_mask", "position_ids", "messages"]
    assert "position_ids" not in packed.eval.column_names
    assert len(packed.train) < len(plain.train)
    assert [t for row in packed.train["input_ids"] for t in row] == [
        t for row in plain.train["input_ids"] for t in row
    ]
    for row in packed.train:
        assert len(row["input_ids"]) <= 64
        assert row["position_ids"][0] == 0
    restarts = sum(row["position_ids"].count(0) for row in packed.train)
    assert restarts == len(plain.train)
    assert packed.stats["tokens"]["train"]["total"] == plain.stats["tokens"]["train"]["total"]


def test_truncate_policy_keeps_the_long_record(tmp_path: Path, sources: dict, tiny_tokenizer: Any) -> None:
    prepared = prepare(
        _cfg(tmp_path, sources, truncation="truncate").data, RunDir(tmp_path / "r"), tiny_tokenizer, seed=3
    )
    assert prepared.stats["rejected_by_reason"] == {"malformed_json": 1, "no_final_assistant": 1}
    assert max(len(r) for r in [*prepared.train["input_ids"], *prepared.eval["input_ids"]]) == 64


def test_system_prompt_is_prepended_to_chat_not_text(
    tmp_path: Path, sources: dict, tiny_tokenizer: Any
) -> None:
    prepared = prepare(
        _cfg(tmp_path, sources, system_prompt="be brief.").data,
        RunDir(tmp_path / "r"),
        tiny_tokenizer,
        seed=3,
    )
    rows = [*prepared.train, *prepared.eval]
    roles = [row["messages"][0]["role"] for row in rows]
    assert roles.count("system") == len(rows) - 1 and roles.count("assistant") == 1


def test_load_or_prepare_reuses_then_redoes_on_change(
    tmp_path: Path, sources: dict, tiny_tokenizer: Any
) -> None:
    cfg = _cfg(tmp_path, sources)
    rundir = RunDir(tmp_path / "r")
    with pytest.raises(DataError, match=r"no prepared data \(run the data stage first\)"):
        load_prepared(rundir)
    first = load_or_prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)
    stamp = (rundir.data / "stats.json").stat().st_mtime_ns
    again = load_or_prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)
    assert (rundir.data / "stats.json").stat().st_mtime_ns == stamp
    assert again.stats == first.stats
    changed = load_or_prepare(cfg.data, rundir, tiny_tokenizer, seed=9)
    assert (rundir.data / "stats.json").stat().st_mtime_ns != stamp
    assert changed.stats["split"]["seed"] == 9


def test_nothing_accepted_is_a_data_error_with_rejects_kept(tmp_path: Path, tiny_tokenizer: Any) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n[1]\n")
    cfg = RunConfig.model_validate({"data": {"sources": [{"path": str(bad)}]}})
    rundir = RunDir(tmp_path / "r")
    with pytest.raises(DataError, match=r"no record accepted \(2 read, 2 rejected; see .*rejects\.jsonl\)"):
        prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)
    assert len(rundir.rejects.read_text().splitlines()) == 2


def test_bad_setup_is_a_data_error(tmp_path: Path, sources: dict, tiny_tokenizer: Any) -> None:
    rundir = RunDir(tmp_path / "r")
    with pytest.raises(DataError, match=r"data\.sources is empty"):
        prepare(RunConfig().data, rundir, tiny_tokenizer, seed=0)
    no_template = copy.deepcopy(tiny_tokenizer)
    no_template.chat_template = None
    with pytest.raises(
        DataError,
        match=r"has no chat template; set data\.chat_template .*, use format `text`, or use a chat model",
    ):
        prepare(_cfg(tmp_path, sources).data, rundir, no_template, seed=3)
    missing = RunConfig.model_validate({"data": {"sources": [{"path": str(tmp_path / "gone.jsonl")}]}})
    with pytest.raises(DataError, match=r"gone\.jsonl: no such file"):
        prepare(missing.data, rundir, tiny_tokenizer, seed=missing.seed)


def test_worker_processes_give_the_same_result(tmp_path: Path, sources: dict, tiny_tokenizer: Any) -> None:
    one = prepare(_cfg(tmp_path, sources).data, RunDir(tmp_path / "one"), tiny_tokenizer, seed=3)
    two = prepare(_cfg(tmp_path, sources, num_proc=2).data, RunDir(tmp_path / "two"), tiny_tokenizer, seed=3)
    assert two.stats["fingerprint"] == one.stats["fingerprint"]
    assert two.train["input_ids"][:] == one.train["input_ids"][:]
    assert two.train["labels"][:] == one.train["labels"][:]


def test_eval_size_zero_round_trips_as_an_empty_split(
    tmp_path: Path, sources: dict, tiny_tokenizer: Any
) -> None:
    cfg = _cfg(tmp_path, sources, eval_size=0)
    rundir = RunDir.for_config(cfg)
    prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)
    loaded = load_prepared(rundir)
    assert len(loaded.eval) == 0 and len(loaded.train) == 15
    assert set(loaded.eval.column_names) == set(loaded.train.column_names)
