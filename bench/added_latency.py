"""The latency the gateway adds over calling the same fake upstream directly.

`python -m bench.added_latency [--clients aiohttp,httpx] [--concurrency 1,32] [--requests 500,2000]`

Starts the fake upstream (`bench.upstream`, instant answers of ~16 tokens) and, once
per upstream HTTP client library, the gateway (`gateway serve` with
GATEWAY_HTTP_CLIENT set) and the floor (`bench.passthrough`, a bare proxy using the
same library), each as its own process. Then, from one pooled aiohttp client in this
process, it sends the same chat completion straight to the upstream ("direct"),
through the floor and through the gateway, interleaved in one run (see
`bench.loadgen`), non-streaming and streaming, at each concurrency level, after an
uncounted warm-up.

Reported per scenario: p50 and p99 of each target's latency (total for
non-streaming; time to the first content chunk and total for streaming), the added
latency (target percentile minus direct percentile), failures of each target, CPU
time per request of each proxy process, and how many upstream connections the
gateway used. A plain-text table goes to stdout, everything to
bench/results/added_latency.json. Every started process is stopped, whatever
happens. See bench/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from bench import procs
from bench.loadgen import Kind, PhaseResult, Target, interleaved, new_session, run_phase
from bench.report import RESULTS_DIR, machine_info, table, write_json
from bench.stats import added
from bench.upstream import RESET_PATH, STATS_PATH

GATEWAY_MODEL = "bench-model"
UPSTREAM_MODEL = "gpt-4o-mini"
KINDS: tuple[Kind, ...] = ("nonstream", "stream")
SAFETY_MARGIN_S = 20.0  # kept back from the time budget for stopping processes and writing out


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _clients(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - {"aiohttp", "httpx"})
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"choose from aiohttp,httpx (got {text!r})")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.added_latency",
        description="Latency the gateway adds over calling the same fake upstream directly.",
    )
    parser.add_argument(
        "--clients", type=_clients, default=["aiohttp", "httpx"], help="GATEWAY_HTTP_CLIENT values"
    )
    parser.add_argument("--concurrency", type=_int_list, default=[1, 32], help="levels, e.g. 1,32")
    parser.add_argument(
        "--requests",
        type=_int_list,
        default=[500, 2000],
        help="measured requests per target per scenario, one per concurrency level (one value: all levels)",
    )
    parser.add_argument(
        "--warmup", type=int, default=100, help="uncounted requests per target (at least 4x concurrency)"
    )
    parser.add_argument(
        "--block-factor", type=int, default=8, help="interleaving block = factor x concurrency"
    )
    parser.add_argument("--completion-tokens", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=420.0, help="time budget of the whole run")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds, per request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the bare passthrough proxy (bench.passthrough) measured next to the gateway",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "added_latency.json")
    args = parser.parse_args(argv)
    if len(args.requests) == 1:
        args.requests = args.requests * len(args.concurrency)
    if len(args.requests) != len(args.concurrency):
        parser.error("--requests needs one value, or one per --concurrency level")
    if args.warmup < 0 or args.block_factor <= 0 or args.completion_tokens <= 0:
        parser.error("--warmup must be >= 0; --block-factor and --completion-tokens > 0")
    return args


class Budget:
    """Shares what is left of the run's time equally among the scenarios still to run."""

    def __init__(self, seconds: float, scenarios: int) -> None:
        self.end = time.monotonic() + seconds - SAFETY_MARGIN_S
        self.left = scenarios

    def next_deadline(self) -> float:
        now = time.monotonic()
        share = max(self.end - now, 0.0) / max(self.left, 1)
        self.left -= 1
        return now + share


async def _upstream_stats(session: aiohttp.ClientSession, root: str, path: str) -> dict[str, Any]:
    method = session.post if path == RESET_PATH else session.get
    async with method(root + path) as response:
        data: dict[str, Any] = orjson.loads(await response.read())
        return data


def _scenario_result(
    kind: Kind,
    concurrency: int,
    warm: PhaseResult,
    phase: PhaseResult,
    cpu_s: dict[str, float | None],
    upstream: dict[str, Any],
) -> dict[str, Any]:
    streamed = kind == "stream"
    sides = {name: samples.as_dict(streamed) for name, samples in phase.samples.items()}
    measures = ("total", "ttft") if streamed else ("total",)
    quantiles = ("p50_ms", "p90_ms", "p99_ms", "mean_ms")
    attempted = {name: samples.attempted for name, samples in phase.samples.items()}
    attempted["upstream"] = sum(attempted.values())
    return {
        "kind": kind,
        "concurrency": concurrency,
        "duration_s": phase.duration_s,
        "truncated": phase.truncated or warm.truncated,
        "targets": sides,
        "added": {
            name: {m: {q: added(side[m][q], sides["direct"][m][q]) for q in quantiles} for m in measures}
            for name, side in sides.items()
            if name != "direct"
        },
        "cpu_ms_per_request": {
            name: seconds * 1000 / attempted[name] if seconds is not None and attempted[name] else None
            for name, seconds in cpu_s.items()
        },
        "upstream": upstream,
        "warmup": {name: samples.as_dict(streamed) for name, samples in warm.samples.items()},
    }


def _cpu_now(processes: dict[str, procs.Proc]) -> dict[str, float | None]:
    return {name: proc.cpu_seconds() for name, proc in processes.items()}


def _cpu_delta(processes: dict[str, procs.Proc], before: dict[str, float | None]) -> dict[str, float | None]:
    after = _cpu_now(processes)
    deltas: dict[str, float | None] = {}
    for name in processes:
        start, end = before[name], after[name]
        deltas[name] = None if start is None or end is None else end - start
    return deltas


async def measure_client(
    args: argparse.Namespace, budget: Budget, targets: list[Target], processes: dict[str, procs.Proc]
) -> list[dict[str, Any]]:
    """Every scenario against one set of running servers; returns their results.

    `targets` starts with the direct one; `processes` maps "upstream" and each
    proxying target's name to its process, for CPU accounting.
    """
    upstream_root = targets[0].url.removesuffix("/v1/chat/completions")
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    async with new_session() as session:
        for concurrency, count in zip(args.concurrency, args.requests, strict=True):
            for kind in KINDS:
                deadline = budget.next_deadline()
                warm_sequence = interleaved(targets, max(args.warmup, 4 * concurrency), concurrency, rng)
                warm = await run_phase(
                    session, targets, warm_sequence, kind, concurrency, deadline, args.request_timeout
                )
                await _upstream_stats(session, upstream_root, RESET_PATH)
                cpu_before = _cpu_now(processes)
                sequence = interleaved(targets, count, args.block_factor * concurrency, rng)
                phase = await run_phase(
                    session, targets, sequence, kind, concurrency, deadline, args.request_timeout
                )
                cpu_s = _cpu_delta(processes, cpu_before)
                seen = await _upstream_stats(session, upstream_root, STATS_PATH)
                result = _scenario_result(kind, concurrency, warm, phase, cpu_s, seen)
                results.append(result)
                _progress(result)
    return results


def _progress(result: dict[str, Any]) -> None:
    parts = [f"{name} {side['ok']} ok / {side['failed']} failed" for name, side in result["targets"].items()]
    print(
        f"  c={result['concurrency']:<3} {result['kind']:<9} {result['duration_s']:6.1f}s  "
        + ", ".join(parts)
        + ("  [time budget hit]" if result["truncated"] else ""),
        file=sys.stderr,
        flush=True,
    )


def _run_client(
    args: argparse.Namespace,
    budget: Budget,
    workdir: Path,
    client: str,
    upstream: procs.Proc,
    upstream_url: str,
) -> dict[str, Any]:
    """Start the gateway (and the passthrough floor) with one HTTP client library, measure, stop them."""
    upstream_root = upstream_url.removesuffix("/v1")
    targets = [Target.for_model("direct", upstream_url + "/chat/completions", UPSTREAM_MODEL)]
    processes: dict[str, procs.Proc] = {"upstream": upstream}
    try:
        if args.floor:
            proc, root = procs.start_passthrough(workdir, upstream_root, client)
            processes["passthrough"] = proc
            targets.append(Target.for_model("passthrough", root + "/v1/chat/completions", UPSTREAM_MODEL))
        config = procs.gateway_config(upstream_url, UPSTREAM_MODEL, GATEWAY_MODEL)
        started = time.monotonic()
        proc, root = procs.start_gateway(workdir, config, client)
        processes["gateway"] = proc
        targets.append(Target.for_model("gateway", root + "/v1/chat/completions", GATEWAY_MODEL))
        print(
            f"gateway[{client}] ready in {time.monotonic() - started:.1f}s at {root}",
            file=sys.stderr,
            flush=True,
        )
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            scenarios = runner.run(measure_client(args, budget, targets, processes))
    finally:
        for name, proc in processes.items():
            if name != "upstream":
                proc.stop()
    agents: set[str] = set()
    for scenario in scenarios:
        agents.update(scenario["upstream"].get("gateway", {}).get("user_agents", []))
    return {
        "client": client,
        "upstream_saw_gateway_user_agents": sorted(agents),
        "gateway_log_tail": processes["gateway"].log_tail()[-1500:],
        "scenarios": scenarios,
    }


def _header(machine: dict[str, Any], args: argparse.Namespace) -> str:
    libs = machine["libraries"]
    return "\n".join(
        [
            "Added latency of the gateway over calling the fake upstream directly",
            f"machine: nproc={machine['nproc']} ({machine['cpu_model'] or 'unknown CPU'}), "
            f"{machine['platform']}, {machine['python']}, loadavg {machine['loadavg_at_start'][0]:.2f}",
            f"load generator: aiohttp {libs['aiohttp']} (one pooled ClientSession) on uvloop {libs['uvloop']}, "
            "in this process",
            f"fake upstream: bench.upstream (gateway.simulator, openai flavour), own process, "
            f"first_byte_ms=0 chunk_gap_ms=0 completion_tokens={args.completion_tokens}",
            f"gateway: `gateway serve`, own process; git {machine['git_commit']}"
            + (" (working tree dirty)" if machine["git_dirty"] else ""),
            "interleaving: blocks of "
            f"{args.block_factor}x concurrency per target, target order of each round seeded ({args.seed}); "
            f"warm-up max({args.warmup}, 4x concurrency) per target, not counted",
            "floor: bench.passthrough, a bare raw-ASGI proxy with the same upstream client library, own process"
            if args.floor
            else "floor: not measured (--no-floor)",
            "times in ms; added = target percentile - direct percentile; CPU ms/req = that process's CPU "
            "time per request sent to it; failed = per target, in column order; gw->up conns = distinct upstream "
            "connections the gateway used in the phase",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    print(_header(machine, args), flush=True)
    budget = Budget(args.max_seconds, len(args.clients) * len(args.concurrency) * len(KINDS))
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with procs.new_workdir() as tmp:
        workdir = Path(tmp)
        upstream, upstream_url = procs.start_upstream(workdir, args.completion_tokens)
        try:
            for client in args.clients:
                run = _run_client(args, budget, workdir, client, upstream, upstream_url)
                runs.append(run)
                print("\n" + table(run), flush=True)
        finally:
            upstream.stop()
    machine["loadavg_at_end"] = list(os.getloadavg())
    payload = {
        "benchmark": "added_latency",
        "machine": machine,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "gateway_model": GATEWAY_MODEL,
        "upstream_model": UPSTREAM_MODEL,
        "wall_time_s": time.monotonic() - started,
        "runs": runs,
    }
    write_json(payload, args.output)
    failed = sum(side["failed"] for run in runs for s in run["scenarios"] for side in s["targets"].values())
    print(f"\nwall time {payload['wall_time_s']:.0f}s; {failed} failed requests; JSON: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
