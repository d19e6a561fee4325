"""Stage 6a entry: a standard model folder that loads without lmtune (or PEFT), checked against the
in-memory model.

run(rundir)
  -> load the final weights (base + adapter, or the full model folder; `export.combine`: a weighted
     combination of adapters, built by lmtune.export.combine)
  -> greedy answers to `export.check_prompts` held-out prompts, and their logits (before)
  -> merge the adapter into the base (`export.merge`), save `<run>/export/merged/` (safetensors,
     tokenizer + chat template, generation config stopping at the end-of-turn token); with
     `export.merge: false`, or when the run cannot merge (prompt/prefix tuning, an int8 base), the
     adapter is saved as `<run>/export/adapter/` instead
  -> reload that folder from disk, same prompts (rendered with the saved tokenizer), greedy (after)
  -> `<run>/export/export_check.json`, lineage.json `export`; ExportCheckError unless identical
  -> `export.formats`: formats derived from the merged folder, each checked (GGUF: lmtune.export.gguf)
  -> `export.targets`: deployment files for Ollama, vLLM, Docker, Kubernetes (lmtune.export.targets)
"""

from __future__ import annotations

import json

from lmtune.export import combine
from lmtune.export.derived import write_derived
from lmtune.export.folder import ExportResult, export
from lmtune.export.targets import write_targets
from lmtune.runtime.rundir import RunDir
from lmtune.weights.view import final_view


def run(rundir: RunDir) -> ExportResult:
    """Export a run's final weights (or, with `export.combine`, a weighted combination of adapters:
    `lmtune.export.combine`) as a standard folder and verify it reproduces the in-memory model.

    Raises:
        ExportCheckError: the reloaded folder's greedy outputs differ from the in-memory model's
            (export_check.json and lineage are written first, so the difference can be inspected).
    """
    cfg = rundir.load_config()
    if cfg.export.combine is not None:
        result = combine.run(rundir, cfg.export.combine)
    else:
        view, weights = final_view(rundir)  # the aligned policy when the run has one
        result = export(rundir, view.export, view.weights, weights, view.evaluate.batch_size)
    if result.merged:
        for fmt in cfg.export.formats:
            write_derived(rundir, fmt, cfg.export)
    if cfg.export.targets and result.merged:
        write_targets(rundir, cfg.export.targets)
    return result


def exported(rundir: RunDir) -> bool:
    """Whether the run holds a merged export that passed its check (what the targets and the derived
    formats start from)."""
    check = rundir.export / "export_check.json"
    if not (rundir.merged / "config.json").is_file() or not check.is_file():
        return False
    record = json.loads(check.read_text(encoding="utf-8"))
    return bool(record.get("identical")) and not record.get("contract_differences")
