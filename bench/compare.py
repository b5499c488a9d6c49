"""Direct, the gateway and the LiteLLM proxy against one fake upstream, in one run: `make bench`.

`python -m bench.compare [--smoke] [--no-litellm] [--rates 50,100,...] [--soak-requests N] [--only soak]`

One fake upstream (`bench.upstream`), the gateway (`gateway serve`, one worker, with
what production runs: an admin key and a virtual key with rpm, tpm and budget limits,
the SQLite ledger, metrics, tracing with no exporter) and the LiteLLM proxy
(`bench.litellm_proxy`, pinned, one worker, its own venv), each its own process.
From one aiohttp client in this process:

- closed loop: c=1 and c=32, non-streaming and streaming, one target at a time —
  requests/s, p50/p99 (and time to first token), CPU per request of each proxy;
- open loop (`bench.openloop`): fixed rates, latency from each request's due time;
  the rate at which a proxy's added p99 (its p99 minus direct's at that rate)
  crosses 10 ms, interpolated between the rates measured;
- the gateway's RSS at idle, its peak under load, after the load, and over a soak of
  `--soak-requests` requests its slope per 10k requests.

Writes bench/results/compare.json, a PNG plot (bench/compare.png) and the table into
bench/README.md between its `bench.compare` markers. `--smoke` is the CI run: a few
seconds, no LiteLLM, nothing written but the JSON; it prints the figures and never
judges them. `--only soak` starts the upstream and the gateway and runs only the soak,
from idle (100k requests in about 5 minutes on a quiet machine): its figures go to
bench/results/soak.json and the terminal, not to the README.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from bench import litellm_proxy, procs
from bench.loadgen import Kind, Target, new_session, run_phase
from bench.openloop import run_rate
from bench.report import RESULTS_DIR, machine_info, write_json
from bench.stats import Samples, summary

GATEWAY_MODEL = "bench-model"
UPSTREAM_MODEL = "gpt-4o-mini"
ADMIN_KEY = "bench-admin-" + os.urandom(8).hex()
CROSSING_MS = 10.0
SATURATED_P99_MS = 2000.0  # past this, higher rates for that target are skipped
HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
PLOT = HERE / "compare.png"
MARK_START, MARK_END = "<!-- bench.compare:start -->", "<!-- bench.compare:end -->"


def _numbers(text: str, kind: type = int) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds, no LiteLLM: the CI run")
    parser.add_argument("--no-litellm", dest="litellm", action="store_false")
    parser.add_argument("--concurrency", type=_numbers, default=[1, 32])
    parser.add_argument(
        "--closed-requests", type=int, default=1500, help="per target per closed-loop scenario"
    )
    parser.add_argument("--rates", type=lambda t: _numbers(t, float), default=[25, 50, 100, 200, 400, 800])
    parser.add_argument("--rate-seconds", type=float, default=4.0)
    parser.add_argument("--soak-requests", type=int, default=20_000)
    parser.add_argument(
        "--only", choices=["soak"], default=None, help="soak: only the gateway's soak, nothing else"
    )
    parser.add_argument("--completion-tokens", type=int, default=16)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--output", type=Path, default=None, help="default: bench/results/compare.json")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = RESULTS_DIR / ("soak.json" if args.only == "soak" else "compare.json")
    if args.only == "soak":
        args.litellm = False
    if args.smoke:
        args.litellm = False
        args.concurrency, args.closed_requests = [1, 8], 60
        args.rates, args.rate_seconds, args.soak_requests = [20.0, 80.0], 1.0, 0
    return args


class RssSampler:
    """The peak RSS of a process while a load runs (sampled every 0.2 s)."""

    def __init__(self, proc: procs.Proc) -> None:
        self.proc, self.peak_kb = proc, 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, self.proc.rss_kb() or 0)
            await asyncio.sleep(0.2)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def _side(samples: Samples, duration_s: float, cpu_s: float | None, tokens: int) -> dict[str, Any]:
    ok = samples.ok
    return {
        "ok": ok,
        "failed": samples.failed,
        "failures": dict(samples.failures),
        "rps": ok / duration_s if duration_s > 0 else None,
        "tokens_per_s": ok * tokens / duration_s if duration_s > 0 else None,
        "total": summary(samples.total_ms),
        "ttft": summary(samples.ttft_ms) if samples.ttft_ms else None,
        "cpu_ms_per_request": cpu_s * 1000 / samples.attempted
        if cpu_s is not None and samples.attempted
        else None,
    }


async def closed_loop(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    targets: list[Target],
    processes: dict[str, procs.Proc],
    samplers: dict[str, RssSampler],
) -> list[dict[str, Any]]:
    scenarios = []
    kinds: tuple[Kind, ...] = ("nonstream", "stream")
    for concurrency in args.concurrency:
        for kind in kinds:
            scenario: dict[str, Any] = {"kind": kind, "concurrency": concurrency, "targets": {}}
            for target in targets:
                deadline = time.monotonic() + 600
                warm = [target] * max(20, 2 * concurrency)
                await run_phase(session, [target], warm, kind, concurrency, deadline, args.request_timeout)
                proc = processes.get(target.name)
                cpu0 = proc.cpu_seconds() if proc else None
                count = (
                    args.closed_requests if target.name != "litellm" else max(100, args.closed_requests // 5)
                )
                with samplers[target.name] if target.name in samplers else _Nothing():
                    phase = await run_phase(
                        session, [target], [target] * count, kind, concurrency, deadline, args.request_timeout
                    )
                cpu1 = proc.cpu_seconds() if proc else None
                cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
                scenario["targets"][target.name] = _side(
                    phase.samples[target.name], phase.duration_s, cpu, args.completion_tokens
                )
            scenarios.append(scenario)
            _progress(f"closed c={concurrency} {kind}", scenario["targets"])
    return scenarios


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def open_loop(
    args: argparse.Namespace, session: aiohttp.ClientSession, targets: list[Target]
) -> dict[str, list[dict[str, Any]]]:
    curves: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    saturated: set[str] = set()
    for rate in args.rates:
        for target in targets:
            if target.name in saturated:
                continue
            samples = await run_rate(
                session, target, "nonstream", rate, args.rate_seconds, args.request_timeout
            )
            point = {"rate": rate, "ok": samples.ok, "failed": samples.failed, **summary(samples.total_ms)}
            curves[target.name].append(point)
            p99 = point["p99_ms"]
            if samples.failed > samples.attempted * 0.05 or p99 is None or p99 > SATURATED_P99_MS:
                saturated.add(target.name)
        _progress(f"open {rate:g}/s", {n: c[-1] for n, c in curves.items() if c and c[-1]["rate"] == rate})
    return curves


def crossing_rate(curve: list[dict[str, Any]], direct: list[dict[str, Any]]) -> dict[str, Any]:
    """The rate at which added p99 first exceeds CROSSING_MS (linear between measured rates)."""
    direct_p99 = {p["rate"]: p["p99_ms"] for p in direct}
    previous: tuple[float, float] | None = None
    for point in curve:
        base = direct_p99.get(point["rate"])
        if base is None or point["p99_ms"] is None:
            continue
        extra = point["p99_ms"] - base
        if extra > CROSSING_MS or point["failed"]:
            if previous is None:
                return {"rate": point["rate"], "bound": "at or below"}
            (r0, a0), r1 = previous, point["rate"]
            rate = r0 + (r1 - r0) * (CROSSING_MS - a0) / (extra - a0) if extra > a0 else r1
            return {"rate": rate, "bound": "about"}
        previous = (point["rate"], extra)
    last = curve[-1]["rate"] if curve else None
    return {"rate": last, "bound": "above"}


async def soak(
    args: argparse.Namespace, session: aiohttp.ClientSession, target: Target, proc: procs.Proc
) -> dict[str, Any]:
    """RSS every tenth of `--soak-requests` non-streaming requests at c=32; the slope per 10k."""
    points: list[tuple[int, int]] = []
    step = max(1, args.soak_requests // 10)
    sent = failed = 0
    while sent < args.soak_requests:
        phase = await run_phase(
            session, [target], [target] * step, "nonstream", 32, time.monotonic() + 600, args.request_timeout
        )
        sent += step
        failed += phase.samples[target.name].failed
        points.append((sent, proc.rss_kb() or 0))
        print(
            f"  soak {sent}: RSS {points[-1][1] / 1024:.1f} MB, {failed} failed", file=sys.stderr, flush=True
        )
    half = points[len(points) // 2 :]  # past warm-up: allocator pools and caches have settled
    slope = None
    if len(half) >= 2:
        xs, ys = [p[0] for p in half], [p[1] for p in half]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        den = sum((x - mx) ** 2 for x in xs)
        slope = (
            sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 10_000 / 1024
            if den
            else None
        )
    return {"requests": sent, "failed": failed, "rss_kb": points, "slope_mb_per_10k": slope}


async def _make_key(session: aiohttp.ClientSession, root: str) -> str:
    spec = {"name": "bench", "rpm": 10**8, "tpm": 10**9, "budget_usd": 10**6}
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with session.post(root + "/admin/api/keys", json=spec, headers=headers) as response:
        data = orjson.loads(await response.read())
    if response.status != 200 and response.status != 201:
        raise RuntimeError(f"could not create the bench key: {response.status} {data}")
    return str(data["key"])


async def measure(
    args: argparse.Namespace, roots: dict[str, str], processes: dict[str, procs.Proc]
) -> dict[str, Any]:
    async with new_session() as session:
        key = await _make_key(session, roots["gateway"])
        targets = [Target.for_model("direct", roots["direct"] + "/chat/completions", UPSTREAM_MODEL)]
        targets.append(
            Target.for_model("gateway", roots["gateway"] + "/v1/chat/completions", GATEWAY_MODEL, key)
        )
        if "litellm" in roots:
            url = roots["litellm"] + "/v1/chat/completions"
            targets.append(Target.for_model("litellm", url, GATEWAY_MODEL, litellm_proxy.MASTER_KEY))
        gateway = processes["gateway"]
        rss: dict[str, Any] = {name: {"idle_kb": proc.rss_kb()} for name, proc in processes.items()}
        if args.only == "soak":
            only = await soak(args, session, targets[1], gateway)
            await asyncio.sleep(2)
            rss["gateway"]["after_kb"] = gateway.rss_kb()
            return {"rss": rss, "soak": only}
        samplers = {name: RssSampler(proc) for name, proc in processes.items()}
        closed = await closed_loop(args, session, targets, processes, samplers)
        # Before the open loop, whose highest rates may overload the gateway and open its breaker.
        soaked = await soak(args, session, targets[1], gateway) if args.soak_requests else None
        opened = await open_loop(args, session, targets)
        await asyncio.sleep(2)
        for name, proc in processes.items():
            rss[name].update(load_peak_kb=samplers[name].peak_kb, after_kb=proc.rss_kb())
    crossings = {
        name: crossing_rate(curve, opened["direct"]) for name, curve in opened.items() if name != "direct"
    }
    return {
        "closed_loop": closed,
        "open_loop": opened,
        "crossing_10ms": crossings,
        "rss": rss,
        "soak": soaked,
    }


def _progress(label: str, sides: dict[str, Any]) -> None:
    parts = []
    for name, side in sides.items():
        p99 = (side.get("total") or side).get("p99_ms")
        rps = side.get("rps")
        parts.append(
            f"{name} p99 {p99:.1f} ms" + (f" {rps:.0f}/s" if rps else "") if p99 is not None else name
        )
    print(f"  {label}: " + ", ".join(parts), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from bench.compare_report import markdown, plot, soak_markdown, write_readme

    args = parse_args(argv)
    machine = machine_info()
    started = time.monotonic()
    processes: dict[str, procs.Proc] = {}
    with procs.new_workdir() as tmp:
        workdir = Path(tmp)
        try:
            upstream, upstream_url = procs.start_upstream(workdir, args.completion_tokens)
            processes_all = {"upstream": upstream}
            config = procs.gateway_config(upstream_url, UPSTREAM_MODEL, GATEWAY_MODEL)
            env = {"GATEWAY_ADMIN_KEY": ADMIN_KEY, "GATEWAY_TRACING": "on"}
            gateway, gateway_root = procs.start_gateway(workdir, config, "aiohttp", env)
            processes_all["gateway"] = processes["gateway"] = gateway
            roots = {"direct": upstream_url, "gateway": gateway_root}
            if args.litellm:
                proxy, proxy_root = litellm_proxy.start(workdir, upstream_url, UPSTREAM_MODEL, GATEWAY_MODEL)
                processes_all["litellm"] = processes["litellm"] = proxy
                roots["litellm"] = proxy_root
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                results = runner.run(measure(args, roots, processes))
        finally:
            for proc in reversed(list(locals().get("processes_all", {}).values())):
                proc.stop()
    machine["loadavg_at_end"] = list(os.getloadavg())
    payload = {
        "benchmark": "compare",
        "machine": machine,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "litellm_version": litellm_proxy.VERSION if args.litellm else None,
        "wall_time_s": time.monotonic() - started,
        **results,
    }
    write_json(payload, args.output)
    text = soak_markdown(payload) if args.only == "soak" else markdown(payload)
    print(text, flush=True)
    if not args.smoke and args.only is None:
        plot(payload, PLOT)
        write_readme(README, text, PLOT.name, MARK_START, MARK_END)
    print(f"wall time {payload['wall_time_s']:.0f}s; JSON: {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
