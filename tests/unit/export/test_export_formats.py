"""The contract of the folder formats (what every export writes first), over every member of their
union: the folder each writes reloads to a model with the trained model's logits, standalone formats
load with transformers alone, and `export.merge` picks the format. The formats derived from the merged
folder have their own checks (test_gguf.py, test_quantized_export.py); every member of that union is
named here so a new one cannot go untested."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import torch
from transformers import AutoModelForCausalLM
from tuned_run import make_run

from lmtune.config.formats import (
    AdapterFormat,
    BnbFormat,
    DerivedFormat,
    FolderFormat,
    GgufFormat,
    MergedFormat,
    TorchaoFormat,
    chosen_format,
)
from lmtune.config.methods import FullConfig, LoraConfig, PromptTuningConfig
from lmtune.export.formats import load_format, save_format
from lmtune.weights.load import load_tuned
from lmtune.weights.view import final_view

EVERY_FORMAT = [cls() for cls in get_args(FolderFormat)]


@pytest.mark.parametrize("fmt", EVERY_FORMAT, ids=lambda f: f.type)
def test_every_format_reloads_to_the_trained_model(
    fmt: FolderFormat, tmp_path: Path, tiny_model_dir: Path
) -> None:
    rundir = make_run(tmp_path, tiny_model_dir, scale=0.5)
    cfg, weights = final_view(rundir)
    tuned = load_tuned(weights, cfg.weights)
    ids = torch.tensor([[1, 5, 9, 23, 42, 7]])
    with torch.no_grad():
        before = tuned.model(input_ids=ids).logits
    out = tmp_path / "export" / fmt.folder
    files = save_format(fmt, tuned, cfg.weights, out)
    assert files and all(name.endswith(".safetensors") for name in files)
    with torch.no_grad():
        after = load_format(fmt, out, cfg.weights)(input_ids=ids).logits
    assert torch.allclose(before, after, atol=1e-4)
    if fmt.standalone:  # transformers alone, no PEFT, no base beside it
        plain = AutoModelForCausalLM.from_pretrained(out).eval()
        with torch.no_grad():
            assert torch.allclose(plain(input_ids=ids).logits, before, atol=1e-4)
    else:
        assert (out / "adapter_config.json").is_file()


def test_every_derived_format_has_its_own_check() -> None:
    """test_gguf.py checks GGUF in llama.cpp; test_quantized_export.py the bnb and torchao folders."""
    assert set(get_args(DerivedFormat)) == {GgufFormat, BnbFormat, TorchaoFormat}


def test_export_merge_picks_the_format() -> None:
    lora = LoraConfig(rank=4, alpha=8)
    assert chosen_format(None, lora, "none") == MergedFormat()
    assert chosen_format(False, lora, "none") == AdapterFormat()
    assert chosen_format(None, lora, "int8") == AdapterFormat()  # an int8 base cannot be merged
    assert chosen_format(None, PromptTuningConfig(), "none") == AdapterFormat()  # nothing to merge into
    assert chosen_format(None, FullConfig(), "none") == MergedFormat()
