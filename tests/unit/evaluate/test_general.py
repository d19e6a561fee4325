"""Perplexity on other text, and the forgetting check that scores a general set by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from tuned_run import make_run

from lmtune.config.deploy import EvaluateConfig
from lmtune.config.suites import PerplexitySuite
from lmtune.data.encoding.template import IGNORE
from lmtune.errors import DataError
from lmtune.evaluate.general import conversations, token_rows
from lmtune.evaluate.run import run
from lmtune.runtime.load import package_dir


def test_text_is_cut_into_windows_of_scored_tokens(tmp_path: Path, tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "the cat sat on the mat and the dog ran in the park " * 20
    path = tmp_path / "doc.txt"
    path.write_text(text)
    rows = token_rows(str(path), tok, limit=None, window=32)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert [t for r in rows for t in r["input_ids"]] == ids[: len(ids) - (len(ids) % 32 == 1)]
    assert all(r["labels"] == r["input_ids"] and len(r["input_ids"]) <= 32 for r in rows)
    assert len(token_rows(str(path), tok, limit=3, window=32)) == 3


def test_conversations_score_only_the_assistant(tmp_path: Path, tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = tmp_path / "chats.jsonl"
    chat = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi, how are you"}]
    path.write_text(json.dumps({"messages": chat}) + "\n")
    (row,) = token_rows(str(path), tok, limit=None, window=512)
    scored = tok.decode(
        [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE]
    )
    assert "hi, how are you" in scored and "hello there" not in scored


def test_a_bad_text_row_names_file_line_and_field(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: field 'text' must be a string"):
        token_rows(str(path), AutoTokenizer.from_pretrained(tiny_model_dir), limit=None, window=64)


@pytest.mark.real
def test_chatterbot_exchanges_alternate_and_end_with_the_assistant() -> None:
    if package_dir("chatterbot_corpus") is None:
        pytest.skip("real asset missing: the chatterbot-corpus package is not installed")
    chats = conversations("chatterbot")
    assert chats is not None and len(chats) > 500
    for chat in chats:
        assert len(chat) % 2 == 0 and [t["role"] for t in chat[:2]] == ["user", "assistant"]


def test_the_forgetting_check_is_on_by_default() -> None:
    suites = EvaluateConfig().all_suites()
    assert suites[-1] == PerplexitySuite(source="chatterbot", name="general", max_samples=100)
    assert EvaluateConfig(general=None).all_suites() == EvaluateConfig(general=None).suites
    own = PerplexitySuite(source="x.txt", name="general")
    assert EvaluateConfig(suites=[own]).all_suites() == [own]  # a suite named `general` replaces it


def test_an_evaluation_reports_the_general_set_base_vs_tuned(tmp_path: Path, tiny_model_dir: Path) -> None:
    general = tmp_path / "general.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"tell me about {w}"},
                {"role": "assistant", "content": f"{w} is nice"},
            ]
        }
        for w in ("cats", "rain", "bread", "stars", "the sea")
    ]
    general.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rundir = make_run(
        tmp_path, tiny_model_dir, evaluate={"general": str(general), "suites": [{"type": "perplexity"}]}
    )
    result = run(rundir)
    assert list(result.summary) == ["eval_loss", "perplexity", "general/loss", "general/perplexity"]
    row = result.summary["general/loss"]
    assert row["items"] == 5 and row["ci95"][0] <= row["delta"] <= row["ci95"][1]
    tuned = json.loads((rundir.eval / "tuned.json").read_text())
    assert tuned["suites"]["general"]["settings"]["rows"] == 5


def test_a_general_set_that_cannot_be_read_is_skipped_with_a_warning(
    tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "gone.txt"
    rundir = make_run(
        tmp_path, tiny_model_dir, evaluate={"general": str(missing), "suites": [{"type": "perplexity"}]}
    )
    result = run(rundir)
    assert list(result.summary) == ["eval_loss", "perplexity"]
    assert f"forgetting check skipped: {missing}: text file not found" in caplog.text
    tuned = json.loads((rundir.eval / "tuned.json").read_text())
    assert tuned["suites"]["general"]["settings"]["skipped"].startswith(str(missing))
