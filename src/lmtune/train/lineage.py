"""What a run was made from: library versions, source commit, base model identity, seed."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from lmtune.train.checkpoints import sha256_file

LIBRARIES = ("lmtune", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "safetensors")
_MODEL_FILES = ("config.json", "generation_config.json")


def library_versions() -> dict[str, str | None]:
    """Installed version of each library the run depends on (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(where: Path | None = None) -> str | None:
    """The commit of the git checkout lmtune runs from (with `-dirty` if it has local changes), else None."""
    cwd = where or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def model_hash(model_dir: str | Path) -> str | None:
    """sha256 over the config and every weight file of a local model folder (names + content hashes);
    None for a hub id (nothing local to hash)."""
    root = Path(model_dir)
    if not root.is_dir():
        return None
    files = [root / n for n in _MODEL_FILES if (root / n).is_file()]
    files += sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin"))
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}:{sha256_file(f)}\n".encode())
    return h.hexdigest()


def training_lineage(model_path: str, resolved_path: str, seed: int) -> dict[str, Any]:
    """The lineage fields the training stage writes into lineage.json."""
    return {
        "versions": library_versions(),
        "git_commit": git_commit(),
        "base_model": {"path": model_path, "resolved": resolved_path, "sha256": model_hash(resolved_path)},
        "seed": seed,
    }
