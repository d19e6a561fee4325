"""The code sandbox: a program that loops forever, forks, opens a socket, reads a file outside its
directory, deletes or writes files outside it, or takes too much memory is stopped or contained, and
counts as a failure; an honest program passes."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from lmtune.evaluate.sandbox import Limits, landlock_abi, run_program

pytestmark = pytest.mark.skipif(
    landlock_abi() < 1,
    reason="this kernel has no Landlock (Linux 5.13+): the code sandbox refuses to run here",
)
FAST = Limits(cpu_seconds=2, wall_seconds=8)  # room for a loaded machine; CPU time stops loops at 2 s


def test_an_honest_program_passes_and_may_use_its_own_directory() -> None:
    outcome = run_program("open('notes.txt', 'w').write('hi')\nassert open('notes.txt').read() == 'hi'", FAST)
    assert outcome.passed and outcome.result == "passed"


def test_a_failing_assertion_fails() -> None:
    outcome = run_program("assert 1 + 1 == 3", FAST)
    assert not outcome.passed and outcome.result == "failed: AssertionError"


@pytest.mark.parametrize("loop", ["while True:\n    pass", "import time\ntime.sleep(60)"])
def test_a_program_that_never_ends_is_stopped(loop: str) -> None:
    outcome = run_program(loop, FAST)
    assert not outcome.passed and outcome.result == "timed out"
    assert outcome.seconds < FAST.wall_seconds + 2


def test_fork_is_refused() -> None:
    outcome = run_program("import os\nfor _ in range(1000):\n    os.fork()", FAST)
    assert not outcome.passed and "TypeError" in outcome.result


def _sandboxed() -> list[int]:
    """Processes still running a sandboxed program."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"lmtune-sandbox-" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_child_forked_past_the_guard_is_killed_with_the_program() -> None:
    """ctypes reaches libc's fork behind the guard's back: the child outlives its parent and keeps the
    program's output open, so the program runs into its wall-clock limit (a failure), and the child is
    killed with the program's process group."""
    code = "import ctypes, time\nif ctypes.CDLL(None).fork() == 0:\n    time.sleep(60)\n"
    outcome = run_program(code, FAST)
    assert not outcome.passed and outcome.result == "timed out"
    assert _sandboxed() == []


def test_no_network_even_to_this_machine() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted: list[object] = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'x')"
        outcome = run_program(code, FAST)
    finally:
        server.close()
    assert not outcome.passed and accepted == []


def test_files_outside_its_directory_cannot_be_read_deleted_or_written(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    read = run_program(f"print(open({str(secret)!r}).read())", FAST)
    delete = run_program(f"import os\nos.remove({str(secret)!r})", FAST)
    wipe = run_program(f"import shutil\nshutil.rmtree({str(tmp_path)!r})", FAST)
    write = run_program(f"open({str(tmp_path / 'new.txt')!r}, 'w').write('x')", FAST)
    repo = run_program(f"print(open({str(Path(__file__))!r}).read())", FAST)
    for outcome in (read, delete, wipe, write, repo):
        assert not outcome.passed and "PermissionError" in outcome.result, outcome
    assert secret.read_text() == "do not read" and not (tmp_path / "new.txt").exists()


def test_too_much_memory_fails() -> None:
    outcome = run_program(
        "x = bytearray(8 * 1024 ** 3)", Limits(cpu_seconds=2, wall_seconds=4, memory_mb=256)
    )
    assert not outcome.passed and "MemoryError" in outcome.result


def test_the_program_does_not_run_as_this_process_sees_it() -> None:
    """Its environment holds nothing of ours (no tokens, no paths)."""
    os.environ["LMTUNE_TEST_SECRET"] = "x"
    try:
        outcome = run_program("import os\nassert 'LMTUNE_TEST_SECRET' not in os.environ", FAST)
    finally:
        del os.environ["LMTUNE_TEST_SECRET"]
    assert outcome.passed
