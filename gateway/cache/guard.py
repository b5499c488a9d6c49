"""A lexical check on a semantic hit: two questions that name different things are different.

Sentence embeddings put "What is the capital of France?" and "…of Spain?" at 0.9+
similarity: the words around the name dominate. Those near misses are the worst hits
(a confident wrong answer), and they have a shape: each question has a number or a
name the other lacks. So a candidate passes only if, for numbers and for names
(capitalised words past the first, acronyms), the two sets are not each missing
something the other has. One side adding a detail ("a Windows PC") or spelling a
number out ("thirty days") still passes; a swap (30 → 90, HTTP → HTTPS, Monday →
Sunday) does not. Swaps of ordinary words (boiling → freezing) are left to the
similarity threshold; `bench.cache_quality` measures both.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[A-Za-z0-9][\w'\u2019.-]*")


def _salient(text: str) -> tuple[set[str], set[str]]:
    """(numbers, names) mentioned in `text`."""
    words = [w.replace("\u2019", "'").rstrip(".'") for w in _TOKEN.findall(text)]
    numbers = {w for w in words if any(c.isdigit() for c in w)}
    names = {
        w.lower().removesuffix("'s")
        for w in words[1:]
        if w != "I" and any(c.isupper() for c in w) and w not in numbers
    }
    return numbers, names


def compatible(stored: str, asked: str) -> bool:
    """False when each question has a number, or a name, that the other does not."""
    for mine, theirs in zip(_salient(stored), _salient(asked), strict=True):
        if mine - theirs and theirs - mine:
            return False
    return True
