"""Semantic-cache quality on the project's labelled pairs: precision and hit rate per threshold.

    python -m bench.cache_quality [--thresholds 0.7,0.75,...]

The set (`tests/cache_pairs/pairs.jsonl`) holds paraphrase pairs (the cached answer is
right for the new question) and near-miss pairs (almost the same words, another
question: a hit would serve a wrong answer). Questions are embedded with the gateway's
real local embedder, the one the semantic cache uses.

Two views per threshold:

- *pairs*: each pair alone — the new question hits when its similarity to the stored
  one reaches the threshold;
- *pool*: every stored question is in one cache (as in one namespace after a while);
  a new question hits its nearest stored question if that reaches the threshold, and
  the hit is right only when that is its own pair's question and the pair is a
  paraphrase.

Each view is reported on similarity alone (`raw`) and with the lexical guard the cache
applies (`guarded`, `gateway.cache.guard`: no hit between questions naming different
numbers or names). Precision = right hits / hits; hit rate = right hits / paraphrases;
wrong hits = near misses (or wrong neighbours) served.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.cache.guard import compatible
from rag.embedders import LocalEmbedder

PAIRS = Path(__file__).resolve().parent.parent / "tests" / "cache_pairs" / "pairs.jsonl"
THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.95)


def load() -> list[dict[str, Any]]:
    return [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # vectors are normalised: cosine


def _rates(right: int, wrong: int, positives: int) -> dict[str, Any]:
    hits = right + wrong
    return {
        "precision": round(right / hits, 3) if hits else None,
        "hit_rate": round(right / positives, 3) if positives else None,
        "wrong_hits": wrong,
    }


def _nearest(
    stored: dict[str, list[float]], text: str, vector: list[float], guarded: bool
) -> tuple[str | None, float]:
    """The most similar stored question (that the guard lets through, if guarded) and its similarity."""
    ranked = sorted(stored, key=lambda s: -_dot(stored[s], vector))
    for candidate in ranked[:3]:  # the cache looks at its 3 nearest entries
        if not guarded or compatible(candidate, text):
            return candidate, _dot(stored[candidate], vector)
    return None, 0.0


async def run(thresholds: tuple[float, ...]) -> dict[str, Any]:
    pairs = load()
    embedder = LocalEmbedder()
    stored_texts = sorted({p["stored"] for p in pairs})
    stored = dict(zip(stored_texts, await embedder.embed_documents(stored_texts), strict=True))
    asked = await embedder.embed_documents([p["asked"] for p in pairs])
    embedder.close()
    positives = sum(1 for p in pairs if p["same"])
    similarity = [_dot(stored[p["stored"]], v) for p, v in zip(pairs, asked, strict=True)]
    results: dict[str, Any] = {}
    for guarded in (False, True):
        nearest = [_nearest(stored, p["asked"], v, guarded) for p, v in zip(pairs, asked, strict=True)]
        passes = [not guarded or compatible(p["stored"], p["asked"]) for p in pairs]
        view: dict[str, Any] = {}
        for t in thresholds:
            hit = [s >= t and ok for s, ok in zip(similarity, passes, strict=True)]
            pair_right = sum(1 for p, h in zip(pairs, hit, strict=True) if h and p["same"])
            pair_wrong = sum(1 for p, h in zip(pairs, hit, strict=True) if h and not p["same"])
            pool_right = pool_wrong = 0
            for p, (best, score) in zip(pairs, nearest, strict=True):
                if best is not None and score >= t:
                    if p["same"] and best == p["stored"]:
                        pool_right += 1
                    else:
                        pool_wrong += 1
            view[str(t)] = {
                "pairs": _rates(pair_right, pair_wrong, positives),
                "pool": _rates(pool_right, pool_wrong, positives),
            }
        results["guarded" if guarded else "raw"] = view
    paraphrase = sorted(s for p, s in zip(pairs, similarity, strict=True) if p["same"])
    near_miss = sorted(s for p, s in zip(pairs, similarity, strict=True) if not p["same"])
    return {
        "pairs": len(pairs),
        "paraphrases": positives,
        "near_misses": len(pairs) - positives,
        "similarity": {
            "paraphrase_min_median": [round(paraphrase[0], 3), round(paraphrase[len(paraphrase) // 2], 3)],
            "near_miss_median_max": [round(near_miss[len(near_miss) // 2], 3), round(near_miss[-1], 3)],
        },
        "thresholds": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)))
    parser.add_argument("--output", type=Path, default=Path("bench/results/cache_quality.json"))
    args = parser.parse_args()
    report = asyncio.run(run(tuple(float(t) for t in args.thresholds.split(","))))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(
        f"{report['pairs']} pairs ({report['paraphrases']} paraphrases, {report['near_misses']} near misses)"
    )
    print(f"similarity: {report['similarity']}")
    for view, rows in report["thresholds"].items():
        print(f"\n{view}")
        print(f"{'threshold':>9}  {'pairs: precision':>16} {'hit rate':>8} {'wrong':>5}", end="")
        print(f"  {'pool: precision':>15} {'hit rate':>8} {'wrong':>5}")
        for t, row in rows.items():
            a, b = row["pairs"], row["pool"]
            print(
                f"{t:>9}  {a['precision']!s:>16} {a['hit_rate']!s:>8} {a['wrong_hits']:>5}"
                f"  {b['precision']!s:>15} {b['hit_rate']!s:>8} {b['wrong_hits']:>5}"
            )


if __name__ == "__main__":
    main()
