"""Faults under load, with worker processes on one database: workers SIGKILLed (during group
commits), paused past their lease (SIGSTOP, then SIGCONT), PostgreSQL crashed and restarted over
and over, and held down longer than the lease. On PostgreSQL and on one SQLite file.

Afterwards every run has completed (a fault never fails a run), every step made its side
effect, no recorded step started again, and a worker that lost its runs started none of their
steps. Side effects are counted in files the steps write (`cluster.SideEffects`), not in the
engine's records. Loop these before trusting a change: `scripts/fault-loop N`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

import inferpipe as ip
from inferpipe.core.errors import LeaseLost
from inferpipe.core.records import (
    ClaimedRun,
    NewRun,
    NewWait,
    RunStatus,
    StepKind,
    StepRecord,
    StepStatus,
    WaitKind,
)
from inferpipe.engine.worker import Worker
from inferpipe.store.base import FinishResult, Outcome, PlannedEvent, Progress
from inferpipe.store.postgres import PostgresStore, finishes, journal
from inferpipe.store.postgres.database import Conn
from inferpipe.store.sqlite import SQLiteStore
from tests.server.conftest import build_app as build_server_app
from tests.server.conftest import start_server
from tests.store import pg_app
from tests.store.cluster import LEASE_MS, Cluster, eventually, verify
from tests.store.conftest import PostgresServer

RUNS = int(os.environ.get("INFERPIPE_FAULT_RUNS", "600"))
"""Runs of five steps per scenario."""

pytestmark = pytest.mark.timeout(300)
WORKERS = 3
NOW = 1_700_000_000_000
CONCURRENCY = 20
STEP_MS = 100
"""With 60 runs in flight and 100 ms of I/O per step, the load lasts about 10 s: long enough
for two takeovers, with a group commit in progress most of the time."""


async def _postgres_cluster(own_postgres: PostgresServer, folder: Path) -> Cluster:
    url = await own_postgres.new_database()
    store = PostgresStore(url)  # migrate once before the workers race to do it
    await store.open()
    await store.close()
    return Cluster(url, folder, step_ms=STEP_MS)


async def _sqlite_cluster(folder: Path) -> Cluster:
    path = folder / "app.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    return Cluster(f"sqlite:///{path}", folder, step_ms=STEP_MS)


@pytest.fixture(params=["postgres", "sqlite"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    if request.param == "postgres":
        made = await _postgres_cluster(request.getfixturevalue("own_postgres"), tmp_path)
    else:
        made = await _sqlite_cluster(tmp_path)
    try:
        yield made
    finally:
        made.stop_all()
        await made.close()


@pytest.fixture
async def pg_cluster(own_postgres: PostgresServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    made = await _postgres_cluster(own_postgres, tmp_path)
    try:
        yield made
    finally:
        made.stop_all()
        await made.close()


async def _start(cluster: Cluster) -> None:
    for _ in range(WORKERS):
        cluster.start_worker(concurrency=CONCURRENCY)
    await cluster.send_load(RUNS)


async def _held_runs_of_busiest(cluster: Cluster) -> tuple[subprocess.Popen[bytes], list[str]]:
    found: list[tuple[subprocess.Popen[bytes], list[str]]] = []

    async def holding() -> bool:
        found[:] = [await cluster.busiest_worker()]
        if not found[0][1] and await cluster.completed() == RUNS:
            raise AssertionError("the load ended before the fault: raise INFERPIPE_FAULT_RUNS")
        return bool(found[0][1])

    await eventually(holding)
    return found[0]


async def _finished_or_done(cluster: Cluster, runs: int) -> None:
    async def all_done() -> bool:
        return await cluster.completed() >= runs

    await eventually(all_done)


async def test_workers_killed_during_group_commits(cluster: Cluster) -> None:
    """Two workers SIGKILLed in turn mid-load (each replaced): their runs are taken over."""
    await _start(cluster)
    takeovers, finishes = [], []
    for kills in range(2):
        await eventually(lambda k=kills: _completed_at_least(cluster, RUNS * (k + 1) // 10))
        victim, held = await _held_runs_of_busiest(cluster)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.monotonic()
        cluster.start_worker(concurrency=CONCURRENCY)

        async def taken_over(victim: subprocess.Popen[bytes] = victim) -> bool:
            return not await cluster.held_by(victim)

        async def finished(held: list[str] = held) -> bool:
            return await cluster.unfinished(held) == 0

        await eventually(taken_over)
        takeovers.append(time.monotonic() - killed_at)
        await eventually(finished)
        finishes.append(time.monotonic() - killed_at)
    await _finished_or_done(cluster, RUNS)
    effects = await verify(cluster, RUNS)
    print(
        f"\nSIGKILL x2 ({cluster.url.split(':')[0]}): {RUNS} runs x {pg_app.STEPS} steps;"
        f" the killed worker's runs taken over {', '.join(f'{t:.2f}' for t in takeovers)} s"
        f" and finished {', '.join(f'{t:.2f}' for t in finishes)} s after each kill"
        f" (lease {LEASE_MS} ms); side effects repeated: {effects.duplicated()}"
    )


async def test_worker_paused_past_its_lease(cluster: Cluster) -> None:
    """A worker stopped (SIGSTOP) longer than its lease: on PostgreSQL the others take its runs
    over, and once it continues (SIGCONT) it starts no step of them under the leases it held
    (it may take a run again later, under a new lease). SQLite has one writer: a process
    stopped inside a write transaction holds every other writer back until it continues, so
    there the pause lasts three leases, and the stopped worker, once going again, may renew
    a lease that nobody took over meanwhile (the token fences that) but must give up the runs
    taken over and start none of their steps."""
    await _start(cluster)
    await eventually(lambda: _completed_at_least(cluster, RUNS // 10))
    paused, held = await _held_runs_of_busiest(cluster)
    on_postgres = cluster.url.startswith("postgres")
    paused.send_signal(signal.SIGSTOP)
    try:

        async def taken_over() -> bool:
            return not set(held) & set(await cluster.held_by(paused))

        if on_postgres:
            await eventually(taken_over, describe=lambda: cluster.describe(held))
        else:
            await asyncio.sleep(3 * LEASE_MS / 1000)
    finally:
        resumed_ns = time.monotonic_ns()
        paused.send_signal(signal.SIGCONT)
    await _finished_or_done(cluster, RUNS)
    effects = await verify(cluster, RUNS)
    # A step it started before the pause may finish after it (at least once), and it may take
    # a run again later, under a new lease; but once another worker took a run over, the
    # execution that lost it starts no step.
    late, again = effects.started_after(paused.pid, held, resumed_ns)
    if on_postgres:  # every held run was taken over before the pause ended
        assert not late, f"the paused worker started steps of runs it had lost: {late[:10]}"
    lost = effects.started_after_takeover(paused.pid, held)
    assert not lost, f"the paused worker started steps of runs taken over: {lost[:10]}"
    assert paused.poll() is None, "the paused worker died"
    print(
        f"\nSIGSTOP past the lease ({cluster.url.split(':')[0]}): {len(held)} runs held;"
        f" side effects repeated: {effects.duplicated()}; steps of its lost runs the paused"
        f" worker started after claiming them again: {len(again)}"
    )


async def test_postgres_crashed_again_and_again(
    pg_cluster: Cluster, own_postgres: PostgresServer
) -> None:
    """`pg_ctl stop -m immediate` + start, three times in a row, mid-load."""
    await _start(pg_cluster)
    for crash in range(3):
        await eventually(lambda c=crash: _completed_at_least(pg_cluster, RUNS * (c + 1) // 10))
        await asyncio.to_thread(own_postgres.restart)
        await pg_cluster.reconnect()
    await _finished_or_done(pg_cluster, RUNS)
    effects = await verify(pg_cluster, RUNS)
    assert all(proc.poll() is None for proc in pg_cluster.workers), "a worker died"
    print(f"\n3 crashes: side effects repeated: {effects.duplicated()}")


async def test_postgres_down_longer_than_the_lease(
    pg_cluster: Cluster, own_postgres: PostgresServer
) -> None:
    """The server is down for three leases: every lease ends, the workers stop their runs and
    take them up again once it is back."""
    await _start(pg_cluster)
    await eventually(lambda: _completed_at_least(pg_cluster, RUNS // 10))
    await asyncio.to_thread(own_postgres.restart, 3 * LEASE_MS / 1000)
    await pg_cluster.reconnect()
    await _finished_or_done(pg_cluster, RUNS)
    effects = await verify(pg_cluster, RUNS)
    assert all(proc.poll() is None for proc in pg_cluster.workers), "a worker died"
    print(f"\noutage of {3 * LEASE_MS} ms: side effects repeated: {effects.duplicated()}")


async def _completed_at_least(cluster: Cluster, runs: int) -> bool:
    return await cluster.completed() >= runs


async def test_a_stale_write_beside_a_valid_one_in_one_batch(own_postgres: PostgresServer) -> None:
    """Group commit fences each write by its own lease: a stale lease's write for a run and
    the new holder's write for the same step, in one statement, give LeaseLost to the first
    and record the second."""
    store = PostgresStore(await own_postgres.new_database(), "ws")
    await store.open()
    try:
        await store.create_runs([NewRun("r1", "f", [], [], NOW)], NOW)
        (old,) = await store.claim("worker-a", ["f"], 1, NOW, 1000)
        (new,) = await store.claim("worker-b", ["f"], 1, NOW + 2000, 1000)  # a takes over
        assert new.lease.token > old.lease.token

        writes = [
            journal.JournalWrite(old.lease, Progress(steps=[_step("r1", "stale")])),
            journal.JournalWrite(new.lease, Progress(steps=[_step("r1", "fresh")])),
        ]
        results = await store._db.read(lambda c: journal.write(c, writes))
        assert isinstance(results[0], LeaseLost)
        assert isinstance(results[1], journal.JournalResult) and not results[1].final_keys
        (recorded,) = await store.get_steps("r1")
        assert recorded.output == "fresh"
    finally:
        await store.close()


async def test_a_store_failure_under_a_step_hands_the_run_back(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    """The store fails while a step runs (the server is down longer than the store retries):
    the run is not failed; it is taken up again once the server is back, and completes."""
    effects = tmp_path / "effects"
    in_step, gate = asyncio.Event(), asyncio.Event()
    app = ip.App("faults")

    @app.function(id="two-steps")
    async def two_steps(ctx: ip.Context) -> str:
        async def first() -> str:
            with effects.open("a") as out:
                out.write("first\n")
            in_step.set()
            await gate.wait()
            return "one"

        def second() -> str:
            with effects.open("a") as out:
                out.write("second\n")
            return "two"

        return await ctx.step.run("first", first) + await ctx.step.run("second", second)

    await app.start(store=PostgresStore(await own_postgres.new_database(), retry_s=0.5))
    worker = Worker(app.engine, lease_ms=1000, poll_ms=100)
    running = asyncio.create_task(worker.run())
    try:
        run_id = await app.invoke("two-steps")
        await asyncio.wait_for(in_step.wait(), 30)
        outage = asyncio.create_task(asyncio.to_thread(own_postgres.restart, 2.0))
        await asyncio.sleep(0.5)  # the server is down now
        gate.set()  # the step's record cannot be written: the store gives up after 0.5 s
        await outage
        run = await app.result(run_id, timeout=60)
    finally:
        worker.notify_shutdown()
        await running
        await app.close()
    assert run.status is ip.RunStatus.COMPLETED and run.output == "onetwo"
    # `second` starts while `first`'s record is on its way (step records are pipelined); the
    # write failed, so both run again: each step at least once, each result recorded once.
    lines = effects.read_text().splitlines()
    assert lines in (["first", "first", "second"], ["first", "second", "first", "second"])


async def test_readiness_follows_whether_the_store_can_be_written(
    own_postgres: PostgresServer,
) -> None:
    """`/readyz` commits a write: a read-only database and a server that is down answer 503,
    and 200 again once they can be written."""
    url = await own_postgres.new_database()
    name = url.rsplit("/", 1)[1]
    app = build_server_app(url)
    api, stop = start_server(app)

    def ready() -> int:
        return httpx.get(f"http://127.0.0.1:{api.port}/readyz", timeout=10).status_code

    async def set_read_only(on: bool) -> None:
        conn = await asyncpg.connect(own_postgres.url)
        try:
            await conn.execute(
                f"ALTER DATABASE {name} SET default_transaction_read_only = {'on' if on else 'off'}"
            )
            await conn.execute(  # sessions pick the setting up when they connect
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
        finally:
            await conn.close()

    try:
        assert await asyncio.to_thread(ready) == 200
        await set_read_only(True)
        response = await asyncio.to_thread(
            httpx.get, f"http://127.0.0.1:{api.port}/readyz", timeout=10
        )
        assert response.status_code == 503
        assert "read-only" in response.json()["error"]["message"]
        await set_read_only(False)
        assert await asyncio.to_thread(ready) == 200
        outage = asyncio.create_task(asyncio.to_thread(own_postgres.restart, 3.0))
        seen = set()
        while not outage.done():
            seen.add(await asyncio.to_thread(ready))
        await outage
        assert 503 in seen
        assert await asyncio.to_thread(ready) == 200
    finally:
        stop()
        await app.close()


async def test_lease_tokens_grow_across_a_crash(own_postgres: PostgresServer) -> None:
    """A claim is durable before it returns: after a crash the run's next lease has a greater
    token, so the first holder's writes are fenced (with a lost claim the token would repeat)."""
    store = PostgresStore(await own_postgres.new_database(), "ws")
    await store.open()
    try:
        await store.create_runs([NewRun("r1", "f", [], [], NOW)], NOW)
        (first,) = await store.claim("worker-a", ["f"], 1, NOW, 1000)
        await asyncio.to_thread(own_postgres.restart)
        (second,) = await store.claim("worker-a", ["f"], 1, NOW + 2000, 1000)
        assert second.lease.token > first.lease.token and second.taken_over
        with pytest.raises(LeaseLost):
            await store.commit(first.lease, Progress(steps=[_step("r1", "stale")]), NOW)
    finally:
        await store.close()


def _step(run_id: str, output: str) -> StepRecord:
    return StepRecord(run_id, "s", "s", StepKind.RUN, StepStatus.COMPLETED, 0, output=output)


async def test_a_process_stopped_inside_a_transaction_does_not_hold_its_run(
    own_postgres: PostgresServer,
) -> None:
    """A worker stopped while it holds a run's row lock in a transaction (finishing it, say):
    the server ends its session after `IDLE_IN_TRANSACTION_MS`, and the run, whose lease
    expired, is taken over while that worker is still stopped."""
    url = await own_postgres.new_database()
    stalled, other = PostgresStore(url, "ws"), PostgresStore(url, "ws")
    await stalled.open()
    await other.open()
    try:
        await stalled.create_runs([NewRun("r1", "f", [], [], NOW)], NOW)
        await stalled.claim("stalled", ["f"], 1, NOW, 1000)
        locked = asyncio.Event()

        async def stop_inside_a_transaction(conn: Conn) -> None:
            await conn.execute("SELECT 1 FROM runs WHERE id = 'r1' FOR UPDATE")
            locked.set()
            await asyncio.sleep(60)  # the session sits idle in its transaction

        holder = asyncio.create_task(stalled._db.transaction(stop_inside_a_transaction))
        await asyncio.wait_for(locked.wait(), 10)
        taken: list[ClaimedRun] = []
        while not taken:
            taken = await other.claim("other", ["f"], 1, NOW + 2000, 1000)
            await asyncio.sleep(0.2)
        assert not holder.done()  # the stopped worker never went on
        assert taken[0].lease.owner == "other" and taken[0].taken_over
        holder.cancel()
    finally:
        await stalled.close()
        await other.close()


async def test_a_process_stopped_while_preparing_a_statement_does_not_hold_its_run(
    own_postgres: PostgresServer,
) -> None:
    """asyncpg prepares a statement new to its connection with Parse, Describe and Flush, and
    sends Bind, Execute and Sync once it has read the answer. A worker stopped in that round
    trip, inside a transaction holding a run's row lock, leaves its session "active" (the
    idle-in-transaction timeout does not apply): another process's claim ends that session
    (`cut_stalled_sessions`), the lock goes, and the run is taken over while the worker is
    still stopped (before, the run stayed locked for as long as the worker was stopped)."""
    url = await own_postgres.new_database()
    stalled, other = PostgresStore(url, "ws"), PostgresStore(url, "ws")
    await stalled.open()
    await other.open()
    try:
        await stalled.create_runs([NewRun("r1", "f", [], [], NOW)], NOW)
        await stalled.claim("stalled", ["f"], 1, NOW, 1000)
        sent = asyncio.Event()

        async def stop_while_preparing(conn: Conn) -> None:
            await conn.execute("SELECT 1 FROM runs WHERE id = 'r1' FOR UPDATE")
            # What asyncpg writes to prepare a statement; then the process stops: it reads
            # nothing more and sends nothing more.
            transport = conn._con._transport  # type: ignore[attr-defined]
            transport.pause_reading()
            transport.write(_parse_describe_flush("SELECT id FROM runs WHERE id = $1"))
            sent.set()
            await asyncio.sleep(3600)

        holder = asyncio.create_task(stalled._db.transaction(stop_while_preparing))
        await asyncio.wait_for(sent.wait(), 10)
        taken: list[ClaimedRun] = []
        while not taken:
            taken = await other.claim("other", ["f"], 1, NOW + 2000, 1000)
            await asyncio.sleep(0.2)
        assert not holder.done()  # the stopped worker never went on
        assert taken[0].lease.owner == "other" and taken[0].taken_over
        holder.cancel()
    finally:
        await stalled.close()
        await other.close()


def _parse_describe_flush(query: str) -> bytes:
    """The frontend messages Parse (unnamed statement, no parameter types), Describe of that
    statement, and Flush."""

    def message(kind: bytes, body: bytes) -> bytes:
        return kind + (len(body) + 4).to_bytes(4, "big") + body

    parse = message(b"P", b"\0" + query.encode() + b"\0" + (0).to_bytes(2, "big"))
    return parse + message(b"D", b"S\0") + message(b"H", b"")


async def test_finish_batches_that_lock_each_others_waiting_runs_both_commit(
    own_postgres: PostgresServer,
) -> None:
    """Two batches of finishes, each sending an event that a run locked by the other batch
    waits for (the parent of the other's finishing run). Each batch locks its finishing runs
    and their parents first and the runs its events wake last, so here they deadlock:
    PostgreSQL ends one, which runs again once the other has committed. Both finishes and both
    waits' resolutions are committed (and the deadlock did happen)."""
    url = await own_postgres.new_database()
    store = PostgresStore(url, "ws")
    await store.open()
    blocker = await asyncpg.connect(url)
    try:
        await store.create_runs([NewRun(p, "parent", [], [], NOW) for p in ("p1", "p2")], NOW)
        parents = {c.run.id: c for c in await store.claim("w", ["parent"], 2, NOW, 60_000)}
        for parent, event in (("p1", "from-c2"), ("p2", "from-c1")):
            step = StepRecord(
                parent, "w", "w", StepKind.WAIT_FOR_EVENT, StepStatus.WAITING, 0, seq=1
            )
            wait = NewWait(parent, WaitKind.STEP, event, None, "w")
            await store.commit(parents[parent].lease, Progress(steps=[step], waits=[wait]), NOW)
        await store.create_runs(
            [NewRun(f"c{i}", "child", [], [], NOW, parent_run_id=f"p{i}") for i in (1, 2)], NOW
        )
        children = {c.run.id: c for c in await store.claim("w", ["child"], 2, NOW, 60_000)}

        def finish(child: str) -> finishes.Finish:
            event = PlannedEvent(ip.Event(f"from-{child}", {}, id=f"event-of-{child}", ts_ms=NOW))
            outcome = Outcome(RunStatus.COMPLETED, output=child)
            return finishes.Finish("ws", children[child].lease, outcome, [event], NOW)

        # Both batches lock their rows, then wait here on the events' ids: once this
        # transaction is gone they go on at once, each to the run the other holds.
        held = blocker.transaction()
        await held.start()
        await blocker.execute(
            "INSERT INTO event_ids (workspace, id, received_at_ms)"
            " VALUES ('ws', 'event-of-c1', $1), ('ws', 'event-of-c2', $1)",
            NOW,
        )
        deadlocks = await _deadlocks(blocker)
        batches = [
            asyncio.create_task(
                store._db.transaction(
                    lambda c, child=child: finishes.finish_many(c, [finish(child)])
                )
            )
            for child in ("c1", "c2")
        ]

        async def both_wait() -> bool:
            waiting = await blocker.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
            )
            return int(waiting) == 2

        await eventually(both_wait, 60)
        await held.rollback()
        resumed = [FinishResult(work_ready=True)]  # each finish resumes the other's parent
        assert await asyncio.gather(*batches) == [resumed, resumed]

        async def deadlock_counted() -> bool:
            return await _deadlocks(blocker) > deadlocks

        await eventually(deadlock_counted, 60)
        for parent, child in (("p1", "c2"), ("p2", "c1")):
            (step,) = await store.get_steps(parent)
            assert step.status is StepStatus.COMPLETED
            assert step.output["id"] == f"event-of-{child}"
            run = await store.get_run(child)
            assert run is not None and run.status is RunStatus.COMPLETED
    finally:
        await blocker.close()
        await store.close()


async def _deadlocks(conn: asyncpg.Connection) -> int:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(
        await conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    )
