"""What a run was made from: library versions, source commit, base model identity, seed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lmtune.runtime.environment import git_commit, library_versions
from lmtune.train.checkpoints import sha256_file

_MODEL_FILES = ("config.json", "generation_config.json")


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
