"""`lmtune train --nproc`: the accelerate command line it runs, its refusals, and the shipped accelerate
configs (which accelerate itself must read)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from lmtune.config.run import RunConfig
from lmtune.errors import ConfigError
from lmtune.train import distributed
from lmtune.train.distributed import Launch, launch_command

ACCELERATE_CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "accelerate"


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_plain_nproc_is_ddp_through_accelerate_launch() -> None:
    cmd = launch_command(Launch(nproc=2), "run.yaml", ["trainer.batch_size=2"], resume=True)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in cmd and "--config_file" not in cmd
    assert (_flag(cmd, "--num_processes"), _flag(cmd, "--num_machines"), _flag(cmd, "--machine_rank")) == (
        "2",
        "1",
        "0",
    )
    assert 1024 <= int(_flag(cmd, "--main_process_port")) <= 65535
    # Each process enters through the same CLI as every verb.
    assert cmd[-6:] == ["-m", "lmtune.cli", "train", "run.yaml", "trainer.batch_size=2", "--resume"]


def test_config_file_and_several_machines() -> None:
    launch = Launch(
        nproc=8,
        accelerate_config=ACCELERATE_CONFIGS / "multi_node.yaml",
        nnodes=2,
        node_rank=1,
        main_address="10.1.2.3",
        main_port=29555,
    )
    cmd = launch_command(launch, "run.yaml", [], resume=False)
    assert _flag(cmd, "--config_file").endswith("multi_node.yaml") and "--multi_gpu" not in cmd
    assert _flag(cmd, "--num_processes") == "16"  # accelerate counts processes over all machines
    assert (_flag(cmd, "--num_machines"), _flag(cmd, "--machine_rank")) == ("2", "1")
    assert (_flag(cmd, "--main_process_ip"), _flag(cmd, "--main_process_port")) == ("10.1.2.3", "29555")
    assert cmd[-4:] == ["-m", "lmtune.cli", "train", "run.yaml"]


@pytest.mark.parametrize(
    ("launch", "message"),
    [
        (Launch(nproc=0), "--nproc must be at least 1, got 0"),
        (Launch(nproc=2, nnodes=2, node_rank=2, main_address="h"), "--node-rank must be between 0 and"),
        (Launch(nproc=2, nnodes=2), "training on several machines (--nnodes > 1) needs --main-address"),
        (Launch(nproc=2, accelerate_config=Path("/nope/fsdp.yaml")), "/nope/fsdp.yaml: accelerate config"),
    ],
)
def test_bad_launches_are_refused(launch: Launch, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        launch_command(launch, "run.yaml", [], resume=False)


@pytest.mark.parametrize(
    ("name", "engine"),
    [
        ("ddp.yaml", "MULTI_GPU"),
        ("fsdp2.yaml", "FSDP"),
        ("deepspeed_zero2.yaml", "DeepSpeed"),
        ("deepspeed_zero3.yaml", "DeepSpeed"),
        ("multi_node.yaml", "MULTI_GPU"),
    ],
)
def test_shipped_accelerate_configs_load_in_accelerate(name: str, engine: str) -> None:
    path = ACCELERATE_CONFIGS / name
    assert distributed.config_engine(path) == engine
    loaded = load_config_from_file(str(path))
    assert loaded.num_processes >= 8
    if name == "fsdp2.yaml":
        assert loaded.fsdp_config["fsdp_version"] == 2
    if name.startswith("deepspeed"):
        assert loaded.deepspeed_config["zero_stage"] == int(name[-6])


def test_deepspeed_on_cpu_is_refused_before_launch(run_config: Callable[..., RunConfig]) -> None:
    cfg = run_config()  # trainer.device: cpu
    launch = Launch(nproc=2, accelerate_config=ACCELERATE_CONFIGS / "deepspeed_zero2.yaml")
    with pytest.raises(
        ConfigError, match=r"asks for DeepSpeed, which needs CUDA devices, but this run trains on CPU"
    ):
        distributed.launch_processes(launch, cfg, "run.yaml", [], resume=False)


def test_fsdp_on_cpu_is_not_refused(
    run_config: Callable[..., RunConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    state = distributed.process_state(run_config())  # FSDP2 runs over gloo (tests/integration)
    assert state.num_processes == 1
    assert distributed.weights_sharded() and distributed.shards(state) == (1, 1)


def test_deepspeed_env_on_cpu_is_refused_in_the_worker(
    run_config: Callable[..., RunConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match="asks for DeepSpeed, which needs CUDA devices"):
        distributed.process_state(run_config())


def test_not_an_accelerate_config(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("name: run\n")
    with pytest.raises(ConfigError, match=r"x.yaml: not an accelerate config \(no `distributed_type`\)"):
        distributed.config_engine(bad)
