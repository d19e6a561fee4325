"""Eval loss is the token mean over labelled tokens, whatever the batching."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from tuned_run import GSM8K_STYLE, tokenize_conversation

from lmtune.errors import DataError
from lmtune.evaluate.loss import eval_loss


def _by_hand(model: torch.nn.Module, rows: list[dict[str, list[int]]]) -> float:
    """-log p of each labelled token given its prefix, one unpadded example at a time, then averaged."""
    nlls = []
    for r in rows:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([r["input_ids"]])).logits[0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        for t in range(1, len(r["labels"])):
            if r["labels"][t] != -100:
                nlls.append(-float(logp[t - 1, r["labels"][t]]))
    return sum(nlls) / len(nlls)


def test_loss_matches_hand_computation_across_batchings(tiny_model_dir: Path, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    rows = [tokenize_conversation(tiny_tokenizer, c) for c in GSM8K_STYLE[:3]]
    assert len({len(r["input_ids"]) for r in rows}) > 1  # padding is exercised
    expected = _by_hand(model, rows)
    scored = sum(sum(1 for x in r["labels"][1:] if x != -100) for r in rows)
    for batch_size in (1, 2, 3):
        got = eval_loss(model, rows, batch_size=batch_size, pad_id=tiny_tokenizer.pad_token_id)
        assert got.loss == pytest.approx(expected, abs=1e-5)
        assert got.perplexity == pytest.approx(math.exp(expected), rel=1e-5)
        assert got.tokens == scored


def test_loss_refuses_rows_without_labels(tiny_model_dir: Path, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    row = tokenize_conversation(tiny_tokenizer, GSM8K_STYLE[0])
    row["labels"] = [-100] * len(row["labels"])
    with pytest.raises(DataError, match="no labelled tokens"):
        eval_loss(model, [row], batch_size=1, pad_id=0)


def test_batches_by_size_or_token_budget() -> None:
    from lmtune.evaluate.loss import _batches

    assert _batches([0, 1, 2, 3, 4], [5] * 5, 2, None) == [[0, 1], [2, 3], [4]]
    assert _batches([0, 1, 2, 3, 4], [5, 5, 5, 100, 100], 2, 20) == [[0, 1, 2], [3, 4]]  # at least 2 a batch
    assert _batches(list(range(6)), [1] * 6, 2, 100) == [list(range(6))]


def test_the_per_row_losses_keep_the_rows_order_and_add_up(tiny_model_dir, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    rows = []
    for n in (9, 3, 14, 5, 3):
        ids = list(range(5, 5 + n))
        rows.append({"input_ids": ids, "labels": ids, "attention_mask": [1] * n})
    one = [eval_loss(model, [r], batch_size=1, pad_id=tiny_tokenizer.pad_token_id) for r in rows]
    together = eval_loss(model, rows, batch_size=2, pad_id=tiny_tokenizer.pad_token_id, token_budget=64)
    assert [n for _, n in together.per_row] == [len(r["input_ids"]) - 1 for r in rows]
    for alone, (nll, n) in zip(one, together.per_row, strict=True):
        assert nll / n == pytest.approx(alone.loss, abs=1e-4)
    assert together.loss == pytest.approx(sum(x for x, _ in together.per_row) / together.tokens)
