"""`python -m bench.workers`: requests per second of `gateway serve --workers N`, and memory.

The fake upstream (`bench.upstream`, instant answers of 16 tokens) runs in its own
process; the gateway runs with N workers sharing the local Redis (required for N > 1)
and a SQLite ledger in a temp dir; `wrk` (Debian package `wrk`) sends non-streaming
chat completions on `--connections` keep-alive connections for `--seconds` after a
warm-up. Reported per N: requests/s, non-2xx answers, and the resident memory of the
gateway's whole process tree (parent and workers) after the run.

On a machine with few cores the load generator and the upstream compete with the
workers for CPU, so the gain from a second worker is a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import procs

MODEL, UPSTREAM_MODEL = "bench-model", "gpt-4o-mini"
_BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
_LUA = f"""wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{_BODY}'
"""


def _tree_rss_kb(root: int) -> int:
    """Resident memory of `root` and every descendant, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total


def _wrk(url: str, lua: Path, connections: int, seconds: int) -> dict[str, float]:
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), f"{url}/v1/chat/completions"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )  # fmt: skip
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    return {
        "rps": float(rate.group(1)) if rate else 0.0,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def _run(workdir: Path, upstream_url: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    config = workdir / f"gateway-w{workers}.yaml"
    config.write_text(procs.gateway_config(upstream_url, UPSTREAM_MODEL, MODEL))
    env = procs.gateway_env("aiohttp")
    env.update({"REDIS_URL": args.redis_url, "DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/w{workers}.db"})
    command = [*procs._gateway_command(), "serve", "--config", str(config), "--workers", str(workers)]
    proc, root = procs.start_server(workdir, f"gateway-w{workers}", [*command, "--port"], env)
    try:
        lua = workdir / "post.lua"
        lua.write_text(_LUA)
        _wrk(root, lua, args.connections, 3)  # warm-up: every worker's pools and caches
        result = _wrk(root, lua, args.connections, args.seconds)
        result["rss_mb"] = round(_tree_rss_kb(proc.pid) / 1024, 1)
        return {"workers": workers, **result}
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, comma-separated")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench.workers needs wrk (apt-get install wrk)")
    results = []
    with procs.new_workdir() as tmp:
        workdir = Path(tmp)
        upstream, upstream_url = procs.start_upstream(workdir, 16)
        try:
            for n in (int(w) for w in args.workers.split(",")):
                results.append(_run(workdir, upstream_url, n, args))
                print(json.dumps(results[-1]))
        finally:
            upstream.stop()
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"workers-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    print(f"{'workers':>8} {'req/s':>10} {'non-2xx':>8} {'RSS MB':>8}")
    for r in results:
        print(f"{r['workers']:>8} {r['rps']:>10.0f} {r['non_2xx']:>8.0f} {r['rss_mb']:>8}")


if __name__ == "__main__":
    main()
