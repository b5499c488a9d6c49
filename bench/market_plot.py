"""The routing market's picture: each policy's cost against the oracle's, by SLO attainment.

One point per policy (mean over the seeds) with error bars of one standard deviation
each way; lower and further right is better, the hindsight oracle sits at (its
attainment, 1), the market oracle (no knowledge of each request's noise) in grey.
Drawn with matplotlib's non-interactive Agg backend into a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    for i, r in enumerate(rows):
        oracle = "oracle" in r["variant"]
        ax.errorbar(
            r["slo_attainment"] * 100,
            r["cost_ratio"],
            xerr=r["slo_attainment_sd"] * 100,
            yerr=r["cost_ratio_sd"],
            fmt="*" if oracle else "o",
            markersize=12 if oracle else 7,
            capsize=3,
            label=r["variant"],
            color=("black" if r["variant"] == "hindsight oracle" else "grey") if oracle else f"C{i % 10}",
        )
    ax.axhline(1.10, linestyle=":", color="grey", linewidth=1)
    ax.axvline(99.0, linestyle=":", color="grey", linewidth=1)
    ax.set_xlabel("SLO attainment, % of requests answered with first token ≤ SLO")
    ax.set_ylabel("cost per 1k successful requests ÷ oracle's")
    ax.set_title("Routing policies on the simulated market (mean ± sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
