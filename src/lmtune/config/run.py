"""The whole run configuration: one YAML file, one frozen typed object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from lmtune.config import combinations
from lmtune.config.align import AlignConfig
from lmtune.config.base import StrictModel
from lmtune.config.data import DataConfig
from lmtune.config.deploy import EvaluateConfig, ExportConfig, MonitorConfig, ServeConfig
from lmtune.config.methods import AnyMethod, MethodConfig
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.model import ModelConfig
from lmtune.config.training import TrainerConfig

Stage = Literal["data", "train", "align", "evaluate", "export", "serve"]
ALL_STAGES: tuple[Stage, ...] = ("data", "train", "align", "evaluate", "export", "serve")


class PipelineConfig(StrictModel):
    """What `lmtune pipeline` runs."""

    stages: list[Stage] = Field(default_factory=lambda: list(ALL_STAGES))
    """Stages to run, in this order."""
    smoke_prompt: str = (
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?"
    )
    """The chat request sent to the served model in the `serve` stage."""


@dataclass(frozen=True)
class WeightsSpec:
    """What a run's trained weights are: the base model they were trained from and the method whose
    layout they are saved in. The small run context that loading, evaluating and exporting weights
    need beside their own config section (`RunConfig.weights`)."""

    model: ModelConfig
    method: AnyMethod


class RunConfig(StrictModel):
    """One fine-tuning run, from data to a served model."""

    name: str = "run"
    """Run name: its folder is `<output_dir>/<name>`."""
    output_dir: str = "runs"
    """Where run folders are created."""
    seed: int = 42
    """Seed for the split, initialisation and data order."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    """Stage 2: the base model."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Stage 1: sources, validation, templating, splitting."""
    method: MethodConfig = Field(default_factory=LoraConfig)
    """Stage 4: how weights become trainable (`type`: one of the methods in docs/methods.md)."""
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    """Stages 3-4: the optimisation loop."""
    align: AlignConfig | None = None
    """Stage 4b: an alignment objective run after SFT (`type`: one of docs/alignment.md); none: no
    alignment (the pipeline's `align` stage is then skipped)."""
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    """Stage 5: held-out evaluation, base vs tuned."""
    export: ExportConfig = Field(default_factory=ExportConfig)
    """Stage 6a: merged standard model folder."""
    serve: ServeConfig = Field(default_factory=ServeConfig)
    """Stage 6b: the OpenAI-compatible server."""
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    """Stage 7: request store and metrics."""
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    """What `lmtune pipeline` runs."""

    @property
    def weights(self) -> WeightsSpec:
        """The base model and method of this run's trained weights."""
        return WeightsSpec(self.model, self.method)

    @model_validator(mode="after")
    def _settings_combine(self) -> Self:
        """Refuse a method with run settings it cannot work with (`lmtune.config.combinations`)."""
        reasons = [
            combinations.quantized_base_refusal(self.method, self.model.quantization),
            combinations.packing_refusal(self.method, self.data.packing),
        ]
        merge_refusal = combinations.merge_refusal(self.method, self.model.quantization)
        if self.export.merge and merge_refusal is not None:
            reasons.append(
                f"export.merge: true, but {merge_refusal}; leave export.merge unset (the adapter is "
                "exported instead) or set it to false"
            )
        for reason in reasons:
            if reason is not None:
                raise PydanticCustomError("invalid_combination", "{reason}", {"reason": reason})
        return self
