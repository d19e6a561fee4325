"""`eval/report.html`: written by every evaluation, self-contained, and rendered by a real headless
Chromium with a screenshot and no console errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tuned_run import make_run

from lmtune.evaluate.compare import load_eval
from lmtune.evaluate.compare_report import write_comparison
from lmtune.evaluate.report import has_direction, item_score, lower_is_better, reading
from lmtune.evaluate.run import run
from lmtune.runtime.html import bar_chart
from lmtune.runtime.records import MetricComparison
from lmtune.runtime.rundir import RunDir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> RunDir:
    root = tmp_path_factory.mktemp("report")
    suites = [{"type": "perplexity"}, {"type": "exact_match"}, {"type": "generation", "scores": ["token_f1"]}]
    rundir = make_run(root, tiny_model_dir, scale=2.0, evaluate={"suites": suites})
    run(rundir)
    return rundir


def test_the_report_holds_every_metric_and_no_outside_reference(evaluated: RunDir) -> None:
    page = (evaluated.eval / "report.html").read_text()
    summary = json.loads((evaluated.eval / "summary.json").read_text())
    for name in summary:
        assert f">{name}<" in page
    assert "Worst regressions" in page and "held-out:" in page
    assert re.search(r"(src|href)=", page) is None and "http" not in page and "<script" not in page


def test_readings_and_item_scores() -> None:
    assert (
        reading(MetricComparison(base=0.1, tuned=0.0, delta=-0.1, ci95=(-0.2, 0.0), items=40))
        == "within noise"
    )
    assert reading(MetricComparison(base=0.1, tuned=0.5, delta=0.4, ci95=(0.2, 0.6), items=40)) == "higher"
    assert reading(MetricComparison(base=1.0, tuned=0.5, delta=-0.5, ci95=(-0.7, -0.3), items=40)) == "lower"
    assert item_score({"correct": True}) == 1.0 and item_score({"passed": False}) == 0.0
    assert item_score({"predicted": 1, "answer": 2}) == 0.0 and item_score({"token_f1": 0.25}) == 0.25
    # safety rows: refusing a harmful request scores, refusing a benign one does not
    assert item_score({"kind": "harmful", "refused": True}) == 1.0
    assert item_score({"kind": "benign", "refused": True}) == 0.0
    assert item_score({"kind": "benign", "refused": False}) == 1.0


def test_directions_of_the_metrics() -> None:
    assert lower_is_better("safety/over_refusal_rate") and not lower_is_better("safety/refusal_rate")
    assert lower_is_better("general/loss") and not lower_is_better("mmlu/accuracy")
    assert not has_direction("bias/bbq_bias_ambig") and not has_direction("bias/crows_stereotype")
    assert has_direction("bias/bbq_accuracy_ambig")


def test_bars_of_negative_values_have_their_magnitude() -> None:
    svg = bar_chart([("bias", [-0.5, 0.25])], ["a", "b"])
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([-0-9.]+)"', svg)]
    assert widths == [420.0, 210.0]  # the longest magnitude fills the bar's width; none is negative
    assert ">-0.5<" in svg


def _render(page: Path, tmp_path: Path, heading: str) -> None:
    """Headless Chromium takes a screenshot of `page`; it must show something, log no console error,
    load nothing, and its DOM must hold `heading` and the charts."""
    assert CHROMIUM is not None
    shot = tmp_path / f"{page.stem}.png"
    common = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    done = subprocess.run(
        [
            *common,
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1280,2400",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    assert "ERR_" not in done.stderr  # no resource failed to load (there are none to load)
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert heading in dom.stdout and "<svg" in dom.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="system program missing: chromium (Debian's chromium package)")
def test_chromium_renders_the_report_without_console_errors(evaluated: RunDir, tmp_path: Path) -> None:
    _render(evaluated.eval / "report.html", tmp_path, "Evaluation: base vs tuned")


@pytest.mark.skipif(CHROMIUM is None, reason="system program missing: chromium (Debian's chromium package)")
def test_chromium_renders_the_comparison_page(evaluated: RunDir, tmp_path: Path) -> None:
    evals = [load_eval(evaluated.root), load_eval(evaluated.root)]
    _render(write_comparison(evals, [], tmp_path / "compare.html"), tmp_path, "Evaluations side by side")
