"""Soak: 10,000 streams through the gateway — does its memory stay flat, what does it add per chunk?

`python -m bench.soak_streams [--streams 10000] [--concurrency 32] [--direct-every 4]`

Starts the fake upstream (`bench.upstream`: 32 one-word content chunks per stream,
`--chunk-gap-ms` apart) and the gateway (`gateway serve`, GATEWAY_HTTP_CLIENT as
given) as separate processes. From one pooled aiohttp client in this process it runs
a fixed number of streams through the gateway at a fixed concurrency; every
`--direct-every`-th request goes straight to the upstream instead, so the gateway's
added time to first token and added gap between content chunks are measured against
the upstream in the same run, under the same load. A seeded fraction of the gateway
streams is abandoned mid-stream (the client closes its connection after a random
number of content chunks) to exercise the gateway's cancellation path.

The measured run starts from a steady state: after an uncounted warm-up long enough
to fill the gateway's bounded in-memory structures (its last 10,000 request records,
`gateway.records.RecentRecords`), and once its RSS has stopped moving (a one-time
lazy import that warm-up set off has finished). Meanwhile the gateway's RSS (VmRSS)
and open file descriptors are sampled every `--sample-interval` seconds. Reported:
stream outcomes, TTFT and inter-chunk gap p50/p99 (direct, gateway, added), RSS at
the start and at 25/50/75/100% of the run, its maximum, its slope over the second
half (MB per 1k streams, least squares; ~0 is flat), open fds at start and end, and
errors in the gateway's log. A plain-text report goes to stdout, everything to
bench/results/soak_streams.json.
Every started process is stopped, whatever happens. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from bench import procs
from bench.added_latency import GATEWAY_MODEL, UPSTREAM_MODEL
from bench.loadgen import Target, attempt, call_stream, new_session
from bench.report import RESULTS_DIR, machine_info, write_json
from bench.stats import Samples, added, summary
from bench.upstream import RESET_PATH, STATS_PATH

SAFETY_MARGIN_S = 20.0  # kept back from the time budget for stopping processes and writing out
SIDES = ("direct", "gateway", "disconnect")  # disconnect: gateway streams the client abandons


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak_streams",
        description="Soak the gateway with streams: memory over time, added TTFT and inter-chunk gap.",
    )
    add = parser.add_argument
    add("--streams", type=int, default=10_000, help="measured streams through the gateway")
    add("--concurrency", type=int, default=32, help="streams in flight, direct ones included")
    add("--direct-every", type=int, default=4, help="every n-th request goes straight to the upstream")
    add("--disconnect-fraction", type=float, default=0.05, help="gateway streams abandoned mid-stream")
    add("--completion-tokens", type=int, default=32, help="content chunks per stream")
    add("--chunk-gap-ms", type=float, default=10.0, help="the upstream's pause between content chunks")
    add(
        "--warmup",
        type=int,
        default=10_000,
        help="uncounted gateway streams before the baseline (the gateway keeps its last 10,000 request "
        "records in memory, so fewer would show them filling up as growth)",
    )
    add(
        "--settle-seconds",
        type=float,
        default=30.0,
        help="at most this long idle after warm-up for RSS to settle",
    )
    add("--sample-interval", type=float, default=0.5, help="seconds between RSS samples")
    add("--client", choices=("aiohttp", "httpx"), default="aiohttp", help="GATEWAY_HTTP_CLIENT")
    add("--max-seconds", type=float, default=420.0, help="time budget of the whole run")
    add("--request-timeout", type=float, default=30.0, help="seconds, per stream")
    add("--seed", type=int, default=1, help="which streams are abandoned, and when")
    add("--output", type=Path, default=RESULTS_DIR / "soak_streams.json")
    args = parser.parse_args(argv)
    if args.streams <= 0 or args.concurrency <= 0 or args.warmup < 0 or args.completion_tokens < 2:
        parser.error("--streams and --concurrency must be > 0, --warmup >= 0, --completion-tokens >= 2")
    if args.direct_every < 2 or not 0 <= args.disconnect_fraction < 1 or args.sample_interval <= 0:
        parser.error("--direct-every must be >= 2, --disconnect-fraction in [0, 1), --sample-interval > 0")
    return args


# --------------------------------------------------------------------------- the load


@dataclass(frozen=True, slots=True)
class Planned:
    """One request of the run: where it goes, and after how many content chunks the client leaves."""

    side: str  # one of SIDES
    target: Target
    disconnect_after: int | None = None


def plan(
    args: argparse.Namespace, gateway_streams: int, targets: dict[str, Target], rng: random.Random
) -> Iterator[Planned]:
    """`gateway_streams` gateway streams, with a direct one as every `direct_every`-th request."""
    sent = 0
    for index in range(gateway_streams * args.direct_every):
        if sent == gateway_streams:
            return
        if index % args.direct_every == args.direct_every - 1:
            yield Planned("direct", targets["direct"])
            continue
        sent += 1
        if rng.random() < args.disconnect_fraction:
            yield Planned("disconnect", targets["gateway"], rng.randint(1, args.completion_tokens - 1))
        else:
            yield Planned("gateway", targets["gateway"])


@dataclass(slots=True)
class Tally:
    """Outcomes of one phase: samples per side, inter-chunk gaps of complete streams, progress."""

    samples: dict[str, Samples] = field(default_factory=lambda: {side: Samples() for side in SIDES})
    gaps_ms: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "gateway": []})
    gateway_finished: int = 0  # gateway streams over, whatever their outcome: the x axis of memory
    duration_s: float = 0.0
    truncated: bool = False


async def run_load(
    session: aiohttp.ClientSession,
    requests: Iterator[Planned],
    concurrency: int,
    deadline: float,
    request_timeout_s: float,
    tally: Tally | None = None,
) -> Tally:
    """Send `requests` with `concurrency` in flight; stop issuing at `deadline` (monotonic).

    Outcomes go to `tally` (a new one if not given) as they happen, so a sampler can follow progress.
    """
    tally = Tally() if tally is None else tally

    async def worker() -> None:
        for request in requests:
            if time.monotonic() >= deadline:
                tally.truncated = True
                return
            times: list[float] = []
            call = call_stream(
                session, request.target, chunk_times=times, disconnect_after=request.disconnect_after
            )
            ok = await attempt(tally.samples[request.side], call, request_timeout_s)
            if request.side != "direct":
                tally.gateway_finished += 1
            if ok and request.side in tally.gaps_ms:
                tally.gaps_ms[request.side].extend((b - a) * 1000 for a, b in itertools.pairwise(times))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.duration_s = time.perf_counter() - started
    return tally


# --------------------------------------------------------------------------- memory


@dataclass(slots=True)
class Sampler:
    """Samples the gateway's RSS and open fds, tagged with how many gateway streams are over."""

    proc: procs.Proc
    interval_s: float
    series: list[dict[str, Any]] = field(default_factory=list)

    def sample(self, tally: Tally, started: float) -> dict[str, Any]:
        rss_kb = self.proc.rss_kb()
        point = {
            "t_s": round(time.monotonic() - started, 3),
            "streams": tally.gateway_finished,
            "rss_mb": None if rss_kb is None else rss_kb / 1024,
            "fds": self.proc.open_fds(),
        }
        self.series.append(point)
        return point

    async def run(self, tally: Tally, started: float) -> None:
        while True:  # cancelled by the caller when the load is over
            await asyncio.sleep(self.interval_s)
            self.sample(tally, started)


async def settle(
    proc: procs.Proc, max_s: float, interval_s: float, window_s: float = 3.0, tolerance_mb: float = 1.0
) -> dict[str, Any]:
    """Wait, idle, until RSS has moved less than `tolerance_mb` over `window_s` (at most `max_s`).

    One-time growth that warm-up set off but that is still under way (a lazy import in a
    worker thread, say) then lands before the baseline, not in the measured run.
    """
    started = time.monotonic()
    readings: list[tuple[float, float]] = []
    while True:
        now = time.monotonic() - started
        rss_kb = proc.rss_kb()
        if rss_kb is not None:
            readings.append((now, rss_kb / 1024))
        recent = [mb for t, mb in readings if t >= now - window_s]
        window_full = bool(readings) and readings[0][0] <= now - window_s
        if window_full and recent and max(recent) - min(recent) < tolerance_mb:
            return {"settled": True, "seconds": now, "rss_mb": readings[-1][1]}
        if now >= max_s or rss_kb is None:
            return {"settled": False, "seconds": now, "rss_mb": readings[-1][1] if readings else None}
        await asyncio.sleep(interval_s)


def slope_mb_per_1k(points: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of RSS (MB) against streams (thousands); None with fewer than 3 points."""
    pairs = [(p["streams"] / 1000, p["rss_mb"]) for p in points if p["rss_mb"] is not None]
    if len(pairs) < 3:
        return None
    mean_x = sum(x for x, _ in pairs) / len(pairs)
    mean_y = sum(y for _, y in pairs) / len(pairs)
    var_x = sum((x - mean_x) ** 2 for x, _ in pairs)
    if var_x == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in pairs) / var_x


def memory_report(series: list[dict[str, Any]], planned: int) -> dict[str, Any]:
    """RSS at start and at each quarter of the planned streams, max, slopes; fds at start and end."""
    start, end = series[0], series[-1]
    quarters: dict[str, float | None] = {"0%": start["rss_mb"]}
    for q in (25, 50, 75):
        reached = [p for p in series if p["streams"] >= planned * q / 100]
        quarters[f"{q}%"] = reached[0]["rss_mb"] if reached else None
    quarters["100%"] = end["rss_mb"] if end["streams"] >= planned else None
    done = end["streams"]
    rss = [p["rss_mb"] for p in series if p["rss_mb"] is not None]
    return {
        "rss_mb_at": quarters,
        "rss_mb_at_end": end["rss_mb"],
        "rss_mb_max": max(rss) if rss else None,
        "slope_mb_per_1k_streams_second_half": slope_mb_per_1k(
            [p for p in series if p["streams"] >= done / 2]
        ),
        "slope_mb_per_1k_streams_first_half": slope_mb_per_1k(
            [p for p in series if p["streams"] <= done / 2]
        ),
        "fds_start": start["fds"],
        "fds_end": end["fds"],
        "fds_max": max((p["fds"] for p in series if p["fds"] is not None), default=None),
        "samples": len(series),
    }


# --------------------------------------------------------------------------- the run


async def _upstream_stats(session: aiohttp.ClientSession, root: str, path: str) -> dict[str, Any]:
    method = session.post if path == RESET_PATH else session.get
    async with method(root + path) as response:
        data: dict[str, Any] = orjson.loads(await response.read())
        return data


async def soak(
    args: argparse.Namespace, targets: dict[str, Target], gateway: procs.Proc, end: float
) -> dict[str, Any]:
    """Warm up, then the measured run with the sampler alongside; returns the raw results."""
    upstream_root = targets["direct"].url.removesuffix("/v1/chat/completions")
    rng = random.Random(args.seed)
    rss_kb = gateway.rss_kb()
    before_warmup = {"rss_mb": None if rss_kb is None else rss_kb / 1024, "fds": gateway.open_fds()}
    async with new_session() as session:
        warm = await run_load(
            session, plan(args, args.warmup, targets, rng), args.concurrency, end, args.request_timeout
        )
        _progress("warm-up", warm)
        settled = await settle(
            gateway, min(args.settle_seconds, max(end - time.monotonic(), 0)), args.sample_interval
        )
        print(
            f"  {'settled' if settled['settled'] else 'NOT settled'} after {settled['seconds']:.1f}s idle, "
            f"RSS {_mb(settled['rss_mb'])} MB",
            file=sys.stderr,
            flush=True,
        )
        await _upstream_stats(session, upstream_root, RESET_PATH)
        sampler = Sampler(gateway, args.sample_interval)
        started = time.monotonic()
        cpu_before = gateway.cpu_seconds()
        tally = Tally()
        sampler.sample(tally, started)  # the baseline, after warm-up
        requests = plan(args, args.streams, targets, rng)
        sampling = asyncio.create_task(sampler.run(tally, started))
        try:
            await run_load(session, requests, args.concurrency, end, args.request_timeout, tally)
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        cpu_after = gateway.cpu_seconds()
        sampler.sample(tally, started)  # the end
        _progress("measured", tally)
        seen = await _upstream_stats(session, upstream_root, STATS_PATH)
    cpu_s = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {
        "warm": warm,
        "measured": tally,
        "series": sampler.series,
        "cpu_s": cpu_s,
        "upstream": seen,
        "before_warmup": before_warmup,
        "settle": settled,
    }


def _progress(phase: str, tally: Tally) -> None:
    parts = [f"{side} {s.ok} ok / {s.failed} failed" for side, s in tally.samples.items()]
    print(
        f"  {phase:<9} {tally.duration_s:6.1f}s  "
        + ", ".join(parts)
        + ("  [time budget hit]" if tally.truncated else ""),
        file=sys.stderr,
        flush=True,
    )


def _latencies(tally: Tally) -> dict[str, Any]:
    """TTFT and inter-chunk gap of complete streams: p50/p90/p99 per side and gateway minus direct."""
    ttft = {side: tally.samples[side].ttft_ms for side in ("direct", "gateway")}
    out: dict[str, Any] = {}
    for name, values in (("ttft", ttft), ("gap", tally.gaps_ms)):
        sides = {side: summary(v) | {"n": len(v)} for side, v in values.items()}
        sides["added"] = {
            q: added(sides["gateway"][q], sides["direct"][q])
            for q in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")
        }
        out[name] = sides
    out["disconnect_ttft"] = summary(tally.samples["disconnect"].ttft_ms)
    return out


def _log_errors(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]
    return {"count": len(lines), "first": lines[:5]}


def build_result(args: argparse.Namespace, raw: dict[str, Any], gateway: procs.Proc) -> dict[str, Any]:
    measured: Tally = raw["measured"]
    warm: Tally = raw["warm"]
    gateway_attempted = measured.samples["gateway"].attempted + measured.samples["disconnect"].attempted
    cpu_s = raw["cpu_s"]
    log_text = (
        gateway.log_path.read_text(encoding="utf-8", errors="replace") if gateway.log_path.exists() else ""
    )
    return {
        "duration_s": measured.duration_s,
        "truncated": measured.truncated or warm.truncated,
        "streams": {side: s.as_dict(streamed=True) for side, s in measured.samples.items()},
        "latency": _latencies(measured),
        "memory": memory_report(raw["series"], args.streams),
        "rss_series": raw["series"],
        "gateway_cpu_ms_per_stream": cpu_s * 1000 / gateway_attempted
        if cpu_s is not None and gateway_attempted
        else None,
        "upstream": raw["upstream"],
        "warmup": {side: s.as_dict(streamed=True) for side, s in warm.samples.items()},
        "warmup_latency": _latencies(warm),
        "before_warmup": raw["before_warmup"],
        "settle": raw["settle"],
        "gateway_log_errors": _log_errors(log_text),
        "gateway_log_tail": log_text[-1500:],
    }


# --------------------------------------------------------------------------- the report


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def text_report(args: argparse.Namespace, machine: dict[str, Any], result: dict[str, Any]) -> str:
    lines = [
        f"Soak: {args.streams} streams through the gateway, concurrency {args.concurrency}, every "
        f"{args.direct_every}th request direct, {args.disconnect_fraction:.0%} of gateway streams abandoned "
        f"mid-stream (seed {args.seed})",
        f"machine: nproc={machine['nproc']} ({machine['cpu_model'] or 'unknown CPU'}), {machine['python']}, "
        f"loadavg {machine['loadavg_at_start'][0]:.2f}; git {machine['git_commit']}"
        + (" (working tree dirty)" if machine["git_dirty"] else ""),
        f"fake upstream: {args.completion_tokens} content chunks {args.chunk_gap_ms:g} ms apart, first byte "
        f"0 ms; gateway: `gateway serve`, GATEWAY_HTTP_CLIENT={args.client}",
        f"measured run: {result['duration_s']:.1f}s" + ("  (time budget hit)" if result["truncated"] else ""),
        "",
        f"{'streams':<24}{'attempted':>10}{'ok':>8}{'failed':>8}",
    ]
    labels = {"direct": "direct", "gateway": "gateway, read to end", "disconnect": "gateway, abandoned"}
    for side, label in labels.items():
        s = result["streams"][side]
        lines.append(f"{label:<24}{s['attempted']:>10}{s['ok']:>8}{s['failed']:>8}")
    warm = {f"{side} (warm-up)": s for side, s in result["warmup"].items()}
    for side, s in {**result["streams"], **warm}.items():
        for kind, count in sorted(s["failures"].items()):
            lines.append(f"  FAILURES {side}: {count} x {kind}: {s['failure_examples'].get(kind, '')}")
    lines += ["", *_latency_lines(result["latency"], result["warmup_latency"]), ""]
    lines += _memory_lines(result)
    return "\n".join(lines)


def _latency_lines(latency: dict[str, Any], warmup: dict[str, Any]) -> list[str]:
    """p50/p99 of direct, gateway and added for TTFT and gap, with sample counts; warm-up TTFT after."""
    lines = [
        f"{'ms, complete streams':<24}{'direct':>15} {'gateway':>15} {'added':>15}   n direct/gateway",
        f"{'':<24}" + f"{'p50':>7} {'p99':>7} " * 3,
    ]
    for label, key in (("time to first token", "ttft"), ("inter-chunk gap", "gap")):
        m = latency[key]
        cells = [f"{_ms(m[side]['p50_ms']):>7} {_ms(m[side]['p99_ms']):>7}" for side in ("direct", "gateway")]
        cells.append(f"{_ms(m['added']['p50_ms'], True):>7} {_ms(m['added']['p99_ms'], True):>7}")
        lines.append(f"{label:<24}" + " ".join(cells) + f"   {m['direct']['n']}/{m['gateway']['n']}")
    w = warmup["ttft"]
    lines.append(
        f"(warm-up, not counted: TTFT p50/p99 direct {_ms(w['direct']['p50_ms'])}/{_ms(w['direct']['p99_ms'])}, "
        f"gateway {_ms(w['gateway']['p50_ms'])}/{_ms(w['gateway']['p99_ms'])})"
    )
    return lines


def _memory_lines(result: dict[str, Any]) -> list[str]:
    memory, settle_, before = result["memory"], result["settle"], result["before_warmup"]
    at = memory["rss_mb_at"]
    return [
        f"gateway RSS MB before warm-up {_mb(before['rss_mb'])}; after warm-up "
        + ("settled" if settle_["settled"] else "NOT settled")
        + f" in {settle_['seconds']:.1f}s at {_mb(settle_['rss_mb'])}",
        "gateway RSS MB, measured run: "
        + " | ".join(f"{k} {_mb(v)}" for k, v in at.items())
        + f" | max {_mb(memory['rss_mb_max'])}",
        f"RSS slope, second half: {_slope(memory['slope_mb_per_1k_streams_second_half'])} MB per 1k streams "
        f"(first half {_slope(memory['slope_mb_per_1k_streams_first_half'])}; {memory['samples']} samples)",
        "RSS series (streams: MB): " + _series_line(result["rss_series"]),
        f"gateway open fds: before warm-up {before['fds']}, start {memory['fds_start']}, end {memory['fds_end']}, "
        f"max {memory['fds_max']}",
        f"gateway CPU: {_ms(result['gateway_cpu_ms_per_stream'])} ms per stream; the upstream saw "
        + ", ".join(
            f"{who} {c['requests']} requests over {c['connections']} connections"
            for who, c in result["upstream"].items()
            if c["requests"]
        ),
        f"gateway log: {result['gateway_log_errors']['count']} ERROR/Traceback lines",
        *(f"  {line}" for line in result["gateway_log_errors"]["first"]),
    ]


def _slope(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _series_line(series: list[dict[str, Any]], points: int = 11) -> str:
    """About `points` evenly spaced samples of the series, first and last included."""
    if not series:
        return "-"
    step = max((len(series) - 1) / max(points - 1, 1), 1)
    picks = sorted({min(round(i * step), len(series) - 1) for i in range(points)})
    return "  ".join(f"{series[i]['streams']}: {_mb(series[i]['rss_mb'])}" for i in picks)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    began = time.monotonic()
    end = began + args.max_seconds - SAFETY_MARGIN_S
    with procs.new_workdir() as tmp:
        workdir = Path(tmp)
        started: list[procs.Proc] = []
        try:
            upstream, upstream_url = procs.start_upstream(
                workdir, args.completion_tokens, chunk_gap_ms=args.chunk_gap_ms
            )
            started.append(upstream)
            config = procs.gateway_config(upstream_url, UPSTREAM_MODEL, GATEWAY_MODEL)
            gateway, root = procs.start_gateway(workdir, config, args.client)
            started.append(gateway)
            print(f"gateway[{args.client}] ready at {root}, pid {gateway.pid}", file=sys.stderr, flush=True)
            targets = {
                "direct": Target.for_model("direct", upstream_url + "/chat/completions", UPSTREAM_MODEL),
                "gateway": Target.for_model("gateway", root + "/v1/chat/completions", GATEWAY_MODEL),
            }
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                raw = runner.run(soak(args, targets, gateway, end))
            result = build_result(args, raw, gateway)
        finally:
            for proc in reversed(started):
                proc.stop()
    machine["loadavg_at_end"] = list(os.getloadavg())
    payload = {
        "benchmark": "soak_streams",
        "machine": machine,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_time_s": time.monotonic() - began,
        **result,
    }
    write_json(payload, args.output)
    print(text_report(args, machine, result))
    print(f"\nwall time {payload['wall_time_s']:.0f}s; JSON: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
