"""Every source type yields the same records; an unreadable source is one clear DataError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmtune.config.data import SourceConfig
from lmtune.data.formats.sources import read_source
from lmtune.data.records import RawItem, Reject
from lmtune.errors import DataError

ROWS = [{"prompt": "one", "completion": "two"}, {"prompt": "three", "completion": "four"}]


def _values(path: Path | str, split: str | None = None) -> list[dict]:
    items = list(read_source(SourceConfig(path=str(path), format="prompt_completion", split=split)))
    assert all(isinstance(i, RawItem) for i in items)
    return [i.value for i in items if isinstance(i, RawItem)]


def test_jsonl_skips_blank_lines_and_numbers_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n")
    items = list(read_source(SourceConfig(path=str(path))))
    assert [i.value for i in items if isinstance(i, RawItem)] == ROWS
    assert [i.where.as_dict() for i in items] == [
        {"source": str(path), "line": 1},
        {"source": str(path), "line": 3},
    ]


@pytest.mark.parametrize("wrap", [False, True], ids=["list", "data-key"])
def test_json_list_or_data_key(tmp_path: Path, wrap: bool) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": ROWS} if wrap else ROWS))
    assert _values(path) == ROWS


def test_json_item_not_an_object_is_rejected_with_index(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([ROWS[0], [1, 2]]))
    items = list(read_source(SourceConfig(path=str(path))))
    assert isinstance(items[1], Reject)
    assert items[1].reason == "not_an_object"
    assert items[1].where.as_dict() == {"source": str(path), "index": 1}


def test_csv_rows_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('prompt,completion\none,two\n"thr\nee",four\nfive\n', encoding="utf-8")
    items = list(read_source(SourceConfig(path=str(path))))
    assert isinstance(items[0], RawItem) and items[0].value == ROWS[0]
    assert items[0].where.position == 2
    assert isinstance(items[1], RawItem) and items[1].value == {"prompt": "thr\nee", "completion": "four"}
    assert items[1].where.position == 3
    assert isinstance(items[2], Reject) and items[2].reason == "malformed_csv"
    assert items[2].where.position == 5


def test_csv_non_utf8_line_is_rejected_and_later_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbfprompt,completion\none,two\nbad\xff,x\nthree,four\n")
    items = list(read_source(SourceConfig(path=str(path))))
    assert [type(i).__name__ for i in items] == ["RawItem", "Reject", "RawItem"]
    assert isinstance(items[1], Reject) and items[1].reason == "invalid_utf8"
    assert items[1].where.position == 3
    assert isinstance(items[2], RawItem) and items[2].value == ROWS[1] and items[2].where.position == 4


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert _values(path) == ROWS


def test_save_to_disk_dataset_and_dataset_dict(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "single"))
    assert _values(tmp_path / "single") == ROWS
    DatasetDict({"train": Dataset.from_list(ROWS), "test": Dataset.from_list(ROWS[:1])}).save_to_disk(
        str(tmp_path / "dict")
    )
    assert _values(tmp_path / "dict", split="test") == ROWS[:1]
    with pytest.raises(DataError, match=r"holds splits \['test', 'train'\]; set `split`"):
        _values(tmp_path / "dict")
    with pytest.raises(DataError, match="holds a single Dataset"):
        _values(tmp_path / "single", split="train")


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError) as err:
        read_source(SourceConfig(path=str(missing)))
    aliases = "gsm8k, chatterbot, gsm8k_pairs, gsm8k_answer_pairs"
    assert str(err.value) == f"{missing}: no such file (and not a data alias: {aliases})"


def test_unsupported_type_and_unreadable_json(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("hello")
    with pytest.raises(DataError, match=r"d\.txt: unsupported file type '\.txt'"):
        read_source(SourceConfig(path=str(tmp_path / "d.txt")))
    (tmp_path / "d.json").write_text('{"a": ]')  # a broken list is read up to the break (test_broken_inputs)
    with pytest.raises(DataError, match=r"d\.json: not valid JSON \(.* line 1 column 7\)"):
        list(read_source(SourceConfig(path=str(tmp_path / "d.json"))))
    (tmp_path / "o.json").write_text('{"rows": []}')
    with pytest.raises(DataError, match="expected a top-level list of records"):
        list(read_source(SourceConfig(path=str(tmp_path / "o.json"))))
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"not a folder saved by datasets\.save_to_disk"):
        list(read_source(SourceConfig(path=str(tmp_path / "folder"))))
