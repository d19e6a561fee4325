"""Export one weights folder as a standard model folder and check it reproduces the in-memory model
(the body of `lmtune.export.run` and of `lmtune.export.combine`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lmtune.config.deploy import ExportConfig
from lmtune.config.formats import chosen_format
from lmtune.config.run import WeightsSpec
from lmtune.export.check import (
    ExportCheck,
    ExportCheckError,
    check_conversations,
    max_abs_diff,
    sequence_logits,
)
from lmtune.export.contract import contract_differences, serving_contract
from lmtune.export.formats import load_format, save_format
from lmtune.runtime.generation import Completion, greedy_generate, render_prompt
from lmtune.runtime.rundir import RunDir, atomic_write_text
from lmtune.runtime.stops import stop_token_ids
from lmtune.weights.load import load_tuned, load_weights_tokenizer
from lmtune.weights.save import chat_generation_config

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how its check came out."""

    path: Path
    """The exported folder: `<run>/export/merged` (or `<run>/export/adapter` when not merging)."""
    merged: bool
    """Whether the folder is a full model (loads without PEFT)."""
    check: ExportCheck
    files: dict[str, str]
    """{weight file name: sha256}."""


def export(
    rundir: RunDir, cfg: ExportConfig, spec: WeightsSpec, weights: Path, batch_size: int
) -> ExportResult:
    """Export the trained weights in `weights` (base model and method: `spec`) into `rundir`'s export
    folder, with the export check (see `lmtune.export.run.run`) generating `batch_size` prompts at a
    time."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import GenerationConfig

    tuned = load_tuned(weights, spec)
    trained_contract = serving_contract(
        tuned.tokenizer,
        chat_generation_config(getattr(tuned.model, "generation_config", None), tuned.tokenizer),
    )
    conversations = check_conversations(rundir, cfg.check_prompts)
    generation = (cfg.check_max_new_tokens, batch_size)
    before, sequences = _answers(tuned.model, tuned.tokenizer, conversations, generation, stops=None)
    # Logits on the same token sequences (prompt + answer before export) on both sides.
    before_logits = sequence_logits(tuned.model, sequences)

    fmt = chosen_format(cfg.merge, spec.method, spec.model.quantization)
    out = rundir.export / fmt.folder
    files = save_format(fmt, tuned, spec, out)
    del tuned  # one model in memory at a time

    reloaded = load_format(fmt, out, spec)
    tokenizer = load_weights_tokenizer(out, spec.model)
    exported_generation = GenerationConfig.from_pretrained(out)
    exported_contract = serving_contract(tokenizer, exported_generation)
    eos = exported_generation.eos_token_id  # what a plain `generate` will stop on
    stops = eos if isinstance(eos, list) else [eos]
    after, _ = _answers(reloaded, tokenizer, conversations, generation, stops=stops)
    after_logits = sequence_logits(reloaded, sequences)

    check = ExportCheck(
        prompts=[render_prompt(tokenizer, c) for c in conversations],
        before=before,
        after=after,
        max_logit_diff=max_abs_diff(before_logits, after_logits),
        contract_differences=contract_differences(trained_contract, exported_contract),
        serving=exported_contract,
    )
    atomic_write_text(
        rundir.export / "export_check.json",
        json.dumps(check.record().model_dump(mode="json"), indent=2) + "\n",
    )
    rundir.update_lineage(
        export={
            "path": str(out),
            "merged": fmt.standalone,
            "files": files,
            "identical": check.identical,
            "serving_contract_kept": not check.contract_differences,
            "max_logit_diff": check.max_logit_diff,
        }
    )
    if check.contract_differences:
        raise ExportCheckError(
            f"{out}: the export changes what training served with: {'; '.join(check.contract_differences)}"
        )
    if not check.identical:
        raise ExportCheckError(f"{out}: the export does not reproduce the trained model: {check.failure()}")
    return ExportResult(path=out, merged=fmt.standalone, check=check, files=files)


def _answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[list[dict[str, str]]],
    generation: tuple[int, int],
    *,
    stops: list[int] | None,
) -> tuple[list[Completion], list[list[int]]]:
    """Greedy answers to the check prompts (`generation`: max new tokens, batch size), and each
    prompt + answer as token ids."""
    if not conversations:
        return [], []
    prompts = [render_prompt(tokenizer, c) for c in conversations]
    answers = greedy_generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=generation[0],
        batch_size=generation[1],
        stop_ids=stops if stops is not None else stop_token_ids(tokenizer),
    )
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return answers, [p + a.token_ids for p, a in zip(prompt_ids, answers, strict=True)]
