"""`bench.compare`'s figures as a Markdown table, a PNG plot, and the section of bench/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mb(kb: Any) -> str:
    return "-" if not kb else f"{kb / 1024:.0f}"


def markdown(payload: dict[str, Any]) -> str:
    machine = payload["machine"]
    load = machine["loadavg_at_start"][0], machine["loadavg_at_end"][0]
    lines = [
        f"Run of `{' '.join(['python -m bench.compare'] + (['--smoke'] if payload['settings']['smoke'] else []))}`"
        f" — git {machine['git_commit']}{' (dirty)' if machine['git_dirty'] else ''}, "
        f"nproc={machine['nproc']}, load average {load[0]:.2f} at start, {load[1]:.2f} at end"
        + (f", LiteLLM proxy {payload['litellm_version']}" if payload["litellm_version"] else ", no LiteLLM"),
        "",
        "Closed loop (one target at a time; added = target minus direct, same scenario):",
        "",
        "| scenario | target | req/s | % of direct | p50 ms | p99 ms | added p50 | added p99 | TTFT p50 | added TTFT p50 | CPU ms/req | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in payload["closed_loop"]:
        sides = scenario["targets"]
        direct = sides["direct"]
        for name, side in sides.items():
            ttft = (side.get("ttft") or {}).get("p50_ms")
            d_ttft = (direct.get("ttft") or {}).get("p50_ms")
            added = name != "direct"
            lines.append(
                f"| c={scenario['concurrency']} {scenario['kind']} | {name} | {_f(side['rps'], 0)} | "
                f"{_f(100 * side['rps'] / direct['rps'] if side['rps'] and direct['rps'] else None, 0)} | "
                f"{_f(side['total']['p50_ms'])} | {_f(side['total']['p99_ms'])} | "
                f"{_f(side['total']['p50_ms'] - direct['total']['p50_ms'] if added and side['ok'] else None)} | "
                f"{_f(side['total']['p99_ms'] - direct['total']['p99_ms'] if added and side['ok'] else None)} | "
                f"{_f(ttft)} | {_f(ttft - d_ttft if added and ttft is not None and d_ttft is not None else None)} | "
                f"{_f(side['cpu_ms_per_request'])} | {side['failed']} |"
            )
    lines += _ratios(payload)
    lines += ["", "Open loop, non-streaming (latency from each request's due time), p99 ms:", ""]
    curves = payload["open_loop"]
    names = list(curves)
    lines.append("| rate/s | " + " | ".join(names) + " |")
    lines.append("|---:|" + "---:|" * len(names))
    rates = sorted({p["rate"] for curve in curves.values() for p in curve})
    for rate in rates:
        cells = []
        for name in names:
            point = next((p for p in curves[name] if p["rate"] == rate), None)
            cells.append(
                "-"
                if point is None
                else _f(point["p99_ms"]) + (f" ({point['failed']} failed)" if point["failed"] else "")
            )
        lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, crossing in payload["crossing_10ms"].items():
        lines.append(
            f"- {name}: added p99 crosses {10:g} ms {crossing['bound']} {_f(crossing['rate'], 0)} req/s"
        )
    rss = payload["rss"]
    lines += ["", "| RSS MB | idle | peak under load | after |", "|---|---:|---:|---:|"]
    for name, r in rss.items():
        lines.append(
            f"| {name} | {_mb(r.get('idle_kb'))} | {_mb(r.get('load_peak_kb'))} | {_mb(r.get('after_kb'))} |"
        )
    soak = payload.get("soak")
    if soak:
        lines.append("\n" + soak_line(soak))
    return "\n".join(lines)


def soak_line(soak: dict[str, Any]) -> str:
    return (
        f"Gateway soak: {soak['requests']} requests at c=32 ({soak['failed']} failed), "
        "RSS slope over the second half "
        f"{_f(soak['slope_mb_per_10k'])} MB per 10k requests "
        f"(RSS {_mb(soak['rss_kb'][0][1])} → {_mb(soak['rss_kb'][-1][1])} MB)."
    )


def soak_markdown(payload: dict[str, Any]) -> str:
    """`--only soak`: the gateway's RSS at idle, after every tenth of the soak, and the slope."""
    machine, rss, soak = payload["machine"], payload["rss"]["gateway"], payload["soak"]
    load = machine["loadavg_at_start"][0], machine["loadavg_at_end"][0]
    lines = [
        f"Run of `python -m bench.compare --only soak` — git {machine['git_commit']}"
        f"{' (dirty)' if machine['git_dirty'] else ''}, nproc={machine['nproc']}, "
        f"load average {load[0]:.2f} at start, {load[1]:.2f} at end",
        "",
        f"Gateway RSS at idle {_mb(rss.get('idle_kb'))} MB, 2 s after the soak {_mb(rss.get('after_kb'))} MB.",
        "",
        "| requests | RSS MB |",
        "|---:|---:|",
        *(f"| {sent} | {kb / 1024:.1f} |" for sent, kb in soak["rss_kb"]),
        "",
        soak_line(soak),
    ]
    return "\n".join(lines)


def _ratios(payload: dict[str, Any]) -> list[str]:
    out = []
    for scenario in payload["closed_loop"]:
        sides = scenario["targets"]
        if "litellm" in sides and sides["litellm"]["rps"] and sides["gateway"]["rps"]:
            ratio = sides["gateway"]["rps"] / sides["litellm"]["rps"]
            out.append(
                f"- c={scenario['concurrency']} {scenario['kind']}: gateway {ratio:.1f}x the LiteLLM proxy's req/s"
            )
    return ["", *out] if out else []


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, curve in payload["open_loop"].items():
        points = [(p["rate"], p["p99_ms"]) for p in curve if p["p99_ms"] is not None]
        if points:
            left.plot(*zip(*points, strict=True), marker="o", label=name)
    left.set_xscale("log")
    left.set_yscale("log")
    rates = sorted({p["rate"] for curve in payload["open_loop"].values() for p in curve})
    left.set_xticks(rates, [f"{r:g}" for r in rates])
    left.minorticks_off()
    left.set_xlabel("offered load, requests/s (open loop)")
    left.set_ylabel("p99 latency, ms")
    left.set_title("Open loop, non-streaming")
    left.legend()
    left.grid(True, which="both", alpha=0.3)
    scenarios = payload["closed_loop"]
    names = list(scenarios[0]["targets"])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [s["targets"][name]["rps"] or 0 for s in scenarios]
        xs = [j + i * width for j in range(len(scenarios))]
        right.bar(xs, values, width, label=name)
    right.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(scenarios))])
    right.set_xticklabels([f"c={s['concurrency']}\n{s['kind']}" for s in scenarios])
    right.set_ylabel("requests/s (closed loop)")
    right.set_title("Throughput")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_readme(readme: Path, table: str, image: str, start: str, end: str) -> None:
    """Replace the text between the markers (added at the end the first time)."""
    text = readme.read_text(encoding="utf-8")
    section = f"{start}\n{table}\n\n![bench.compare]({image})\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text, encoding="utf-8")
