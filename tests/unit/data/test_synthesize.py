"""`lmtune data synthesize`: parsing, dedup against seeds and earlier records, provenance, resume after a
crash (in process and SIGKILL), rate limiting and retries on a fake clock, one-line endpoint errors, and
the plumbing against a real `lmtune serve` of the tiny model (gibberish: counts must still add up).

The scripted endpoint is an `httpx.MockTransport`. Its "good" completions are built from the `seed` each
request sends: eight words drawn from `WORDS` with `Random(seed)`, so every request index gets its own
instruction (two random 8-word draws share few 5-character shingles, far below the 0.7 near-dup bar).
"""

from __future__ import annotations

import json
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmtune.cli import main
from lmtune.config import loader
from lmtune.config.synthesis import SYNTHESIS_CURATION, SynthesisConfig
from lmtune.data.formats.assets import gsm8k_path
from lmtune.data.formats.validate import validate_file
from lmtune.data.synthesis.client import EndpointError, RateLimiter, retry_after_seconds
from lmtune.data.synthesis.journal import SynthPaths
from lmtune.data.synthesis.prompt import ASK, Seed, build_messages, choose_shots, parse_completion
from lmtune.data.synthesis.synthesize import read_seeds, synthesize
from lmtune.errors import ConfigError, DataError

ENDPOINT = "http://fake.test/v1"
MODEL = "fake-model"
SEEDS = [
    ("How many legs do three spiders have in total?", "Each spider has 8 legs, so 3 x 8 = 24.\n#### 24"),
    ("A train travels 60 km per hour for 2 hours. How far does it go?", "60 x 2 = 120 km.\n#### 120"),
    ("What is the capital city of France?", "The capital of France is Paris."),
    ("Name a primary colour that is not red or blue.", "Yellow is a primary colour."),
    ("If a pizza has 8 slices and you eat 3, how many are left?", "8 - 3 = 5 slices are left.\n#### 5"),
]
WORDS = [
    "apple",
    "river",
    "cloud",
    "engine",
    "violet",
    "harbour",
    "pencil",
    "tiger",
    "marble",
    "copper",
    "lantern",
    "meadow",
    "orbit",
    "saddle",
    "thunder",
    "velvet",
    "walnut",
    "yogurt",
    "zephyr",
    "basket",
    "candle",
    "dolphin",
    "ember",
    "falcon",
    "glacier",
    "hammock",
    "igloo",
    "jasmine",
    "kettle",
    "lemon",
    "mango",
    "nectar",
    "oyster",
    "pepper",
    "quartz",
    "rocket",
    "silver",
    "tulip",
    "umbrella",
    "vessel",
    "willow",
    "anchor",
    "bramble",
    "cactus",
    "dune",
    "fossil",
    "granite",
]


def good(seed: int) -> str:
    words = random.Random(seed).sample(WORDS, 8)
    instruction = f"Write a short story using {' '.join(words)}."
    return f"Instruction: {instruction}\nAnswer: Once upon a time, {words[0]} met {words[1]}."


class FakeClock:
    """monotonic() is the sum of the sleeps so far."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeEndpoint:
    """An OpenAI-compatible endpoint: GET /models lists MODEL; each POST /chat/completions is answered by
    `reply(call_number, body)` -> (status, json body, headers) or just the completion text."""

    def __init__(self, reply: Callable[[int, dict[str, Any]], Any] | None = None) -> None:
        self.reply = reply or (lambda k, body: good(body["seed"]))
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        if request.method != "POST" or request.url.path != "/v1/chat/completions":
            return httpx.Response(404, json={"error": {"message": "not found"}})
        body = json.loads(request.content)
        with self.lock:
            self.bodies.append(body)
            self.headers.append(request.headers)
            call = len(self.bodies)
        out = self.reply(call, body)
        if isinstance(out, httpx.Response):
            return out
        text, finish = out if isinstance(out, tuple) else (out, "stop")
        return httpx.Response(200, json=completion(text, finish))

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def completion(text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
    }


def write_seeds(path: Path) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in SEEDS
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(tmp_path: Path, **fields: Any) -> SynthesisConfig:
    base: dict[str, Any] = {
        "seeds": str(write_seeds(tmp_path / "seeds.jsonl")),
        "endpoint": ENDPOINT,
        "model": MODEL,
        "n": 6,
        "out": str(tmp_path / "out" / "synth.jsonl"),
        "shots": 2,
        "max_retries": 2,
    }
    return loader.build(SynthesisConfig, {**base, **fields})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- prompt and parsing -------------------------------------------------------------------------------


def test_parse_completion_formats_and_errors() -> None:
    assert parse_completion("Instruction: Add 2 and 3.\nAnswer: 5") == ("Add 2 and 3.", "5")
    assert parse_completion("Sure! Here it is.\n\n**Instruction:** Name a fruit.\n**Answer:** A pear.") == (
        "Name a fruit.",
        "A pear.",
    )
    assert parse_completion("Instructions: Sort 3, 1, 2.\nAnswers: 1, 2, 3") == ("Sort 3, 1, 2.", "1, 2, 3")
    multi = "### Instruction:\nTwo lines\nof task\n### Answer:\nline one\nline two\nInstruction: b\nAnswer: x"
    assert parse_completion(multi) == ("Two lines\nof task", "line one\nline two")
    for text, message in [
        ("just some words", "no line starting with 'Instruction:'"),
        ("Instruction: do a thing", "no line starting with 'Answer:' after the instruction"),
        ("Instruction:\nAnswer: 4", "the instruction is empty"),
        ("Instruction: hi\nAnswer:   \n", "the answer is empty"),
        ("My instruction: x\nAnswer: y", "no line starting with 'Instruction:'"),
        ("The new instruction: x\nThe answer: y", "no line starting with 'Instruction:'"),
    ]:
        with pytest.raises(ValueError) as err:
            parse_completion(text)
        assert str(err.value) == message


def test_shots_are_seeded_per_index_and_shown_as_blocks() -> None:
    seeds = [Seed(f"s:{i}", None, f"instruction {i}", f"answer {i}") for i in range(10)]  # type: ignore[arg-type]
    first, seed_a = choose_shots(seeds, 3, seed=7, index=4)
    again, seed_b = choose_shots(seeds, 3, seed=7, index=4)
    assert [s.id for s in first] == [s.id for s in again] and seed_a == seed_b
    assert len({s.id for s in first}) == 3  # without replacement
    assert [s.id for s in choose_shots(seeds, 3, seed=7, index=5)[0]] != [s.id for s in first]
    assert len(choose_shots(seeds[:2], 3, seed=0, index=0)[0]) == 2  # fewer seeds than shots: all of them
    messages = build_messages(first)  # system, then (ask, shot) per shot, then the ask again
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert [m["content"] for m in messages[2:-1:2]] == [
        f"Instruction: {s.instruction}\nAnswer: {s.answer}" for s in first
    ]
    assert all(m["content"] == ASK for m in messages[1::2])
    assert ASK.endswith("Instruction: <the instruction>\nAnswer: <its answer>")


def test_seed_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="format 'text' has no instruction to show"):
        read_seeds(config(tmp_path, format="text"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{"nope": 1}\n')
    with pytest.raises(DataError) as err:
        read_seeds(config(tmp_path, seeds=str(bad)))
    assert str(err.value).startswith(f"{bad}: no usable seed example (2 read;")
    seeds, read = read_seeds(config(tmp_path))
    assert read == 5 and [s.instruction for s in seeds] == [q for q, _ in SEEDS]
    assert seeds[0].id == f"{tmp_path / 'seeds.jsonl'}:1"


def test_seed_ids_of_a_data_alias_name_the_alias(tmp_path: Path) -> None:
    try:
        gsm8k_path()
    except DataError as exc:
        pytest.skip(f"real asset missing: {exc}")
    cfg = config(tmp_path, seeds="gsm8k", format="prompt_completion")
    cfg = cfg.model_copy(update={"columns": {"prompt": "question", "completion": "answer"}})
    seeds, read = read_seeds(cfg)
    assert read == len(seeds) == 1319
    assert seeds[11].id == "gsm8k:test.jsonl:12"  # not the package's machine-specific path
    assert seeds[11].instruction == json.loads(gsm8k_path().read_text().splitlines()[11])["question"].strip()


# --- a scripted endpoint ------------------------------------------------------------------------------


def test_scripted_run_parses_dedups_and_records_provenance(tmp_path: Path) -> None:
    script = {
        1: good(101),
        2: f"Instruction: {SEEDS[2][0]}\nAnswer: Paris, of course.",  # a seed's instruction: duplicate
        3: "lorem ipsum dolor",  # unparseable
        4: (good(104), "length"),  # cut off at max_tokens: truncated
        5: good(101).replace("short story", "short tale"),  # close to request 0's instruction
        6: good(106),
    }
    fake = FakeEndpoint(lambda k, body: script[k])
    cfg = config(tmp_path, temperature=0.7, max_tokens=64, seed=3)
    report = synthesize(cfg, transport=fake.transport, clock=FakeClock(), progress=False)

    assert report.requested == 6 and report.sent == 6
    assert report.accepted == 2
    assert report.rejected_by_reason == {
        "duplicate": 1,
        "near_duplicate": 1,
        "truncated": 1,
        "unparseable": 1,
    }
    assert report.requested == report.accepted + report.rejected

    paths = SynthPaths.for_out(cfg.out)
    out = lines(paths.out)
    assert [r["provenance"]["request_index"] for r in out] == [0, 5]
    assert out[0]["messages"] == [
        {"role": "user", "content": parse_completion(good(101))[0]},
        {"role": "assistant", "content": parse_completion(good(101))[1]},
    ]
    rejects = {r["index"]: r for r in lines(paths.rejects)}
    assert sorted(rejects) == [1, 2, 3, 4]
    assert all(r["source"] == "request" for r in rejects.values())
    assert rejects[1]["reason"] == "duplicate"
    assert rejects[1]["detail"] == f"same text as {tmp_path / 'seeds.jsonl'}:3"  # the seed it copies
    assert rejects[2]["reason"] == "unparseable"
    assert rejects[2]["detail"] == "no line starting with 'Instruction:': 'lorem ipsum dolor'"
    assert rejects[3]["reason"] == "truncated"
    assert rejects[3]["detail"] == "the completion stopped at max_tokens 64"
    assert rejects[3]["raw"]["completion"] == good(104)
    assert rejects[4]["reason"] == "near_duplicate" and "near duplicate of request[0]" in rejects[4]["detail"]

    # provenance: what was asked, of whom, with which seeds
    for record in out:
        prov = record["provenance"]
        index = prov["request_index"]
        body = fake.bodies[index]
        shots, request_seed = choose_shots(read_seeds(cfg)[0], 2, seed=3, index=index)
        assert prov["seed_ids"] == [s.id for s in shots]
        assert prov["sampling"] == {"temperature": 0.7, "max_tokens": 64, "seed": request_seed}
        assert body == {"model": MODEL, "messages": build_messages(shots), **prov["sampling"]}
        assert prov["endpoint"] == ENDPOINT and prov["model"] == prov["response_model"] == MODEL
        assert prov["lmtune_version"] == "0.1.0"
        assert abs(datetime.fromisoformat(prov["timestamp"]) - datetime.now(UTC)) < timedelta(minutes=5)
    # the output is a valid messages file; provenance rides along
    assert validate_file(str(paths.out), "messages").accepted == 2
    state = json.loads(paths.state.read_text())
    assert state["settings"]["model"] == MODEL and state["summary"]["accepted"] == 2
    assert state["summary"]["curation"]["steps"]["exact_dedup"]["removed"] == 1


def test_prompt_completion_seeds_and_output_with_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = tmp_path / "qa.jsonl"
    seeds.write_text("".join(json.dumps({"q": q, "a": a}) + "\n" for q, a in SEEDS))
    monkeypatch.setenv("SYNTH_TEST_KEY", "sk-test-123")
    fake = FakeEndpoint()
    cfg = config(
        tmp_path,
        seeds=str(seeds),
        format="prompt_completion",
        columns={"prompt": "q", "completion": "a"},
        out_format="prompt_completion",
        api_key_env="SYNTH_TEST_KEY",
        n=3,
    )
    report = synthesize(cfg, transport=fake.transport, progress=False)
    assert report.accepted == 3 and report.seeds_used == 5
    assert all(h["authorization"] == "Bearer sk-test-123" for h in fake.headers)
    out = lines(Path(cfg.out))
    assert set(out[0]) == {"prompt", "completion", "provenance"}
    assert validate_file(cfg.out, "prompt_completion").accepted == 3
    assert "sk-test-123" not in Path(cfg.out).read_text()

    monkeypatch.delenv("SYNTH_TEST_KEY")
    with pytest.raises(
        ConfigError, match="--api-key-env SYNTH_TEST_KEY: the environment variable SYNTH_TEST_KEY is not set"
    ):
        synthesize(cfg, transport=fake.transport, progress=False)


def test_pii_in_generated_records_is_replaced(tmp_path: Path) -> None:
    text = (
        "Instruction: Write to the helpdesk about a broken screen.\nAnswer: Mail jane.doe@example.com today."
    )
    fake = FakeEndpoint(lambda k, body: text)
    report = synthesize(config(tmp_path, n=1), transport=fake.transport, progress=False)
    assert report.accepted == 1
    assert lines(Path(config(tmp_path).out))[0]["messages"][1]["content"] == "Mail <EMAIL> today."


# --- resume -------------------------------------------------------------------------------------------


class Crash(Exception):
    pass


def test_resume_after_a_crash_sends_only_the_missing_indices(tmp_path: Path) -> None:
    def crash_on_4(k: int, body: dict[str, Any]) -> str:
        if k == 4:
            raise Crash("the process died mid-request")
        return good(body["seed"])

    cfg = config(tmp_path, n=8)
    first = FakeEndpoint(crash_on_4)
    with pytest.raises(Crash):
        synthesize(cfg, transport=first.transport, progress=False)
    paths = SynthPaths.for_out(cfg.out)
    assert [e["index"] for e in lines(paths.requests)] == [0, 1, 2]
    assert not paths.out.exists()

    second = FakeEndpoint()
    report = synthesize(cfg, transport=second.transport, progress=False)
    assert len(second.bodies) == 5  # indices 3..7 only; the crashed request is the one redone
    seeds = read_seeds(cfg)[0]
    assert [b["seed"] for b in second.bodies] == [choose_shots(seeds, 2, 0, i)[1] for i in range(3, 8)]
    assert report.sent == 5 and report.accepted == 8
    assert [r["provenance"]["request_index"] for r in lines(paths.out)] == list(range(8))

    third = FakeEndpoint()
    again = synthesize(cfg, transport=third.transport, progress=False)
    assert third.bodies == [] and again.accepted == 8  # nothing left to send

    more = synthesize(cfg.model_copy(update={"n": 10}), transport=third.transport, progress=False)
    assert len(third.bodies) == 2 and more.accepted == 10  # a larger n sends only the new indices


CRASHING_RUN = """
import json, os, signal, sys
import httpx
from lmtune.config import loader
from lmtune.config.synthesis import SynthesisConfig
from lmtune.data.synthesis.synthesize import synthesize

calls = []
def handle(request):
    if request.method == "GET":
        return httpx.Response(200, json={"data": [{"id": "fake-model"}]})
    calls.append(1)
    if len(calls) == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    body = json.loads(request.content)
    seed = body["seed"]
    text = "Instruction: task %d with words %s\\nAnswer: done %d" % (seed, str(seed)[::-1], seed)
    return httpx.Response(200, json={"model": "fake-model", "choices": [
        {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})

cfg = loader.build(SynthesisConfig, json.loads(sys.argv[1]))
synthesize(cfg, transport=httpx.MockTransport(handle), progress=False)
"""


def test_resume_after_sigkill_loses_only_the_in_flight_request(tmp_path: Path) -> None:
    cfg = config(tmp_path, n=6)
    fields = json.dumps(cfg.model_dump(mode="json", exclude={"curation"}))
    proc = subprocess.run([sys.executable, "-c", CRASHING_RUN, fields], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    paths = SynthPaths.for_out(cfg.out)
    assert [e["index"] for e in lines(paths.requests)] == [0, 1, 2]
    # a torn last line, as when the kill lands inside the write, is dropped and its request redone
    with paths.requests.open("ab") as f:
        f.write(b'{"index": 3, "completion": "Instruct')
    fake = FakeEndpoint()
    report = synthesize(
        loader.build(SynthesisConfig, json.loads(fields)), transport=fake.transport, progress=False
    )
    assert len(fake.bodies) == 3 and report.sent == 3
    assert [e["index"] for e in lines(paths.requests)] == [0, 1, 2, 3, 4, 5]
    assert report.requested == report.accepted + report.rejected == 6


def test_resume_refuses_other_settings_and_foreign_outputs(tmp_path: Path) -> None:
    cfg = config(tmp_path, n=2)
    synthesize(cfg, transport=FakeEndpoint().transport, progress=False)
    paths = SynthPaths.for_out(cfg.out)
    with pytest.raises(ConfigError) as err:
        synthesize(cfg.model_copy(update={"temperature": 0.2}), transport=FakeEndpoint().transport)
    assert str(err.value) == (
        f"{paths.out}: the earlier requests were made with other settings (temperature: 1.0 then, 0.2 now); "
        f"use another --out, or delete {paths.state} and {paths.requests} to start over"
    )
    # the endpoint may move (a restarted server on another port) without losing the finished requests
    moved = FakeEndpoint()
    synthesize(cfg.model_copy(update={"endpoint": "http://fake.test/v1/"}), transport=moved.transport)
    assert moved.bodies == []

    foreign = tmp_path / "mine.jsonl"
    foreign.write_text("{}\n")
    with pytest.raises(ConfigError, match=r"mine.jsonl exists but .*mine.state.json does not"):
        synthesize(cfg.model_copy(update={"out": str(foreign)}), transport=FakeEndpoint().transport)
    assert foreign.read_text() == "{}\n"


# --- rate limit, retries, errors ----------------------------------------------------------------------


def test_rate_limiter_on_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock)
    starts = []
    for _ in range(5):
        limiter.acquire()
        starts.append(clock.now)
    assert starts == [0.0, 0.25, 0.5, 0.75, 1.0]
    clock.now += 10.0  # idle time is not saved up: no burst afterwards
    limiter.acquire()
    limiter.acquire()
    assert clock.sleeps[-1] == 0.25 and clock.now == 11.25
    unlimited = FakeClock()
    for _ in range(3):
        RateLimiter(None, unlimited).acquire()
    assert unlimited.sleeps == []


def test_requests_are_spaced_by_rps(tmp_path: Path) -> None:
    clock = FakeClock()
    times: list[float] = []

    def reply(k: int, body: dict[str, Any]) -> str:
        times.append(clock.now)
        return good(body["seed"])

    synthesize(
        config(tmp_path, n=5, rps=2.0), transport=FakeEndpoint(reply).transport, clock=clock, progress=False
    )
    assert times == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_retry_on_429_honours_retry_after_then_backs_off(tmp_path: Path) -> None:
    def reply(k: int, body: dict[str, Any]) -> Any:
        if k in (1, 2):
            return httpx.Response(429, json={"error": {"message": "busy"}}, headers={"Retry-After": "7"})
        if k == 3:
            return httpx.Response(503, text="overloaded")
        return good(body["seed"])

    clock = FakeClock()
    fake = FakeEndpoint(reply)
    report = synthesize(
        config(tmp_path, n=2, max_retries=3), transport=fake.transport, clock=clock, progress=False
    )
    assert clock.sleeps == [7.0, 7.0, 4.0]  # request 0: 429, 429 (Retry-After), 503 (third try: 4 s), ok
    assert report.accepted == 2 and len(fake.bodies) == 5
    assert retry_after_seconds("2.5") == 2.5
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_retries_exhausted_stop_the_run_with_a_resume_hint(tmp_path: Path) -> None:
    def reply(k: int, body: dict[str, Any]) -> Any:
        return good(body["seed"]) if k == 1 else httpx.Response(500, json={"error": {"message": "boom"}})

    clock = FakeClock()
    cfg = config(tmp_path, n=3, max_retries=2)
    with pytest.raises(EndpointError) as err:
        synthesize(cfg, transport=FakeEndpoint(reply).transport, clock=clock, progress=False)
    paths = SynthPaths.for_out(cfg.out)
    assert str(err.value) == (
        f"{ENDPOINT}/chat/completions: 500 (boom) after 2 retries (1 of 3 requests done and kept in "
        f"{paths.requests}; run the same command again to resume)"
    )
    assert clock.sleeps == [1.0, 2.0]


def test_client_errors_stop_at_once(tmp_path: Path) -> None:
    bad_request = FakeEndpoint(
        lambda k, body: httpx.Response(400, json={"error": {"message": "max_tokens is too large"}})
    )
    with pytest.raises(
        EndpointError, match=r"chat/completions answered 400: max_tokens is too large \(0 of 6"
    ):
        synthesize(config(tmp_path), transport=bad_request.transport, progress=False)
    assert len(bad_request.bodies) == 1

    refused = FakeEndpoint(
        lambda k, body: httpx.Response(401, json={"error": {"message": "Incorrect API key"}})
    )
    with pytest.raises(
        EndpointError, match=r"refused the request \(401: Incorrect API key\); name the variable"
    ):
        synthesize(
            config(tmp_path, out=str(tmp_path / "b.jsonl")), transport=refused.transport, progress=False
        )

    with pytest.raises(
        ConfigError, match=f"--model other: {ENDPOINT} does not serve it \\(it serves: {MODEL}\\)"
    ):
        synthesize(
            config(tmp_path, model="other", out=str(tmp_path / "c.jsonl")), transport=FakeEndpoint().transport
        )

    wrong_base = config(tmp_path, endpoint="http://fake.test", out=str(tmp_path / "d.jsonl"))
    with pytest.raises(EndpointError) as err:
        synthesize(wrong_base, transport=FakeEndpoint().transport)  # the fake answers only under /v1
    assert str(err.value).startswith(
        "http://fake.test/chat/completions answered 404: not found (is --endpoint the API base, usually "
        "ending in /v1?) (0 of 6 requests done"
    )


def test_unreachable_endpoint_is_one_line_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    argv = ["data", "synthesize", "--seeds", str(seeds), "--endpoint", f"http://127.0.0.1:{port}/v1"]
    argv += ["--model", "m", "--n", "2", "--out", str(tmp_path / "o.jsonl")]
    assert main(argv) == 2
    *progress, err = capsys.readouterr().err.strip().splitlines()
    assert progress == ["lmtune: synthesize: 0 of 2 requests already done, 2 to send"]  # then one error line
    assert err.startswith(f"lmtune: error: cannot reach http://127.0.0.1:{port}/v1 (ConnectError")
    assert err.endswith("is --endpoint its API base (e.g. http://127.0.0.1:8000/v1)?")


def test_concurrent_requests_are_bounded_and_written_in_index_order(tmp_path: Path) -> None:
    active, peak = 0, 0
    lock = threading.Lock()

    def reply(k: int, body: dict[str, Any]) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return good(body["seed"])

    cfg = config(tmp_path, n=9, concurrency=3)
    report = synthesize(cfg, transport=FakeEndpoint(reply).transport, progress=False)
    assert peak == 3 and report.accepted == 9
    assert [r["provenance"]["request_index"] for r in lines(Path(cfg.out))] == list(range(9))


def test_a_failed_request_keeps_the_ones_in_flight(tmp_path: Path) -> None:
    cfg = config(tmp_path, n=4, concurrency=2)
    failing_seed = choose_shots(read_seeds(cfg)[0], 2, 0, 1)[1]

    def reply(k: int, body: dict[str, Any]) -> Any:
        if body["seed"] == failing_seed:
            return httpx.Response(422, json={"error": {"message": "bad"}})
        time.sleep(0.05)  # still running when request 1 fails
        return good(body["seed"])

    with pytest.raises(EndpointError, match=r"answered 422: bad \(1 of 4 requests done"):
        synthesize(cfg, transport=FakeEndpoint(reply).transport, progress=False)
    assert [e["index"] for e in lines(SynthPaths.for_out(cfg.out).requests)] == [0]


def test_a_200_that_is_not_a_chat_completion_is_unparseable(tmp_path: Path) -> None:
    fake = FakeEndpoint(lambda k, body: httpx.Response(200, json={"object": "error"}))
    cfg = config(tmp_path, n=2)
    report = synthesize(cfg, transport=fake.transport, progress=False)
    assert report.accepted == 0 and report.rejected_by_reason == {"unparseable": 2}
    detail = lines(SynthPaths.for_out(cfg.out).rejects)[0]["detail"]
    assert detail == 'the 200 response is not a chat completion (KeyError: \'choices\'): {"object":"error"}'


def test_cli_takes_curation_from_a_run_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SynthesisConfig] = []

    def fake_synthesize(cfg: SynthesisConfig) -> Any:
        seen.append(cfg)
        raise ConfigError("stop here")

    monkeypatch.setattr("lmtune.data.synthesis.synthesize.synthesize", fake_synthesize)
    run = tmp_path / "run.yaml"
    run.write_text("data:\n  curation:\n    near_dedup: {enabled: true, threshold: 0.9}\n")
    argv = ["data", "synthesize", "--seeds", "s.jsonl", "--endpoint", ENDPOINT, "--model", MODEL]
    argv += [
        "--n",
        "4",
        "--out",
        "o.jsonl",
        "--rps",
        "3",
        "--column",
        "prompt=q",
        "--format",
        "prompt_completion",
    ]
    assert main([*argv, "--config", str(run)]) == 2
    assert main(argv) == 2
    with_config, default = seen
    assert with_config.curation.near_dedup.threshold == 0.9 and not with_config.curation.exact_dedup.enabled
    assert default.curation == SYNTHESIS_CURATION
    assert default.rps == 3.0 and default.columns == {"prompt": "q"} and default.shots == 3
    assert main([*argv, "--n", "0"]) == 2  # validated by the config model


def test_shipped_config_curates_as_synthesis_does_by_default() -> None:
    from lmtune.config.run import RunConfig

    path = Path(__file__).resolve().parents[3] / "configs" / "synthesize_gsm8k.yaml"
    cfg = loader.load(RunConfig, path)
    assert cfg.data.curation == SYNTHESIS_CURATION  # `--config` with it changes nothing but is explicit
    assert [s.path for s in cfg.data.sources] == ["gsm8k", "data/gsm8k_synth.jsonl"]


# --- a real `lmtune serve` ----------------------------------------------------------------------------


def test_against_lmtune_serve_of_the_tiny_model(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmtune.config.deploy import ServeConfig
    from lmtune.serve.run import background_server

    seeds = write_seeds(tmp_path / "seeds.jsonl")
    out = tmp_path / "synth.jsonl"
    with background_server(tiny_model_dir, ServeConfig()) as base_url:
        argv = ["data", "synthesize", "--seeds", str(seeds), "--endpoint", f"{base_url}/v1"]
        argv += ["--model", tiny_model_dir.name, "--n", "4", "--out", str(out), "--max-tokens", "12"]
        argv += ["--shots", "2", "--seed", "1"]
        assert main(argv) == 0
    printed = capsys.readouterr().out
    paths = SynthPaths.for_out(out)
    state = json.loads(paths.state.read_text())["summary"]
    accepted, by_reason = state["accepted"], state["rejected_by_reason"]
    assert accepted + sum(by_reason.values()) == 4  # gibberish mostly: the counts still add up
    assert len(lines(out)) == accepted and len(lines(paths.rejects)) == sum(by_reason.values())
    journal = lines(paths.requests)
    assert sorted(e["index"] for e in journal) == [0, 1, 2, 3]
    assert all(e["response_model"] == tiny_model_dir.name and e["completion"] is not None for e in journal)
    assert re.search(r"^requested +4$", printed, re.MULTILINE), printed
