"""PadCollator: right padding, labels -100 on padding, attention mask or packed position ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lmtune.train.collator import PadCollator


def test_pads_ids_labels_and_mask_on_the_right() -> None:
    batch = PadCollator(pad_id=2)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert "position_ids" not in batch
    assert batch["input_ids"].dtype == torch.long


def test_pad_to_multiple_of() -> None:
    batch = PadCollator(pad_id=0, pad_to_multiple_of=4)([{"input_ids": [1, 2, 3, 4, 5], "labels": [1] * 5}])
    assert batch["input_ids"].shape == (1, 8)
    assert batch["labels"][0, 5:].tolist() == [-100, -100, -100]


def test_packed_rows_get_position_ids_and_no_attention_mask() -> None:
    rows = [
        {"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, -100, 5], "position_ids": [0, 1, 2, 0, 1]},
        {"input_ids": [6, 7], "labels": [-100, 7], "position_ids": [0, 1]},
    ]
    batch = PadCollator(pad_id=9)(rows)
    assert "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert batch["labels"].tolist()[1] == [-100, 7, -100, -100, -100]


def test_label_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="row has 2 input_ids but 1 labels"):
        PadCollator(pad_id=0)([{"input_ids": [1, 2], "labels": [1]}])


@torch.no_grad()
def test_packed_examples_do_not_attend_to_each_other(tiny_model_dir: Path) -> None:
    """Packed + padded, each example's logits equal those of the example run alone (without a KV cache,
    as in training: transformers skips the packed mask when it builds a cache)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    a, b = [5, 17, 33, 8, 41], [12, 9, 77]
    packed = {"input_ids": a + b, "labels": a + b, "position_ids": [*range(len(a)), *range(len(b))]}
    short = {"input_ids": [3, 4], "labels": [3, 4], "position_ids": [0, 1]}
    batch = PadCollator(pad_id=2)([packed, short])
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    alone_a = model(input_ids=torch.tensor([a])).logits[0]
    alone_b = model(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(logits[0, : len(a)], alone_a, atol=1e-5)
    assert torch.allclose(logits[0, len(a) :], alone_b, atol=1e-5)
    # without the position-id restarts, b would see a and its logits would differ
    leaked = model(input_ids=torch.tensor([a + b])).logits[0, len(a) :]
    assert not torch.allclose(leaked, alone_b, atol=1e-3)
    assert torch.allclose(logits[1, :2], model(input_ids=torch.tensor([[3, 4]])).logits[0], atol=1e-5)


@torch.no_grad()
def test_packed_per_sequence_losses_equal_unpacked(tiny_model_dir: Path) -> None:
    """Each example's loss read from a packed row equals its loss run alone (the 1% parity target; seen
    equal within 1e-5), and the packer's -100 on each example's first label keeps the shifted loss from
    predicting across the boundary."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from lmtune.data.encoding.packing import pack

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    examples = [[5, 17, 33, 8, 41, 9], [12, 9, 77, 3], [44, 45, 46, 47, 48, 49, 50]]
    (row,) = pack(examples, examples, max_length=32)
    batch = PadCollator(pad_id=2)(
        [{"input_ids": row.input_ids, "labels": row.labels, "position_ids": row.position_ids}]
    )
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[
        0
    ]
    labels = batch["labels"][0]
    start = 0
    for ids in examples:
        end = start + len(ids)
        packed = F.cross_entropy(logits[start : end - 1], labels[start + 1 : end])
        alone = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
        assert packed.item() == pytest.approx(alone.item(), rel=1e-5)
        assert labels[start].item() == -100
        start = end
