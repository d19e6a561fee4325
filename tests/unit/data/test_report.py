"""`lmtune data inspect`: the JSON report agrees with stats.json and the Arrow splits, the HTML is
self-contained (no network reference, data text escaped) and the CLI prints the summary table.

Data is generated here: labelled classification records (60 pos / 10 neg / 20 mixed, seeded order) in a
file whose name holds HTML metacharacters, plus a chat source, and one malformed line.
"""

from __future__ import annotations

import json
import random
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from lmtune.cli import main
from lmtune.config.run import RunConfig
from lmtune.data.prepare import PreparedData, load_prepared, prepare
from lmtune.data.report.summary import build_report, histogram, histogram_edges, length_summary, write_report
from lmtune.runtime.rundir import RunDir


def _write_sources(folder: Path) -> tuple[Path, Path]:
    rng = random.Random(0)
    labels = ["pos"] * 60 + ["neg"] * 10 + ["mixed"] * 20
    rng.shuffle(labels)
    reviews = folder / "reviews <b>&amp.jsonl"  # HTML metacharacters: the page must escape them
    lines = [
        json.dumps({"prompt": f"review {k}: " + "good " * rng.randrange(1, 8), "completion": y, "label": y})
        for k, y in enumerate(labels)
    ]
    reviews.write_text("\n".join([*lines, '{"prompt": broken']) + "\n")
    chat = folder / "chat.jsonl"
    turns = [
        {
            "messages": [
                {"role": "user", "content": f"question {k}"},
                {"role": "assistant", "content": "ok " * k},
            ]
        }
        for k in range(1, 31)
    ]
    chat.write_text("".join(json.dumps(t) + "\n" for t in turns))
    return reviews, chat


def _config(folder: Path, **data: Any) -> dict[str, Any]:
    reviews, chat = _write_sources(folder)
    return {
        "name": "inspected",
        "output_dir": str(folder / "runs"),
        "model": {"path": "tiny"},
        "data": {
            "sources": [
                {"path": str(reviews), "format": "prompt_completion", "weight": 2},
                {"path": str(chat), "weight": 1},
            ],
            "max_length": 96,
            "mixture": {"label_field": "label", "label_strategy": "oversample", "class_weights": True},
            **data,
        },
    }


@pytest.fixture
def prepared_run(tmp_path: Path, tiny_tokenizer: Any) -> tuple[RunDir, PreparedData]:
    cfg = RunConfig.model_validate(_config(tmp_path))
    rundir = RunDir.for_config(cfg)
    return rundir, prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)


def test_histogram_helpers() -> None:
    edges = histogram_edges(95, 20)
    assert edges[0] == 0 and edges[-1] >= 95 and len(edges) == 21 and edges[1] == 5
    assert histogram([0, 4, 5, 99, 100], [0, 50, 100]) == [3, 2]  # the top edge goes in the last bin
    assert length_summary([3, 1, 2, 10]) == {"min": 1, "mean": 4.0, "median": 3, "p95": 10, "max": 10}
    assert length_summary([])["max"] is None


def test_report_json_agrees_with_stats_and_splits(prepared_run: tuple[RunDir, PreparedData]) -> None:
    rundir, prepared = prepared_run
    files = write_report(rundir, prepared)
    report = json.loads(files.json_path.read_text())
    stats = prepared.stats

    assert report["counts"] == {"read": 121, "accepted": stats["accepted"], "rejected": stats["rejected"]}
    assert report["counts"]["read"] == report["counts"]["accepted"] + report["counts"]["rejected"]
    assert (
        report["rejected_by_reason"] == stats["rejected_by_reason"]
        and "malformed_json" in stats["rejected_by_reason"]
    )
    for name, dataset in (("train", prepared.train), ("eval", prepared.eval)):
        split = report["splits"][name]
        lengths = [len(ids) for ids in dataset["input_ids"]]
        assert split["rows"] == len(dataset) == sum(split["histogram"]["counts"])
        assert split["lengths"]["max"] == max(lengths) and split["lengths"]["min"] == min(lengths)
        assert split["tokens"]["total"] == sum(lengths)
    mixture = stats["mixture"]
    assert [(s["train_before"], s["train_after"]) for s in report["sources"]] == [
        (s["before"], s["after"]) for s in mixture["sources"]
    ]
    labels = report["labels"]
    assert labels["before"] == mixture["labels"]["before"] and labels["after"] == mixture["labels"]["after"]
    balanced = {k: v for k, v in labels["after"].items() if k != "(missing)"}
    assert len(set(balanced.values())) == 1  # oversampled to the largest label
    assert report["class_weights"] == pytest.approx(dict.fromkeys(balanced, 1.0))


class _Tags(HTMLParser):
    """Checks that every element is closed in order (`<x/>` closes itself; `<meta>` never closes)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        self.attrs += attrs
        if tag != "meta":
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        self.attrs += attrs

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


def test_html_is_self_contained_and_escapes_data(prepared_run: tuple[RunDir, PreparedData]) -> None:
    rundir, prepared = prepared_run
    extra = PreparedData(prepared.train, prepared.eval, prepared.stats | {"curation": {"pii": {"<x>": 1}}})
    html = write_report(rundir, extra).html_path.read_text()

    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<script|<link|<iframe|<img|@import|url\(", html, re.I)
    parser = _Tags()
    parser.feed(html)
    assert parser.stack == []  # every element closed, in order
    assert parser.seen.count("svg") == 6  # source mix, train mixed, rejects, 2 histograms, labels
    assert "reviews &lt;b&gt;&amp;amp.jsonl" in html and "reviews <b>" not in html
    assert "<h2>curation</h2>" in html and "&lt;x&gt;" in html  # blocks other steps add are shown
    for reason in prepared.stats["rejected_by_reason"]:
        assert reason in html


def test_cli_inspect_prepares_then_reuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(_config(tmp_path, mixture=None)))  # JSON is YAML
    run = tmp_path / "runs" / "inspected"
    assert not (run / "data").exists()

    assert main(["data", "inspect", str(config)]) == 0
    out = capsys.readouterr().out
    stats = json.loads((run / "data" / "stats.json").read_text())
    # one line, however long the path and whatever the console width (output captured: not a terminal)
    assert f"{run}: 121 read, {stats['accepted']} accepted, {stats['rejected']} rejected" in out.splitlines()
    assert "rejects by reason" in out and "malformed_json" in out and "labels" not in out
    report = json.loads((run / "data" / "data_report.json").read_text())
    assert report["labels"] is None and report["counts"]["read"] == 121
    assert (run / "data" / "data_report.html").is_file()

    stamp = (run / "data" / "stats.json").stat().st_mtime_ns
    assert main(["data", "inspect", str(run)]) == 0  # a run directory: its prepared data is reused
    assert (run / "data" / "stats.json").stat().st_mtime_ns == stamp
    assert load_prepared(RunDir(run)).stats["read"] == 121


def test_cli_inspect_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "inspect", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip() == f"lmtune: error: {tmp_path}: not a run directory (no config.yaml)"
    )


def test_report_without_labels_has_no_label_section(tmp_path: Path, tiny_tokenizer: Any) -> None:
    raw = _config(tmp_path, mixture=None)
    raw["data"]["sources"] = [
        {"path": s["path"], "format": s["format"]} for s in raw["data"]["sources"][:1]
    ] + [{"path": raw["data"]["sources"][1]["path"]}]
    cfg = RunConfig.model_validate(raw)
    rundir = RunDir.for_config(cfg)
    files = write_report(rundir, prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed))
    html = files.html_path.read_text()
    assert files.report["labels"] is None and "Label balance" not in html
    assert build_report(rundir, load_prepared(rundir))["splits"] == files.report["splits"]
