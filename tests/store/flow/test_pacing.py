"""Properties of the flow-control arithmetic (no database): GCRA throttle starts, debounce and
batch windows, fair queue tags."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from inferpipe.core.records import FlowBuffer, FlowPace
from inferpipe.store.flow import pacing

paces = st.builds(
    FlowPace,
    key=st.just("throttle:f"),
    limit=st.integers(1, 50),
    period_ms=st.integers(1, 60_000),
    burst=st.integers(0, 10),
)
gaps = st.lists(st.integers(0, 5_000), min_size=1, max_size=200)


def reserve(pace: FlowPace, gaps_ms: list[int]) -> list[tuple[int, int]]:
    """(asked at, starts at) for requests `gaps_ms` apart, the state carried between them."""
    state: pacing.PaceState | None = None
    now_ms, out = 1_000_000, []
    for gap in gaps_ms:
        now_ms += gap
        start_ms, state = pacing.throttle_start(state, pace, now_ms)
        out.append((now_ms, start_ms))
    return out


@given(paces, gaps)
def test_gcra_starts_at_most_limit_plus_burst_in_any_period(pace: FlowPace, gaps_ms: list[int]):
    starts = sorted(start for _, start in reserve(pace, gaps_ms))
    for i, first in enumerate(starts):
        within = [s for s in starts[i:] if s < first + pace.period_ms]
        assert len(within) <= pace.limit + pace.burst


@given(paces, gaps)
def test_gcra_delays_but_never_drops_and_keeps_order(pace: FlowPace, gaps_ms: list[int]):
    reserved = reserve(pace, gaps_ms)
    assert all(start >= asked for asked, start in reserved)
    assert [s for _, s in reserved] == sorted(s for _, s in reserved)


@given(paces, st.integers(1, 200))
def test_gcra_back_to_back_requests_run_at_the_pace_after_the_burst(pace: FlowPace, n: int):
    starts = [start for _, start in reserve(pace, [0] * n)]
    interval = pace.period_ms / pace.limit
    assert starts[: pace.burst + 1] == [starts[0]] * min(n, pace.burst + 1)
    for k, start in enumerate(starts):
        ideal = starts[0] + max(0, k - pace.burst) * interval
        assert ideal <= start < ideal + 1  # whole milliseconds, rounded up


@given(
    st.integers(1, 10_000),
    st.one_of(st.none(), st.integers(0, 50_000)),
    st.lists(st.integers(0, 20_000), min_size=1, max_size=50),
)
def test_a_debounced_run_starts_a_period_after_the_last_event_within_its_max_wait(
    wait_ms: int, extra_ms: int | None, gaps_ms: list[int]
):
    max_wait = None if extra_ms is None else wait_ms + extra_ms
    buf = FlowBuffer("debounce:f", wait_ms, max_wait)
    first = now = 5_000
    for size, gap in enumerate(gaps_ms, start=1):
        now += gap
        starts, reason = pacing.window(buf, first, size, now)
        assert starts == (
            now + wait_ms if max_wait is None else min(now + wait_ms, first + max_wait)
        )
        assert reason.startswith("debounced: starts at ")


@given(st.integers(1, 1000), st.integers(1, 10_000), st.integers(1, 1000), st.integers(0, 9_999))
def test_a_batch_starts_when_full_or_when_its_window_closes(
    max_size: int, wait_ms: int, size: int, late_ms: int
):
    buf = FlowBuffer("batch:f", wait_ms, max_size=max_size, batch=True)
    starts, reason = pacing.window(buf, 1_000, size, 1_000 + late_ms)
    if size >= max_size:
        assert (starts, reason) == (1_000 + late_ms, f"batch full: {size} events")
    else:
        assert starts == 1_000 + wait_ms
        assert reason.startswith(f"collecting a batch: {size}/{max_size} events until ")


@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=100), st.integers(0, 100))
def test_fair_tags_let_keys_take_turns(keys: list[str], head_ahead_ms: int):
    now, head = 10_000, 10_000 - head_ahead_ms
    next_tag: dict[str, int] = {}
    tags: list[tuple[int, str]] = []
    for key in keys:
        tag, next_tag[key] = pacing.fair_tag(head, next_tag.get(key), now)
        tags.append((tag, key))
    for key in set(keys):
        mine = [t for t, k in tags if k == key]
        assert mine == list(range(head, head + len(mine)))  # consecutive from the head
    # in the queue order, any prefix holds as many runs of each key, give or take one, until
    # a key has no more runs
    order = [k for _, k in sorted(tags)]
    total = {k: order.count(k) for k in set(order)}
    for n in range(1, len(order) + 1):
        seen = {k: order[:n].count(k) for k in total}
        waiting = [seen[k] for k in total if seen[k] < total[k]]
        assert not waiting or max(seen.values()) - min(waiting) <= 1
