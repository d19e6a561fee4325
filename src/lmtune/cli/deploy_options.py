"""The deployment verbs' options read into configs, with a clear error for a bad value: `lmtune export`'s
`--format`, `--quant`, `--target`, and `lmtune serve`'s settings."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, cast, get_args

from lmtune.errors import ConfigError

if TYPE_CHECKING:
    from lmtune.config.deploy import MonitorConfig, ServeConfig, Target
    from lmtune.config.formats import DerivedFormat
    from lmtune.runtime.rundir import RunDir


def derived_format(rundir: RunDir, name: str | None, quant: str | None) -> DerivedFormat | None:
    """The format `--format` names: the run config's settings for it, with `--quant` applied.

    Raises:
        ConfigError: `--quant` without `--format`, or a type the format does not know.
    """
    # deferred: pydantic's config module only for this verb
    from pydantic import ValidationError

    from lmtune.config.formats import BnbFormat, GgufFormat, TorchaoFormat

    if name is None:
        if quant is not None:
            raise ConfigError("--quant applies with --format")
        return None
    configured = [f for f in rundir.load_config().export.formats if f.type == name]
    fmt = (
        configured[0]
        if configured
        else {"gguf": GgufFormat, "bnb": BnbFormat, "torchao": TorchaoFormat}[name]()
    )
    if quant is None:
        return fmt
    field = {"quants": [q.strip() for q in quant.split(",")]} if name == "gguf" else {"quantization": quant}
    try:
        return type(fmt).model_validate({**fmt.model_dump(), **field})
    except ValidationError as exc:
        raise ConfigError(f"--quant {quant!r}: {exc.errors()[0]['msg']}") from None


def targets(text: str | None) -> list[Target]:
    """`--target ollama,vllm` as a list of targets.

    Raises:
        ConfigError: an unknown target.
    """
    # deferred: pydantic's config module only for this verb
    from lmtune.config.deploy import Target

    if text is None:
        return []
    names = [t.strip() for t in text.split(",") if t.strip()]
    known = get_args(Target)
    for name in names:
        if name not in known:
            raise ConfigError(f"--target {name!r}: expected one of {', '.join(known)}")
    return cast(list[Target], names)


def serve_config(args: argparse.Namespace) -> tuple[ServeConfig, MonitorConfig]:
    """`lmtune serve`'s settings: the `--config` run config's serve/monitor sections (or the defaults)
    with the flags given on top."""
    # deferred: the config modules only for this verb
    from lmtune.config import loader
    from lmtune.config.deploy import MonitorConfig, ServeConfig
    from lmtune.config.run import RunConfig

    base = loader.load(RunConfig, args.config, []) if args.config else None
    serve = base.serve if base else ServeConfig()
    monitor = base.monitor if base else MonitorConfig()
    given = (
        ("host", args.host),
        ("port", args.port),
        ("model_name", args.model_name),
        ("api_key_env", args.api_key_env),
    )
    updates = {k: v for k, v in given if v is not None}
    if args.log_prompts:
        updates["log_prompts"] = True
    return serve.model_copy(update=updates), monitor
