"""The engine's text tracking: what is streamed is always a prefix of the final completion."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lmtune.errors import ModelLoadError
from lmtune.serve.engine import Engine, SamplingParams, _held_back, _stop_cut


def test_stop_cut_finds_the_earliest_stop() -> None:
    assert _stop_cut("abcXYdefZ", ("Z", "XY")) == 3
    assert _stop_cut("abc", ("Z",)) is None
    assert _stop_cut("abc", ()) is None


def test_held_back_is_the_longest_stop_prefix_at_the_end() -> None:
    assert _held_back("hello wor", ("world",)) == 3
    assert _held_back("hello w", ("xyz", "wo")) == 1
    assert _held_back("hello", ("world",)) == 0
    assert _held_back("hello", ()) == 0


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Engine:
    return Engine(tiny_model_dir)


@pytest.mark.parametrize("stop", [(), ("e",), ("the", "ne")])
def test_streamed_pieces_concatenate_to_the_text(engine: Engine, stop: tuple[str, ...]) -> None:
    prompt = engine.encode_chat([{"role": "user", "content": "the apples"}])
    params = SamplingParams(max_new_tokens=24, temperature=0.9, seed=5, stop=stop)
    pieces: list[str] = []
    streamed = engine.generate(prompt, params, on_text=pieces.append)
    plain = engine.generate(prompt, params)
    assert "".join(pieces) == streamed.text == plain.text
    assert streamed.completion_tokens == plain.completion_tokens
    assert all(pieces)
    # with this seed each stop list is hit before the budget runs out
    assert streamed.finish_reason == ("stop" if stop else "length")
    assert not any(s in streamed.text for s in stop)


def test_cancel_stops_generation(engine: Engine) -> None:
    prompt = engine.encode_chat([{"role": "user", "content": "hi"}])
    cancel = threading.Event()
    cancel.set()
    done = engine.generate(prompt, SamplingParams(max_new_tokens=50, temperature=0), cancel=cancel)
    assert done.finish_reason == "cancelled"
    assert done.completion_tokens == 1


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a model folder"):
        Engine(tmp_path)
