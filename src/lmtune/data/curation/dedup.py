"""Exact and near-duplicate detection over a list of texts, first occurrence kept.

Exact: two texts are duplicates when their normalised words (`curation_text.words`) are equal, so case,
spacing and punctuation differences do not count. Near: the Jaccard similarity of the two sets of
shingles (n consecutive characters of the normalised words joined by one space, or n consecutive words)
reaches the threshold,

    J(A, B) = |S(A) & S(B)| / |S(A) | S(B)|.

Candidates come from MinHash LSH (datasketch; shingles hashed with crc32, faster than its default
sha1 and only used to find candidates), tuned to favour recall; every candidate is then confirmed with
the exact Jaccard of the shingle sets, so a record is removed only when a kept record really is that
similar. A text shorter than one shingle is one shingle (itself).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lmtune.data.curation.text import ngrams, words


@dataclass(frozen=True)
class Duplicate:
    """Record `index` duplicates the earlier kept record `of` (positions in the input list)."""

    index: int
    of: int
    similarity: float
    """1.0 for exact duplicates; the shingle Jaccard similarity for near duplicates."""


def exact_duplicates(texts: Sequence[str]) -> list[Duplicate]:
    """Every text whose normalised words equal an earlier text's, with the first such text."""
    first: dict[bytes, int] = {}
    found = []
    for i, text in enumerate(texts):
        key = hashlib.blake2b(" ".join(words(text)).encode("utf-8"), digest_size=16).digest()
        if key in first:
            found.append(Duplicate(i, first[key], 1.0))
        else:
            first[key] = i
    return found


def shingles(text: str, size: int, unit: Literal["chars", "words"] = "chars") -> frozenset[str]:
    """The set of `size`-character (or -word) shingles of the normalised text (the whole normalised text
    when it is shorter; empty when it has no words)."""
    tokens = words(text)
    if unit == "words":
        if len(tokens) < size:
            return frozenset([" ".join(tokens)]) if tokens else frozenset()
        return frozenset(ngrams(tokens, size))
    joined = " ".join(tokens)
    if len(joined) < size:
        return frozenset([joined]) if joined else frozenset()
    return frozenset(joined[i : i + size] for i in range(len(joined) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a & b| / |a | b| (0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def near_duplicates(
    texts: Sequence[str],
    threshold: float,
    shingle_size: int = 5,
    unit: Literal["chars", "words"] = "chars",
    num_perm: int = 128,
    seed: int = 1,
) -> list[Duplicate]:
    """Every text whose shingle Jaccard similarity with an earlier kept text is >= `threshold`.

    Texts are visited in order; one that is not a near duplicate is kept and indexed, so a chain of
    small edits is judged against the kept record, not against the previous removed one. A text with
    no words is never a near duplicate (nothing to compare).
    """
    # deferred: datasketch only when this runs (keeps `import lmtune...` light)
    from datasketch import MinHash, MinHashLSH

    # (false positive, false negative) weights: candidates are confirmed exactly, so misses cost more.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    kept: dict[int, frozenset[str]] = {}
    found = []
    for i, text in enumerate(texts):
        sh = shingles(text, shingle_size, unit)
        if not sh:
            continue
        mh = MinHash(num_perm=num_perm, seed=seed, hashfunc=zlib.crc32)
        mh.update_batch([s.encode("utf-8") for s in sh])
        best, best_sim = -1, 0.0
        for j in lsh.query(mh):
            sim = jaccard(sh, kept[j])
            if sim > best_sim or (sim == best_sim and j < best):
                best, best_sim = j, sim
        if best >= 0 and best_sim >= threshold:
            found.append(Duplicate(i, best, best_sim))
            continue
        kept[i] = sh
        lsh.insert(i, mh)
    return found
