"""Machine facts, the plain-text table and the JSON file of a benchmark run."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

_LIBRARIES = ("aiohttp", "httpx", "uvicorn", "uvloop", "httptools", "starlette", "orjson")


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    status = _git("status", "--porcelain")
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "loadavg_at_start": list(os.getloadavg()),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "libraries": {name: _version(name) for name in _LIBRARIES},
    }


# --------------------------------------------------------------------------- table

# (row label, scenario kind, which latency of the scenario)
_ROWS = (
    ("non-stream total", "nonstream", "total"),
    ("stream TTFT", "stream", "ttft"),
    ("stream total", "stream", "total"),
)


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _cell(value: Any, width: int) -> str:
    return f"{value if value is not None else '-':>{width}}"


def table(run: dict[str, Any]) -> str:
    """One client library's scenarios as a fixed-width table, failures listed under it.

    Columns: p50/p99 of each target, then added = target percentile - direct
    percentile for each proxying target, CPU per request of each proxy process,
    failed requests per target, and the upstream connections the gateway used.
    """
    first = run["scenarios"][0]
    names = list(first["targets"])
    proxies = [n for n in names if n != "direct"]
    short = {"direct": "direct", "passthrough": "floor", "gateway": "gateway"}
    agents = ", ".join(run.get("upstream_saw_gateway_user_agents") or []) or "?"
    groups = [f"{short.get(n, n):>15}" for n in names]
    groups += [f"{short.get(n, n) + ' added':>15}" for n in proxies]
    subs = [f"{'p50':>7} {'p99':>7}" for _ in names + proxies]
    cpu_head = " ".join(f"{short.get(n, n)[:7]:>7}" for n in proxies)
    fail_head = "/".join(short.get(n, n)[0] for n in names)
    lines = [
        f"gateway upstream client: {run['client']}   (the fake upstream saw User-Agent: {agents})",
        f"{'':22}{'':>5}{'':>6}  "
        + "  ".join(groups)
        + f"  {'CPU ms/req':>{len(cpu_head)}}  {'failed':>7}  {'gw->up':>6}",
        f"{'measure':22}{'conc':>5}{'n':>6}  "
        + "  ".join(subs)
        + f"  {cpu_head}  {fail_head:>7}  {'conns':>6}",
    ]
    lines.append("-" * len(lines[-1]))
    for scenario in run["scenarios"]:
        for label, kind, measure in _ROWS:
            if scenario["kind"] != kind:
                continue
            targets, gains = scenario["targets"], scenario["added"]
            cells = [
                f"{_ms(targets[n][measure]['p50_ms']):>7} {_ms(targets[n][measure]['p99_ms']):>7}"
                for n in names
            ]
            cells += [
                f"{_ms(gains[n][measure]['p50_ms'], True):>7} {_ms(gains[n][measure]['p99_ms'], True):>7}"
                for n in proxies
            ]
            cpu = " ".join(f"{_ms(scenario['cpu_ms_per_request'].get(n)):>7}" for n in proxies)
            failed = "/".join(str(targets[n]["failed"]) for n in names)
            conns = scenario.get("upstream", {}).get("gateway", {}).get("connections")
            n_attempted = max(targets[n]["attempted"] for n in names)
            lines.append(
                f"{label:22}{scenario['concurrency']:>5}{n_attempted:>6}  "
                + "  ".join(cells)
                + f"  {cpu}  {failed:>7}  {_cell(conns, 6)}"
                + (" (time budget hit)" if scenario["truncated"] else "")
            )
    lines.extend(_failure_lines(run))
    return "\n".join(lines)


def _failure_lines(run: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for scenario in run["scenarios"]:
        for phase, holder in (("measured", scenario["targets"]), ("warm-up", scenario.get("warmup") or {})):
            for side, result in holder.items():
                if not result or not result["failed"]:
                    continue
                where = f"c={scenario['concurrency']} {scenario['kind']} {side} ({phase})"
                for kind, count in sorted(result["failures"].items()):
                    example = result["failure_examples"].get(kind, "")
                    lines.append(f"  FAILURES {where}: {count} x {kind}: {example}")
    return lines


def write_json(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
