"""The `lmtune` command line: one explicit list of verbs and their arguments."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from lmtune.cli.verbs import (
    cmd_align,
    cmd_chat,
    cmd_config_reference,
    cmd_config_schema,
    cmd_config_show,
    cmd_data_inspect,
    cmd_data_pairs,
    cmd_data_prepare,
    cmd_data_synthesize,
    cmd_data_validate,
    cmd_env,
    cmd_evaluate,
    cmd_export,
    cmd_pipeline,
    cmd_serve,
    cmd_train,
)


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

    p = verb(
        "evaluate",
        cmd_evaluate,
        "evaluate base vs tuned on a run (RUN_DIR), an OpenAI-compatible endpoint (--endpoint URL --model M),"
        " or score code samples (code PROBLEMS --samples S)",
    )
    p.add_argument("target", nargs="*", metavar="RUN_DIR | code PROBLEMS.jsonl")
    p.add_argument(
        "--endpoint",
        help="evaluate the model behind this OpenAI-compatible API base (e.g. http://127.0.0.1:8000/v1)",
    )
    p.add_argument("--model", help="--endpoint: the model's name at the endpoint")
    p.add_argument("--base-endpoint", help="--endpoint: compare against the model behind this API base")
    p.add_argument("--base-model", help="--base-endpoint: its model's name (default: --model)")
    p.add_argument("--api-key-env", help="--endpoint: environment variable holding the API key")
    p.add_argument("--out", help="--endpoint: where the results go (OUT/eval/; default runs/endpoint-MODEL)")
    p.add_argument(
        "--compare", action="store_true", help="show the evaluations of the given runs side by side"
    )
    p.add_argument("--html", help="--compare: also write the comparison as a self-contained HTML page")
    p.add_argument(
        "--allow-different-settings",
        action="store_true",
        help="--compare: show runs evaluated under different settings (flagged) instead of refusing",
    )
    p.add_argument(
        "--config",
        help="take the evaluation settings (suites, budgets) from this run config's `evaluate` section",
    )
    p.add_argument("--samples", help="code: a JSONL of {task_id, completion} to score without a model")
    p.add_argument(
        "--k", default="1,10,100", help="code: the k of pass@k, comma-separated (default 1,10,100)"
    )
    p.add_argument(
        "--timeout", type=float, default=15.0, help="code: wall-clock seconds per sample (default 15)"
    )
    p.add_argument("--workers", type=int, help="code: samples run at once (default: the CPUs)")
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
    p.add_argument(
        "--format",
        choices=("gguf", "bnb", "torchao"),
        help="also write this format from the checked merged folder, with its check (a checked export "
        "is reused; the run config's settings for the format apply)",
    )
    p.add_argument(
        "--quant",
        metavar="Q[,Q...]",
        help="gguf: the types to write, e.g. f16,q8_0,q4_k_m (default: the config's, else f16,q8_0); "
        "bnb: nf4, fp4 or int8 (default nf4); torchao: int8 (weight-only)",
    )
    p.add_argument(
        "--target",
        metavar="T[,T...]",
        help="also write deployment files: ollama, vllm, docker, k8s (comma-separated; adds to "
        "export.targets); with an existing export, only the files are written",
    )

    p = verb("serve", cmd_serve, "serve a model folder over an OpenAI-compatible HTTP API")
    p.add_argument("model_dir")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--config", help="take serve/monitor settings from this run config")
    p.add_argument("--model-name", help="the name clients send as `model` (default: the folder's name)")
    p.add_argument("--api-key-env", metavar="VAR", help="require the API key this environment variable holds")
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
