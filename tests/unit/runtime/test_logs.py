"""The CLI's console logging: lmtune's progress lines as `lmtune: message` on stderr (errors only on the
other processes of a multi-process run), library chatter kept out, the caller's set-up restored."""

from __future__ import annotations

import logging

import pytest

from lmtune.runtime.logs import LIBRARY_NOISE, console_logging


def test_lmtune_info_shows_and_library_info_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    lmtune, library = logging.getLogger("lmtune.train.sft"), logging.getLogger("transformers.trainer")
    before = logging.getLogger("lmtune").level
    with console_logging(rank=0):
        lmtune.info("preflight: %d rows", 44)
        lmtune.debug("not shown")
        library.info("library chatter")
    lmtune.info("after the block: not shown")
    assert capsys.readouterr().err == "lmtune: preflight: 44 rows\n"
    assert logging.getLogger("lmtune").level == before and not logging.getLogger("lmtune").handlers


def test_other_processes_show_errors_only(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("lmtune.train.checkpoints")
    with console_logging(rank=1):
        log.info("progress")
        log.warning("a warning every process repeats")
        log.error("out of memory")
    assert capsys.readouterr().err == "lmtune[1]: out of memory\n"


@pytest.mark.parametrize(("name", "starts"), LIBRARY_NOISE.items())
def test_library_noise_is_dropped_only_meanwhile(
    caplog: pytest.LogCaptureFixture, name: str, starts: tuple[str, ...]
) -> None:
    noisy = logging.getLogger(name)
    with console_logging(rank=0):
        for start in starts:
            noisy.warning(start + ": %s, the rest of the message", "detail")
        noisy.warning("another warning of that library")
    noisy.warning(starts[0] + " (outside the CLI)")
    assert [r.getMessage() for r in caplog.records] == [
        "another warning of that library",
        starts[0] + " (outside the CLI)",
    ]
