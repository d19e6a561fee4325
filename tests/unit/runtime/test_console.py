"""Summaries read by scripts never wrap off a terminal, whatever COLUMNS says."""

from __future__ import annotations

import io

import pytest

from lmtune.runtime.console import summary_console


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_output_never_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.table import Table

    monkeypatch.setenv("COLUMNS", "40")
    out = io.StringIO()
    console = summary_console(out)
    long_line = "/tmp/" + "x" * 300 + ": 121 read, 119 accepted, 2 rejected"
    console.print(long_line)
    table = Table(title="sources")
    table.add_column("source")
    table.add_column("read", justify="right")
    table.add_row("/tmp/" + "y" * 200 + "/train.jsonl", "121")
    console.print(table)
    lines = out.getvalue().splitlines()
    assert long_line in lines
    assert any(("/tmp/" + "y" * 200 + "/train.jsonl") in line and "121" in line for line in lines)


def test_a_terminal_keeps_its_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    out = _Terminal()
    console = summary_console(out)
    console.print("word " * 30)
    assert console.width == 40
    assert max(len(line) for line in out.getvalue().splitlines()) <= 40
