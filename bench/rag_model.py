"""`python -m bench.rag_model --port N`: a deterministic stand-in for a cheap chat model.

`bench.rag_quality` measures query expansion and LLM reranking through a real gateway,
with the prompts the gateway sends (`rag.prompts`). With no real model on this machine,
this upstream answers those two prompts by fixed rules — it knows nothing, so its
figures show what the plumbing does with a weak, knowledge-free model, not what a real
LLM would reach:

- rewrite: the question as a first-person statement (question words dropped, "you"
  turned into "I", as the writing it searches is in the first person), then its
  content words alone;
- rerank: each passage is cut into clauses and scored by the best cosine similarity of
  a clause to the question (the same local MiniLM model retrieval uses: a long
  passage's one relevant clause is not diluted by the rest), plus word overlap with the
  question; passages are ordered by the sum of the two ranks and of the order they
  came in.

Anything else gets a short fixed answer. `GET /health` answers 200 for the process helper.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

import numpy as np
import orjson
import uvicorn

from gateway.simulator.asgi import Receive, Scope, Send, read_body, send_whole
from rag import sparse
from rag.embedders import LocalEmbedder

_QUESTION_WORDS = frozenset(
    "how what when where which who whom whose why did do does is are was were can could should would".split()  # noqa: SIM905
)
_PRONOUNS = {"you": "I", "your": "my", "yours": "mine", "yourself": "myself"}
_CLAUSE = re.compile(r"[.;:!?]\s+|,\s+(?:and|but|so|then|until|after|because)\s+")
_PASSAGE = re.compile(r"^\[(\d+)\] (.*?)(?=^\[\d+\] |\Z)", re.M | re.S)


def statement(question: str) -> str:
    words = question.rstrip(" ?").split()
    while words and words[0].lower().strip(",") in _QUESTION_WORDS:
        words.pop(0)
    return " ".join(_PRONOUNS.get(w.lower(), w) for w in words)


def rewrites(question: str, n: int) -> list[str]:
    out = [statement(question), " ".join(sparse.terms(question))]
    return [r for r in out if r][:n]


class StandIn:
    def __init__(self) -> None:
        self.embedder = LocalEmbedder()
        self.embedder.load()

    def _vectors(self, texts: list[str]) -> np.ndarray:
        return np.array(self.embedder._embed_blocking(texts))

    def order(self, question: str, passages: list[str]) -> list[int]:
        """Passage indices, best first."""
        clauses = [[c for c in _CLAUSE.split(p) if c.strip()] or [p] for p in passages]
        flat = [c for cs in clauses for c in cs]
        vectors = self._vectors([question, *flat])
        sims = vectors[1:] @ vectors[0]
        best, at = [], 0
        for cs in clauses:
            best.append(float(sims[at : at + len(cs)].max()))
            at += len(cs)
        asked = set(sparse.terms(question))
        overlap = [len(asked & set(sparse.terms(p))) for p in passages]
        by_sim = _ranks(best)
        by_words = _ranks([float(o) for o in overlap])
        total = [by_sim[i] + by_words[i] + i for i in range(len(passages))]
        return sorted(range(len(passages)), key=lambda i: (total[i], i))

    def answer(self, prompt: str) -> str:
        if prompt.startswith("Rewrite the question below in "):
            n = int(prompt.split()[5])
            question = prompt.rsplit("Question: ", 1)[-1].strip()
            return "\n".join(rewrites(question, n))
        if prompt.startswith("Order the passages"):
            question = prompt.split("Question: ", 1)[1].split("\n\nPassages:\n", 1)[0]
            body = prompt.split("\n\nPassages:\n", 1)[1]
            passages = [m.group(2).strip() for m in _PASSAGE.finditer(body)]
            return ", ".join(str(i + 1) for i in self.order(question, passages))
        return "I can only rewrite questions and order passages."


def _ranks(scores: list[float]) -> list[int]:
    """0 for the highest score; ties share the better rank."""
    ordered = sorted(scores, reverse=True)
    return [ordered.index(s) for s in scores]


def app(stand_in: StandIn) -> Any:
    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/health":
            await send_whole(send, 200, b"{}")
            return
        body = orjson.loads(await read_body(receive) or b"{}")
        prompt = str((body.get("messages") or [{}])[-1].get("content") or "")
        text = stand_in.answer(prompt)
        answer = {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stand-in"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                      "total_tokens": len(prompt.split()) + len(text.split())},
        }  # fmt: skip
        await send_whole(send, 200, orjson.dumps(answer))

    return asgi


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rag_model", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app(StandIn()), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
