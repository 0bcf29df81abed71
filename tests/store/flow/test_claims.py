"""Properties of claim decisions, the policy choosing which ready runs start (no database)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from inferpipe.core.records import FlowPace
from inferpipe.store.flow import pacing
from inferpipe.store.flow.claims import Candidate, ClaimPolicy

NOW = 1_000_000
keys = st.sampled_from(["k:a", "k:b", "k:c"])


def candidate(run_id: str, slots: list[tuple[str, int]], **extra: object) -> Candidate:
    fields: dict[str, object] = {
        "attempts": 0,
        "cancel_requested": None,
        "throttle": None,
        "throttled_until_ms": None,
        "status_reason": None,
        "queue_group": None,
        "queue_at_ms": None,
    } | extra
    return Candidate(run_id, keys=slots, **fields)  # type: ignore[arg-type]


class NoTurns:
    def first(self, group: str, skip: Collection[str]) -> tuple[str, int] | None:
        return None


@given(
    st.lists(st.tuples(keys, keys, st.booleans()), min_size=1, max_size=60),
    st.dictionaries(keys, st.integers(0, 4)),
    st.integers(1, 40),
    st.integers(1, 20),
)
def test_concurrency_never_exceeds_a_limit_nor_the_claim_its_size(
    runs: list[tuple[str, str, bool]], running: dict[str, int], limit: int, page: int
) -> None:
    limits = {"k:a": 1, "k:b": 2, "k:c": 3}
    cands = [
        candidate(
            f"r{i:03d}",
            sorted({(a, limits[a]), (b, limits[b])}),
            cancel_requested="stop" if x else None,
        )
        for i, (a, b, x) in enumerate(runs)
    ]
    policy = ClaimPolicy(limit, NOW, Counter(running))
    taken: list[Candidate] = []
    for start in range(0, len(cands), page):  # page after page, as a store reads them
        plan = policy.page()
        for c in cands[start : start + page]:
            if policy.room:
                policy.start(c, NoTurns())
            else:
                policy.explain(c)
        taken += [c for c in cands if c.id in plan.take]
    assert len(taken) <= limit
    held = Counter(k for c in taken if not c.exempt for k, _ in c.keys)
    for key, n in held.items():
        assert running.get(key, 0) + n <= limits[key]
    # a run asked to cancel is never held back; any other is taken unless a key or the claim
    # size holds it
    for c in cands:
        if c not in taken and policy.room:
            assert not c.exempt
            assert any(policy.running[k] >= n for k, n in c.keys)


@given(
    st.integers(1, 20),
    st.integers(1, 10_000),
    st.integers(0, 5),
    st.integers(1, 30),
    st.one_of(st.none(), st.integers(-20_000, 20_000)),
)
def test_throttled_starts_in_a_claim_are_at_most_one_plus_the_burst(
    rate: int, period_ms: int, burst: int, n: int, tat_offset_ms: int | None
) -> None:
    pace = FlowPace("throttle:f", rate, period_ms, burst)
    policy = ClaimPolicy(100, NOW)
    policy.paces[pace.key] = None if tat_offset_ms is None else ((NOW + tat_offset_ms) * rate, rate)
    before = policy.paces[pace.key]
    plan = policy.page()
    for i in range(n):
        policy.start(candidate(f"r{i:03d}", [], throttle=pace), NoTurns())
    # exactly as many start now as GCRA lets start at `now`, the others get their starts
    expected, state = [], before
    for _ in range(n):
        start_ms, state = pacing.throttle_start(state, pace, NOW)
        expected.append(start_ms)
    assert len(plan.take) == sum(1 for s in expected if s <= NOW) <= 1 + burst
    assert [d[1] for d in plan.delayed] == [s for s in expected if s > NOW]
    assert plan.paces[pace.key] == state


@dataclass
class Queue:
    """A function's queue of fair groups, as a store keeps it: tags from `pacing.fair_tag`,
    group order by ready time minus priority."""

    runs: dict[str, tuple[str, int, int]] = field(default_factory=dict)  #: id -> group, e, seq
    tags: dict[str, int] = field(default_factory=dict)
    next_tag: dict[str, int] = field(default_factory=dict)

    def add(self, run_id: str, group: str, priority_s: int) -> None:
        head = min(self.tags.values(), default=None)
        self.tags[run_id], self.next_tag[group] = pacing.fair_tag(
            head, self.next_tag.get(group), NOW
        )
        self.runs[run_id] = (group, NOW - priority_s * 1000, len(self.runs))

    def first(self, group: str, skip: Collection[str]) -> tuple[str, int] | None:
        mine = [(e, s, r) for r, (g, e, s) in self.runs.items() if g == group and r not in skip]
        if not mine:
            return None
        run_id = min(mine)[2]
        return run_id, self.tags[run_id]

    def claim_one(self) -> str:
        order = sorted(self.runs, key=lambda r: (self.tags[r], self.runs[r][2]))
        policy = ClaimPolicy(1, NOW)
        plan = policy.page()
        for run_id in order:
            group = self.runs[run_id][0]
            if policy.room:
                policy.start(candidate(run_id, [], queue_group=group, queue_at_ms=0), self)
        self.tags.update(plan.retagged)
        (taken,) = plan.take
        del self.runs[taken]
        del self.tags[taken]
        return taken


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(-600, 600)), min_size=1, max_size=40))
def test_keys_take_turns_and_priority_is_seconds_ahead_within_a_key(
    arrivals: list[tuple[str, int]],
) -> None:
    queue = Queue()
    for i, (group, priority_s) in enumerate(arrivals):
        queue.add(f"r{i:03d}", group, priority_s)
    ahead = {f"r{i:03d}": (NOW - p * 1000, i) for i, (_, p) in enumerate(arrivals)}
    started = [queue.claim_one() for _ in arrivals]
    group_of = {f"r{i:03d}": g for i, (g, _) in enumerate(arrivals)}
    for group in set(group_of.values()):
        mine = [r for r in started if group_of[r] == group]
        assert mine == sorted(mine, key=ahead.__getitem__)  # by ready time minus priority
    total = Counter(group_of.values())
    for n in range(1, len(started) + 1):
        seen = Counter(group_of[r] for r in started[:n])
        waiting = [seen[g] for g in total if seen[g] < total[g]]
        assert not waiting or max(seen.values()) - min(waiting) <= 1  # keys take turns


@given(
    st.lists(st.tuples(keys, st.booleans(), st.integers(0, 1)), min_size=1, max_size=40),
    st.dictionaries(keys, st.integers(0, 3)),
    st.randoms(),
)
def test_the_plan_does_not_depend_on_the_order_state_was_loaded_in(
    runs: list[tuple[str, bool, int]], running: dict[str, int], rnd: random.Random
) -> None:
    pace = FlowPace("throttle:f", 2, 1000, 1)
    cands = [
        candidate(f"r{i:03d}", [(k, 2)], throttle=pace if paced else None, attempts=attempts)
        for i, (k, paced, attempts) in enumerate(runs)
    ]

    def decide(counts: dict[str, int]) -> object:
        policy = ClaimPolicy(10, NOW, Counter(counts), {k for k, n in counts.items() if n >= 2})
        policy.paces[pace.key] = (NOW * 2 - 1500, 2)
        plan = policy.page()
        for c in cands:
            if policy.room:
                policy.start(c, NoTurns())
            else:
                policy.explain(c)
        return plan

    items = list(running.items())
    rnd.shuffle(items)
    assert decide(running) == decide(dict(items))
