"""Source mixing, label balancing and class weights: closed forms, and through prepare() (tiny tokenizer).

Fixtures are generated here: record k of a source says "<source> record k" and carries a label field, so
every train row can be traced back to its original record.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lmtune.config import loader
from lmtune.config.data import DataConfig
from lmtune.config.run import RunConfig
from lmtune.data.mixture import (
    apportion,
    class_weights,
    label_targets,
    record_label,
    resample,
    sample_to,
    source_shares,
    source_targets,
    target_size,
)
from lmtune.data.prepare import prepare
from lmtune.errors import ConfigError
from lmtune.runtime.rundir import RunDir


def test_temperature_shares_follow_n_to_the_one_over_t() -> None:
    counts = [900, 100, 0]
    assert source_shares(counts, None, 1.0) == pytest.approx([0.9, 0.1, 0.0])
    assert source_shares(counts, None, 2.0) == pytest.approx([30 / 40, 10 / 40, 0.0])  # sqrt: 30 and 10
    assert source_shares(counts, None, 1e6)[:2] == pytest.approx([0.5, 0.5], abs=1e-4)
    assert source_shares(counts, [1.0, 3.0, 5.0], None) == pytest.approx([0.25, 0.75, 0.0])  # empty: 0


def test_target_size_and_apportion() -> None:
    assert target_size([900, 100], [0.5, 0.5], "total") == 1000
    assert target_size([900, 100], [0.5, 0.5], "largest") == 1800  # the 900 used once, as half
    assert target_size([900, 100], [0.5, 0.5], 250) == 250
    parts = apportion(10, [1 / 3, 1 / 3, 1 / 3])
    assert sum(parts) == 10 and sorted(parts) == [3, 3, 4]


def test_largest_keeps_the_largest_source_whole() -> None:
    rng = random.Random(0)
    for _ in range(300):
        counts = [rng.randrange(1, 5000) for _ in range(rng.randrange(2, 6))]
        shares = source_shares(counts, None, rng.choice([1.5, 2.0, 5.0]))
        targets = source_targets(counts, shares, "largest")
        assert max(targets) == max(counts) == targets[counts.index(max(counts))]
    assert source_targets([900, 100], [0.5, 0.5], "largest") == [900, 900]
    assert source_targets([900, 100], [0.75, 0.25], 40) == [30, 10]


def test_sample_to_spreads_copies_evenly_and_is_seeded() -> None:
    pool = list(range(7))
    up = sample_to(pool, 24, random.Random(0))
    assert len(up) == 24 and set(Counter(up).values()) == {3, 4}  # 24 = 3*7 + 3
    down = sample_to(pool, 4, random.Random(0))
    assert len(set(down)) == 4 and set(down) <= set(pool)
    assert sample_to(pool, 4, random.Random(0)) == down


def test_label_targets_and_class_weights() -> None:
    counts = {"pos": 30, "neg": 6, "mixed": 12}
    assert label_targets(counts, "oversample", 1.0) == {"pos": 30, "neg": 30, "mixed": 30}
    assert label_targets(counts, "oversample", 0.5) == {"pos": 30, "neg": 15, "mixed": 15}
    assert label_targets(counts, "undersample", 1.0) == {"pos": 6, "neg": 6, "mixed": 6}
    assert label_targets(counts, "undersample", 0.5) == {"pos": 12, "neg": 6, "mixed": 12}
    assert label_targets(counts, "none", 1.0) == counts
    weights = class_weights(counts)
    assert weights["neg"] / weights["pos"] == pytest.approx(5.0)  # inverse frequency
    mean = sum(weights[c] * n for c, n in counts.items()) / sum(counts.values())
    assert mean == pytest.approx(1.0)


def test_record_label_reads_jsonl_lines_and_rows() -> None:
    assert record_label('{"label": "pos", "x": 1}', "label") == "pos"
    assert record_label({"label": 1}, "label") == "1"
    assert record_label({"label": None}, "label") is None
    assert record_label(["a", "b"], "label") is None  # a chatterbot exchange has no fields


class _Rec:
    def __init__(self, source: int, raw: Any) -> None:
        self.source, self.raw = source, raw


def test_resample_counts_add_up_and_eval_is_untouched() -> None:
    records = [_Rec(0, {"y": "a"}) for _ in range(40)] + [_Rec(1, {"y": "b"}) for _ in range(10)]
    data = DataConfig.model_validate(
        {"sources": [{"path": "a", "weight": 1}, {"path": "b", "weight": 1}], "mixture": {"label_field": "y"}}
    )
    train = [i for i in range(50) if i % 10 != 0]  # 36 of a, 9 of b; records 0, 10, .. are eval
    out, block = resample(train, records, data, seed=1)
    assert [s["before"] for s in block["sources"]] == [36, 9]
    assert [s["after"] for s in block["sources"]] == [23, 22]  # 45 total, half each (largest remainder)
    assert set(out) <= set(train)
    assert block["train_after"] == len(out) == 45
    assert block["unique_after"] + block["unused"] == len(train)
    assert block["labels"]["before"] == {"a": 36, "b": 9}
    assert block["labels"]["after"] == {"a": 23, "b": 22}
    assert block["labels"]["eval"] == {"a": 4, "b": 1}


def _write_source(path: Path, name: str, labels: list[str]) -> Path:
    lines = []
    for k, label in enumerate(labels):
        record = {"prompt": f"classify {name} record {k}", "completion": label, "label": label}
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def _cfg(
    tmp_path: Path, sources: list[dict[str, Any]], mixture: dict[str, Any] | None, seed: int = 5
) -> RunConfig:
    data: dict[str, Any] = {"sources": sources, "max_length": 64, "eval_size": 0.2}
    if mixture is not None:
        data["mixture"] = mixture
    return RunConfig.model_validate({"output_dir": str(tmp_path / "runs"), "seed": seed, "data": data})


def _prompts(dataset: Any) -> list[str]:
    return [row[0]["content"] for row in dataset["messages"]]


def test_prepare_mixes_sources_by_weight_and_keeps_copies_out_of_eval(
    tmp_path: Path, tiny_tokenizer: Any
) -> None:
    big = _write_source(tmp_path / "big.jsonl", "big", ["pos"] * 40)
    small = _write_source(tmp_path / "small.jsonl", "small", ["neg"] * 10)
    sources = [
        {"path": str(big), "format": "prompt_completion", "weight": 1},
        {"path": str(small), "format": "prompt_completion", "weight": 1},
    ]
    cfg = _cfg(tmp_path, sources, {"size": "largest"})
    prepared = prepare(cfg.data, RunDir.for_config(cfg), tiny_tokenizer, seed=cfg.seed)
    stats, mix = prepared.stats, prepared.stats["mixture"]

    assert (stats["read"], stats["accepted"], stats["rejected"]) == (50, 50, 0)
    before = [s["before"] for s in mix["sources"]]
    assert sum(before) + stats["split"]["eval"] == 50
    train_prompts = _prompts(prepared.train)
    by_source = Counter(p.split()[1] for p in train_prompts)
    assert by_source["big"] == before[0]  # `largest`: the big source is used exactly once
    assert by_source["small"] == before[0]  # weights 1:1: the small one is over-sampled to the same count
    assert [s["after"] for s in mix["sources"]] == [by_source["big"], by_source["small"]]
    assert stats["split"]["train"] == len(train_prompts) == mix["train_after"]
    assert set(train_prompts).isdisjoint(_prompts(prepared.eval))  # no copy crosses the split

    again = prepare(cfg.data, RunDir(tmp_path / "again"), tiny_tokenizer, seed=cfg.seed)
    assert _prompts(again.train) == train_prompts  # seeded: the same train split


def test_prepare_oversamples_labels_and_stores_class_weights(tmp_path: Path, tiny_tokenizer: Any) -> None:
    labels = ["pos"] * 30 + ["neg"] * 6 + ["mixed"] * 12
    random.Random(0).shuffle(labels)
    src = _write_source(tmp_path / "reviews.jsonl", "reviews", labels)
    sources = [{"path": str(src), "format": "prompt_completion"}]
    mixture = {"label_field": "label", "label_strategy": "oversample", "class_weights": True}
    cfg = _cfg(tmp_path, sources, mixture)
    rundir = RunDir.for_config(cfg)
    prepared = prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)
    block = json.loads((rundir.data / "stats.json").read_text())["mixture"]["labels"]

    assert sum(block["before"].values()) + sum(block["eval"].values()) == 48
    largest = max(block["before"].values())
    assert block["after"] == {"mixed": largest, "neg": largest, "pos": largest}
    completions = Counter(row[-1]["content"] for row in prepared.train["messages"])
    assert completions == Counter(block["after"])  # what the Arrow train split really holds
    assert set(_prompts(prepared.train)).isdisjoint(_prompts(prepared.eval))
    weights = prepared.stats["mixture"]["class_weights"]
    assert weights == pytest.approx({"mixed": 1.0, "neg": 1.0, "pos": 1.0})  # balanced after oversampling

    cfg = _cfg(tmp_path, sources, {"label_field": "label", "class_weights": True}, seed=6)
    unbalanced = prepare(cfg.data, RunDir(tmp_path / "unbalanced"), tiny_tokenizer, seed=cfg.seed).stats[
        "mixture"
    ]
    counts = unbalanced["labels"]["after"]
    w = unbalanced["class_weights"]
    assert sum(w[c] * n for c, n in counts.items()) / sum(counts.values()) == pytest.approx(1.0)
    assert w["neg"] > w["mixed"] > w["pos"]


def test_undersample_drops_train_records_but_not_accepted_ones(tmp_path: Path, tiny_tokenizer: Any) -> None:
    src = _write_source(tmp_path / "u.jsonl", "u", ["pos"] * 30 + ["neg"] * 10)
    mixture = {"label_field": "label", "label_strategy": "undersample", "label_ratio": 0.5}
    cfg = _cfg(tmp_path, [{"path": str(src), "format": "prompt_completion"}], mixture)
    stats = prepare(cfg.data, RunDir.for_config(cfg), tiny_tokenizer, seed=cfg.seed).stats
    labels, mix = stats["mixture"]["labels"], stats["mixture"]
    assert labels["after"]["pos"] == 2 * labels["before"]["neg"]
    assert labels["after"]["neg"] == labels["before"]["neg"]
    assert stats["accepted"] == 40 and stats["read"] == stats["accepted"] + stats["rejected"]
    assert mix["unused"] == labels["before"]["pos"] - labels["after"]["pos"] and mix["repeated"] == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"sources": [{"path": "a", "weight": 2}, {"path": "b"}]},
            "`weight` is set on some sources but not all",
        ),
        (
            {"sources": [{"path": "a", "weight": 2}], "mixture": {"temperature": 2}},
            "temperature cannot be combined with per-source `weight`",
        ),
        (
            {"mixture": {"label_strategy": "oversample"}},
            "label_strategy and class_weights need `label_field`",
        ),
    ],
)
def test_inconsistent_mixture_settings_are_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        loader.build(RunConfig, {"data": data})


def test_alignment_sources_refuse_a_weight() -> None:
    align = {"type": "dpo", "data": {"sources": [{"path": "p.jsonl", "format": "preference", "weight": 2}]}}
    with pytest.raises(ConfigError, match=r"`weight` applies to data\.sources only"):
        loader.build(RunConfig, {"align": align})
