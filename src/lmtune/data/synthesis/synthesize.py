"""`lmtune data synthesize`: self-instruct generation of new instruction/answer records from seed examples.

Flow (`synthesize`, top to bottom):

1. Read the seeds through `read_records` (any SFT source and format); each becomes an instruction (its
   last user turn) and an answer (its final assistant turn).
2. Check the output's state: a new output records its settings; an existing one resumes, skipping the
   request indices already in its resume log (`synth_journal`).
3. For every remaining request index i: draw `shots` seeds with `Random("<seed>:<i>")`, show them as
   `Instruction:/Answer:` blocks, ask the endpoint for one new block (`synth_client`: rate limit,
   retries), and append the completion to the resume log.
4. Parse every finished completion (`unparseable` and `truncated` are rejects), then run the data stage's
   `curate` over seeds + generated records in request order: a generated record that duplicates a seed or
   an earlier generated record, or fails a quality filter, is rejected with that step's reason; PII is
   scrubbed. Write the accepted records (with provenance) and the rejects. `n = accepted + rejected`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune import __version__
from lmtune.config.data import SourceConfig
from lmtune.config.synthesis import SynthesisConfig
from lmtune.data.curation.curate import curate
from lmtune.data.formats.assets import ALIASES
from lmtune.data.formats.validate import Accepted, read_records
from lmtune.data.records import Conversation, Location, Reject, RejectLog, open_rejects
from lmtune.data.synthesis import records as generated
from lmtune.data.synthesis.client import (
    ChatClient,
    Clock,
    EndpointError,
    RateLimiter,
    SystemClock,
    api_base,
    api_key_from,
    public_url,
)
from lmtune.data.synthesis.journal import RequestLog, SynthPaths, start_or_resume, write_json_atomic
from lmtune.data.synthesis.prompt import PROMPT_VERSION, Seed, build_messages, choose_shots
from lmtune.errors import DataError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

REQUEST_SOURCE = "request"
"""`Location.source` of a generated record: `request[i]` in rejects and dedup details."""


@dataclass(frozen=True)
class SynthesisReport:
    """Counts of one run over the whole output: `requested == accepted + rejected`."""

    requested: int
    sent: int
    """Requests sent by this run (the others were finished by an earlier run)."""
    accepted: int
    rejected_by_reason: dict[str, int]
    seeds_read: int
    seeds_used: int
    out: str
    rejects_path: str
    curation: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


def synthesize(
    cfg: SynthesisConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
    progress: bool = True,
) -> SynthesisReport:
    """Generate `cfg.n` requests' worth of records from the seeds, resuming an earlier run of `cfg.out`.

    Args:
        cfg: the run's settings.
        transport: the httpx transport (None: the network; tests pass an `httpx.MockTransport`).
        clock: where rate limiting and retry waits sleep (None: the real clock).
        progress: show a tqdm progress bar on stderr (when it is a terminal).

    Raises:
        DataError: unreadable seeds, or no usable seed.
        ConfigError: `api_key_env` names an unset variable, the output belongs to other settings, or
            the endpoint does not serve `cfg.model`.
        EndpointError: the endpoint is unreachable, refuses the requests, or keeps failing (the finished
            requests are kept: re-running the same command resumes).
    """
    paths = SynthPaths.for_out(cfg.out)
    seeds, seeds_read = read_seeds(cfg)
    api_key = api_key_from(cfg.api_key_env, f"--api-key-env {cfg.api_key_env}")
    done = start_or_resume(paths, _settings(cfg, seeds))
    todo = [i for i in range(cfg.n) if i not in done]
    log.info("synthesize: %d of %d requests already done, %d to send", cfg.n - len(todo), cfg.n, len(todo))
    if todo:
        clock = clock or SystemClock()
        client = ChatClient(
            cfg.endpoint,
            cfg.model,
            api_key=api_key,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            limiter=RateLimiter(cfg.rps, clock),
            clock=clock,
            transport=transport,
        )
        try:
            client.check_model()
            _generate(cfg, seeds, todo, client, paths, done, progress)
        finally:
            client.close()
    report = _curate_and_write(cfg, paths, seeds, seeds_read, done, sent=len(todo))
    summary = dataclasses.asdict(report)
    write_json_atomic(paths.state, {"settings": _settings(cfg, seeds), "summary": summary})
    return report


def read_seeds(cfg: SynthesisConfig) -> tuple[list[Seed], int]:
    """The usable seed examples and how many records were read.

    Raises:
        DataError: the seeds cannot be read, the format is `text`, or no record is usable.
    """
    if cfg.format == "text":
        raise DataError(f"{cfg.seeds}: format 'text' has no instruction to show; use a format with turns")
    src = SourceConfig(path=cfg.seeds, format=cfg.format, columns=cfg.columns)
    seeds, read = [], 0
    for result in read_records(src):
        read += 1
        if isinstance(result, Accepted):
            seed = _as_seed(result, cfg.seeds)
            if seed is not None:
                seeds.append(seed)
    if not seeds:
        raise DataError(
            f"{cfg.seeds}: no usable seed example ({read} read; each needs a user turn and a final "
            f"assistant turn; see `lmtune data validate {cfg.seeds} --format {cfg.format}`)"
        )
    return seeds, read


def _as_seed(accepted: Accepted, seeds_path: str) -> Seed | None:
    turns = accepted.messages
    users = [t["content"] for t in turns[:-1] if t["role"] == "user"]
    if not users:
        return None
    where = accepted.item.where
    if seeds_path in ALIASES:  # `gsm8k:test.jsonl:12`, not the package's long, machine-specific path
        where = Location(f"{seeds_path}:{Path(where.source).name}", where.position, where.kind)
    return Seed(str(where), where, users[-1].strip(), turns[-1]["content"].strip())


def _settings(cfg: SynthesisConfig, seeds: Sequence[Seed]) -> dict[str, Any]:
    """What the requests depend on: a resume must match it (the endpoint may move, `n` may grow)."""
    digest = hashlib.sha256()
    for s in seeds:
        digest.update(json.dumps([s.id, s.instruction, s.answer], ensure_ascii=False).encode("utf-8"))
    return {
        "seeds": cfg.seeds,
        "format": cfg.format,
        "columns": cfg.columns,
        "seeds_sha256": digest.hexdigest(),
        "model": cfg.model,
        "shots": cfg.shots,
        "seed": cfg.seed,
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "prompt_version": PROMPT_VERSION,
    }


def _generate(
    cfg: SynthesisConfig,
    seeds: Sequence[Seed],
    todo: Sequence[int],
    client: ChatClient,
    paths: SynthPaths,
    done: dict[int, dict[str, Any]],
    progress: bool,
) -> None:
    """Send the requests of `todo`, `cfg.concurrency` at a time, logging each finished one durably."""
    # deferred: tqdm only when this runs (keeps `import lmtune...` light)
    from tqdm import tqdm

    endpoint = public_url(api_base(cfg.endpoint))

    def ask(index: int) -> dict[str, Any]:
        shots, request_seed = choose_shots(seeds, cfg.shots, cfg.seed, index)
        sampling = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "seed": request_seed}
        answer = client.complete(build_messages(shots), sampling)
        return {
            "index": index,
            "seed_ids": [s.id for s in shots],
            "endpoint": endpoint,
            "model": cfg.model,
            "response_model": answer.model,
            "sampling": sampling,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "lmtune_version": __version__,
            "completion": answer.text,
            "finish_reason": answer.finish_reason,
            "problem": answer.problem,
        }

    journal = RequestLog(paths.requests)
    bar = tqdm(
        total=cfg.n,
        initial=cfg.n - len(todo),
        unit="req",
        desc="synthesize",
        disable=None if progress else True,
    )
    pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="lmtune-synth")
    running: set[Future[dict[str, Any]]] = set()
    try:
        # at most `concurrency` submitted at a time, so a stop leaves no queue of unsent requests behind
        for index in todo:
            running.add(pool.submit(ask, index))
            if len(running) < cfg.concurrency:
                continue
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            _record(finished, journal, done, bar)
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            _record(finished, journal, done, bar)
    except EndpointError as exc:
        finished, _ = wait(running)  # requests already in flight are kept when they succeed
        with contextlib.suppress(EndpointError):
            _record(finished, journal, done, bar)
        raise EndpointError(
            f"{exc} ({sum(1 for i in range(cfg.n) if i in done)} of {cfg.n} requests done and kept in "
            f"{paths.requests}; run the same command again to resume)"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        journal.close()


def _record(
    finished: set[Future[dict[str, Any]]], journal: RequestLog, done: dict[int, dict[str, Any]], bar: Any
) -> None:
    """Log every request of `finished` that succeeded, then raise the first error among them."""
    error: BaseException | None = None
    for future in finished:
        failure = future.exception()
        if failure is not None:
            error = error or failure
            continue
        entry = future.result()
        journal.append(entry)
        done[entry["index"]] = entry
        bar.update(1)
    if error is not None:
        raise error  # a request's error stops the run


@dataclass(frozen=True)
class _Item:
    """A seed or a generated record, as `curate` sees it (source 0: seeds, 1: generated)."""

    source: int
    where: Location
    raw: Any
    messages: Conversation
    is_text: bool = False
    provenance: dict[str, Any] | None = None


@dataclass
class _Tally:
    by_reason: Counter[str] = field(default_factory=Counter)


@dataclass
class _GeneratedRejects(RejectLog):
    """Writes the rejects of generated records; a seed removed by curation is only counted."""

    seeds_removed: Counter[str] = field(default_factory=Counter)

    def add(self, reject: Reject) -> None:
        if reject.where.source == REQUEST_SOURCE:
            super().add(reject)
        else:
            self.seeds_removed[reject.reason] += 1


def _curate_and_write(
    cfg: SynthesisConfig,
    paths: SynthPaths,
    seeds: Sequence[Seed],
    seeds_read: int,
    done: dict[int, dict[str, Any]],
    sent: int,
) -> SynthesisReport:
    """Parse the finished requests `0..n-1`, curate them after the seeds, write the output atomically."""
    items = [_Item(0, s.where, s.id, generated.as_conversation(s.instruction, s.answer)) for s in seeds]
    sink = open_rejects(paths.rejects)
    rejects = _GeneratedRejects(sink)
    tally = [_Tally(), _Tally()]
    try:
        for index in sorted(i for i in done if i < cfg.n):
            entry = done[index]
            where = Location(REQUEST_SOURCE, index, "index")
            provenance = generated.provenance(entry)
            messages = generated.parse_generated(entry)
            if isinstance(messages, tuple):
                reason, detail = messages
                raw = {"completion": entry["completion"], "provenance": provenance}
                rejects.add(Reject(where, reason, detail, raw))
                tally[1].by_reason[reason] += 1
                continue
            record = generated.record_dict(messages, provenance, cfg.out_format)
            items.append(_Item(1, where, record, messages, provenance=provenance))
        kept, stats = curate(items, cfg.curation, rejects, tally)
    finally:
        if sink is not None:
            sink.close()
    accepted = [k for k in kept if k.source == 1]
    tmp = paths.out.with_name(paths.out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for item in accepted:
            record = generated.record_dict(item.messages, item.provenance or {}, cfg.out_format)
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, paths.out)
    stats["seeds_removed_by_reason"] = dict(sorted(rejects.seeds_removed.items()))
    return SynthesisReport(
        requested=cfg.n,
        sent=sent,
        accepted=len(accepted),
        rejected_by_reason=dict(sorted(tally[1].by_reason.items())),
        seeds_read=seeds_read,
        seeds_used=len(seeds),
        out=str(paths.out),
        rejects_path=str(paths.rejects),
        curation=stats,
    )


def format_report(report: SynthesisReport) -> str:
    """A short text table: requested / accepted / rejected, rejects by reason, then the files."""
    rows = [
        ("seeds used", report.seeds_used),
        ("requested", report.requested),
        ("  sent by this run", report.sent),
        ("accepted", report.accepted),
        ("rejected", report.rejected),
    ]
    rows += [(f"  {reason}", n) for reason, n in report.rejected_by_reason.items()]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {n:>8}" for name, n in rows]
    lines.append(f"records written to {report.out}")
    if report.rejected:
        lines.append(f"rejects written to {report.rejects_path}")
    return "\n".join(lines)
