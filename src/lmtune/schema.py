"""The whole run configuration: one YAML file, one frozen typed object."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmtune.config.base import StrictModel
from lmtune.config.data import DataConfig
from lmtune.config.deploy import EvaluateConfig, ExportConfig, MonitorConfig, ServeConfig
from lmtune.config.model import ModelConfig
from lmtune.config.training import TrainerConfig
from lmtune.methods import MethodConfig
from lmtune.methods.lora import LoraConfig

Stage = Literal["data", "train", "evaluate", "export", "serve"]


class PipelineConfig(StrictModel):
    """What `lmtune pipeline` runs."""

    stages: list[Stage] = Field(default_factory=lambda: ["data", "train", "evaluate", "export", "serve"])
    """Stages to run, in this order."""
    smoke_prompt: str = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"
    """The chat request sent to the served model in the `serve` stage."""


class RunConfig(StrictModel):
    """One fine-tuning run, from data to a served model."""

    name: str = "run"
    """Run name: its folder is `<output_dir>/<name>`."""
    output_dir: str = "runs"
    """Where run folders are created."""
    seed: int = 42
    """Seed for the split, initialisation and data order."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=LoraConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
