"""Checkpoint manifests: a checkpoint counts only once its manifest exists and every file matches it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from lmtune.train import checkpoints
from lmtune.train.checkpoints import MANIFEST, latest_complete, remove_after, rotate, verify, write_manifest


def _checkpoint(root: Path, step: int, manifest: bool = True) -> Path:
    folder = root / f"checkpoint-{step}"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(bytes(range(256)) * (step + 1))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / "sub" / "extra.txt").write_text("x")
    if manifest:
        write_manifest(folder, step)
    return folder


def test_manifest_lists_every_file_with_size_and_hash(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path, 4)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["step"] == 4
    files = {f["path"]: f for f in manifest["files"]}
    assert set(files) == {"adapter_model.safetensors", "trainer_state.json", "sub/extra.txt"}
    weights = folder / "adapter_model.safetensors"
    assert files["adapter_model.safetensors"]["size"] == weights.stat().st_size == 256 * 5
    assert files["adapter_model.safetensors"]["sha256"] == checkpoints.sha256_file(weights)
    assert verify(folder) is None
    assert not list(folder.glob(".manifest.json.*")), "no temp file left behind"


def test_latest_complete_picks_the_newest_verified(tmp_path: Path) -> None:
    for step in (2, 4, 10):
        _checkpoint(tmp_path, step)
    assert latest_complete(tmp_path) == tmp_path / "checkpoint-10"  # numeric, not lexical, order
    assert latest_complete(tmp_path / "absent") is None


def test_torn_checkpoint_without_manifest_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 8, manifest=False)
    with caplog.at_level(logging.WARNING, logger="lmtune.train.checkpoints"):
        assert latest_complete(tmp_path) == tmp_path / "checkpoint-4"
    assert f"ignoring incomplete checkpoint {tmp_path / 'checkpoint-8'}: no manifest" in caplog.text


def test_hash_mismatch_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _checkpoint(tmp_path, 4)
    newer = _checkpoint(tmp_path, 8)
    weights = newer / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF  # same size, different content
    weights.write_bytes(bytes(data))
    assert verify(newer) == "hash mismatch for adapter_model.safetensors"
    with caplog.at_level(logging.WARNING):
        assert latest_complete(tmp_path) == tmp_path / "checkpoint-4"
    assert "hash mismatch for adapter_model.safetensors" in caplog.text


def test_missing_file_truncated_file_and_bad_manifest_are_incomplete(tmp_path: Path) -> None:
    missing = _checkpoint(tmp_path, 1)
    (missing / "sub" / "extra.txt").unlink()
    assert verify(missing) == "missing file sub/extra.txt"
    truncated = _checkpoint(tmp_path, 2)
    (truncated / "trainer_state.json").write_text("{")
    assert verify(truncated) == "size mismatch for trainer_state.json"
    garbled = _checkpoint(tmp_path, 3)
    (garbled / MANIFEST).write_text('{"step": 3, "fil')
    assert verify(garbled) == "unreadable manifest"
    moved = _checkpoint(tmp_path, 5)
    moved.rename(tmp_path / "checkpoint-6")
    assert verify(tmp_path / "checkpoint-6") == "manifest is for step 5"
    assert latest_complete(tmp_path) is None


def test_rotate_keeps_the_newest_complete_and_drops_older_torn(tmp_path: Path) -> None:
    for step in (3, 6, 9, 12):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 10, manifest=False)
    removed = rotate(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["checkpoint-10", "checkpoint-3", "checkpoint-6"]
    assert [s for s, _ in checkpoints.list_checkpoints(tmp_path)] == [9, 12]
    assert rotate(tmp_path, keep=None) == []


def test_rotate_never_deletes_a_torn_checkpoint_newer_than_the_last_complete(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 3)
    _checkpoint(tmp_path, 6, manifest=False)
    rotate(tmp_path, keep=1)
    assert [s for s, _ in checkpoints.list_checkpoints(tmp_path)] == [3, 6]


def test_remove_after_drops_only_newer_checkpoints(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step)
    (tmp_path / "not-a-checkpoint").mkdir()
    assert [p.name for p in remove_after(tmp_path, 4)] == ["checkpoint-6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4", "not-a-checkpoint"]
