"""Response-cache latency through the gateway: a hit (exact, semantic) and what a semantic miss adds.

    python -m bench.cache_latency [--requests 300]

A fake upstream (`bench.upstream`, instant, 16 tokens) and `gateway serve` as separate
processes, the gateway on its embedded defaults (in-process exact store, Qdrant local
mode, the local embedder). One client at a time (concurrency 1), the scenarios taking
turns in blocks of 20 so drift hits them all alike:

- `uncached`: no `cache` object — the gateway's normal path;
- `exact-miss`: `cache: {mode: exact}`, a new question each time (looked up, then stored);
- `semantic-miss`: `cache: {mode: semantic}`, a new question each time (exact lookup,
  embedding, Qdrant search, then both stores written after the answer);
- `exact-hit`: the same question each time;
- `semantic-hit`: a paraphrase of a stored question each time (exact miss, semantic hit).

Reported: p50/p90/p99 of the whole request per scenario; "added" is a scenario's p50
minus `uncached`'s. Results go to `bench/results/cache_latency.json`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import gateway_config, new_workdir, start_gateway, start_upstream
from bench.stats import percentile

MODEL = "bench-model"
STORED = "What is the capital of France?"  # exact hits ask this again
SEMANTIC_STORED = "Who wrote Pride and Prejudice?"  # semantic hits ask the paraphrase (similarity 0.94)
PARAPHRASE = "Who is the author of Pride and Prejudice?"
BLOCK = 20


def _body(scenario: str, i: int) -> dict[str, Any]:
    fresh = f"Tell me fact number {i} about the history of {scenario} caches."
    question = {
        "uncached": fresh,
        "exact-miss": fresh,
        "semantic-miss": fresh,
        "exact-hit": STORED,
        "semantic-hit": PARAPHRASE,
    }[scenario]
    body: dict[str, Any] = {
        "model": MODEL,
        "temperature": 0,
        "messages": [{"role": "user", "content": question}],
    }
    if scenario != "uncached":
        body["cache"] = {"mode": "semantic" if scenario.startswith("semantic") else "exact"}
    return body


def _run(url: str, requests: int) -> dict[str, Any]:
    scenarios = ["uncached", "exact-miss", "semantic-miss", "exact-hit", "semantic-hit"]
    samples: dict[str, list[float]] = {s: [] for s in scenarios}
    headers: dict[str, set[str]] = {s: set() for s in scenarios}
    with httpx.Client(base_url=url, timeout=30) as client:
        for mode, question in (("exact", STORED), ("semantic", SEMANTIC_STORED)):  # what the hits find
            body = {"model": MODEL, "temperature": 0, "messages": [{"role": "user", "content": question}]}
            client.post("/v1/chat/completions", json={**body, "cache": {"mode": mode}}).raise_for_status()
        time.sleep(1.0)  # stores happen after the answer
        for warm in range(3):  # load the embedder, open Qdrant, warm connections
            for scenario in scenarios:
                client.post("/v1/chat/completions", json=_body(scenario, 100_000 + warm)).raise_for_status()
        done = 0
        while done < requests:
            for scenario in scenarios:
                for i in range(done, min(done + BLOCK, requests)):
                    started = time.perf_counter()
                    response = client.post("/v1/chat/completions", json=_body(scenario, i))
                    elapsed = (time.perf_counter() - started) * 1000
                    response.raise_for_status()
                    samples[scenario].append(elapsed)
                    headers[scenario].add(response.headers.get("x-gateway-cache", "-").split(";")[0])
            done += BLOCK
    base = percentile(samples["uncached"], 50) or 0.0
    out: dict[str, Any] = {}
    for scenario, values in samples.items():
        p50 = percentile(values, 50) or 0.0
        out[scenario] = {
            "n": len(values),
            "p50_ms": round(p50, 3),
            "p90_ms": round(percentile(values, 90) or 0.0, 3),
            "p99_ms": round(percentile(values, 99) or 0.0, 3),
            "added_p50_ms": round(p50 - base, 3),
            "x_gateway_cache": sorted(headers[scenario]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="measured requests per scenario")
    parser.add_argument("--output", type=Path, default=Path("bench/results/cache_latency.json"))
    args = parser.parse_args()
    with new_workdir() as tmp:
        workdir = Path(tmp)
        upstream, upstream_url = start_upstream(workdir, 16)
        try:
            gateway, url = start_gateway(
                workdir, gateway_config(upstream_url, "gpt-4o-mini", MODEL), "aiohttp"
            )
            try:
                report = _run(url, args.requests)
            finally:
                gateway.stop()
        finally:
            upstream.stop()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(
        f"{'scenario':>14} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p50 - uncached':>15}  header"
    )
    for scenario, row in report.items():
        print(
            f"{scenario:>14} {row['n']:>5} {row['p50_ms']:>8.2f} {row['p90_ms']:>8.2f} {row['p99_ms']:>8.2f}"
            f" {row['added_p50_ms']:>15.2f}  {','.join(row['x_gateway_cache'])}"
        )


if __name__ == "__main__":
    main()
