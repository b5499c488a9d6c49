"""The attempt loop behind every request kind: failover, hedging, retry rounds.

One *round* walks the plan in order. A failure before the first byte of content
that is retryable (connect errors, timeouts, 429, 5xx, garbage) moves on to the next
deployment at once: another provider need not wait for this one's trouble. A
context-length error moves on only to deployments with a longer context window;
any other 4xx is the client's own error and is raised at once.

With hedging on, when the running attempt has produced nothing after its
deployment's p90 time to first token (with a latency target, as late as still lets
the next one answer within it: `HedgeSettings.delay_ms`), the next deployment is started as well; the
first to answer wins and the other is cancelled (which closes its upstream
connection: adapters close the response on cancellation).

When a whole round fails, tenacity decides whether to run another over the
deployments that failed retryably and are allowed again by their breakers: it waits
the Retry-After the upstreams asked for (or an exponential, jittered backoff when
one of them gave none) and gives up when that wait is longer than the request can
reasonably hold the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from providers.errors import ContextLengthExceeded, ProviderError
from router_policies.attempts import AllAttemptsFailed, Attempt, AttemptLog
from router_policies.deployment import Deployment

T = TypeVar("T")


class AttemptObserver(Protocol):
    """What the runner reports to the router's state, and asks of it."""

    def started(self, d: Deployment) -> None: ...

    def succeeded(self, d: Deployment) -> None: ...

    def failed(self, d: Deployment, error: ProviderError) -> None: ...

    def cancelled(self, d: Deployment) -> None: ...

    def available(self, d: Deployment) -> bool: ...

    def ttft_p90_ms(self, d: Deployment) -> float | None: ...


class NullObserver:
    def started(self, d: Deployment) -> None: ...

    def succeeded(self, d: Deployment) -> None: ...

    def failed(self, d: Deployment, error: ProviderError) -> None: ...

    def cancelled(self, d: Deployment) -> None: ...

    def available(self, d: Deployment) -> bool:
        return True

    def ttft_p90_ms(self, d: Deployment) -> float | None:
        return None


NULL_OBSERVER = NullObserver()


@dataclass(frozen=True, slots=True)
class HedgeSettings:
    enabled: bool = False
    default_delay_ms: float = 1000.0  # before the deployment has TTFT stats
    min_delay_ms: float = 20.0
    # The request's tightest time-to-first-token target (set per plan): the hedge then waits
    # as long as the next deployment can still answer within it.
    target_ms: float | None = None

    def delay_ms(self, first_p90_ms: float | None, next_p90_ms: float | None) -> float:
        """How long the running attempt gets before the next deployment is started too.

        Its p90 time to first token; with a target, later when there is room: as late as
        still lets the next deployment answer within the target at its own p90. So a first
        choice predicted well within the target is hedged only when it is really late (a
        hang, a tail), and one predicted near the target at its p90, as before.
        """
        delay = first_p90_ms if first_p90_ms is not None else self.default_delay_ms
        if self.target_ms is not None and next_p90_ms is not None:
            delay = max(delay, self.target_ms - next_p90_ms)
        return max(delay, self.min_delay_ms)


@dataclass(frozen=True, slots=True)
class RetrySettings:
    rounds: int = 2  # the first pass over the plan, then this many minus one more
    max_wait_s: float = 1.0
    initial_backoff_s: float = 0.05


NO_HEDGE = HedgeSettings()
DEFAULT_RETRY = RetrySettings()


class _RoundFailed(Exception):
    pass


def still_eligible(remaining: Sequence[Deployment], failed: Deployment) -> list[Deployment]:
    """After a context-length failure keep only deployments with a longer context window."""
    window = failed.context_window_tokens
    return [d for d in remaining if window is None or (d.context_window_tokens or 0) > window]


async def _discard(result: Any) -> None:
    """A hedge loser that answered anyway: release what it holds (an open stream)."""
    aclose = getattr(result, "aclose", None)
    if aclose is not None:
        await aclose()


class Runner(Generic[T]):
    def __init__(
        self,
        log: AttemptLog,
        attempt: Callable[[Deployment], Awaitable[T]],
        observer: AttemptObserver,
        hedge: HedgeSettings,
    ) -> None:
        self.log = log
        self.attempt = attempt
        self.observer = observer
        self.hedge = hedge
        self.last_error: ProviderError | None = None
        self.retryable: list[Deployment] = []  # failed this round, worth another try
        self.waits: list[float | None] = []  # each failure's Retry-After (None: none given)

    def _failed(self, d: Deployment, record: Attempt, error: ProviderError) -> None:
        record.failed(error, (time.monotonic() - record.started_at) * 1000)
        self.observer.failed(d, error)
        self.last_error = error
        if not error.retryable:
            raise error
        if not isinstance(error, ContextLengthExceeded):
            self.retryable.append(d)
            self.waits.append(getattr(error, "retry_after_s", None))

    def _succeeded(self, d: Deployment, record: Attempt) -> None:
        record.outcome, record.status = "ok", 200
        record.elapsed_ms = (time.monotonic() - record.started_at) * 1000
        self.observer.succeeded(d)

    async def round(self, plan: Sequence[Deployment]) -> tuple[T, Deployment]:
        self.retryable, self.waits = [], []
        if self.hedge.enabled:
            return await self._hedged(list(plan))
        queue = list(plan)
        while queue:
            d = queue.pop(0)
            record = self.log.begin(d.id, d.provider)
            self.observer.started(d)
            try:
                result = await self.attempt(d)
            except ProviderError as error:
                self._failed(d, record, error)
                if isinstance(error, ContextLengthExceeded):
                    queue = still_eligible(queue, d)
                continue
            except BaseException:
                record.outcome = "cancelled"
                self.observer.cancelled(d)
                raise
            self._succeeded(d, record)
            return result, d
        raise _RoundFailed

    def _hedge_timeout(
        self, running: dict[asyncio.Task[T], tuple[Deployment, Attempt]], following: Deployment
    ) -> float | None:
        if len(running) != 1:
            return None
        d, record = next(iter(running.values()))
        next_p90 = self.observer.ttft_p90_ms(following) if self.hedge.target_ms is not None else None
        delay_ms = self.hedge.delay_ms(self.observer.ttft_p90_ms(d), next_p90)
        return max(0.0, delay_ms / 1000 - (time.monotonic() - record.started_at))

    def _launch(
        self, d: Deployment, running: dict[asyncio.Task[T], tuple[Deployment, Attempt]], hedge: bool
    ) -> None:
        record = self.log.begin(d.id, d.provider, hedge=hedge)
        self.observer.started(d)
        running[asyncio.ensure_future(self.attempt(d))] = (d, record)

    async def _hedged(self, queue: list[Deployment]) -> tuple[T, Deployment]:
        running: dict[asyncio.Task[T], tuple[Deployment, Attempt]] = {}
        try:
            while queue or running:
                if not running:
                    self._launch(queue.pop(0), running, hedge=False)
                timeout = self._hedge_timeout(running, queue[0]) if queue else None
                done, _ = await asyncio.wait(running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    self._launch(queue.pop(0), running, hedge=True)
                    continue
                for task in done:
                    d, record = running.pop(task)
                    error = task.exception()
                    if error is None:
                        self._succeeded(d, record)
                        return task.result(), d
                    if not isinstance(error, ProviderError):
                        raise error
                    self._failed(d, record, error)
                    if isinstance(error, ContextLengthExceeded):
                        queue[:] = still_eligible(queue, d)
            raise _RoundFailed
        finally:
            await self._cancel(running)

    async def _cancel(self, running: dict[asyncio.Task[T], tuple[Deployment, Attempt]]) -> None:
        """Stop the losers and wait until they have closed their upstream connections."""
        for task in running:
            task.cancel()
        for task, (d, record) in running.items():
            try:
                result = await task
            except asyncio.CancelledError:
                record.outcome = "cancelled"
                record.elapsed_ms = (time.monotonic() - record.started_at) * 1000
                self.observer.cancelled(d)
            except ProviderError as error:
                record.failed(error, (time.monotonic() - record.started_at) * 1000)
                self.observer.failed(d, error)
            else:
                record.outcome = "cancelled"
                self.observer.succeeded(d)
                await _discard(result)

    def wait_s(self, state: RetryCallState, backoff: Callable[[RetryCallState], float]) -> float:
        """Honour Retry-After when every failure gave one; otherwise back off."""
        if self.waits and all(w is not None for w in self.waits):
            return min(w for w in self.waits if w is not None)
        return backoff(state)


async def run_plan(
    plan: Sequence[Deployment],
    log: AttemptLog,
    attempt: Callable[[Deployment], Awaitable[T]],
    observer: AttemptObserver = NULL_OBSERVER,
    hedge: HedgeSettings = NO_HEDGE,
    retry: RetrySettings = DEFAULT_RETRY,
) -> tuple[T, Deployment]:
    """Run rounds over the plan until one attempt answers; see the module docstring.

    The first round runs on its own: nearly every request ends in it, and tenacity's
    machinery (a retrying object, its state and closures that refer to each other) cost
    about 20 µs and a few dozen objects left for the cycle collector per request.
    """
    runner: Runner[T] = Runner(log, attempt, observer, hedge)
    try:
        try:
            return await runner.round(list(plan))
        except _RoundFailed:
            return await _later_rounds(runner, observer, retry)
    except _RoundFailed:
        raise AllAttemptsFailed(log.attempts, runner.last_error) from None


async def _later_rounds(
    runner: Runner[T], observer: AttemptObserver, retry: RetrySettings
) -> tuple[T, Deployment]:
    """The rounds after a failed first one, as tenacity decides (its first turn is that round)."""
    backoff = wait_exponential_jitter(
        multiplier=retry.initial_backoff_s, max=retry.max_wait_s, jitter=retry.initial_backoff_s
    )

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= retry.rounds or not runner.retryable:
            return True
        if runner.waits and all(w is not None for w in runner.waits):
            return runner.wait_s(state, backoff) > retry.max_wait_s
        return not any(observer.available(d) for d in runner.retryable)

    retrying = AsyncRetrying(
        stop=stop,
        wait=lambda state: runner.wait_s(state, backoff),
        retry=retry_if_exception_type(_RoundFailed),
        reraise=True,
    )
    async for turn in retrying:
        with turn:
            if turn.retry_state.attempt_number == 1:
                raise _RoundFailed  # the first round, run (and failed) before tenacity took over
            queue = [d for d in dict.fromkeys(runner.retryable) if observer.available(d)]
            return await runner.round(queue)
    raise _RoundFailed  # not reached: with reraise, tenacity raises the last round's failure
