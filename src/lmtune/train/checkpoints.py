"""Atomic checkpoints: a Trainer checkpoint counts only once its manifest is written and verifies.

Trainer writes `checkpoints/checkpoint-N/` file by file; a crash (or SIGKILL) mid-save leaves a torn
folder that would fail, or silently mis-resume, later. After each save we write `manifest.json`
(step, every file with its size and sha256) through a temp file + rename, so the manifest exists only
once every file it lists was complete. Resume trusts only folders whose manifest exists and whose files
all match it; anything else is ignored with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from lmtune.runtime.rundir import atomic_write_text

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_step(path: Path) -> int | None:
    """N for a folder named `checkpoint-N`, else None."""
    m = _CHECKPOINT.match(path.name)
    return int(m.group(1)) if m else None


def write_manifest(checkpoint: Path, step: int) -> Path:
    """Hash every file under `checkpoint` and write `manifest.json` atomically; returns its path."""
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = [
        {"path": p.relative_to(checkpoint).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in files
    ]
    manifest = {"step": step, "files": entries}
    path = checkpoint / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2))
    return path


def verify(checkpoint: Path) -> str | None:
    """Why `checkpoint` is not complete (None when its manifest exists and every file matches)."""
    path = checkpoint / MANIFEST
    if not path.is_file():
        return "no manifest (the save did not finish)"
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        entries = manifest["files"]
        step = manifest["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return "unreadable manifest"
    if step != checkpoint_step(checkpoint):
        return f"manifest is for step {step}"
    if not entries:
        return "manifest lists no files"
    for entry in entries:
        f = checkpoint / entry["path"]
        if not f.is_file():
            return f"missing file {entry['path']}"
        if f.stat().st_size != entry["size"]:
            return f"size mismatch for {entry['path']}"
        if sha256_file(f) != entry["sha256"]:
            return f"hash mismatch for {entry['path']}"
    return None


def list_checkpoints(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """`(step, folder)` for every `checkpoint-N` folder, oldest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in checkpoints_dir.iterdir() if p.is_dir()]
    return sorted((s, p) for s, p in found if s is not None)


def latest_complete(checkpoints_dir: Path) -> Path | None:
    """The newest checkpoint whose manifest exists and verifies; torn ones are skipped with a warning."""
    for _, path in reversed(list_checkpoints(checkpoints_dir)):
        problem = verify(path)
        if problem is None:
            return path
        log.warning("ignoring incomplete checkpoint %s: %s", path, problem)
    return None


def remove_after(checkpoints_dir: Path, step: int) -> list[Path]:
    """Delete checkpoint folders newer than `step` (torn leftovers a resumed run would write over)."""
    removed = []
    for s, path in list_checkpoints(checkpoints_dir):
        if s > step:
            shutil.rmtree(path)
            removed.append(path)
    return removed


def rotate(checkpoints_dir: Path, keep: int | None) -> list[Path]:
    """Keep the newest `keep` complete checkpoints; delete older ones and torn ones older than the newest
    complete. Runs only after a new manifest is written, so a complete checkpoint always survives."""
    if keep is None:
        return []
    entries = list_checkpoints(checkpoints_dir)
    complete = [(s, p) for s, p in entries if (p / MANIFEST).is_file()]
    if not complete:
        return []
    kept = {p for _, p in complete[-keep:]}
    newest = complete[-1][0]
    removed = []
    for s, path in entries:
        if path not in kept and s < newest:
            shutil.rmtree(path)
            removed.append(path)
    return removed
