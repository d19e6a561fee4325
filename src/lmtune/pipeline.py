"""`lmtune pipeline`: the stages of one config in order, handing off through the run directory."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, assert_never

from lmtune import align
from lmtune.config import combinations
from lmtune.config.run import RunConfig, Stage
from lmtune.data.prepare import prepare
from lmtune.errors import ConfigError
from lmtune.evaluate import run as evaluate_run
from lmtune.evaluate.report import fmt, reading
from lmtune.export import run as export_run
from lmtune.monitor.store import RequestStore
from lmtune.runtime.console import summary_console
from lmtune.runtime.load import load_tokenizer
from lmtune.runtime.records import EvalSummaryFile, MetricComparison
from lmtune.runtime.rundir import RunDir, atomic_write_text
from lmtune.serve.run import background_server
from lmtune.train import sft
from lmtune.weights.view import produces_policy


@dataclass
class PipelineResult:
    run_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)
    artefacts: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    smoke: dict[str, Any] = field(default_factory=dict)


def _data(cfg: RunConfig, rundir: RunDir, result: PipelineResult) -> None:
    prepared = prepare(cfg.data, rundir, load_tokenizer(cfg.model, cfg.data.chat_template), seed=cfg.seed)
    result.artefacts["data"] = str(rundir.data)
    result.metrics["data"] = {
        k: prepared.stats.get(k) for k in ("read", "accepted", "rejected", "train", "eval")
    }


def _train(cfg: RunConfig, rundir: RunDir, result: PipelineResult, resume: bool) -> None:
    trained = sft.run(cfg, resume=resume)
    result.artefacts["weights"] = str(trained.weights_path)
    result.artefacts["metrics"] = str(rundir.metrics)


def _align(cfg: RunConfig, rundir: RunDir, result: PipelineResult, resume: bool) -> None:
    if cfg.align is None:
        return
    aligned = align.run(cfg, resume=resume)
    result.artefacts["aligned_weights"] = str(aligned.weights_path)
    result.metrics["align"] = {"objective": cfg.align.type, "steps": aligned.steps, **aligned.metrics}


def _evaluate(rundir: RunDir, result: PipelineResult) -> None:
    evaluate_run.run(rundir)
    summary = rundir.eval / "summary.json"
    result.metrics["eval"] = EvalSummaryFile.model_validate_json(summary.read_text()).model_dump()
    result.artefacts["eval"] = str(rundir.eval)


def _export(rundir: RunDir, result: PipelineResult) -> None:
    exported = export_run.run(rundir)
    result.artefacts["export"] = str(exported.path)
    result.artefacts["export_check"] = str(rundir.export / "export_check.json")


def _serve(cfg: RunConfig, rundir: RunDir, result: PipelineResult) -> None:
    """Serve the exported folder on a free local port, send one OpenAI-style chat request, log it."""
    # deferred: httpx only when this runs (keeps `import lmtune...` light)
    import httpx

    db = Path(cfg.monitor.db_path) if cfg.monitor.db_path else rundir.monitor / "requests.sqlite"
    store = RequestStore(db)
    serve_cfg = cfg.serve.model_copy(update={"port": 0})
    with background_server(rundir.merged, serve_cfg, store) as base_url:
        body = {
            "model": serve_cfg.model_name or rundir.merged.name,
            "messages": [{"role": "user", "content": cfg.pipeline.smoke_prompt}],
            "max_tokens": cfg.evaluate.max_new_tokens,
            "temperature": 0,
        }
        response = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=600)
        response.raise_for_status()
        answer = response.json()
        metrics_text = httpx.get(f"{base_url}/metrics", timeout=30).text
    smoke = {
        "url": base_url,
        "request": body,
        "response": answer,
        "requests_logged": len(store.recent(1000)),
        "prometheus_lines": len(metrics_text.splitlines()),
    }
    atomic_write_text(rundir.monitor / "smoke_request.json", json.dumps(smoke, indent=2))
    result.smoke = smoke
    result.artefacts["request_log"] = str(db)


def run(cfg: RunConfig, resume: bool = False) -> PipelineResult:
    """Run `cfg.pipeline.stages` in order, then print the summary table.

    Raises:
        ConfigError: `serve` is a stage but the export will be an adapter, which the server cannot serve
            (checked before any stage runs).
    """
    if "serve" in cfg.pipeline.stages:
        final_method = cfg.method
        if "align" in cfg.pipeline.stages and cfg.align is not None and produces_policy(cfg.align.type):
            final_method = cfg.align.method
        refusal = combinations.merge_refusal(final_method, cfg.model.quantization)
        reason = refusal or ("export.merge: false" if cfg.export.merge is False else None)
        if reason is not None:
            raise ConfigError(
                f"pipeline.stages includes serve, but the export will be an adapter ({reason}) and the "
                "server serves merged model folders; drop serve from pipeline.stages"
            )
    rundir = RunDir.for_config(cfg)
    rundir.write_config(cfg)
    result = PipelineResult(run_dir=rundir.root)
    stage: Stage
    for stage in cfg.pipeline.stages:
        if stage == "align" and cfg.align is None:
            continue  # the default stages include align; a config without an `align` section skips it
        print(f"\n== lmtune pipeline: {stage} ==", flush=True)
        start = time.perf_counter()
        match stage:
            case "data":
                _data(cfg, rundir, result)
            case "train":
                _train(cfg, rundir, result, resume)
            case "align":
                _align(cfg, rundir, result, resume)
            case "evaluate":
                _evaluate(rundir, result)
            case "export":
                _export(rundir, result)
            case "serve":
                _serve(cfg, rundir, result)
            case _:
                assert_never(stage)
        result.seconds[stage] = round(time.perf_counter() - start, 1)
    atomic_write_text(
        rundir.root / "pipeline_summary.json",
        json.dumps(
            {
                "seconds": result.seconds,
                "artefacts": result.artefacts,
                "metrics": result.metrics,
                "smoke": result.smoke,
            },
            indent=2,
            default=str,
        ),
    )
    print_summary(result)
    return result


def comparison_table(rows: dict[str, MetricComparison]) -> Any:
    """Base vs tuned per metric, with the delta's paired 95% interval; a delta whose interval holds 0
    reads `within noise`, not as a change."""
    # deferred: rich only when this runs (keeps `import lmtune...` light)
    from rich.table import Table

    table = Table(title="Held-out metrics: base vs tuned")
    for col in ("metric", "base", "tuned", "delta", "95% interval", "items", "reading"):
        table.add_column(col, justify="left" if col in ("metric", "reading") else "right")
    for name, row in rows.items():
        interval = "-" if row.ci95 is None else f"[{fmt(row.ci95[0])}, {fmt(row.ci95[1])}]"
        table.add_row(
            name, fmt(row.base), fmt(row.tuned), fmt(row.delta), interval, fmt(row.items), reading(row)
        )
    return table


def print_summary(result: PipelineResult) -> None:
    """Metrics before/after, time per stage, where each artefact is."""
    # deferred: rich only when this runs (keeps `import lmtune...` light)
    from rich.table import Table

    console = summary_console()
    evals = result.metrics.get("eval", {})
    if evals:
        console.print(comparison_table(EvalSummaryFile.model_validate(evals).root))
    times = Table(title="Time per stage")
    times.add_column("stage")
    times.add_column("seconds", justify="right")
    for stage, secs in result.seconds.items():
        times.add_row(stage, f"{secs:.1f}")
    times.add_row("total", f"{sum(result.seconds.values()):.1f}")
    console.print(times)
    where = Table(title="Artefacts")
    where.add_column("what")
    where.add_column("where")
    where.add_row("run directory", str(result.run_dir))
    for name, path in result.artefacts.items():
        where.add_row(name, path)
    console.print(where)
    if result.smoke:
        reply = result.smoke["response"]["choices"][0]["message"]["content"]
        console.print(
            f"Served at {result.smoke['url']}; one chat request answered and logged "
            f"({result.smoke['requests_logged']} row(s) in the request store). Reply:"
        )
        console.print(reply.strip()[:400], markup=False)
