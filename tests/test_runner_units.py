"""The attempt loop on its own: failover order, what each attempt records, context-length
failover, retry rounds and their waits, and hedging's race and clean-up.

Attempts are plain coroutines steered by events; the runner's clock is a hand-moved one, so
each attempt's elapsed time is an exact figure, and the waits tenacity asks for are recorded
instead of slept. Fast enough to judge each mutant of router_policies/runner.py with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from providers.errors import (
    ContextLengthExceeded,
    ProviderError,
    UpstreamBadRequest,
    UpstreamConnectError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from router_policies import runner as runner_module
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.deployment import Deployment
from router_policies.runner import (
    HedgeSettings,
    NullObserver,
    RetrySettings,
    Runner,
    run_plan,
    still_eligible,
)
from tests.conftest import HandClock


def dep(name: str, window: int | None = None) -> Deployment:
    return Deployment(name, f"{name}-model", None, 1.0, 2.0, context_window_tokens=window)  # type: ignore[arg-type]


class Observer(NullObserver):
    """Records what the runner reports; `down` are not available, `p90` their TTFT p90s."""

    def __init__(self, down: tuple[str, ...] = (), p90: dict[str, float] | None = None) -> None:
        self.events: list[tuple[str, str]] = []
        self.errors: list[ProviderError] = []
        self.down = set(down)
        self.p90 = p90 or {}

    def started(self, d: Deployment) -> None:
        self.events.append(("started", d.provider))

    def succeeded(self, d: Deployment) -> None:
        self.events.append(("succeeded", d.provider))

    def failed(self, d: Deployment, error: ProviderError) -> None:
        self.events.append(("failed", d.provider))
        self.errors.append(error)

    def cancelled(self, d: Deployment) -> None:
        self.events.append(("cancelled", d.provider))

    def available(self, d: Deployment) -> bool:
        return d.provider not in self.down

    def ttft_p90_ms(self, d: Deployment) -> float | None:
        return self.p90.get(d.provider)


Script = dict[str, Callable[[], Awaitable[Any]]]


def scripted(script: Script, calls: list[str]) -> Callable[[Deployment], Awaitable[Any]]:
    """An attempt that runs each provider's entry of `script` and notes the call."""

    async def attempt(d: Deployment) -> Any:
        calls.append(d.provider)
        return await script[d.provider]()

    return attempt


def fails(
    error: ProviderError, hand_clock: HandClock | None = None, after_s: float = 0.0
) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        if hand_clock is not None:
            hand_clock.now += after_s
        raise error

    return run


def answers(
    value: Any, hand_clock: HandClock | None = None, after_s: float = 0.0
) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        if hand_clock is not None:
            hand_clock.now += after_s
        return value

    return run


def down(name: str, status: int = 503, retry_after_s: float | None = None) -> UpstreamUnavailable:
    return UpstreamUnavailable(f"{name} is down", provider=name, status=status, retry_after_s=retry_after_s)


# --------------------------------------------------------------------------- one round, in order


def test_a_round_fails_over_in_plan_order_and_records_each_attempt(hand_clock: HandClock):
    a, b, c = dep("a"), dep("b"), dep("c")
    calls: list[str] = []
    refused = UpstreamConnectError("refused", provider="b")
    script: Script = {
        "a": fails(down("a"), hand_clock, 0.1),
        "b": fails(refused, hand_clock, 0.2),
        "c": answers("answer", hand_clock, 0.05),
    }
    observer = Observer()
    log = AttemptLog(started_at=hand_clock.now)
    result, chosen = asyncio.run(run_plan([a, b, c], log, scripted(script, calls), observer))
    assert (result, chosen) == ("answer", c) and calls == ["a", "b", "c"]
    assert [(x.deployment_id, x.provider, x.outcome, x.status, x.message) for x in log.attempts] == [
        ("a/a-model", "a", "unavailable", 503, "a is down"),
        ("b/b-model", "b", "connect_error", None, "refused"),
        ("c/c-model", "c", "ok", 200, None),
    ]
    assert [x.elapsed_ms for x in log.attempts] == [pytest.approx(100), pytest.approx(200), pytest.approx(50)]
    assert [x.offset_ms for x in log.attempts] == [0, pytest.approx(100), pytest.approx(300)]
    assert not any(x.hedge for x in log.attempts)
    assert observer.events == [
        ("started", "a"),
        ("failed", "a"),
        ("started", "b"),
        ("failed", "b"),
        ("started", "c"),
        ("succeeded", "c"),
    ]
    assert [e.provider for e in observer.errors] == ["a", "b"] and observer.errors[1] is refused


def test_the_client_s_own_error_is_raised_at_once_without_trying_further(
    hand_clock: HandClock, sleeps: list[float]
):
    calls: list[str] = []
    bad = UpstreamBadRequest("no such parameter", provider="a", status=400)
    observer = Observer()
    log = AttemptLog()
    script: Script = {"a": fails(bad, hand_clock, 0.01), "b": answers("never")}
    with pytest.raises(UpstreamBadRequest) as raised:
        asyncio.run(run_plan([dep("a"), dep("b")], log, scripted(script, calls), observer))
    assert raised.value is bad and calls == ["a"] and sleeps == []
    assert observer.events == [("started", "a"), ("failed", "a")]
    assert (log.attempts[0].outcome, log.attempts[0].status, log.attempts[0].elapsed_ms) == (
        "bad_request",
        400,
        pytest.approx(10),
    )


def test_still_eligible_keeps_only_longer_context_windows():
    short, mid, long, unknown = dep("s", 4000), dep("m", 8000), dep("l", 16000), dep("u")
    assert still_eligible([short, mid, long, unknown], mid) == [long]
    assert still_eligible([short, mid, long, unknown], unknown) == [short, mid, long, unknown]
    assert still_eligible([], long) == []
    assert still_eligible([unknown], dep("z", 0)) == []  # an unknown window is never the longer one


def test_a_context_length_failure_moves_on_only_to_longer_windows_and_is_not_retried(sleeps: list[float]):
    plan = [dep("a", 8000), dep("b", 4000), dep("c", 8000), dep("d", 32000), dep("e")]
    calls: list[str] = []

    def too_long(name: str) -> Callable[[], Awaitable[Any]]:
        return fails(ContextLengthExceeded("too long", provider=name, status=400))

    script: Script = {name: too_long(name) for name in "abcde"}
    with pytest.raises(AllAttemptsFailed) as failed:
        asyncio.run(run_plan(plan, AttemptLog(), scripted(script, calls), retry=RetrySettings(rounds=3)))
    assert calls == ["a", "d"]  # b and c are no longer, e's window is unknown
    assert sleeps == []  # a longer prompt will not fit on a second try
    assert [x.outcome for x in failed.value.attempts] == ["context_length_exceeded"] * 2
    assert failed.value.last_error is not None and failed.value.last_error.provider == "d"


def test_a_cancelled_attempt_is_recorded_and_reported_and_the_cancellation_goes_on(hand_clock: HandClock):
    observer = Observer()
    log = AttemptLog()

    async def cancelled() -> Any:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run_plan([dep("a"), dep("b")], log, scripted({"a": cancelled}, []), observer))
    assert [x.outcome for x in log.attempts] == ["cancelled"]
    assert observer.events == [("started", "a"), ("cancelled", "a")]


# --------------------------------------------------------------------------- retry rounds


def test_a_second_round_retries_only_retryable_available_deployments_once_each(sleeps: list[float]):
    a, b, c = dep("a"), dep("b"), dep("c")
    calls: list[str] = []
    tries = {"a": 0}

    async def flaky_a() -> Any:
        tries["a"] += 1
        if tries["a"] <= 2:
            raise UpstreamRateLimited("busy", provider="a", status=429, retry_after_s=0.3)
        return "third time"

    script: Script = {
        "a": flaky_a,
        "b": fails(down("b", retry_after_s=0.5)),
        "c": fails(down("c", retry_after_s=0.4)),
    }
    observer = Observer(down=("c",))  # c's breaker opened on its failure
    result, chosen = asyncio.run(
        run_plan([a, b, a, c], AttemptLog(), scripted(script, calls), observer, retry=RetrySettings(rounds=2))
    )
    assert (result, chosen) == ("third time", a)
    assert calls == ["a", "b", "a", "c", "a"]  # round two: a once (not twice), then it answered
    assert [s for s in sleeps if s > 0] == [pytest.approx(0.3)]  # the shortest Retry-After


def test_the_second_round_goes_in_the_order_of_the_first_failures(sleeps: list[float]):
    calls: list[str] = []
    failures = {"a": 0, "b": 0}

    def twice_down(name: str) -> Callable[[], Awaitable[Any]]:
        async def run() -> Any:
            failures[name] += 1
            if failures[name] <= 1 or name == "a":
                raise down(name, retry_after_s=0.1)
            return name

        return run

    script: Script = {"a": twice_down("a"), "b": twice_down("b")}
    result, _ = asyncio.run(run_plan([dep("a"), dep("b")], AttemptLog(), scripted(script, calls)))
    assert result == "b" and calls == ["a", "b", "a", "b"]


def test_without_a_retry_after_from_every_failure_the_wait_is_an_exponential_jittered_backoff(
    sleeps: list[float],
):
    calls: list[str] = []
    script: Script = {"a": fails(down("a", retry_after_s=0.2)), "b": fails(down("b"))}
    retry = RetrySettings(rounds=3, max_wait_s=1.0, initial_backoff_s=0.05)
    with pytest.raises(AllAttemptsFailed) as failed:
        asyncio.run(run_plan([dep("a"), dep("b")], AttemptLog(), scripted(script, calls), retry=retry))
    assert calls == ["a", "b"] * 3 and len(failed.value.attempts) == 6
    first, second = [s for s in sleeps if s > 0]
    assert 0.05 <= first <= 0.1  # 0.05 · 2⁰ plus up to 0.05 of jitter
    assert 0.1 <= second <= 0.15  # 0.05 · 2¹ plus up to 0.05
    assert failed.value.last_error is not None and failed.value.last_error.provider == "b"


def test_the_backoff_is_capped_at_the_longest_wait(sleeps: list[float]):
    script: Script = {"a": fails(down("a"))}
    retry = RetrySettings(rounds=3, max_wait_s=0.5, initial_backoff_s=0.5)
    with pytest.raises(AllAttemptsFailed):
        asyncio.run(run_plan([dep("a")], AttemptLog(), scripted(script, []), retry=retry))
    assert [s for s in sleeps if s > 0] == [pytest.approx(0.5), pytest.approx(0.5)]


def test_no_second_round_when_every_failed_deployment_is_unavailable(sleeps: list[float]):
    calls: list[str] = []
    script: Script = {"a": fails(down("a")), "b": fails(down("b"))}
    with pytest.raises(AllAttemptsFailed):
        asyncio.run(
            run_plan([dep("a"), dep("b")], AttemptLog(), scripted(script, calls), Observer(down=("a", "b")))
        )
    assert calls == ["a", "b"] and sleeps == []


def test_rounds_one_means_no_retry_and_the_default_is_two_rounds(sleeps: list[float]):
    calls: list[str] = []
    script: Script = {"a": fails(down("a", retry_after_s=0.1))}
    with pytest.raises(AllAttemptsFailed):
        asyncio.run(
            run_plan([dep("a")], AttemptLog(), scripted(script, calls), retry=RetrySettings(rounds=1))
        )
    assert calls == ["a"]
    with pytest.raises(AllAttemptsFailed):
        asyncio.run(run_plan([dep("a")], AttemptLog(), scripted(script, calls)))
    assert calls == ["a", "a", "a"]
    assert RetrySettings() == RetrySettings(rounds=2, max_wait_s=1.0, initial_backoff_s=0.05)


def test_a_retry_after_longer_than_the_longest_wait_ends_the_request_without_waiting(sleeps: list[float]):
    calls: list[str] = []
    script: Script = {"a": fails(down("a", retry_after_s=1.5)), "b": fails(down("b", retry_after_s=1.01))}
    with pytest.raises(AllAttemptsFailed):
        asyncio.run(
            run_plan(
                [dep("a"), dep("b")],
                AttemptLog(),
                scripted(script, calls),
                retry=RetrySettings(max_wait_s=1.0),
            )
        )
    assert calls == ["a", "b"] and sleeps == []
    calls.clear()
    script = {"a": fails(down("a", retry_after_s=1.0))}  # exactly the longest wait: waited
    with pytest.raises(AllAttemptsFailed):
        asyncio.run(
            run_plan([dep("a")], AttemptLog(), scripted(script, calls), retry=RetrySettings(max_wait_s=1.0))
        )
    assert calls == ["a", "a"] and [s for s in sleeps if s > 0] == [pytest.approx(1.0)]


def test_the_client_s_error_after_a_retryable_failure_is_raised_not_retried(sleeps: list[float]):
    calls: list[str] = []
    bad = UpstreamBadRequest("bad", provider="b", status=400)
    script: Script = {"a": fails(down("a")), "b": fails(bad)}
    with pytest.raises(UpstreamBadRequest):
        asyncio.run(run_plan([dep("a"), dep("b")], AttemptLog(), scripted(script, calls)))
    assert calls == ["a", "b"] and sleeps == []


def test_the_second_round_leaves_out_deployments_no_longer_available(sleeps: list[float]):
    calls: list[str] = []
    tries = {"a": 0}

    async def flaky_a() -> Any:
        tries["a"] += 1
        if tries["a"] == 1:
            raise down("a")
        return "a"

    script: Script = {"b": fails(down("b")), "a": flaky_a, "c": fails(down("c"))}
    observer = Observer(down=("b", "c"))
    result, _ = asyncio.run(
        run_plan([dep("b"), dep("a"), dep("c")], AttemptLog(), scripted(script, calls), observer)
    )
    assert result == "a" and calls == ["b", "a", "c", "a"]


def test_an_empty_plan_fails_with_no_attempt_and_no_error(sleeps: list[float]):
    with pytest.raises(AllAttemptsFailed) as failed:
        asyncio.run(run_plan([], AttemptLog(), scripted({}, [])))
    assert failed.value.attempts == [] and failed.value.last_error is None and sleeps == []


# --------------------------------------------------------------------------- hedging

HEDGE = HedgeSettings(enabled=True, default_delay_ms=5.0, min_delay_ms=1.0)


def test_hedge_settings_default_to_off_with_a_one_second_delay_and_no_target():
    assert HedgeSettings() == HedgeSettings(
        enabled=False, default_delay_ms=1000.0, min_delay_ms=20.0, target_ms=None
    )


@pytest.mark.parametrize(
    ("target_ms", "first_p90", "next_p90", "delay"),
    [
        (None, 200.0, 100.0, 200.0),  # no target: the first's p90
        (None, None, 100.0, 1000.0),  # no stats: the default
        (None, 5.0, None, 20.0),  # never under the minimum
        (500.0, 200.0, 100.0, 400.0),  # room under the target: as late as the next still meets it
        (500.0, 450.0, 100.0, 450.0),  # no room: the first's p90
        (500.0, 200.0, None, 200.0),  # the next has no stats: the first's p90
        (100.0, None, 95.0, 1000.0),  # a target already out of reach: the default
        (30.0, 1.0, 20.0, 20.0),  # the minimum still holds under a target
    ],
)
def test_the_hedge_delay_with_and_without_a_latency_target(target_ms, first_p90, next_p90, delay):
    assert HedgeSettings(enabled=True, target_ms=target_ms).delay_ms(first_p90, next_p90) == delay


def test_the_hedge_timeout_is_the_delay_less_the_time_already_waited(hand_clock: HandClock):
    observer = Observer(p90={"a": 200.0, "fast": 0.5, "next": 100.0})
    runner: Runner[Any] = Runner(AttemptLog(), answers(None), observer, HedgeSettings(enabled=True))
    targeted: Runner[Any] = Runner(
        AttemptLog(), answers(None), observer, HedgeSettings(enabled=True, target_ms=500)
    )
    log = runner.log

    def timeout_for(name: str, waited_s: float, which: Runner[Any] = runner) -> float | None:
        record = log.begin(name, name)
        hand_clock.now += waited_s
        return which._hedge_timeout({object(): (dep(name), record)}, dep("next"))  # type: ignore[dict-item]

    assert timeout_for("a", 0.05) == pytest.approx(0.15)  # p90 200 ms, 50 ms gone
    assert timeout_for("none", 0.25) == pytest.approx(0.75)  # no stats: the default 1000 ms
    assert timeout_for("fast", 0.0) == pytest.approx(0.02)  # 0.5 ms is under the 20 ms minimum
    assert timeout_for("a", 0.5) == 0.0  # overdue: at once
    assert timeout_for("a", 0.1, targeted) == pytest.approx(0.3)  # 500 ms less next's p90 100 ms, 100 ms gone
    two = {object(): (dep("a"), log.begin("a", "a")), object(): (dep("b"), log.begin("b", "b"))}
    assert runner._hedge_timeout(two, dep("next")) is None  # already racing: wait for either


def test_a_slow_first_attempt_is_hedged_the_first_answer_wins_and_the_loser_is_cancelled(
    hand_clock: HandClock,
):
    loser_closed = asyncio.Event()

    async def hangs() -> Any:
        try:
            await asyncio.Event().wait()
        finally:
            loser_closed.set()  # the adapter closes its upstream response here

    observer = Observer()
    log = AttemptLog()
    script: Script = {"a": hangs, "b": answers("b", hand_clock, 0.25)}
    result, chosen = asyncio.run(run_plan([dep("a"), dep("b")], log, scripted(script, []), observer, HEDGE))
    assert (result, chosen.provider) == ("b", "b") and loser_closed.is_set()
    assert [(x.deployment_id, x.outcome, x.hedge) for x in log.attempts] == [
        ("a/a-model", "cancelled", False),
        ("b/b-model", "ok", True),
    ]
    assert [x.elapsed_ms for x in log.attempts] == [pytest.approx(250), pytest.approx(250)]
    assert observer.events == [("started", "a"), ("started", "b"), ("succeeded", "b"), ("cancelled", "a")]


def test_hedging_fails_over_at_once_and_the_next_attempt_is_no_hedge(sleeps: list[float]):
    calls: list[str] = []
    log = AttemptLog()
    observer = Observer()
    slow_hedge = HedgeSettings(enabled=True, default_delay_ms=60_000.0)  # never reached
    script: Script = {"a": fails(down("a")), "b": answers("b")}
    result, _ = asyncio.run(
        run_plan([dep("a"), dep("b")], log, scripted(script, calls), observer, slow_hedge)
    )
    assert result == "b" and calls == ["a", "b"]
    assert [(x.outcome, x.hedge) for x in log.attempts] == [("unavailable", False), ("ok", False)]
    assert observer.events == [("started", "a"), ("failed", "a"), ("started", "b"), ("succeeded", "b")]


def test_hedged_rounds_skip_shorter_windows_after_a_context_length_failure():
    calls: list[str] = []
    too_long = fails(ContextLengthExceeded("too long", provider="a", status=400))
    script: Script = {"a": too_long, "b": answers("b"), "c": answers("c")}
    plan = [dep("a", 8000), dep("b", 4000), dep("c", 16000)]
    result, chosen = asyncio.run(run_plan(plan, AttemptLog(), scripted(script, calls), hedge=HEDGE))
    assert (result, chosen.provider, calls) == ("c", "c", ["a", "c"])


def test_a_hedged_round_that_fails_everywhere_is_retried(sleeps: list[float]):
    calls: list[str] = []
    script: Script = {"a": fails(down("a", retry_after_s=0.1)), "b": fails(down("b", retry_after_s=0.1))}
    with pytest.raises(AllAttemptsFailed) as failed:
        asyncio.run(run_plan([dep("a"), dep("b")], AttemptLog(), scripted(script, calls), hedge=HEDGE))
    assert calls == ["a", "b", "a", "b"] and len(failed.value.attempts) == 4
    assert [s for s in sleeps if s > 0] == [pytest.approx(0.1)]


def test_an_error_that_is_not_an_upstream_s_ends_the_hedged_race_and_cancels_the_rest():
    closed = asyncio.Event()

    async def hangs() -> Any:
        try:
            await asyncio.Event().wait()
        finally:
            closed.set()

    async def breaks() -> Any:
        raise RuntimeError("a bug")

    observer = Observer()
    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(
            run_plan(
                [dep("a"), dep("b")], AttemptLog(), scripted({"a": hangs, "b": breaks}, []), observer, HEDGE
            )
        )
    assert closed.is_set() and ("cancelled", "a") in observer.events


def test_a_loser_that_answered_anyway_is_discarded_and_counted_a_success():
    release = asyncio.Event()
    closed: list[str] = []

    class Stream:
        def __init__(self, name: str) -> None:
            self.name = name

        async def aclose(self) -> None:
            closed.append(self.name)

    async def a() -> Any:
        await release.wait()
        return Stream("a")

    async def b() -> Any:
        release.set()  # a finishes in the same turn of the loop as b
        await asyncio.sleep(0)
        return Stream("b")

    observer = Observer()
    log = AttemptLog()
    result, chosen = asyncio.run(
        run_plan([dep("a"), dep("b")], log, scripted({"a": a, "b": b}, []), observer, HEDGE)
    )
    loser = "b" if chosen.provider == "a" else "a"
    assert result.name == chosen.provider and closed == [loser]
    assert {x.provider: x.outcome for x in log.attempts} == {chosen.provider: "ok", loser: "cancelled"}
    assert sorted(e for e in observer.events if e[0] == "succeeded") == [
        ("succeeded", "a"),
        ("succeeded", "b"),
    ]


def test_a_loser_that_fails_while_being_cancelled_is_recorded_as_that_failure(hand_clock: HandClock):
    reset = UpstreamConnectError("reset while closing", provider="a")

    async def a() -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            hand_clock.now += 0.05
            raise reset from None

    observer = Observer()
    log = AttemptLog()
    script: Script = {"a": a, "b": answers("b", hand_clock, 0.1)}
    result, _ = asyncio.run(run_plan([dep("a"), dep("b")], log, scripted(script, []), observer, HEDGE))
    assert result == "b"
    assert [(x.provider, x.outcome, x.message, x.elapsed_ms) for x in log.attempts] == [
        ("a", "connect_error", "reset while closing", pytest.approx(150)),
        ("b", "ok", None, pytest.approx(100)),
    ]
    assert observer.events[-1] == ("failed", "a") and observer.errors == [reset]


def test_a_lone_hedged_attempt_is_waited_for_however_long_it_takes():
    async def slow() -> Any:
        await asyncio.sleep(0.05)  # ten times the hedge delay, and nothing to hedge with
        return "late"

    result, _ = asyncio.run(run_plan([dep("a")], AttemptLog(), scripted({"a": slow}, []), hedge=HEDGE))
    assert result == "late"


def test_a_discarded_result_without_aclose_is_left_alone():
    asyncio.run(runner_module._discard("plain text"))  # nothing to close, nothing raised
