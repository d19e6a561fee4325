import re
from pathlib import Path

import pytest

from lmtune.config.model import ModelConfig
from lmtune.errors import ModelLoadError
from lmtune.models.load import load_model, load_tokenizer, resolve_model_path


def test_hub_id_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "looks like a hub id, but HF_HUB_OFFLINE=1 forbids downloading" in str(err.value)


def test_hub_id_online_is_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model_path("org/model") == "org/model"


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=re.escape("folder has no config.json")):
        resolve_model_path(str(tmp_path))


def test_nonsense_path() -> None:
    with pytest.raises(ModelLoadError, match="no such folder, and not a hub id or a packaged alias"):
        resolve_model_path("./does/not/exist/at/all")


def test_local_folder_loads(tiny_model_dir: Path) -> None:
    cfg = ModelConfig(path=str(tiny_model_dir))
    tok = load_tokenizer(cfg)
    model = load_model(cfg)
    assert tok.eos_token == "<|im_end|>"
    assert model.config.vocab_size == len(tok)
    assert cfg.trust_remote_code is False


def test_tiny_alias_is_built_once_into_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMTUNE_CACHE", str(tmp_path))
    first = resolve_model_path("tiny")
    stamp = (Path(first) / "config.json").stat().st_mtime_ns
    assert resolve_model_path("tiny") == first
    assert (Path(first) / "config.json").stat().st_mtime_ns == stamp
    assert (Path(first) / "model.safetensors").is_file()


@pytest.mark.real
def test_smollm2_alias_is_a_real_safetensors_folder(smollm2_dir: Path) -> None:
    import json

    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["vocab_size"] == 49152
    assert (smollm2_dir / "model.safetensors").is_file()
    assert not list(smollm2_dir.glob("*.bin")), "weights must be safetensors only"
