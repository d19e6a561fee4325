"""Text is one modality: the data path takes a processor, and a tokenizer is the text case of one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import ProcessorMixin, WhisperFeatureExtractor

from lmtune.config.run import RunConfig
from lmtune.data.prepare import prepare
from lmtune.errors import ModelLoadError
from lmtune.runtime.processing import load_processor, text_tokenizer
from lmtune.runtime.rundir import RunDir


class TextAndAudio(ProcessorMixin):
    """A multimodal processor as transformers defines one: a feature extractor beside a tokenizer."""

    attributes = ["feature_extractor", "tokenizer"]  # noqa: RUF012  (the attribute transformers reads)
    feature_extractor_class = "WhisperFeatureExtractor"
    tokenizer_class = "AutoTokenizer"


def _config(tmp_path: Path, model_dir: Path) -> RunConfig:
    records = tmp_path / "chat.jsonl"
    records.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"{i} + {i}?"},
                        {"role": "assistant", "content": f"{2 * i}."},
                    ]
                }
            )
            + "\n"
            for i in range(10)
        )
    )
    return RunConfig.model_validate(
        {
            "output_dir": str(tmp_path / "runs"),
            "model": {"path": str(model_dir)},
            "data": {"sources": [{"path": str(records)}], "max_length": 64, "eval_size": 2},
        }
    )


def test_a_tokenizer_is_its_own_text_tokenizer(tiny_tokenizer: Any) -> None:
    assert text_tokenizer(tiny_tokenizer) is tiny_tokenizer


def test_a_multimodal_processor_gives_its_tokenizer(tiny_tokenizer: Any) -> None:
    processor = TextAndAudio(feature_extractor=WhisperFeatureExtractor(), tokenizer=tiny_tokenizer)
    assert text_tokenizer(processor) is tiny_tokenizer


def test_a_processor_without_a_tokenizer_is_refused() -> None:
    with pytest.raises(ModelLoadError, match=r"^WhisperFeatureExtractor: a processor without a tokenizer"):
        text_tokenizer(WhisperFeatureExtractor())  # type: ignore[arg-type]


def test_the_data_stage_prepares_the_same_rows_through_a_processor(
    tmp_path: Path, tiny_model_dir: Path, tiny_tokenizer: Any
) -> None:
    cfg = _config(tmp_path, tiny_model_dir)
    by_tokenizer = prepare(cfg.data, RunDir(tmp_path / "a"), tiny_tokenizer, seed=cfg.seed)
    processor = TextAndAudio(feature_extractor=WhisperFeatureExtractor(), tokenizer=tiny_tokenizer)
    by_processor = prepare(cfg.data, RunDir(tmp_path / "b"), processor, seed=cfg.seed)
    assert by_processor.train["input_ids"] == by_tokenizer.train["input_ids"]
    assert by_processor.train["labels"] == by_tokenizer.train["labels"]
    assert by_processor.stats["accepted"] == by_tokenizer.stats["accepted"] == 10


def test_a_text_model_loads_its_tokenizer_as_its_processor(tmp_path: Path, tiny_model_dir: Path) -> None:
    processor = load_processor(_config(tmp_path, tiny_model_dir).model)
    assert text_tokenizer(processor) is processor and processor.pad_token is not None
