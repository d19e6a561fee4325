"""Formats derived from the checked merged folder (configs: `lmtune.config.formats.DerivedFormat`),
each written and checked through one exhaustive `match`."""

from __future__ import annotations

from pathlib import Path
from typing import assert_never

from lmtune.config.deploy import ExportConfig
from lmtune.config.formats import BnbFormat, DerivedFormat, GgufFormat, TorchaoFormat
from lmtune.errors import ExportError
from lmtune.export import gguf, gguf_check, quantized
from lmtune.export.check import check_conversations, scored_conversations
from lmtune.runtime.rundir import RunDir


def write_derived(rundir: RunDir, fmt: DerivedFormat, cfg: ExportConfig) -> Path:
    """Write `fmt` from `rundir`'s merged export into `<run>/export/<fmt.folder>/` and check it;
    returns that folder.

    Raises:
        ExportError: the run has no merged export, or the format's tools fail.
        ExportCheckError: the format's check fails (its record is written first).
    """
    if not (rundir.merged / "config.json").is_file():
        raise ExportError(
            f"{rundir.root}: no merged export to convert; run `lmtune export {rundir.root}` first"
        )
    out = rundir.export / fmt.folder
    match fmt:
        case GgufFormat():
            files = gguf.write(rundir.merged, out, rundir.root.resolve().name, fmt)
            result = gguf_check.check(
                rundir.merged,
                files,
                check_conversations(rundir, cfg.check_prompts),
                scored_conversations(rundir, fmt.text_samples),
                cfg.check_max_new_tokens,
                out / "gguf_check.json",
                fmt.tokenizer_must_match,
            )
            rundir.update_lineage(
                gguf={
                    f.quant: {
                        "path": f.path,
                        "greedy_identical": f.greedy_identical,
                        "kl_vs_f16": f.kl_vs_f16,
                    }
                    for f in result.files
                }
            )
        case BnbFormat() | TorchaoFormat():
            out = rundir.export / f"{fmt.folder}-{fmt.quantization}"
            record = quantized.write_and_check(
                rundir.merged,
                out,
                fmt,
                check_conversations(rundir, cfg.check_prompts),
                scored_conversations(rundir, fmt.text_samples),
                cfg.check_max_new_tokens,
            )
            rundir.update_lineage(
                **{
                    out.name: {
                        k: record[k] for k in ("path", "reload_identical", "greedy_identical_to_merged")
                    }
                }
            )
        case _:
            assert_never(fmt)
    return out
