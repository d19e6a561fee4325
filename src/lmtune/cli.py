"""The `lmtune` command: one explicit list of verbs; each verb loads its config and calls a stage.

User mistakes (LmtuneError) print one line and exit 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lmtune.errors import LmtuneError

if TYPE_CHECKING:
    from lmtune.config.deploy import MonitorConfig, ServeConfig
    from lmtune.config.run import RunConfig


def _load_run_config(path: str, overrides: list[str]) -> RunConfig:
    from lmtune.config import loader
    from lmtune.config.run import RunConfig

    return loader.load(RunConfig, path, overrides)


def cmd_pipeline(args: argparse.Namespace) -> int:
    cfg = _load_run_config(args.config, args.overrides)  # a bad key fails before anything heavy loads
    from lmtune.pipeline import run

    run(cfg, resume=args.resume)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _load_run_config(args.config, args.overrides)
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
    from lmtune import align

    result = align.run(cfg, resume=args.resume)
    shown = ", ".join(
        f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()) if k in _ALIGN_SHOWN or "accurac" in k
    )
    print(f"aligned {result.steps} steps -> {result.weights_path}" + (f" ({shown})" if shown else ""))
    return 0


def cmd_data_validate(args: argparse.Namespace) -> int:
    from lmtune.data.validate import format_report, validate_file

    columns = dict(_split_pair(c, "--column") for c in args.column)
    report = validate_file(args.file, args.format, columns or None, args.rejects)
    print(format_report(report))
    return 0


def cmd_data_pairs(args: argparse.Namespace) -> int:
    from lmtune.data.pairs import build_pairs, format_pairs_report

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
    from lmtune.data.prepare import prepare
    from lmtune.runtime.load import load_tokenizer
    from lmtune.runtime.rundir import RunDir

    cfg = _load_run_config(args.config, args.overrides)
    rundir = RunDir.for_config(cfg)
    rundir.write_config(cfg)
    prepared = prepare(cfg, rundir, load_tokenizer(cfg.model, cfg.data.chat_template))
    print(json.dumps(prepared.stats, indent=2, default=str))
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from lmtune.data.report import inspect, print_summary
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
    files = inspect(cfg, rundir)
    print_summary(files.report)
    print(f"report: {files.html_path} and {files.json_path}")
    return 0


def cmd_data_synthesize(args: argparse.Namespace) -> int:
    from lmtune.config import loader
    from lmtune.config.synthesis import SynthesisConfig
    from lmtune.data.synthesize import format_report, synthesize

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lmtune.evaluate.run import run
    from lmtune.runtime.rundir import RunDir

    run(RunDir(Path(args.run_dir)))
    print((Path(args.run_dir) / "eval" / "summary.json").read_text())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lmtune.export.run import run
    from lmtune.runtime.rundir import RunDir

    rundir = RunDir(Path(args.run_dir))
    if args.combine is not None:
        from lmtune.export import combine

        result = combine.run(rundir, combine.parse_spec(args.combine, args.combination))
        print(f"exported a {args.combination} combination of {args.combine} -> {result.path}")
        return 0
    if args.combination != "cat":
        raise LmtuneError("--combination only applies with --combine")
    run(rundir)
    print(f"exported -> {rundir.merged}")
    return 0


def _serve_config(args: argparse.Namespace) -> tuple[ServeConfig, MonitorConfig]:
    from lmtune.config.deploy import MonitorConfig, ServeConfig

    base = _load_run_config(args.config, []) if args.config else None
    serve = base.serve if base else ServeConfig()
    monitor = base.monitor if base else MonitorConfig()
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if args.log_prompts:
        updates["log_prompts"] = True
    return serve.model_copy(update=updates), monitor


def cmd_serve(args: argparse.Namespace) -> int:
    from lmtune.serve.run import serve

    serve_cfg, monitor_cfg = _serve_config(args)
    serve(args.model_dir, serve_cfg, monitor_cfg)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from lmtune.serve.chat import chat

    chat(args.model_dir, max_tokens=args.max_tokens)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
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
    from lmtune.config import loader

    print(loader.dump(_load_run_config(args.config, args.overrides)), end="")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from lmtune.config.run import RunConfig

    print(json.dumps(RunConfig.model_json_schema(), indent=2))
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from lmtune.config.reference import render_reference
    from lmtune.config.run import RunConfig

    print(render_reference(RunConfig), end="")
    return 0


def _split_pair(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
        raise LmtuneError(f"{flag} {item!r}: expected name=value")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmtune", description="Fine-tune language models end to end.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(
        name: str,
        fn: Callable[[argparse.Namespace], int],
        help: str,
        parent: argparse._SubParsersAction = verbs,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="run config YAML")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.max_steps=50")

    p = verb(
        "pipeline", cmd_pipeline, "run every stage of a config: data, train, align, evaluate, export, serve"
    )
    config_args(p)
    p.add_argument(
        "--resume", action="store_true", help="resume training from the newest complete checkpoint"
    )

    p = verb("train", cmd_train, "prepare data (if needed) and fine-tune")
    config_args(p)
    p.add_argument("--resume", action="store_true", help="resume from the newest complete checkpoint")
    dist = p.add_argument_group("several processes or machines (accelerate launch; docs/distributed.md)")
    dist.add_argument("--nproc", type=int, default=1, help="processes per machine (one per GPU; gloo on CPU)")
    dist.add_argument(
        "--accelerate-config", help="accelerate config file: FSDP, DeepSpeed, ... (configs/accelerate/)"
    )
    dist.add_argument("--nnodes", type=int, default=1, help="machines taking part")
    dist.add_argument("--node-rank", type=int, default=0, help="this machine's rank (0 .. nnodes - 1)")
    dist.add_argument("--main-address", help="address of machine 0 (several machines)")
    dist.add_argument("--main-port", type=int, help="rendezvous port on machine 0")

    p = verb("align", cmd_align, "run the config's alignment objective (after SFT when the run has it)")
    config_args(p)
    p.add_argument("--resume", action="store_true", help="resume from the newest complete checkpoint")

    data = verbs.add_parser("data", help="data stage verbs").add_subparsers(dest="data_verb", required=True)
    p = verb("validate", cmd_data_validate, "validate a data file; rejects go to a file with reasons", data)
    p.add_argument("file")
    p.add_argument(
        "--format",
        default="messages",
        help="alpaca | messages | prompt_completion | text; alignment: preference | kto | prompt",
    )
    p.add_argument("--rejects", help="write rejected records (line, reason) to this JSONL file")
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=NAME",
        help="map a format field to the file's column name (repeatable)",
    )
    p = verb("pairs", cmd_data_pairs, "build preference pairs from problems with a reference solution", data)
    p.add_argument(
        "source", help="`gsm8k` or a file of records with a question and a solution ending '#### N'"
    )
    p.add_argument("--out", required=True, help="the pairs JSONL (preference format); its folder is created")
    p.add_argument("--limit", type=int, help="read at most this many records")
    p.add_argument("--seed", type=int, default=0, help="seeds every random choice")
    p.add_argument(
        "--corruption",
        choices=("final", "step", "mixed", "answer"),
        default="mixed",
        help="final: wrong final answer; step: a wrong intermediate result carried to the end; "
        "mixed: either; answer: only the '#### N' line changed (it contradicts the working)",
    )
    p.add_argument(
        "--format", choices=("messages", "plain"), default="messages", help="turn lists or strings"
    )
    p.add_argument(
        "--prompts-out", help="also write the prompts with their reference answers (prompt format)"
    )
    p.add_argument("--rejects", help="records that give no pair (default: <out stem>.rejects.jsonl)")
    p.add_argument("--question-field", default="question", help="the records' question field")
    p.add_argument("--answer-field", default="answer", help="the records' reference solution field")
    p = verb(
        "prepare",
        cmd_data_prepare,
        "validate, template, mask and split a config's data into its run dir",
        data,
    )
    config_args(p)
    p = verb(
        "inspect",
        cmd_data_inspect,
        "report on a run's data (prepared first if needed): data_report.html/.json and a summary table",
        data,
    )
    p.add_argument("target", help="a run config YAML or a run directory")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.max_length=512")

    p = verb(
        "synthesize",
        cmd_data_synthesize,
        "generate new records from seed examples through an OpenAI-compatible endpoint (resumable)",
        data,
    )
    p.add_argument("--seeds", required=True, help="seed examples: a file, saved folder or data alias")
    p.add_argument("--format", help="the seeds' format: alpaca | messages (default) | prompt_completion")
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=NAME",
        help="map a format field to the seeds' column name (repeatable)",
    )
    p.add_argument("--endpoint", required=True, help="API base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True, help="model name sent with each request")
    p.add_argument("--api-key-env", help="environment variable holding the API key")
    p.add_argument("--n", type=int, required=True, help="requests to make (one new record each)")
    p.add_argument(
        "--out", required=True, help="output JSONL; re-running with the same --out resumes the run"
    )
    p.add_argument("--out-format", choices=("messages", "prompt_completion"), help="default: messages")
    p.add_argument("--shots", type=int, help="seed examples shown per request (default 3)")
    p.add_argument("--seed", type=int, help="seeds the examples chosen per request (default 0)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default 1.0)")
    p.add_argument("--max-tokens", type=int, help="max_tokens per request (default 512)")
    p.add_argument("--rps", type=float, help="requests started per second at most (default: no limit)")
    p.add_argument("--concurrency", type=int, help="requests in flight at once (default 1)")
    p.add_argument("--max-retries", type=int, help="retries after 429/5xx/lost connection (default 5)")
    p.add_argument("--timeout", type=float, help="seconds to wait for one response (default 300)")
    p.add_argument(
        "--config",
        help="take the curation (dedup, quality, decontamination, PII) from this run config's data.curation",
    )

    p = verb("evaluate", cmd_evaluate, "evaluate base vs tuned on the held-out split of a run")
    p.add_argument("run_dir")
    p = verb("export", cmd_export, "merge and save a standard model folder, with an export check")
    p.add_argument("run_dir")
    p.add_argument(
        "--combine",
        metavar="PATH:W,...",
        help="export a weighted combination of LoRA adapters (adapter folders or run dirs) instead",
    )
    p.add_argument(
        "--combination",
        choices=("cat", "linear", "svd"),
        default="cat",
        help="cat: exact weighted sum of updates; svd: its low-rank approximation; linear: PEFT's A/B mix",
    )

    p = verb("serve", cmd_serve, "serve a model folder over an OpenAI-compatible HTTP API")
    p.add_argument("model_dir")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--config", help="take serve/monitor settings from this run config")
    p.add_argument(
        "--log-prompts", action="store_true", help="store prompt/completion text in the request log"
    )

    p = verb("chat", cmd_chat, "chat with a model folder in the terminal")
    p.add_argument("model_dir")
    p.add_argument("--max-tokens", type=int, default=256)

    p = verb("env", cmd_env, "report hardware and library versions")
    p.add_argument("--json", action="store_true")

    config = verbs.add_parser("config", help="config verbs").add_subparsers(dest="config_verb", required=True)
    config_args(verb("show", cmd_config_show, "print the resolved config (every default filled in)", config))
    verb("schema", cmd_config_schema, "print the config JSON schema", config)
    verb("reference", cmd_config_reference, "print the markdown config reference", config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every verb's entry, each process of `lmtune train --nproc N` included: lmtune's progress lines on
    stderr, a user error as one `lmtune: error: ...` line and status 2."""
    from lmtune.runtime.logs import console_logging

    args = build_parser().parse_args(argv)
    with console_logging():
        try:
            return int(args.fn(args))
        except LmtuneError as exc:
            print(f"lmtune: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("lmtune: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
