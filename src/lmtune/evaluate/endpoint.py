"""Evaluating a model behind an OpenAI-compatible chat endpoint (`lmtune serve`, vLLM, a hosted API) as
the model under test, optionally against a second endpoint as the base: the same suites, statistics,
result files and report as a run's evaluation, written to `<out>/eval/` (so `lmtune evaluate --compare`
takes it like a run).

A chat endpoint gives text, not log-likelihoods, so the suites that score the model's forward pass
(perplexity, multiple choice, bias, the forgetting check) and the ones that need a run's held-out split
cannot run here; `unsupported` says which and why before any request is sent. Requests go through the
data stage's chat-completions client (retries on 429/5xx, clear errors for a wrong URL, key or model),
greedy (temperature 0), several at a time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmtune.config.deploy import EvaluateConfig
from lmtune.config.suites import (
    AnySuite,
    CodeSuite,
    ExactMatchSuite,
    FormatComplianceSuite,
    GenerationSuite,
    JudgeSuite,
    PerplexitySuite,
    SafetySuite,
)
from lmtune.data.synthesis.client import ChatClient, EndpointError, greedy_client, public_url
from lmtune.errors import ConfigError
from lmtune.evaluate.answers import Answers, Message
from lmtune.evaluate.run import EvalSummary, evaluate_answers, write_results
from lmtune.evaluate.settings import settings_hash
from lmtune.runtime.generation import Completion

WORKERS = 4
"""Requests in flight at once."""


def unsupported(suite: AnySuite) -> str | None:
    """Why `suite` cannot run against a chat endpoint; None when it can."""
    if isinstance(suite, SafetySuite):
        return None
    if isinstance(suite, GenerationSuite | JudgeSuite):
        return None if suite.path is not None else "it answers the run's held-out split (give it a `path`)"
    if isinstance(suite, ExactMatchSuite | FormatComplianceSuite):
        return "it answers the run's held-out split (use a `generation` suite with a `path`)"
    if isinstance(suite, CodeSuite):
        return "it samples several answers per problem through the local generation engine"
    return "it scores log-likelihoods from the model's forward pass, which a chat endpoint does not give"


def _label(suite: AnySuite) -> str:
    """The suite's name as its metrics show it (a held-out perplexity suite's metrics have no prefix)."""
    if isinstance(suite, PerplexitySuite) and suite.source is None:
        return suite.type
    return getattr(suite, "name", suite.type)


@dataclass
class EndpointAnswers(Answers):
    """Answers from a chat endpoint: `answer` sends each conversation as one greedy chat request."""

    client: Any = field(default=None, repr=False)
    workers: int = WORKERS

    def answer(
        self, conversations: list[list[Message]], what: str, max_new_tokens: int | None = None
    ) -> tuple[list[str], list[Completion]]:
        # deferred: tqdm only when this runs (keeps `import lmtune...` light)
        from tqdm.auto import tqdm

        params = {"temperature": 0, "max_tokens": max_new_tokens or self.cfg.max_new_tokens}
        chats = [self.with_system(c) for c in conversations]
        with ThreadPoolExecutor(self.workers) as pool:
            done = list(
                tqdm(
                    pool.map(lambda m: self.client.complete(m, params), chats),
                    total=len(chats),
                    desc=f"ask {what} ({self.label})",
                    unit="request",
                )
            )
        unreadable = next((d for d in done if d.text is None), None)
        if unreadable is not None:  # an empty answer would count as a refusal, or as a wrong answer
            raise EndpointError(f"{self.client.base}: {unreadable.problem or 'a reply held no text'}")
        prompts = ["\n".join(f"{m['role']}: {m['content']}" for m in c) for c in chats]
        return prompts, [Completion(d.text or "", [], d.finish_reason or "stop", 0) for d in done]


@dataclass(frozen=True)
class Endpoint:
    """One model behind an OpenAI-compatible API."""

    url: str
    """The API base, e.g. http://127.0.0.1:8000/v1."""
    model: str
    api_key_env: str | None = None
    timeout_s: float = 300.0

    def client(self) -> ChatClient:
        return greedy_client(
            self.url, self.model, api_key_env=self.api_key_env, timeout_s=self.timeout_s, what="--api-key-env"
        )


def evaluate_endpoint(
    cfg: EvaluateConfig,
    tuned: Endpoint,
    out: Path,
    *,
    base: Endpoint | None = None,
    system_prompt: str | None = None,
) -> EvalSummary:
    """Every suite of `cfg` on the `tuned` endpoint (and the `base` one, on the same items); writes
    `out/eval/` as a run's evaluation does.

    Raises:
        ConfigError: a suite cannot run against an endpoint (each named, with why).
    """
    refused = [(_label(s), s.type, why) for s in cfg.all_suites() if (why := unsupported(s))]
    if refused:
        lines = "; ".join(f"suite {name!r} ({kind}): {why}" for name, kind, why in refused)
        raise ConfigError(
            f"cannot evaluate an endpoint with {lines}. Endpoints run `generation` and `judge` suites with a "
            "`path`, and `safety`; set `evaluate.general: null` to skip the forgetting check"
        )
    reports: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for label, endpoint in (("tuned", tuned), ("base", base)):
        if endpoint is None:
            continue
        client = endpoint.client()
        try:
            client.check_model()
            answers = EndpointAnswers(None, None, [], cfg, [], label, system_prompt, client=client)  # type: ignore[arg-type]
            reports[label] = evaluate_answers(answers, cfg)
        finally:
            client.close()
    settings = {
        "system_prompt": system_prompt,
        "decoding": {
            "strategy": "greedy",
            "max_new_tokens": cfg.max_new_tokens,
            "max_samples": cfg.max_samples,
        },
        "suites": [suite.model_dump(mode="json") for suite in cfg.all_suites()],
    }
    # what was evaluated stays outside the hashed settings (as a run's weights do): two endpoints
    # evaluated with the same suites and decoding compare
    record: dict[str, Any] = {
        "settings_hash": settings_hash(settings),
        "settings": settings,
        "endpoint": {"url": public_url(tuned.url), "model": tuned.model},
    }
    if base is not None:
        record["base"] = {"url": public_url(base.url), "model": base.model}
    return write_results(
        cfg,
        out / "eval",
        record,
        ({"model": "tuned", "endpoint": record["endpoint"]}, *reports["tuned"]),
        ({"model": "base", "endpoint": record.get("base")}, *reports.get("base", (None, {}))),
    )
