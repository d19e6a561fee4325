"""Decontamination: find training texts that share a word n-gram with an evaluation set.

Every record of every configured evaluation set is read (as a data source), its turns joined and
normalised (`curation_text.words`: NFKC, case-folded, punctuation dropped), and each of its n-grams
indexed with the eval set name and record location. A training text is contaminated when any of its
n-grams is in the index; the first shared n-gram is reported. An eval record with fewer than `n` words
adds nothing to the index (matching whole short texts would flag ordinary phrases).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lmtune.config.curation import EvalSetConfig
from lmtune.config.data import SourceConfig
from lmtune.data.curation.text import ngrams, words
from lmtune.data.formats.validate import read_records
from lmtune.data.records import Reject
from lmtune.errors import DataError


@dataclass(frozen=True)
class Overlap:
    """The first n-gram a training text shares with an evaluation set."""

    eval_set: str
    eval_record: str
    """Location of the eval record holding the n-gram (`file:line` or `file[index]`)."""
    ngram: str


class NgramIndex:
    """Word n-grams of evaluation texts, each mapped to the first eval set and record that has it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._grams: dict[str, tuple[str, str]] = {}
        self.records: dict[str, int] = {}
        """Eval records indexed per eval set name."""

    def add(self, eval_set: str, where: str, text: str) -> None:
        """Index the n-grams of one eval record."""
        self.records[eval_set] = self.records.get(eval_set, 0) + 1
        for gram in ngrams(words(text), self.n):
            self._grams.setdefault(gram, (eval_set, where))

    def __len__(self) -> int:
        return len(self._grams)

    def first_overlap(self, text: str) -> Overlap | None:
        """The first n-gram of `text` (in reading order) found in the index, or None."""
        for gram in ngrams(words(text), self.n):
            hit = self._grams.get(gram)
            if hit is not None:
                return Overlap(hit[0], hit[1], gram)
        return None


def build_index(eval_sets: Iterable[EvalSetConfig], n: int) -> NgramIndex:
    """Read every evaluation set and index its n-grams.

    Raises:
        DataError: an eval set cannot be read, or not one of its records is readable (a wrong format or
            `columns` would otherwise silently protect nothing).
    """

    index = NgramIndex(n)
    for es in eval_sets:
        src = SourceConfig(path=es.path, format=es.format, columns=es.columns, split=es.split)
        accepted = 0
        for result in read_records(src):
            if isinstance(result, Reject):
                continue
            accepted += 1
            index.add(es.name, str(result.item.where), "\n".join(t["content"] for t in result.messages))
        if accepted == 0:
            raise DataError(
                f"data.curation.decontamination.eval_sets: '{es.name}' ({es.path}): no readable record "
                f"in format '{es.format}' (check `format` and `columns`)"
            )
    return index
