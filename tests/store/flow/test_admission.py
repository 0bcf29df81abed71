"""Properties of admission, the policy deciding runs as they are inserted (no database)."""

from __future__ import annotations

import copy
import random

from hypothesis import given
from hypothesis import strategies as st

from inferpipe.core.records import FlowBuffer, FlowPace, NewRun, RunFlow
from inferpipe.store.flow.admission import Admission, AdmissionState, Pending, admit

NOW = 1_000_000
keys = st.sampled_from(["a", "b", "c"])


def run(i: int, flow: RunFlow | None, fn: str = "f") -> NewRun:
    return NewRun(f"r{i:03d}", fn, [f"e{i:03d}"], [{"n": i}], NOW, flow=flow)


def plan(flows: list[RunFlow | None], state: AdmissionState | None = None) -> Admission:
    return admit([run(i, f) for i, f in enumerate(flows)], state or AdmissionState(), NOW)


@given(st.lists(keys, min_size=1, max_size=30), st.integers(1, 10_000), st.integers(0, 10_000))
def test_debounce_folds_each_keys_events_into_one_run_and_the_last_event_wins(
    names: list[str], wait_ms: int, extra_ms: int
) -> None:
    flows = [RunFlow(buffer=FlowBuffer(f"d:{k}", wait_ms, wait_ms + extra_ms)) for k in names]
    out = plan(flows)
    assert [r.run.id for r in out.rows] == [f"r{names.index(k):03d}" for k in dict.fromkeys(names)]
    for row in out.rows:
        key = names[int(row.run.id[1:])]
        last = max(i for i, k in enumerate(names) if k == key)
        assert row.input == [{"n": last}]
        assert row.event_ids == [f"e{last:03d}"]
        assert row.ready_at_ms == NOW + wait_ms
        mine = {f"e{i:03d}" for i, k in enumerate(names) if k == key}
        assert {e for e, r in out.triggers if r == row.run.id} == mine


@given(st.lists(keys, min_size=1, max_size=30), st.integers(1, 5))
def test_a_batch_takes_up_to_its_size_then_opens_another(names: list[str], size: int) -> None:
    flows = [RunFlow(buffer=FlowBuffer(f"b:{k}", 5_000, max_size=size, batch=True)) for k in names]
    out = plan(flows)
    for key in set(names):
        events = [i for i, k in enumerate(names) if k == key]
        batches = [r for r in out.rows if names[int(r.run.id[1:])] == key]
        assert [len(b.input) for b in batches][:-1] == [size] * (len(batches) - 1)
        assert [x["n"] for b in batches for x in b.input] == events
        assert all(b.ready_at_ms == NOW for b in batches if len(b.input) == size)


@given(st.lists(keys, min_size=1, max_size=30), st.dictionaries(keys, st.just("old")))
def test_idempotency_admits_one_run_per_key(names: list[str], used: dict[str, str]) -> None:
    out = plan([RunFlow(idempotency_key=k) for k in names], AdmissionState(used=dict(used)))
    admitted = [names[int(r.run.id[1:])] for r in out.rows if not r.skipped]
    assert sorted(admitted) == sorted(set(names) - set(used))
    for row in out.rows:
        if row.skipped:
            key = names[int(row.run.id[1:])]
            first = used.get(key) or f"r{names.index(key):03d}"
            assert (
                row.reason
                == f"duplicate: idempotency key {key} was used by run {first} within 24 h"
            )


@given(
    st.lists(keys, min_size=1, max_size=30),
    st.integers(1, 5),
    st.dictionaries(keys, st.integers(0, 6)),
)
def test_a_rate_limit_admits_at_most_the_limit_per_window(
    names: list[str], limit: int, hits: dict[str, int]
) -> None:
    flows = [RunFlow(rate_limit=FlowPace(k, limit, 60_000)) for k in names]
    out = plan(flows, AdmissionState(hits=dict(hits)))
    for key in set(names):
        admitted = [r for r in out.rows if names[int(r.run.id[1:])] == key and not r.skipped]
        assert len(admitted) == min(names.count(key), max(0, limit - hits.get(key, 0)))
    assert sorted(out.rate_hits) == sorted(
        names[int(r.run.id[1:])] for r in out.rows if not r.skipped
    )


@given(st.lists(keys, min_size=1, max_size=30), st.booleans(), st.sets(keys))
def test_a_singleton_skips_or_replaces_the_unfinished_run(
    names: list[str], cancels: bool, busy: set[str]
) -> None:
    flows = [RunFlow(singleton_key=k, singleton_cancels=cancels) for k in names]
    out = plan(flows, AdmissionState(unfinished={k: [f"old-{k}"] for k in busy}))
    live = [names[int(r.run.id[1:])] for r in out.rows if not r.skipped]
    if cancels:
        assert live == names
        for i, key in enumerate(names):
            before = [f"old-{key}"] * (key in busy) + [
                f"r{j:03d}" for j in range(i) if names[j] == key
            ]
            reason = f"replaced by run r{i:03d} (singleton {key})"
            assert [v for v, why in out.cancels if why == reason] == before
    else:
        assert sorted(live) == sorted(set(names) - busy)


@given(
    st.lists(st.tuples(keys, keys), min_size=1, max_size=30),
    st.dictionaries(keys, st.integers(0, 3)),
)
def test_a_run_says_which_full_key_it_waits_for(
    pairs: list[tuple[str, str]], running: dict[str, int]
) -> None:
    flows = [
        RunFlow(concurrency=((f"k:{a}", 2), (f"k:{b}", 3)), fair_key=f"k:{b}") for a, b in pairs
    ]
    out = plan(flows, AdmissionState(running={f"k:{k}": n for k, n in running.items()}))
    for row, (a, b) in zip(out.rows, pairs, strict=True):
        if running.get(a, 0) >= 2:
            assert row.reason == f"waiting for a concurrency slot: k:{a} has 2 running"
        elif running.get(b, 0) >= 3:
            assert row.reason == f"waiting for a concurrency slot: k:{b} has 3 running"
        else:
            assert row.reason is None
    tags = [(r.queue_at_ms, b) for r, (_, b) in zip(out.rows, pairs, strict=True)]
    for key in {b for _, b in pairs}:  # each fair key's runs take consecutive turns
        assert [t for t, b in tags if b == key] == list(
            range(NOW, NOW + len([1 for _, b in pairs if b == key]))
        )


flows = st.builds(
    RunFlow,
    concurrency=st.lists(st.tuples(keys.map("k:".__add__), st.integers(1, 3)), max_size=1).map(
        tuple
    ),
    idempotency_key=st.one_of(st.none(), keys),
    singleton_key=st.one_of(st.none(), keys),
    singleton_cancels=st.booleans(),
    rate_limit=st.one_of(st.none(), keys.map(lambda k: FlowPace(k, 2, 1000))),
    fair_key=st.one_of(st.none(), keys.map("k:".__add__)),
    buffer=st.one_of(st.none(), keys.map(lambda k: FlowBuffer(k, 500, max_size=2, batch=True))),
)


@given(st.lists(st.one_of(st.none(), flows), min_size=1, max_size=20), st.randoms())
def test_the_plan_does_not_depend_on_the_order_state_was_loaded_in(
    planned: list[RunFlow | None], rnd: random.Random
) -> None:
    state = AdmissionState(
        used={"a": "old1", "c": "old2"},
        hits={"a": 1, "b": 2},
        pending={"b": Pending("old3", NOW - 100, 1, NOW + 400, [{"n": -1}], ["e-old"])},
        unfinished={"a": ["old4", "old5"]},
        tags={"k:a": NOW + 3, "k:c": NOW - 5},
        heads={"f": NOW - 2},
        running={"k:a": 1, "k:b": 3},
    )
    shuffled = copy.deepcopy(state)
    for name in ("used", "hits", "pending", "unfinished", "tags", "heads", "running"):
        items = list(getattr(shuffled, name).items())
        rnd.shuffle(items)
        setattr(shuffled, name, dict(items))
    assert plan(planned, state) == plan(planned, shuffled)
