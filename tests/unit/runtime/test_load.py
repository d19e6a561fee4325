import re
from pathlib import Path

import pytest

from lmtune.config.model import ModelConfig
from lmtune.errors import ModelLoadError
from lmtune.runtime.load import load_model, load_tokenizer, resolve_model_path


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


def test_auto_dtype_is_bf16_only_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from lmtune.runtime.load import torch_dtype

    assert torch_dtype("float16") == torch.float16 and torch_dtype("float32", "cuda") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert torch_dtype("auto") == torch.bfloat16
    assert torch_dtype("auto", "cuda") == torch.bfloat16
    assert torch_dtype("auto", "cpu") == torch.float32  # a CPU run on a GPU machine keeps float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert torch_dtype("auto", "cuda") == torch.float32  # pre-Ampere GPUs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_dtype("auto") == torch.float32


def test_adapters_follow_a_bf16_base_without_float32_copies(tiny_model_dir: Path) -> None:
    """PEFT's default keeps adapters in float32 and up-casts every adapter input; on a bf16 base (the
    CUDA default) lmtune keeps them bf16, and on a float32 base float32."""
    import torch

    from lmtune import methods
    from lmtune.config.methods.lora import LoraConfig
    from lmtune.methods.ia3 import Ia3Config

    for dtype, expected in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        for method in (LoraConfig(rank=4), Ia3Config()):
            model = methods.prepare(load_model(ModelConfig(path=str(tiny_model_dir), dtype=dtype)), method)
            assert {p.dtype for p in model.parameters() if p.requires_grad} == {expected}, (dtype, method)


def test_a_quantized_bf16_base_keeps_bf16_norms_and_bf16_adapters(tiny_model_dir: Path) -> None:
    """QLoRA on bf16: no float32 up-cast of norms and embeddings (PEFT's kbit preparation), and the
    adapter over the uint8 4-bit weights is made bf16 too."""
    import torch

    from lmtune import methods
    from lmtune.config.methods.lora import LoraConfig

    base = load_model(ModelConfig(path=str(tiny_model_dir), dtype="bfloat16", quantization="nf4"))
    model = methods.prepare(base, LoraConfig(rank=4))
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.bfloat16}
    norms = {p.dtype for n, p in model.named_parameters() if "norm" in n}
    assert norms == {torch.bfloat16}
    upcast = methods.prepare(
        load_model(ModelConfig(path=str(tiny_model_dir), dtype="float32", quantization="nf4")),
        LoraConfig(rank=4),
    )
    assert {p.dtype for p in upcast.parameters() if p.requires_grad} == {torch.float32}
