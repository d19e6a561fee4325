"""Evaluation suites: each a tagged config joined in one discriminated union (`SuiteConfig`); the
evaluation stage runs each through one exhaustive `match` (`lmtune.evaluate.suites.run_suite`).

A suite names the metrics it reports (`metrics`) and whether it needs the model's generated answers
(`generates`: the answers are generated once per model and shared by every suite that needs them).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from lmtune.config.base import StrictModel


class SuiteBase(StrictModel):
    """Base of every suite config."""

    type: str
    metrics: ClassVar[tuple[str, ...]]
    """The metrics the suite reports, compared base vs tuned in `eval/summary.json`."""
    generates: ClassVar[bool] = False
    """Whether the suite scores greedy answers to the held-out prompts."""


class PerplexitySuite(SuiteBase):
    """Loss and perplexity of the held-out references (assistant tokens only), on every example."""

    type: Literal["perplexity"] = "perplexity"
    metrics: ClassVar[tuple[str, ...]] = ("eval_loss", "perplexity")


class ExactMatchSuite(SuiteBase):
    """Share of greedy answers whose final answer equals the reference's (numbers normalised; text
    references compared as normalised text; see `lmtune.runtime.answers`)."""

    type: Literal["exact_match"] = "exact_match"
    metrics: ClassVar[tuple[str, ...]] = ("exact_match",)
    generates: ClassVar[bool] = True


class FormatComplianceSuite(SuiteBase):
    """Share of greedy answers stating their answer as `#### <number>`, over the examples whose
    reference does."""

    type: Literal["format_compliance"] = "format_compliance"
    metrics: ClassVar[tuple[str, ...]] = ("format_compliance",)
    generates: ClassVar[bool] = True


AnySuite = PerplexitySuite | ExactMatchSuite | FormatComplianceSuite
SuiteConfig = Annotated[AnySuite, Field(discriminator="type")]


def default_suites() -> list[AnySuite]:
    """What `lmtune evaluate` measures unless the config says otherwise."""
    return [PerplexitySuite(), ExactMatchSuite(), FormatComplianceSuite()]
