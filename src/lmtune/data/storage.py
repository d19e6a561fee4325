"""The prepared splits on disk: their Arrow schema, a streaming writer, saving and memory-mapped loading,
and the token counts of a split."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.data.encoding.packing import pack
from lmtune.data.encoding.template import IGNORE

if TYPE_CHECKING:
    from datasets import Dataset, Features


@contextmanager
def arrow_stream(path: Path, schema: Any) -> Iterator[Any]:
    """An Arrow IPC stream writer on `path` (the format `Dataset.from_file` memory-maps); the file is
    removed if writing fails."""
    # deferred: pyarrow only when this runs (keeps `import lmtune...` light)
    import pyarrow as pa

    try:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            yield writer
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def memory_mapped(path: Path) -> Dataset:
    # deferred: datasets only when this runs (keeps `import lmtune...` light)
    from datasets import Dataset

    return Dataset.from_file(str(path))


def messages_feature() -> Any:
    # deferred: datasets only when this runs (keeps `import lmtune...` light)
    from datasets import List, Value

    return List({"role": Value("string"), "content": Value("string")})


def split_features(packed: bool) -> Features:
    # deferred: datasets only when this runs (keeps `import lmtune...` light)
    from datasets import Features, List, Value

    ints = List(Value("int64"))
    cols = {"input_ids": ints, "labels": ints, "attention_mask": ints}
    if packed:
        cols["position_ids"] = ints
    return Features({**cols, "messages": messages_feature()})


def packed_rows(encoded: Dataset, train_idx: list[int], max_length: int) -> Dataset:
    """The train split packed into rows of at most `max_length` tokens (packing is one ordered pass over
    the train rows; their token columns are read into memory for it)."""
    # deferred: datasets only when this runs (keeps `import lmtune...` light)
    from datasets import Dataset

    rows = encoded.select(train_idx).to_dict()
    packed = pack(rows["input_ids"], rows["labels"], max_length)
    columns = {
        "input_ids": [r.input_ids for r in packed],
        "labels": [r.labels for r in packed],
        "attention_mask": [[1] * len(r.input_ids) for r in packed],
        "position_ids": [r.position_ids for r in packed],
        "messages": [[turn for i in r.members for turn in rows["messages"][i]] for r in packed],
    }
    return Dataset.from_dict(columns, features=split_features(packed=True))


def save_split(dataset: Dataset, path: Path) -> None:
    """Save next to `path`, then swap it in, so a crash never leaves a half-written split."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def load_split(path: Path) -> Dataset:
    """Load a saved split; an empty split (saved with no data files) loads as an empty Dataset."""
    # deferred: datasets only when this runs (keeps `import lmtune...` light)
    from datasets import Dataset, Features, load_from_disk

    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    if not state.get("_data_files"):
        info = json.loads((path / "dataset_info.json").read_text(encoding="utf-8"))
        features = Features.from_dict(info["features"])
        return Dataset.from_dict({name: [] for name in features}, features=features)
    return load_from_disk(str(path))


def token_counts(dataset: Dataset) -> dict[str, int]:
    """Tokens and labelled tokens of a split, counted over its Arrow columns one record batch at a time."""
    # deferred: numpy, pyarrow only when this runs (keeps `import lmtune...` light)
    import numpy as np
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    total = pc.sum(pc.list_value_length(table["input_ids"])).as_py() or 0
    labelled = sum(
        int(np.count_nonzero(pc.list_flatten(chunk).to_numpy(zero_copy_only=False) != IGNORE))
        for chunk in table["labels"].chunks
    )
    return {"total": int(total), "labelled": labelled}
