"""Stage 5 entry: held-out loss and generation metrics for the tuned model and (optionally) its base.

run(rundir)
  -> config.yaml, final weights (adapter/ or model/), data/eval
  -> tuned: eval loss + perplexity on the whole eval split; greedy answers to up to `max_samples`
     prompts, scored against the reference answers
  -> base (when `evaluate.compare_base`): the same, with the adapter disabled (LoRA: the same PeftModel,
     no second copy) or the base model loaded after the tuned one is released (full fine-tuning)
  -> eval/tuned.json, eval/base.json, eval/summary.json, and one `{"kind": "eval_summary", "eval": summary}`
     line in metrics.jsonl
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune import methods
from lmtune.config.deploy import EvaluateConfig
from lmtune.config.run import WeightsSpec
from lmtune.config.suites import JudgeSuite
from lmtune.data.prepare import load_prepared
from lmtune.errors import DataError
from lmtune.evaluate.judge_suite import judge_pairs
from lmtune.evaluate.report import write_report
from lmtune.evaluate.settings import settings_record
from lmtune.evaluate.stats import ItemScores, paired_interval
from lmtune.evaluate.suites import Answers, EvalExample, Metrics, run_suite
from lmtune.runtime.records import EvalSummaryFile, EvalSummaryLog
from lmtune.runtime.rundir import RunDir, atomic_write_text
from lmtune.runtime.stops import stop_token_ids
from lmtune.weights.load import load_base, load_tuned
from lmtune.weights.view import final_view

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("eval_loss", "perplexity", "exact_match", "format_compliance")
"""The metrics compared base vs tuned in summary.json with the default suites."""


@dataclass(frozen=True)
class EvalSummary:
    """What `run` measured; the same numbers are in `<run>/eval/*.json`."""

    tuned: Metrics
    base: Metrics | None
    """None when `evaluate.compare_base` is off."""
    summary: dict[str, dict[str, float | None]]
    """{metric: {base, tuned, delta}} with delta = tuned - base (None where either side is None)."""
    out_dir: Path


def run(
    rundir: RunDir, *, weights: Path | None = None, settings: EvaluateConfig | None = None
) -> EvalSummary:
    """Evaluate a run directory's trained weights on its eval split and write `<run>/eval/`.

    Args:
        rundir: A run directory with config.yaml and a prepared eval split.
        weights: An adapter or full model folder to evaluate instead of the run's own final weights
            (which are the aligned policy when the run has one: `lmtune.weights.view.final_view`, whose
            "base" is then the model alignment started from).
        settings: An evaluate section to use instead of the run's own (e.g. other suites).

    Returns:
        The tuned (and base) metrics and their comparison.
    """

    cfg, final = final_view(rundir) if weights is None else (rundir.load_config(), weights)
    examples = load_eval_examples(rundir)
    result = evaluate(
        settings or cfg.evaluate,
        cfg.weights,
        final,
        examples,
        rundir.eval,
        system_prompt=cfg.data.system_prompt,
    )
    rundir.append_metrics(EvalSummaryLog(eval=EvalSummaryFile.model_validate(result.summary).root))
    return result


def load_eval_examples(rundir: RunDir) -> list[EvalExample]:
    """The run's prepared eval split (written by the data stage) as `EvalExample`s."""

    examples = [to_example(row, i) for i, row in enumerate(load_prepared(rundir).eval)]
    if not examples:
        raise DataError(f"{rundir.data / 'eval'}: the eval split is empty; set data.eval_size > 0")
    return examples


def to_example(row: dict[str, Any], index: int) -> EvalExample:
    """Split a prepared row into tokens and (prompt messages, reference = last assistant message)."""
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise DataError(
            f"eval example {index}: the conversation must end with an assistant message (the reference)"
        )
    tokens = {k: list(row[k]) for k in ("input_ids", "labels", "attention_mask")}
    return EvalExample(tokens, messages[:-1], messages[-1]["content"])


def evaluate(
    cfg: EvaluateConfig,
    spec: WeightsSpec,
    weights: Path,
    examples: list[EvalExample],
    out_dir: Path,
    *,
    system_prompt: str | None = None,
) -> EvalSummary:
    """Evaluate `weights` (adapter or full model folder, of base model and method `spec`) and, when
    `cfg.compare_base`, the base model.

    Writes `out_dir/tuned.json`, `out_dir/base.json` (only when comparing), `out_dir/summary.json` and
    `out_dir/settings.json` (what the numbers depend on, with its hash: `lmtune.evaluate.settings`).
    """
    if not examples:
        raise DataError("the eval split is empty: nothing to evaluate")
    tuned = load_tuned(weights, spec)
    tok = tuned.tokenizer
    record = settings_record(cfg, tok, stop_token_ids(tok), system_prompt, spec, weights)

    tuned_report, tuned_items = evaluate_one(
        tuned.model, tok, examples, cfg, label="tuned", system_prompt=system_prompt
    )
    base_report: dict[str, Any] | None = None
    base_items: dict[str, ItemScores] = {}
    base_view = methods.base_view(tuned.model, spec.method) if cfg.compare_base else None
    if base_view is not None:  # the same model computes the base function (e.g. adapters disabled)
        with base_view:
            base_report, base_items = evaluate_one(
                tuned.model, tok, examples, cfg, label="base", system_prompt=system_prompt
            )
    elif cfg.compare_base:
        del tuned  # one full model in memory at a time
        base = load_base(spec.model, len(tok))
        base_report, base_items = evaluate_one(
            base, tok, examples, cfg, label="base", system_prompt=system_prompt
        )

    return write_results(
        cfg,
        out_dir,
        record,
        ({"model": "tuned", "weights": str(weights)}, tuned_report, tuned_items),
        ({"model": "base", "base": spec.model.path}, base_report, base_items),
    )


Side = tuple[dict[str, Any], dict[str, Any] | None, dict[str, ItemScores]]
"""One model's (what it is, its report or None when not evaluated, its per-item scores)."""


def write_results(
    cfg: EvaluateConfig, out_dir: Path, record: dict[str, Any], tuned: Side, base: Side
) -> EvalSummary:
    """Pairwise judging, then `out_dir`'s settings.json, tuned.json, base.json (removed when there is no
    base: a stale one would mislead), summary.json (paired intervals) and report.html."""
    (tuned_about, tuned_report, tuned_items), (base_about, base_report, base_items) = tuned, base
    assert tuned_report is not None, "the tuned model is always evaluated"
    add_judge_pairs(cfg, tuned_report, base_report)
    stamp = {"settings_hash": record["settings_hash"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "settings.json", record)
    write_json(out_dir / "tuned.json", {**tuned_about, **stamp, **tuned_report})
    if base_report is not None:
        write_json(out_dir / "base.json", {**base_about, **stamp, **base_report})
    else:
        (out_dir / "base.json").unlink(missing_ok=True)
    base_metrics = base_report["metrics"] if base_report is not None else None
    names = [
        name for suite in cfg.all_suites() for name in suite.metric_names() if name in tuned_report["metrics"]
    ]
    summary = compare(tuned_report["metrics"], base_metrics, names, tuned_items, base_items)
    write_json(out_dir / "summary.json", summary)
    write_report(out_dir)
    return EvalSummary(tuned_report["metrics"], base_metrics, summary, out_dir)


def add_judge_pairs(cfg: EvaluateConfig, tuned: dict[str, Any], base: dict[str, Any] | None) -> None:
    """Pairwise judge suites: tuned against base, once both have answered (results go to `tuned`)."""
    for suite in cfg.all_suites():
        if not isinstance(suite, JudgeSuite) or suite.mode != "pairwise":
            continue
        if base is None:
            log.warning("judge suite %s: pairwise needs the base model (evaluate.compare_base)", suite.name)
            continue
        rates, pairs = judge_pairs(
            suite, tuned["suites"][suite.name]["items"], base["suites"][suite.name]["items"]
        )
        tuned["metrics"] |= rates
        tuned["suites"][suite.name]["pairs"] = pairs


def evaluate_one(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[EvalExample],
    cfg: EvaluateConfig,
    *,
    label: str,
    system_prompt: str | None = None,
) -> tuple[dict[str, Any], dict[str, ItemScores]]:
    """Every suite of `cfg.suites` on `model`, in order (generation metrics on the first
    `cfg.max_samples` examples).

    Returns:
        ({"metrics": {...}, "predictions": [{prompt, reference, prediction, reference_answer,
        predicted_answer, correct, has_format}, ...], "suites": {suite name: {"settings", "items"}}},
        {metric: per-item scores}).
    """
    answers = Answers(model, tokenizer, examples, cfg, stop_token_ids(tokenizer), label, system_prompt)
    return evaluate_answers(answers, cfg)


def evaluate_answers(answers: Answers, cfg: EvaluateConfig) -> tuple[dict[str, Any], dict[str, ItemScores]]:
    """Every suite of `cfg` on the model behind `answers` (a local model, or an endpoint), in order:
    the report (metrics, predictions, each suite's settings and items) and the per-item scores."""
    found: Metrics = {}
    items: dict[str, ItemScores] = {}
    per_suite: dict[str, Any] = {}
    for suite in cfg.all_suites():
        try:
            result = run_suite(suite, answers)
        except DataError as exc:
            if suite in cfg.suites:
                raise
            # the automatic forgetting check on a general set that cannot be read: say so, go on
            log.warning("forgetting check skipped: %s", exc)
            per_suite["general"] = {"settings": {"skipped": str(exc)}, "items": []}
            continue
        found |= result.metrics
        items |= result.items
        if result.rows or result.settings:
            per_suite[getattr(suite, "name", suite.type)] = {
                "settings": result.settings,
                "items": result.rows,
            }
    predictions = answers.predictions()
    if predictions:
        found["samples"] = len(predictions)
    report: dict[str, Any] = {"metrics": found, "predictions": predictions}
    if per_suite:
        report["suites"] = per_suite
    return report, items


def compare(
    tuned: Metrics,
    base: Metrics | None,
    names: Sequence[str] = SUMMARY_METRICS,
    tuned_items: dict[str, ItemScores] | None = None,
    base_items: dict[str, ItemScores] | None = None,
) -> dict[str, dict[str, Any]]:
    """{metric: {base, tuned, delta, ci95, items}} for the metrics `names`; delta = tuned - base, and
    where both sides kept per-item scores, its paired bootstrap 95% interval and the items it counts."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        t = tuned.get(name)
        b = base.get(name) if base is not None else None
        delta = t - b if t is not None and b is not None else None
        row: dict[str, Any] = {"base": b, "tuned": t, "delta": delta}
        t_items, b_items = (tuned_items or {}).get(name), (base_items or {}).get(name)
        if delta is not None and t_items is not None and b_items is not None:
            interval = paired_interval(b_items, t_items)
            if interval is not None:
                row |= {"ci95": [interval.low, interval.high], "items": interval.items}
        out[name] = row
    return out


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
