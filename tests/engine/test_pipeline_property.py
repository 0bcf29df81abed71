"""Properties of pipelined step records (`Limits.pipeline_steps`): whatever the lag bound and
wherever a write fails (as a crash would lose it and everything after it), the durable journal
is always a prefix of the steps in the order they were recorded, a replay gives the outcome of
the run without a failure, and only steps whose record was not durable run again."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferpipe as ip
from inferpipe.core.errors import StoreError
from inferpipe.core.records import Lease
from inferpipe.store.base import Progress, ProgressResult
from inferpipe.testing import Harness

op = st.one_of(
    st.tuples(st.just("run"), st.integers(-1000, 1000)),
    st.tuples(st.just("log"), st.text(max_size=10)),
    st.tuples(st.just("sleep"), st.integers(1, 10_000)),
    st.tuples(st.just("send"), st.integers(0, 100)),
)
programs = st.lists(op, min_size=1, max_size=30)


class Writes:
    """The run's store commits: the step keys each one made durable, in order, and a failure
    of the `fail_at`-th (nothing of it written), as a crash mid-pipeline would lose it."""

    def __init__(self, fail_at: int | None) -> None:
        self.fail_at = fail_at
        self.durable: list[str] = []
        self.prefixes: list[list[str]] = []
        self.count = 0

    def wrap(self, store: Any, function_id: str) -> None:
        commit = store.commit

        async def watched(lease: Lease, progress: Progress, now_ms: int) -> ProgressResult:
            run = await store.get_run(lease.run_id)
            if run is None or run.function_id != function_id:
                return await commit(lease, progress, now_ms)  # type: ignore[no-any-return]
            self.count += 1
            if self.count - 1 == self.fail_at:
                raise StoreError("disk I/O error (injected)")
            result = await commit(lease, progress, now_ms)
            self.durable += [s.key for s in progress.steps]
            self.prefixes.append(list(self.durable))
            return result  # type: ignore[no-any-return]

        store.commit = watched


def build_app(program: list[tuple[str, Any]], lag: int, executed: list[str]) -> ip.App:
    app = ip.App("pipelined", limits=ip.Limits(pipeline_steps=lag))

    @app.function(id="prog", retries=0)
    async def prog(ctx: ip.Context) -> list[Any]:
        out: list[Any] = []
        for i, (kind, arg) in enumerate(program):
            if kind == "run":

                async def step(i: int = i, arg: int = arg) -> int:
                    executed.append(f"run:{i}")
                    return arg * 2

                out.append(await ctx.step.run("run", step))
            elif kind == "log":
                ctx.logger.info(arg, i=i)
            elif kind == "sleep":
                out.append(await ctx.step.sleep("sleep", arg))
            else:
                sent = await ctx.step.send_event("send", ip.Event("prop/sent", {"v": arg}))
                out.append(len(sent))
        return out

    return app


def model(program: list[tuple[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for kind, arg in program:
        if kind == "run":
            out.append(arg * 2)
        elif kind == "sleep":
            out.append(None)
        elif kind == "send":
            out.append(1)
    return out


async def outcome(
    program: list[tuple[str, Any]], lag: int, fail_at: int | None, path: Path
) -> tuple[tuple[Any, ...], Writes, list[str]]:
    executed: list[str] = []
    writes = Writes(fail_at)
    app = build_app(program, lag, executed)
    async with Harness(app, path=path) as h:
        writes.wrap(h.engine.store, "prog")
        run = await h.settle(await h.invoke("prog"))
        assert run is not None
        steps = sorted(await h.steps(run.id), key=lambda s: s.seq)
        logs = [(lg.message, lg.meta) for lg in await h.logs(run.id)]
        journal = [
            (s.key, s.status, s.output if s.kind is ip.StepKind.RUN else None) for s in steps
        ]
        return (run.status, run.output, journal, logs), writes, executed


async def _check(program: list[tuple[str, Any]], lag: int, fail_at: int, folder: Path) -> None:
    plain, plain_writes, plain_executed = await outcome(program, lag, None, folder / "plain.db")
    assert plain[0] is ip.RunStatus.COMPLETED and plain[1] == model(program)
    order = plain_writes.durable  # the order the steps were recorded in
    for prefix in plain_writes.prefixes:
        assert prefix == order[: len(prefix)]
    if plain_writes.count == 0:
        return
    at = fail_at % plain_writes.count
    failed, writes, executed = await outcome(program, lag, at, folder / "failed.db")
    # Replay equals first run: same outcome, journal and logs, each result recorded once.
    assert failed == plain
    # What was durable before the failed write is a prefix of the recorded order ...
    before = writes.prefixes[at - 1] if at > 0 else []
    assert before == order[: len(before)]
    # ... and only steps not in it ran again (each at least once), at most the lag bound
    # and the step in flight; every step recorded durably ran exactly once.
    runs = [i for i, (kind, _) in enumerate(program) if kind == "run"]
    key_of = {f"run:{i}": "run" if n == 0 else f"run:{n}" for n, i in enumerate(runs)}
    assert set(executed) == set(plain_executed) == set(key_of)
    twice = [label for label in key_of if executed.count(label) == 2]
    assert all(executed.count(label) in (1, 2) for label in key_of)
    assert all(key_of[label] not in before for label in twice), (twice, before)
    assert len(twice) <= lag + 1, (twice, lag)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=programs, lag=st.integers(0, 6), fail_at=st.integers(0, 1000))
def test_pipelined_records_commit_in_order_and_a_lost_tail_replays_the_same(
    program: list[tuple[str, Any]], lag: int, fail_at: int
) -> None:
    with tempfile.TemporaryDirectory(prefix="inferpipe-pipe-") as folder:
        asyncio.run(_check(program, lag, fail_at, Path(folder)))
