"""LLM-as-judge: ratings and verdicts parsed as written, pairs judged in both orders (a win only when
both agree), agreement with exact match, and every judge prompt and output kept. The judge model is
a fake OpenAI-compatible endpoint on this machine (`conftest.judge_endpoint`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tuned_run import make_run

from lmtune.errors import ConfigError
from lmtune.evaluate.judge import Judge, agreement, pair_outcome, parse_rating, parse_verdict
from lmtune.evaluate.run import run


def test_parsing() -> None:
    assert parse_rating("good. Rating: [[7]]", 10) == 7.0
    assert parse_rating("Rating: [[3]] then Rating: [[8.5]]", 10) == 8.5  # the last one counts
    assert parse_rating("Rating: [[11]]", 10) is None and parse_rating("no rating", 10) is None
    assert parse_verdict("A is fine but [[B]]") == "B" and parse_verdict("[[D]]") is None


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("A", "B", "win"),
        ("B", "A", "loss"),
        ("C", "C", "tie"),
        ("A", "A", "inconsistent"),
        (None, "B", "inconsistent"),
    ],
)
def test_a_pair_counts_only_when_both_orders_agree(
    first: str | None, second: str | None, outcome: str
) -> None:
    assert pair_outcome(first, second) == outcome


def test_agreement_counts_only_rated_items() -> None:
    assert agreement([True, False, None, True], [True, True, False, True]) == (2 / 3, 3)
    assert agreement([None], [True]) == (None, 0)


def test_an_unset_api_key_variable_is_a_config_error(judge_endpoint: str) -> None:
    with pytest.raises(
        ConfigError, match=r"judge\.api_key_env: the environment variable LMTUNE_NO_SUCH_KEY is not set"
    ):
        Judge(
            judge_endpoint,
            "j",
            api_key_env="LMTUNE_NO_SUCH_KEY",
            rubric="",
            scale=10,
            max_tokens=64,
            timeout_s=5,
        )


def test_single_ratings_base_vs_tuned(tmp_path: Path, tiny_model_dir: Path, judge_endpoint: str) -> None:
    suite = {"type": "judge", "endpoint": judge_endpoint, "model": "fake-judge", "rubric": "Be strict."}
    rundir = make_run(tmp_path, tiny_model_dir, evaluate={"suites": [suite]})
    result = run(rundir)
    assert list(result.summary) == ["judge/score", "judge/agreement"]
    tuned = json.loads((rundir.eval / "tuned.json").read_text())
    info = tuned["suites"]["judge"]
    assert info["settings"]["items"] == len(info["items"]) == 5 and info["settings"]["unparsed"] == 0
    for row in info["items"]:
        assert (
            "Be strict." in row["judge_prompt"] and f"[Reference]\n{row['reference']}" in row["judge_prompt"]
        )
        assert row["prediction"] in row["judge_prompt"] and row["judge_output"].endswith(
            f"[[{int(row['rating'])}]]"
        )
    scores = [row["rating"] / 10 for row in info["items"]]
    assert tuned["metrics"]["judge/score"] == pytest.approx(sum(scores) / len(scores))
    assert result.summary["judge/score"]["items"] == 5


def test_pairwise_with_positions_swapped(tmp_path: Path, tiny_model_dir: Path, judge_endpoint: str) -> None:
    suite = {
        "type": "judge",
        "name": "duel",
        "endpoint": judge_endpoint,
        "model": "fake-judge",
        "mode": "pairwise",
    }
    rundir = make_run(tmp_path, tiny_model_dir, scale=2.0, evaluate={"suites": [suite], "max_new_tokens": 12})
    result = run(rundir)
    names = ["duel/win_rate", "duel/loss_rate", "duel/tie_rate", "duel/inconsistent_rate"]
    assert list(result.summary) == names
    assert sum(result.summary[n]["tuned"] for n in names) == pytest.approx(1.0)
    pairs = json.loads((rundir.eval / "tuned.json").read_text())["suites"]["duel"]["pairs"]
    assert len(pairs) == 5
    for pair in pairs:
        first, second = pair["judge_prompts"]
        assert first.index(pair["tuned"]) < first.index("Assistant B's Answer]")  # tuned is A first ...
        assert second.index(pair["base"]) < second.index("Assistant B's Answer]")  # ... then B
        # the fake judge prefers the longer answer wherever it stands, so it never contradicts itself
        longer = len(pair["tuned"]) - len(pair["base"])
        assert pair["outcome"] == ("win" if longer > 0 else "loss" if longer < 0 else "tie")
        assert len(pair["judge_outputs"]) == 2 and pair["verdicts"] == [
            parse_verdict(o) for o in pair["judge_outputs"]
        ]
