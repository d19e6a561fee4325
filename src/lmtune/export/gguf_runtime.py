"""llama.cpp's runtime on a GGUF file, through llama-cpp-python (the `gguf` extra): tokenize, logits at
every position, greedy generation, the file's metadata; and llama.cpp's quantizer.

This is the real engine users serve GGUF files with (llama.cpp, and Ollama and LM Studio on top of it),
so the GGUF check sees what they see: its tokenizer, its kernels, its reading of the file's metadata.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.errors import ExportError

if TYPE_CHECKING:
    import numpy as np

INSTALL_HINT = "install the gguf extra: pip install 'lmtune[gguf]' (llama-cpp-python)"


def _llama_cpp() -> Any:
    try:
        # deferred: llama-cpp-python is an optional extra
        import llama_cpp
    except ImportError:
        raise ExportError(f"the GGUF export check runs llama.cpp: {INSTALL_HINT}") from None
    # llama.cpp's log goes through this logger: errors only (the quantizer lists every tensor otherwise)
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp


def quantize(source: Path, out: Path, quant: str) -> None:
    """Quantize the GGUF file `source` to `quant` (`q8_0`, `q4_k_m`...) with llama.cpp's quantizer.

    Raises:
        ExportError: llama.cpp has no such type, or quantizing fails.
    """
    llama_cpp = _llama_cpp()
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        raise ExportError(f"llama.cpp has no quantization type {quant!r}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    tmp = out.with_name(f".{out.name}.tmp")
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
    if status != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{source}: llama.cpp could not quantize it to {quant} (status {status})")
    tmp.replace(out)


class GgufModel:
    """One GGUF file loaded in llama.cpp (CPU), with logits kept for every evaluated position."""

    def __init__(self, path: Path, context: int = 2048) -> None:
        """Load `path`.

        Raises:
            ExportError: llama.cpp cannot load the file.
        """
        llama_cpp = _llama_cpp()
        self.path = path
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=context,
                n_batch=min(context, 512),
                logits_all=True,
                verbose=False,
                n_threads=os.cpu_count() or 1,
            )
        except (ValueError, RuntimeError) as exc:
            raise ExportError(f"{path}: llama.cpp cannot load it ({exc})") from None

    @property
    def metadata(self) -> dict[str, str]:
        """The file's key/value metadata as llama.cpp read it (values as strings)."""
        return dict(self.llm.metadata)

    @property
    def context(self) -> int:
        return int(self.llm.n_ctx())

    def ends_generation(self, token: int) -> bool:
        """Whether llama.cpp ends a generation at `token` (an end-of-generation token of the file)."""
        llama_cpp = _llama_cpp()
        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))

    def tokenize(self, text: str) -> list[int]:
        """`text` as llama.cpp tokenizes it (special tokens parsed, no BOS added)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits at every position of `ids` (float32, [len(ids), vocab]) from a fresh context.

        Raises:
            ExportError: the sequence does not fit the context.
        """
        # deferred: numpy only when this runs (keeps `import lmtune...` light)
        import numpy as np

        if len(ids) > self.context:
            raise ExportError(f"{self.path}: {len(ids)} tokens do not fit the {self.context}-token context")
        self.llm.reset()
        self.llm.eval(list(ids))
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def greedy(self, prompt: Sequence[int], max_new_tokens: int, stops: Sequence[int]) -> list[int]:
        """Greedy (argmax) continuation of `prompt`, through the first stop token."""
        # deferred: numpy only when this runs (keeps `import lmtune...` light)
        import numpy as np

        self.llm.reset()
        self.llm.eval(list(prompt))
        out: list[int] = []
        while len(out) < max_new_tokens and self.llm.n_tokens < self.context:
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            out.append(token)
            if token in stops:
                break
            self.llm.eval([token])
        return out

    def close(self) -> None:
        self.llm.close()
