"""Claim decisions: which ready runs start now, given the concurrency slots their keys hold,
their throttles (GCRA) and the fair queue's turns.

A store reads candidates in queue order (a page at a time) with the running runs of their
keys and their throttles' states, and asks a `ClaimPolicy` about each; the policy fills the
page's `ClaimPlan` (the runs to take, and what to write on those held back), which the store
writes. A run that holds a turn of its key's fair queue starts the run of its queue group
that comes first by ready time minus priority (`Turns`, loaded by the store), so priority is
seconds ahead within a key and keys still take turns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from inferpipe.core.records import FlowPace
from inferpipe.store.flow import pacing, reasons

CANDIDATE_COLUMNS = (
    "id, attempts, cancel_requested, concurrency_key1, concurrency_limit1, concurrency_key2,"
    " concurrency_limit2, singleton_key, throttle, throttled_until_ms, status_reason,"
    " queue_group, queue_at_ms"
)
"""The columns of a run that `Candidate.of` reads, in this order."""

UNCHECKED = (
    "cancel_requested IS NULL AND concurrency_key1 IS NULL AND concurrency_key2 IS NULL"
    " AND singleton_key IS NULL"
    " AND NOT (throttle IS NOT NULL AND attempts = 0 AND throttled_until_ms IS NULL)"
)
"""A run that starts with nothing for flow control to decide (no slot key, no throttle
reservation to take) and no cancel to finalize, as SQL on either dialect: an intake may take
such a run when it resumes it (`store.base.WakeClaim`)."""


@dataclass(slots=True)
class Candidate:
    """A ready run a claim may start."""

    id: str
    attempts: int
    cancel_requested: str | None
    keys: list[tuple[str, int]]  #: its concurrency and singleton slots (key, limit)
    throttle: FlowPace | None
    throttled_until_ms: int | None  #: its reserved start, once it has one
    status_reason: str | None
    queue_group: str | None
    queue_at_ms: int | None

    @classmethod
    def of(cls, row: Sequence[Any], decode: Callable[[Any], Any]) -> Candidate:
        """From the values of `CANDIDATE_COLUMNS`; `decode` reads the throttle's JSON."""
        keys = [(row[3], row[4]), (row[5], row[6]), (row[7], 1)]
        return cls(
            row[0],
            row[1],
            row[2],
            [(k, n) for k, n in keys if k],
            None if row[8] is None else FlowPace(*decode(row[8])),
            *row[9:13],
        )

    @property
    def exempt(self) -> bool:
        """A run asked to cancel only finalizes: no key holds it back."""
        return self.cancel_requested is not None

    @property
    def paced(self) -> bool:
        """Whether starting it now takes a throttle reservation (its first start, unreserved)."""
        return (
            not self.exempt
            and self.throttle is not None
            and self.attempts == 0
            and self.throttled_until_ms is None
        )

    @property
    def turn(self) -> bool:
        """Whether it holds a turn of a fair queue that a run of its group may take."""
        return (
            self.attempts == 0
            and self.queue_group is not None
            and self.cancel_requested is None
            and self.throttled_until_ms is None  # a reserved start is its own
        )


class Turns(Protocol):
    """The runs of queue groups, first by ready time minus priority (as loaded by a store)."""

    def first(self, group: str, skip: Collection[str]) -> tuple[str, int] | None:
        """The group's first ready, unstarted, unreserved run not in `skip`: (id, its tag)."""
        ...


@dataclass(slots=True)
class ClaimPlan:
    """What one page decided, for the store to write."""

    take: list[str] = field(default_factory=list)
    delayed: list[tuple[str, int, str]] = field(default_factory=list)  #: id, start, reason
    explained: list[tuple[str, str]] = field(default_factory=list)  #: id, reason
    paces: dict[str, pacing.PaceState] = field(default_factory=dict)  #: throttle key -> state
    retagged: dict[str, int] = field(default_factory=dict)  #: id -> its new queue tag
    decided: dict[str, set[str]] = field(default_factory=dict)  #: group -> runs taken, delayed

    def __bool__(self) -> bool:
        return bool(self.take or self.delayed or self.explained or self.paces or self.retagged)


class ClaimPolicy:
    """One claim's decisions, page after page: the slots it counted, the throttle states it
    read and reserved, the runs it took."""

    def __init__(
        self,
        limit: int,
        now_ms: int,
        running: Counter[str] | None = None,
        full: set[str] | None = None,
    ) -> None:
        """`running` and `full` (the slot keys with no free slot) are the policy's to update."""
        self.limit, self.now_ms = limit, now_ms
        self.running: Counter[str] = Counter() if running is None else running
        self.full: set[str] = set() if full is None else full
        self.ahead: set[str] = set()  #: throttle keys whose next start is ahead of now
        self.paces: dict[str, pacing.PaceState | None] = {}  #: loaded throttle states
        self.started: set[str] = set()  #: runs started in the turn of another of their group
        self.taken = 0
        self.plan = ClaimPlan()

    def page(self) -> ClaimPlan:
        """Start deciding a new page; returns its plan."""
        self.plan = ClaimPlan()
        return self.plan

    @property
    def room(self) -> bool:
        """Whether the claim may take more runs."""
        return self.taken < self.limit

    def take(self, run_id: str, group: str | None = None) -> None:
        self.plan.take.append(run_id)
        self.taken += 1
        if group is not None:
            self.plan.decided.setdefault(group, set()).add(run_id)

    def start(self, c: Candidate, turns: Turns) -> bool:
        """Take the run (or the run of its group that starts in its turn) if its keys and its
        throttle let it start now; else it waits and says why."""
        if not self._admit(c):
            return False
        self.take(self._in_turn_of(c, turns), c.queue_group if c.attempts == 0 else None)
        return True

    def explain(self, c: Candidate) -> bool:
        """Whether a full key holds the run back; if so, the run says so."""
        if c.cancel_requested is not None:  # exempt
            return False
        for key, limit in c.keys:
            if self.running.get(key, 0) >= limit:
                self.full.add(key)
                reason = reasons.concurrency_reason(key, limit)
                if c.status_reason != reason:
                    self.plan.explained.append((c.id, reason))
                return True
        return False

    def _admit(self, c: Candidate) -> bool:
        if c.cancel_requested is not None:  # exempt
            return True
        if self.explain(c):
            return False
        if c.throttle is not None and c.paced:
            pace = c.throttle
            start_ms, state = pacing.throttle_start(self.paces.get(pace.key), pace, self.now_ms)
            self.paces[pace.key] = self.plan.paces[pace.key] = state
            if start_ms > self.now_ms:
                self.ahead.add(pace.key)  # the key's runs not reserved yet wait too
                self.plan.delayed.append((c.id, start_ms, reasons.throttled(start_ms, pace)))
                if c.queue_group is not None:
                    self.plan.decided.setdefault(c.queue_group, set()).add(c.id)
                return False
        for key, limit in c.keys:
            self.running[key] += 1
            if self.running[key] >= limit:
                self.full.add(key)
        return True

    def _in_turn_of(self, c: Candidate, turns: Turns) -> str:
        """The run that starts in the turn `c` holds: its group's first one not started yet
        (`c` itself, or another that gives `c` its tag, a later turn of the key)."""
        if not c.turn or c.queue_group is None:
            return c.id
        first = turns.first(c.queue_group, self.plan.decided.get(c.queue_group, set()))
        if first is None or first[0] == c.id:
            return c.id
        run_id, tag = first
        self.plan.retagged[c.id] = self.plan.retagged.get(run_id, tag)  # its turn, if given
        self.started.add(run_id)
        return run_id
