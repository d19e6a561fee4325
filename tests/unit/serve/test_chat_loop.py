"""The terminal chat, driven by scripted input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lmtune.serve.chat import PROMPT, chat, chat_loop
from lmtune.serve.engine import Engine, SamplingParams, TransformersEngine

GREEDY = SamplingParams(max_new_tokens=6, temperature=0)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Engine:
    return TransformersEngine(tiny_model_dir)


def _reply(engine: Engine, history: list[dict[str, str]]) -> str:
    return engine.generate(engine.encode_chat(history), GREEDY).text


def test_history_reset_and_exit(engine: Engine) -> None:
    out = io.StringIO()
    script = "two cats\n\n/reset\nthree dogs\nand more\n/exit\nnever read\n"
    history = chat_loop(engine, GREEDY, io.StringIO(script), out, system="be brief")

    system = {"role": "system", "content": "be brief"}
    first = _reply(engine, [system, {"role": "user", "content": "three dogs"}])
    conversation = [
        system,
        {"role": "user", "content": "three dogs"},
        {"role": "assistant", "content": first},
    ]
    second = _reply(engine, [*conversation, {"role": "user", "content": "and more"}])
    assert history == [
        *conversation,
        {"role": "user", "content": "and more"},
        {"role": "assistant", "content": second},
    ]

    text = out.getvalue()
    assert text.count(PROMPT) == 6  # one per line read, the /exit line included
    assert "(conversation cleared)" in text
    assert first in text and second in text
    assert "never read" not in text


def test_end_of_input_ends_the_loop(engine: Engine) -> None:
    out = io.StringIO()
    history = chat_loop(engine, GREEDY, io.StringIO("hello"), out)
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["content"] == "hello"
    assert out.getvalue().endswith(PROMPT + "\n")


def test_replies_longer_than_the_budget_are_marked(engine: Engine) -> None:
    out = io.StringIO()
    chat_loop(engine, SamplingParams(max_new_tokens=2, temperature=0), io.StringIO("hi\n"), out)
    assert "[cut at max_tokens]" in out.getvalue()


def test_chat_loads_a_model_folder(tiny_model_dir: Path) -> None:
    out = io.StringIO()
    history = chat(tiny_model_dir, max_tokens=3, temperature=0, stdin=io.StringIO("hi\n/exit\n"), stdout=out)
    assert len(history) == 2 and history[1]["role"] == "assistant"
