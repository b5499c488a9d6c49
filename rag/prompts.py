"""The prompts of the LLM steps of retrieval, and the parsing of their answers.

Query expansion asks a cheap chat model for n rewrites of the question; LLM
reranking asks it to order numbered passages. Whoever calls the model — the gateway
routing it (`gateway.retrieval_calls`) or a benchmark — builds the same prompt and
reads the answer the same way, so what is measured is what runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
_LIST_MARK = re.compile(r"^\s*(\d+[.)]|[-*])\s*")
_NUMBER = re.compile(r"\d+")
PASSAGE_CHARS = 600  # of each candidate shown to the reranker: enough to judge, cheap to send


def rewrite_prompt(question: str, n: int) -> str:
    return (
        f"Rewrite the question below in {n} different ways that a search engine would match, "
        f"using other words. Answer with exactly {n} lines, one rewrite per line, nothing else.\n\n"
        f"Question: {question}"
    )


def parse_rewrites(text: str, n: int) -> list[str]:
    """Up to n non-empty lines, list markers (`1.`, `-`) removed."""
    lines = [_LIST_MARK.sub("", line).strip() for line in text.splitlines()]
    return [line for line in lines if line][:n]


def rerank_prompt(question: str, passages: Sequence[str]) -> str:
    numbered = "\n\n".join(f"[{i}] {p[:PASSAGE_CHARS]}" for i, p in enumerate(passages, 1))
    return (
        "Order the passages by how well they answer the question, most relevant first. "
        "Answer with the passage numbers only, comma-separated.\n\n"
        f"Question: {question}\n\nPassages:\n{numbered}"
    )


def parse_order(text: str, items: Sequence[T]) -> list[T]:
    """`items` in the order the answer names them; ones it left out keep their order, after."""
    order: list[int] = []
    for match in _NUMBER.findall(text):
        i = int(match) - 1
        if 0 <= i < len(items) and i not in order:
            order.append(i)
    return [items[i] for i in order] + [item for i, item in enumerate(items) if i not in order]
