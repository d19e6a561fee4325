"""Training on several processes (and machines) through accelerate: the launch command, and which
process writes the run directory.

`lmtune train CONFIG --nproc N` runs accelerate's launcher (`accelerate launch ... -m lmtune.cli train
CONFIG`): accelerate (with torch's elastic launcher underneath) starts the N processes, each entering
through the same `lmtune` CLI, and sets up the process group, and transformers' Trainer wraps the model —
DDP by default; FSDP (FSDP2) or DeepSpeed ZeRO when an accelerate config file (`configs/accelerate/`) says
so. lmtune has no launcher or collective code of its own: this module builds accelerate's command line,
reports a failed run the way a one-process run reports it (`failures_to_launcher`), and answers "am I
the process that writes?".

Each process trains on its own micro-batches of `trainer.batch_size` rows, so the global batch is
nproc x batch_size x grad_accum. The loss is averaged over the tokens of the whole global batch
(transformers' `average_tokens_across_devices`), so a 2-process run follows the same loss curve as one
process with twice the batch.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from lmtune import errors as lmtune_errors
from lmtune.errors import ConfigError, LmtuneError
from lmtune.runtime.device import pick_device

if TYPE_CHECKING:
    from accelerate import PartialState

    from lmtune.config.run import RunConfig


@dataclass(frozen=True)
class Launch:
    """How to start a multi-process run (the `lmtune train` flags of the same names)."""

    nproc: int
    """Processes per machine (one per GPU; on CPU, gloo processes)."""
    accelerate_config: Path | None = None
    """An accelerate config file (FSDP, DeepSpeed, multi-node); none means plain DDP."""
    nnodes: int = 1
    """Machines taking part; each runs the same command with its own `node_rank`."""
    node_rank: int = 0
    main_address: str | None = None
    """Address of machine 0 (needed when nnodes > 1)."""
    main_port: int | None = None
    """Rendezvous port on machine 0; none picks a free one on a single machine (29500 across machines)."""


def launch_command(launch: Launch, config: str, overrides: Sequence[str], resume: bool) -> list[str]:
    """`python -m accelerate.commands.launch ... -m lmtune.cli train CONFIG [overrides] [--resume]`.

    Raises:
        ConfigError: bad process counts, a missing accelerate config, or several machines without the
            address of machine 0.
    """
    if launch.nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {launch.nproc}")
    if launch.nnodes < 1 or not 0 <= launch.node_rank < launch.nnodes:
        raise ConfigError(
            f"--node-rank must be between 0 and --nnodes - 1 ({launch.nnodes - 1}), got {launch.node_rank}"
        )
    if launch.nnodes > 1 and not launch.main_address:
        raise ConfigError("training on several machines (--nnodes > 1) needs --main-address (machine 0)")
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch.accelerate_config is not None:
        if not launch.accelerate_config.is_file():
            raise ConfigError(f"{launch.accelerate_config}: accelerate config file not found")
        cmd += ["--config_file", str(launch.accelerate_config)]
    else:
        # accelerate's flag for "start the processes with torch's elastic launcher"; on a machine without
        # GPUs the processes train on CPU with the gloo backend.
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    port = launch.main_port or (29500 if launch.nnodes > 1 else free_port())
    cmd += [
        "--num_processes",
        str(launch.nproc * launch.nnodes),
        "--num_machines",
        str(launch.nnodes),
        "--machine_rank",
        str(launch.node_rank),
        "--main_process_port",
        str(port),
    ]
    if launch.main_address:
        cmd += ["--main_process_ip", launch.main_address]
    cmd += ["-m", "lmtune.cli", "train", config, *overrides]
    return cmd + (["--resume"] if resume else [])


def launch_processes(
    launch: Launch, cfg: RunConfig, config: str, overrides: Sequence[str], resume: bool
) -> int:
    """Check the engine suits `cfg`'s device, run `launch_command`'s launch in the foreground, and report
    its outcome as one process would: 0 when every process finished; when one failed, the run's first
    failure, once (see `failures_to_launcher`): a user error is raised, a crash's traceback is printed
    (status 1), a process killed by a signal gives 128 + the signal.

    Raises:
        ConfigError: as `launch_command`, or an FSDP / DeepSpeed config for a run on CPU.
        LmtuneError: the user error (of the class the process raised) that stopped the run.
    """

    engine = config_engine(launch.accelerate_config) if launch.accelerate_config else None
    if engine in CUDA_ONLY_ENGINES and pick_device(cfg.trainer.device) != "cuda":
        raise ConfigError(_cpu_refusal(engine))
    cmd = launch_command(launch, config, overrides, resume)
    with tempfile.TemporaryDirectory(prefix="lmtune-failures-") as reports:
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), FAILURES_ENV: reports}
        failed = _run_launcher(cmd, env)
        return 0 if failed is None else _report(Path(reports), *failed)


FAILURES_ENV = "LMTUNE_FAILURE_REPORTS"
"""Set by `launch_processes` for the processes it starts: the folder where a failing process writes what
went wrong (`failures_to_launcher`)."""


@contextmanager
def failures_to_launcher() -> Iterator[None]:
    """In a process started by `launch_processes`: a failure in the block is written for the launcher,
    and the process exits without printing it (status 2 for a user error, 1 for a crash, 130 on Ctrl-C).

    The launcher then reports the run's first failure once, as a one-process run would — not once per
    process, and not followed by what it caused in the others (a collective whose peer is gone). Outside
    such a process (one process, or `accelerate launch -m lmtune.cli train` by hand) it does nothing.
    """
    folder = os.environ.get(FAILURES_ENV)
    if not folder:
        yield
        return
    try:
        yield
    except LmtuneError as exc:
        _write_report(Path(folder), "error", type(exc).__name__, str(exc))
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None  # the launcher got the same Ctrl-C and says so
    except Exception as exc:
        _write_report(Path(folder), "crash", type(exc).__name__, traceback.format_exc())
        raise SystemExit(1) from None


def _write_report(folder: Path, kind: str, error: str, message: str) -> None:
    rank = os.environ.get("RANK", "0")
    report = {"kind": kind, "error": error, "message": message, "rank": int(rank), "time_ns": time.time_ns()}
    part = folder / f"{rank}.json.part"
    part.write_text(json.dumps(report), encoding="utf-8")
    part.replace(folder / f"{rank}.json")


def _run_launcher(cmd: list[str], env: dict[str, str]) -> tuple[int, int] | None:
    """Run accelerate's launcher for `cmd` (`launch_command`) in this process with `env` added to the
    environment; None when every process finished, else the (rank, exit status) of the first to fail.

    In this process rather than as a child so that a failure comes back as a value to report, not as
    the launcher's own traceback; torch's elastic agent's log lines about stopping the other processes
    are muted meanwhile (the failure is reported instead).
    """
    # deferred: accelerate, torch only when this runs (keeps `import lmtune...` light)
    import torch.distributed.run  # noqa: F401  (creates the elastic agent's loggers muted below)
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(cmd[3:])  # after `python -m accelerate.commands.launch`
    agent_logs = [
        logger
        for name, logger in logging.root.manager.loggerDict.items()
        if name.startswith("torch.distributed.elastic") and isinstance(logger, logging.Logger)
    ]
    saved_env = {key: os.environ.get(key) for key in env}
    saved_disabled = [logger.disabled for logger in agent_logs]
    os.environ.update(env)
    for logger in agent_logs:
        logger.disabled = True
    try:
        accelerate_launch(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        return rank, failure.exitcode
    except subprocess.CalledProcessError as exc:  # one process (an accelerate config for one)
        return 0, exc.returncode
    except SignalException as exc:  # the agent stopped the processes on this signal
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        return 0, -int(exc.sigval)
    finally:
        for logger, disabled in zip(agent_logs, saved_disabled, strict=True):
            logger.disabled = disabled
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return None


def _report(reports: Path, rank: int, status: int) -> int:
    """The exit status of a failed launch, after reporting its first failure: the earliest user error
    written by a process (raised again here), else the earliest crash (its traceback), else how the
    first process to fail ended."""
    found = sorted(
        (json.loads(path.read_text(encoding="utf-8")) for path in reports.glob("*.json")),
        key=lambda report: int(report["time_ns"]),
    )
    errors = [report for report in found if report["kind"] == "error"]
    if errors:
        cls = getattr(lmtune_errors, errors[0]["error"], None)
        cls = cls if isinstance(cls, type) and issubclass(cls, LmtuneError) else LmtuneError
        raise cls(errors[0]["message"])
    if found:
        print(found[0]["message"], end="", file=sys.stderr)
        return 1
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        print(f"lmtune: process {rank} was killed by {name}", file=sys.stderr)
        return 128 - status
    return status


def free_port() -> int:
    """A TCP port nothing listens on now (for a single machine's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TIMEOUT_S = 7200
"""How long a process waits in a collective (a barrier included) before the run fails: long enough for
the main process to prepare a large dataset or write a full model while the others wait."""


def process_state(cfg: RunConfig) -> PartialState:
    """accelerate's process state for this run (one process: rank 0 of 1), which joins the process group.

    Created before the Trainer so the run directory can be written by the main process alone, on the
    run's device (on CPU: the gloo backend) and with `TIMEOUT_S`: the process group made here is the one
    the Trainer uses (its own state finds torch.distributed already initialised).
    """
    # deferred: accelerate only when this runs (keeps `import lmtune...` light)
    from accelerate import PartialState

    on_cpu = pick_device(cfg.trainer.device) != "cuda"
    sharded = [name for name in CUDA_ONLY_ENGINES if _engine_on(name)]
    if sharded and on_cpu:
        raise ConfigError(_cpu_refusal(sharded[0]))
    return PartialState(cpu=on_cpu, timeout=timedelta(seconds=TIMEOUT_S))


def config_engine(path: Path) -> str:
    """The engine an accelerate config file names: FSDP, DeepSpeed, or its `distributed_type` as is.

    Raises:
        ConfigError: the file is missing or is not an accelerate config.
    """
    # deferred: yaml only when this runs (keeps `import lmtune...` light)
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the accelerate config: {exc}") from exc
    kind = data.get("distributed_type") if isinstance(data, dict) else None
    if not isinstance(kind, str):
        raise ConfigError(f"{path}: not an accelerate config (no `distributed_type`)")
    return {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}.get(kind.upper(), kind)


def _cpu_refusal(engine: str) -> str:
    return (
        f"the accelerate config asks for {engine}, which needs CUDA devices, but this run trains on CPU: "
        "on CPU use plain `lmtune train CONFIG --nproc N` (DDP over gloo)"
    )


SHARDED_ENGINES = {"FSDP": "ACCELERATE_USE_FSDP", "DeepSpeed": "ACCELERATE_USE_DEEPSPEED"}
"""Engines an accelerate config can ask for, and the variable `accelerate launch` sets for each."""
CUDA_ONLY_ENGINES = ("DeepSpeed",)
"""Engines refused on CPU. FSDP2 also runs over gloo on CPU processes (tests/integration)."""


def shards(state: PartialState) -> tuple[int, int]:
    """Into how many pieces the engine splits (weights, gradients + optimizer state) per process:
    FSDP and ZeRO-3 split both over the processes, ZeRO-2 the gradients and optimizer state, DDP
    neither. Read from the variables `accelerate launch` sets."""
    n = state.num_processes
    if _engine_on("FSDP"):
        return n, n
    if _engine_on("DeepSpeed"):
        stage = zero_stage()
        return (n if stage >= 3 else 1), (n if stage >= 2 else 1)
    return 1, 1


def weights_sharded() -> bool:
    """Whether the engine holds the weights in its own sharded form (FSDP, ZeRO-3), on any number of
    processes: then only the engine's gathering save (`Trainer.save_model`) can write them."""
    return _engine_on("FSDP") or (_engine_on("DeepSpeed") and zero_stage() >= 3)


def zero_stage() -> int:
    """DeepSpeed's ZeRO stage as `accelerate launch` passes it (0 when not set)."""
    return int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "0") or 0)


def _engine_on(name: str) -> bool:
    """Whether `accelerate launch` started this process for the engine `name` of `SHARDED_ENGINES`."""
    return os.environ.get(SHARDED_ENGINES[name], "").lower() == "true"
