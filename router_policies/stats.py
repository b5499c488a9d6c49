"""Rolling-window statistics per deployment: what the scoring policies look at.

Each finished attempt leaves one `Sample` (time to first token, tokens per second,
success or failure, and the tokens it billed: prompt, cached prompt, completion). A `RollingWindow` keeps the last few minutes of them, bounded
in count, and summarises them into percentiles on demand. The summary is cached:
while the window is small every new sample counts and forces a fresh summary, but
once it holds `EXACT_BELOW` samples or more a summary up to `REFRESH_S` old is
served, because one more sample barely moves a percentile and re-sorting up to a
thousand values on every request was a tenth of the gateway's CPU. Times come from an injectable clock so the benchmark can
replay a market on simulated time.

Percentiles are taken in the direction of "worse": time to first token pXX is the
value XX % of requests stayed under; throughput pXX is the rate XX % of requests
reached or beat (so p99 is the strictest for both, as in a latency/throughput target).
The token sums give the deployment's observed cache-hit rate and input/output mix,
from which the router computes its effective price; the samples that know how many
answers were in flight when they were sent give the load-aware fit of `load_fit.py`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from providers.types import RateLimitInfo
from router_policies.load_fit import LoadFit, fit

Clock = Callable[[], float]

DEFAULT_WINDOW_S = 300.0
DEFAULT_MAX_SAMPLES = 512
EXACT_BELOW = 16
REFRESH_S = 0.1
FIT_REFRESH_S = 1.0


@dataclass(slots=True, frozen=True)
class Sample:
    at: float  # clock seconds (wall clock by default, so replicas can share samples)
    ok: bool
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    # What the answer billed, when the upstream reported it (-1: not reported).
    prompt_tokens: int = -1
    cached_tokens: int = 0
    completion_tokens: int = 0
    # Answers already in flight on the deployment (every replica's) when this one was sent
    # (-1: not known): what the load-aware time-to-first-token fit regresses on.
    in_flight: int = -1

    def encode(self) -> str:
        """Compact text for the shared store: `at,ok,ttft,tps[,prompt,cached,completion[,in_flight]]`."""
        ttft = "" if self.ttft_ms is None else f"{self.ttft_ms:.2f}"
        tps = "" if self.tokens_per_s is None else f"{self.tokens_per_s:.2f}"
        text = f"{self.at:.3f},{int(self.ok)},{ttft},{tps}"
        if self.prompt_tokens >= 0 or self.in_flight >= 0:
            text += f",{self.prompt_tokens},{self.cached_tokens},{self.completion_tokens}"
        if self.in_flight >= 0:
            text += f",{self.in_flight}"
        return text

    @classmethod
    def decode(cls, text: str) -> Sample | None:
        """The sample, or None for garbage; the 4- and 7-field forms (no tokens, no load) are still read."""
        parts = text.split(",")
        if len(parts) not in (4, 7, 8):
            return None
        try:
            tokens = (int(parts[4]), int(parts[5]), int(parts[6])) if len(parts) >= 7 else (-1, 0, 0)
            return cls(
                float(parts[0]),
                parts[1] == "1",
                float(parts[2]) if parts[2] else None,
                float(parts[3]) if parts[3] else None,
                *tokens,
                in_flight=int(parts[7]) if len(parts) == 8 else -1,
            )
        except ValueError:
            return None


@dataclass(slots=True, frozen=True)
class Summary:
    count: int = 0
    error_rate: float = 0.0
    ttft_p50_ms: float | None = None
    ttft_p90_ms: float | None = None
    tps_p50: float | None = None
    tps_p90: float | None = None
    ttft_p75_ms: float | None = None
    ttft_p99_ms: float | None = None
    tps_p75: float | None = None
    tps_p99: float | None = None
    # Sums over the samples whose usage was reported (`usage_count` of them).
    usage_count: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    load_fit: LoadFit | None = None  # time to first token against in-flight count (load_fit.py)

    def ttft_ms(self, q: str) -> float | None:
        """Time to first token at percentile `q` ("p50", "p75", "p90", "p99")."""
        value: float | None = getattr(self, f"ttft_{q}_ms")
        return value

    def tps(self, q: str) -> float | None:
        """Throughput reached by `q` of requests ("p90": 90 % were at least this fast)."""
        value: float | None = getattr(self, f"tps_{q}")
        return value


EMPTY = Summary()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class RollingWindow:
    """The last `window_s` seconds of samples (at most `max_samples`)."""

    __slots__ = ("_clock", "_dirty", "_fit", "_fit_at", "_samples", "_summary", "_summary_at", "window_s")

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        clock: Clock = time.time,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[Sample] = deque(maxlen=max_samples)
        self._summary: Summary | None = None
        self._summary_at = 0.0
        self._fit: LoadFit | None = None
        self._fit_at = -math.inf
        self._dirty = False

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)
        self._dirty = True

    def replace(self, samples: Iterable[Sample]) -> None:
        """Adopt the shared view (every replica's samples) read back from the store."""
        self._samples.clear()
        self._samples.extend(sorted(samples, key=lambda s: s.at))
        self._summary = None

    def _prune(self) -> None:
        horizon = self._clock() - self.window_s
        while self._samples and self._samples[0].at < horizon:
            self._samples.popleft()
            self._dirty = True

    def summary(self) -> Summary:
        self._prune()
        now = self._clock()
        stale = self._dirty and (len(self._samples) < EXACT_BELOW or now - self._summary_at >= REFRESH_S)
        if self._summary is None or stale:
            self._summary = self._summarise()
            self._summary_at = now
            self._dirty = False
        return self._summary

    def _summarise(self) -> Summary:
        if not self._samples:
            return EMPTY
        failures = sum(1 for s in self._samples if not s.ok)
        ttfts = sorted(s.ttft_ms for s in self._samples if s.ttft_ms is not None)
        rates = sorted(s.tokens_per_s for s in self._samples if s.tokens_per_s is not None)
        billed = [s for s in self._samples if s.prompt_tokens >= 0]
        return Summary(
            count=len(self._samples),
            error_rate=failures / len(self._samples),
            ttft_p50_ms=percentile(ttfts, 0.5) if ttfts else None,
            ttft_p90_ms=percentile(ttfts, 0.9) if ttfts else None,
            tps_p50=percentile(rates, 0.5) if rates else None,
            tps_p90=percentile(rates, 0.1) if rates else None,
            ttft_p75_ms=percentile(ttfts, 0.75) if ttfts else None,
            ttft_p99_ms=percentile(ttfts, 0.99) if ttfts else None,
            tps_p75=percentile(rates, 0.25) if rates else None,
            tps_p99=percentile(rates, 0.01) if rates else None,
            usage_count=len(billed),
            prompt_tokens=sum(s.prompt_tokens for s in billed),
            cached_tokens=sum(s.cached_tokens for s in billed),
            completion_tokens=sum(s.completion_tokens for s in billed),
            load_fit=self._load_fit(),
        )

    def _load_fit(self) -> LoadFit | None:
        """The load-aware fit, refreshed at most every `FIT_REFRESH_S` once the window is busy:
        it costs several times the rest of the summary, and with a one-minute half-life a
        second-old fit is as good."""
        now = self._clock()
        if now - self._fit_at >= FIT_REFRESH_S or len(self._samples) < EXACT_BELOW:
            self._fit = fit(
                [
                    (s.at, s.in_flight, s.ttft_ms)
                    for s in self._samples
                    if s.ttft_ms is not None and s.in_flight >= 0
                ],
                now,
            )
            self._fit_at = now
        return self._fit

    def __len__(self) -> int:
        return len(self._samples)


@dataclass(slots=True)
class ServerLoad:
    """Gauges scraped from a self-hosted server (vLLM's /metrics), per provider."""

    waiting: float = 0.0
    running: float = 0.0
    kv_cache_usage: float = 0.0
    at: float = 0.0


@dataclass(slots=True)
class RateLimitState:
    """The latest `x-ratelimit-*` reading, with when it was taken."""

    info: RateLimitInfo
    at: float

    def remaining_fraction(self, now: float) -> float | None:
        """Remaining requests (or tokens) as a fraction of the limit, while the reading is fresh."""
        info = self.info
        reset = info.reset_requests_s if info.reset_requests_s is not None else info.reset_tokens_s
        if reset is not None and now - self.at > reset:
            return None  # the window has reset since
        if info.remaining_requests is not None and info.limit_requests:
            return info.remaining_requests / info.limit_requests
        if info.remaining_tokens is not None and info.limit_tokens:
            return info.remaining_tokens / info.limit_tokens
        return None
