"""The one generation engine: batches equal single prompts, stop tokens and stop strings end each row,
streamed pieces add up per row, seeded sampling repeats without touching the caller's random state,
cancel ends every row."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from lmtune.runtime.generation import Generator, SamplingParams, greedy_generate, render_prompt
from lmtune.runtime.stops import held_back, stop_cut, stop_token_ids

QUESTIONS = ["how many apples", "hi", "what is two plus three, and why?", "name a colour"]


def test_stop_cut_finds_the_earliest_stop() -> None:
    assert stop_cut("abcXYdefZ", ("Z", "XY")) == 3
    assert stop_cut("abc", ("Z",)) is None
    assert stop_cut("abc", ()) is None


def test_held_back_is_the_longest_stop_prefix_at_the_end() -> None:
    assert held_back("hello wor", ("world",)) == 3
    assert held_back("hello w", ("xyz", "wo")) == 1
    assert held_back("hello", ("world",)) == 0
    assert held_back("hello", ()) == 0


@pytest.fixture(scope="module")
def parts(tiny_model_dir: Path) -> tuple[Any, Any, list[list[int]]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    gen = Generator(model, tok)
    return model, tok, [gen.encode([{"role": "user", "content": q}]) for q in QUESTIONS]


def test_a_batch_answers_as_each_prompt_alone(parts: tuple[Any, Any, list[list[int]]]) -> None:
    model, tok, prompts = parts
    gen = Generator(model, tok)
    params = SamplingParams(max_new_tokens=12, temperature=0)
    together = gen.generate(prompts, params, batch_size=4)
    alone = [gen.generate([p], params)[0] for p in prompts]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert [c.text for c in together] == [c.text for c in alone]
    assert [c.prompt_tokens for c in together] == [len(p) for p in prompts]
    assert len({len(p) for p in prompts}) > 1  # the batch was really left-padded


def test_greedy_generate_renders_and_batches_through_the_engine(
    parts: tuple[Any, Any, list[list[int]]],
) -> None:
    model, tok, prompts = parts
    texts = [render_prompt(tok, [{"role": "user", "content": q}]) for q in QUESTIONS]
    got = greedy_generate(model, tok, texts, max_new_tokens=8, batch_size=3, stop_ids=stop_token_ids(tok))
    want = Generator(model, tok).generate(prompts, SamplingParams(max_new_tokens=8, temperature=0))
    assert [c.token_ids for c in got] == [c.token_ids for c in want]


def test_a_row_ends_at_its_first_stop_token(parts: tuple[Any, Any, list[list[int]]]) -> None:
    """Pick a token that row 0 produces on its own as a stop token: row 0 then ends right after its
    first occurrence (the token included), the other rows run on unchanged until they meet it."""
    model, tok, prompts = parts
    params = SamplingParams(max_new_tokens=12, temperature=0)
    free = Generator(model, tok, [tok.vocab_size + 10]).generate(prompts, params)
    assert all(c.finish_reason == "length" and c.completion_tokens == 12 for c in free)
    stop = free[0].token_ids[4]
    cut = Generator(model, tok, [stop]).generate(prompts, params)
    for before, after in zip(free, cut, strict=True):
        n = before.token_ids.index(stop) + 1 if stop in before.token_ids else 12
        assert after.token_ids == before.token_ids[:n]
        assert after.finish_reason == ("stop" if stop in before.token_ids else "length")
    assert cut[0].completion_tokens <= 5 and cut[0].finish_reason == "stop"


def test_stop_strings_and_streaming_per_row(parts: tuple[Any, Any, list[list[int]]]) -> None:
    model, tok, prompts = parts
    gen = Generator(model, tok)
    free = gen.generate(prompts, SamplingParams(max_new_tokens=16, temperature=0))
    stop = free[0].text[5:7]  # a string row 0 writes
    assert stop and stop not in free[0].text[:5]
    pieces: dict[int, list[str]] = {i: [] for i in range(len(prompts))}
    params = SamplingParams(max_new_tokens=16, temperature=0, stop=(stop,))
    streamed = gen.generate(prompts, params, on_text=lambda i, text: pieces[i].append(text))
    for i, (before, after) in enumerate(zip(free, streamed, strict=True)):
        assert "".join(pieces[i]) == after.text
        if stop in before.text:
            assert after.text == before.text[: before.text.index(stop)] and after.finish_reason == "stop"
            assert after.token_ids == before.token_ids[: after.completion_tokens]
        else:
            assert after.text == before.text
    assert streamed[0].text == free[0].text[:5] and streamed[0].completion_tokens < free[0].completion_tokens


def test_seeded_sampling_repeats_and_leaves_the_callers_random_state(
    parts: tuple[Any, Any, list[list[int]]],
) -> None:
    model, tok, prompts = parts
    gen = Generator(model, tok)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a, b, c = (
        gen.generate(prompts, SamplingParams(max_new_tokens=12, temperature=1.0, top_k=0, seed=s))
        for s in (3, 3, 4)
    )
    assert torch.equal(torch.get_rng_state(), state)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert [x.token_ids for x in a] != [x.token_ids for x in c]


def test_sampling_settings_fall_back_to_the_models_generation_config(
    parts: tuple[Any, Any, list[list[int]]],
) -> None:
    model, tok, _ = parts
    gen = Generator(model, tok)
    assert gen.sampling_kwargs(SamplingParams(max_new_tokens=1, temperature=0)) == {"do_sample": False}
    unset = gen.sampling_kwargs(SamplingParams(max_new_tokens=1))
    config = model.generation_config
    assert unset == {
        "do_sample": True,
        "temperature": config.temperature or 1.0,
        "top_p": config.top_p or 1.0,
        "top_k": config.top_k or 0,
    }
    given = gen.sampling_kwargs(SamplingParams(max_new_tokens=1, temperature=0.5, top_p=0.8, top_k=7))
    assert given == {"do_sample": True, "temperature": 0.5, "top_p": 0.8, "top_k": 7}


def test_cancel_ends_every_row(parts: tuple[Any, Any, list[list[int]]]) -> None:
    """Cancel once the first piece of text streams out: every row stops at that token."""
    model, tok, prompts = parts
    cancel = threading.Event()
    done = Generator(model, tok).generate(
        prompts,
        SamplingParams(max_new_tokens=40, temperature=0),
        on_text=lambda i, t: cancel.set(),
        cancel=cancel,
    )
    assert {c.finish_reason for c in done} <= {"cancelled", "stop"}
    assert "cancelled" in {c.finish_reason for c in done}
    assert max(c.completion_tokens for c in done) < 40
    assert len({c.completion_tokens for c in done if c.finish_reason == "cancelled"}) == 1


def test_batching_by_length_keeps_the_prompts_order(parts: tuple[Any, Any, list[list[int]]]) -> None:
    model, tok, prompts = parts
    gen = Generator(model, tok)
    params = SamplingParams(max_new_tokens=10, temperature=0)
    plain = gen.generate(prompts, params, batch_size=2)
    pieces: dict[int, list[str]] = {i: [] for i in range(len(prompts))}
    sorted_ = gen.generate(
        prompts, params, batch_size=2, by_length=True, on_text=lambda i, text: pieces[i].append(text)
    )
    assert [c.token_ids for c in sorted_] == [c.token_ids for c in plain]
    assert [c.prompt_tokens for c in sorted_] == [len(p) for p in prompts]
    assert ["".join(pieces[i]) for i in range(len(prompts))] == [c.text for c in sorted_]
