"""The serving engine: what is streamed is always a prefix of the final completion; cancel; the back-end
contract."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lmtune.errors import ModelLoadError
from lmtune.serve.engine import Engine, SamplingParams, TransformersEngine


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Engine:
    return TransformersEngine(tiny_model_dir)


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
        TransformersEngine(tmp_path)


def test_every_backend_opens_as_an_engine(tiny_model_dir: Path) -> None:
    """The back-end contract, over every member of the back-end union: it opens on a model folder and
    answers through the `Engine` protocol (same prompt ids as the template, a bounded completion)."""
    from typing import get_args

    from lmtune.config.backends import AnyBackend
    from lmtune.serve.backends import open_engine

    backends = [cls() for cls in (get_args(AnyBackend) or (AnyBackend,))]
    for backend in backends:
        engine: Engine = open_engine(backend, tiny_model_dir)
        ids = engine.encode_chat([{"role": "user", "content": "hi"}])
        assert ids and (engine.context_length is None or len(ids) < engine.context_length)
        done = engine.generate(ids, SamplingParams(max_new_tokens=3, temperature=0))
        assert done.prompt_tokens == len(ids) and 1 <= done.completion_tokens <= 3
        assert done.finish_reason in ("stop", "length")
        engine.close()
