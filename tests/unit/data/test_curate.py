"""Curation through `prepare`: every step removes what it should with its reason and a detail naming what
it matched, PII is replaced in the saved splits, stats.json's `curation` block adds up, and
read = accepted + rejected still holds per source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmtune.config.run import RunConfig
from lmtune.data.prepare import prepare
from lmtune.runtime.rundir import RunDir

STORY = (
    "Maya plants four rows of tomatoes with nine plants in each row, then gives away a third of the plants "
    "to her neighbour who grows peppers. How many tomato plants does Maya keep in her garden this year?"
)
EVAL = (
    "Tom has seven red kites and buys five more blue kites at the market on a sunny Saturday morning in May"
)


def _chat(user: str, assistant: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    a = [
        _chat(STORY, "Maya keeps 24 plants."),  # 1 kept
        _chat("what is 2 times three?", "It is 6."),  # 2 kept
        _chat("What is 2 times three", "it is 6"),  # 3 duplicate of 2 (case, punctuation)
        _chat(STORY.replace("gives away", "then gives away"), "Maya keeps 24 plants."),  # 4 near dup of 1
        _chat(f"Quick: {EVAL}?", "12 kites."),  # 5 contaminated
        _chat("Say something.", "As an AI language model, I do not have opinions."),  # 6 boilerplate
        _chat("Email?", "Write to jane.doe@example.com or call +44 20 7946 0958."),  # 7 kept, PII replaced
    ]
    b = [
        _chat("repeat?", "again and again " * 10),  # 1 repetitive
        _chat("card?", "Use 4111 1111 1111 1111 to pay."),  # 2 kept, PII replaced
        _chat("What is 2 times three?", "It is 6!"),  # 3 duplicate of a:2 (across sources)
        _chat("empty?", " . "),  # 4 too_short (min_response_chars 2)
        _chat("what is 5 times three?", "It is 15."),  # 5 kept
    ]
    evals = _write(tmp_path / "eval.jsonl", [{"question": EVAL, "answer": "12"}])
    return _write(tmp_path / "a.jsonl", a), _write(tmp_path / "b.jsonl", b), evals


def _cfg(tmp_path: Path, curation: dict[str, Any]) -> RunConfig:
    a, b, _ = _sources(tmp_path)
    return RunConfig.model_validate(
        {
            "output_dir": str(tmp_path / "runs"),
            "data": {"sources": [{"path": str(a)}, {"path": str(b)}], "eval_size": 1, "curation": curation},
        }
    )


ALL_ON = {
    "exact_dedup": {"enabled": True},
    "near_dedup": {"enabled": True},
    "quality": {"enabled": True, "min_response_chars": 2},
    "pii": {"action": "replace"},
}


def _run(tmp_path: Path, tokenizer: Any, curation: dict[str, Any]) -> tuple[dict, list[dict], RunDir]:
    cfg = _cfg(tmp_path, curation)
    rundir = RunDir.for_config(cfg)
    prepare(cfg.data, rundir, tokenizer, seed=cfg.seed)
    stats = json.loads((rundir.data / "stats.json").read_text())
    rejects = [json.loads(line) for line in rundir.rejects.read_text().splitlines()]
    return stats, rejects, rundir


def test_every_step_removes_with_its_reason_and_the_counts_add_up(
    tmp_path: Path, tiny_tokenizer: Any
) -> None:
    evals = {"name": "kites", "path": str(tmp_path / "eval.jsonl"), "format": "prompt_completion"}
    evals["columns"] = {"prompt": "question", "completion": "answer"}
    curation = ALL_ON | {"decontamination": {"eval_sets": [evals]}}
    stats, rejects, rundir = _run(tmp_path, tiny_tokenizer, curation)
    a = str(tmp_path / "a.jsonl")

    got = {(Path(r["source"]).name, r["line"]): (r["reason"], r["detail"]) for r in rejects}
    assert {k: v[0] for k, v in got.items()} == {
        ("a.jsonl", 3): "duplicate",
        ("a.jsonl", 4): "near_duplicate",
        ("a.jsonl", 5): "contaminated",
        ("a.jsonl", 6): "boilerplate",
        ("b.jsonl", 1): "repetitive",
        ("b.jsonl", 3): "duplicate",
        ("b.jsonl", 4): "too_short",
    }
    assert got[("a.jsonl", 3)][1] == f"same text as {a}:2"
    assert got[("b.jsonl", 3)][1] == f"same text as {a}:2"
    assert got[("a.jsonl", 4)][1].startswith(f"near duplicate of {a}:1 (Jaccard 0.9")
    assert got[("a.jsonl", 4)][1].endswith(">= 0.8 on 5-char shingles)")
    assert "with eval set 'kites'" in got[("a.jsonl", 5)][1]

    assert (stats["read"], stats["accepted"], stats["rejected"]) == (12, 5, 7)
    assert [(s["read"], s["accepted"], s["rejected"]) for s in stats["sources"]] == [(7, 3, 4), (5, 2, 3)]
    block = stats["curation"]
    assert (block["in"], block["kept"], block["removed"]) == (12, 5, 7)
    assert block["removed_by_reason"] == {
        "boilerplate": 1,
        "contaminated": 1,
        "duplicate": 2,
        "near_duplicate": 1,
        "repetitive": 1,
        "too_short": 1,
    }
    steps = block["steps"]
    assert [
        steps[s]["removed"] for s in ("quality", "exact_dedup", "near_dedup", "decontamination", "pii")
    ] == [
        3,
        2,
        1,
        1,
        0,
    ]
    assert steps["pii"] == {
        "enabled": True,
        "action": "replace",
        "removed": 0,
        "records_with_pii": 2,
        "replacements": {"CARD": 1, "EMAIL": 1, "PHONE": 1},
    }

    from datasets import load_from_disk

    texts = [
        t["content"]
        for split in ("train", "eval")
        for row in load_from_disk(str(rundir.data / split))["messages"]
        for t in row
    ]
    joined = "\n".join(texts)
    assert "Write to <EMAIL> or call <PHONE>." in texts and "Use <CARD> to pay." in texts
    assert "example.com" not in joined and "4111" not in joined


def test_pii_drop_writes_the_scrubbed_record_to_the_rejects_file(tmp_path: Path, tiny_tokenizer: Any) -> None:
    stats, rejects, _ = _run(
        tmp_path, tiny_tokenizer, {"pii": {"action": "drop", "types": ["EMAIL", "CARD"]}}
    )
    pii = [r for r in rejects if r["reason"] == "pii"]
    assert [(Path(r["source"]).name, r["line"], r["detail"]) for r in pii] == [
        ("a.jsonl", 7, "contains EMAIL x1"),
        ("b.jsonl", 2, "contains CARD x1"),
    ]
    assert pii[0]["raw"]["messages"][1]["content"] == "Write to <EMAIL> or call +44 20 7946 0958."
    assert stats["curation"]["steps"]["pii"]["removed"] == 2 and stats["rejected_by_reason"] == {"pii": 2}
    assert stats["read"] == stats["accepted"] + stats["rejected"] == 12


def test_defaults_only_scrub_pii(tmp_path: Path, tiny_tokenizer: Any) -> None:
    stats, rejects, _ = _run(tmp_path, tiny_tokenizer, {})
    assert rejects == [] and (stats["read"], stats["accepted"]) == (12, 12)
    steps = stats["curation"]["steps"]
    assert [s for s, v in steps.items() if v["enabled"]] == ["pii"]
    assert steps["pii"]["replacements"] == {"CARD": 1, "EMAIL": 1, "PHONE": 1}


def test_curation_off_changes_nothing(tmp_path: Path, tiny_tokenizer: Any) -> None:
    stats, _, rundir = _run(tmp_path, tiny_tokenizer, {"pii": {"enabled": False}})
    assert stats["curation"]["removed"] == 0 and stats["curation"]["steps"]["pii"]["replacements"] == {}
    from datasets import load_from_disk

    rows = [
        row for split in ("train", "eval") for row in load_from_disk(str(rundir.data / split))["messages"]
    ]
    assert any("jane.doe@example.com" in t["content"] for row in rows for t in row)


def test_text_selection_and_placeholder_options(tmp_path: Path, tiny_tokenizer: Any) -> None:
    """`text: responses` dedups records with the same answer whatever the question, and checks only the
    answers for contamination; `placeholder` sets the replacement text."""
    evals = {"name": "ans", "path": str(tmp_path / "eval.jsonl"), "format": "prompt_completion"}
    evals["columns"] = {"prompt": "question", "completion": "answer"}
    curation = {
        "exact_dedup": {"enabled": True, "text": "responses"},
        "decontamination": {"eval_sets": [evals], "text": "responses"},
        "pii": {"placeholder": "[{type}]"},
    }
    _, rejects, rundir = _run(tmp_path, tiny_tokenizer, curation)
    got = {(Path(r["source"]).name, r["line"]): (r["reason"], r["detail"]) for r in rejects}
    # a:4 (the reworded story) has a:1's answer; a:5 quotes the eval question in its prompt only
    a = tmp_path / "a.jsonl"
    assert got == {
        ("a.jsonl", 3): ("duplicate", f"same text as {a}:2"),
        ("a.jsonl", 4): ("duplicate", f"same text as {a}:1"),
        ("b.jsonl", 3): ("duplicate", f"same text as {a}:2"),
    }
    from datasets import load_from_disk

    splits = [load_from_disk(str(rundir.data / split))["messages"] for split in ("train", "eval")]
    texts = [t["content"] for rows in splits for row in rows for t in row]
    assert "Write to [EMAIL] or call [PHONE]." in texts
