"""A BM25-style sparse vector beside the dense one, for hybrid retrieval.

Documents get BM25's saturated term frequency (k1, b against a fixed average length);
Qdrant multiplies in the inverse document frequency itself (`Modifier.IDF` on the
sparse vector), so the weights stay right as the collection grows without
re-encoding anything. Terms are lower-cased words with a light suffix stemmer and
English stop words dropped, hashed to 31-bit indices (CRC-32: stable across
processes, unlike `hash()`).
"""

from __future__ import annotations

import re
import zlib
from collections import Counter

K1 = 1.2
B = 0.75
AVERAGE_TOKENS = 120.0

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    """a an and are as at be been but by can could did do does for from had has have he her his how i if in
    into is it its me my no not of on or our she so than that the their them then there these they this to
    was we were what when where which who whom why will with would you your about after also any more most
    other some such only own same too very just over under again further once here all both each few""".split()  # noqa: SIM905
)
_SUFFIXES = ("ingly", "edly", "ness", "ment", "ings", "ing", "ies", "ied", "ed", "es", "ly", "s")


def stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


def _index(term: str) -> int:
    return zlib.crc32(term.encode()) & 0x7FFFFFFF


def document_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) with BM25 term-frequency saturation and length normalisation."""
    words = terms(text)
    counts = Counter(_index(t) for t in words)
    norm = K1 * (1 - B + B * len(words) / AVERAGE_TOKENS)
    indices = sorted(counts)
    return indices, [counts[i] * (K1 + 1) / (counts[i] + norm) for i in indices]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """Each distinct query term weighs 1; Qdrant applies the IDF."""
    indices = sorted({_index(t) for t in terms(text)})
    return indices, [1.0] * len(indices)
