"""Load-aware time to first token: a deployment's TTFT as a function of its in-flight count.

Why: a provider's time to first token grows with the number of answers it is already
serving, and much of that load is the gateway's own. A flat window percentile mixes
busy and idle moments: after a burst it calls a cheap provider slow for minutes, and
since a deployment that misses a target is only a fallback, it gets no new samples to
prove otherwise; while a burst builds, it still calls the provider fast. Knowing how
many answers are in flight there now (ours, every replica's), the router can instead
ask "how slow will the *next* answer be".

The model: log(ttft) = a + b · in_flight + residual. `fit` estimates a and b by
least squares over the rolling window's successful samples, each weighted by its age
(half-life `HALF_LIFE_S`, so a provider's drift is followed within a minute or two
rather than the window's five), holds b at ≥ 0 (load never makes a provider faster;
noise must not make it look so), and keeps the recency-weighted percentiles of the
residuals, so the prediction's spread is the deployment's own (no normal-tail
assumption). The pXX prediction at n in flight is exp(a + b·n + residual pXX).

Cost: `fit` is O(samples · log samples), run with the window's summary and at most
every `stats.FIT_REFRESH_S` once the window is busy; `ttft_ms` is O(1) per candidate
per request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

HALF_LIFE_S = 60.0
MIN_SAMPLES = 8  # fewer samples with a known in-flight count: no fit, the window's percentiles serve
_QUANTILES = {"p50": 0.5, "p75": 0.75, "p90": 0.9, "p99": 0.99}


@dataclass(slots=True, frozen=True)
class LoadFit:
    """log(ttft ms) = intercept + slope · in_flight, plus the residuals' percentiles."""

    intercept: float
    slope: float
    residual: dict[str, float]  # "p50" … "p99" → residual percentile (log scale)
    samples: int

    def ttft_ms(self, q: str, in_flight: int) -> float:
        """The predicted time to first token pXX of an answer sent with `in_flight` already running."""
        return math.exp(self.intercept + self.slope * in_flight + self.residual[q])


def _weighted_quantiles(pairs: list[tuple[float, float]], total: float) -> dict[str, float]:
    """Percentiles of (value, weight) pairs: the smallest value whose cumulative weight reaches q."""
    pairs.sort()
    out: dict[str, float] = {}
    wanted = sorted(_QUANTILES.items(), key=lambda item: item[1])
    i, cumulative = 0, 0.0
    for value, weight in pairs:
        cumulative += weight
        while i < len(wanted) and cumulative >= wanted[i][1] * total:
            out[wanted[i][0]] = value
            i += 1
        if i == len(wanted):
            break
    for name, _ in wanted[i:]:  # rounding left the top ones unset: the largest residual
        out[name] = pairs[-1][0]
    return out


def fit(
    points: Sequence[tuple[float, int, float]], now: float, half_life_s: float = HALF_LIFE_S
) -> LoadFit | None:
    """The fit over (sample time, in-flight count at dispatch, ttft ms) points, or None when too few."""
    if len(points) < MIN_SAMPLES:
        return None
    rows = []
    sw = sx = sy = sxx = sxy = 0.0
    for at, n, ttft in points:
        w = 0.5 ** (max(0.0, now - at) / half_life_s)
        y = math.log(max(ttft, 0.1))
        rows.append((w, float(n), y))
        sw += w
        sx += w * n
        sy += w * y
        sxx += w * n * n
        sxy += w * n * y
    if sw <= 0.0:
        return None
    mean_x, mean_y = sx / sw, sy / sw
    var_x = sxx / sw - mean_x * mean_x
    slope = max(0.0, (sxy / sw - mean_x * mean_y) / var_x) if var_x > 1e-9 else 0.0
    intercept = mean_y - slope * mean_x
    residuals = [(y - intercept - slope * x, w) for w, x, y in rows]
    return LoadFit(intercept, slope, _weighted_quantiles(residuals, sw), len(rows))
