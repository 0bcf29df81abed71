"""What only the PostgreSQL store has: migrations raced by many processes, administration,
LISTEN/NOTIFY, and how it fails when the server is away."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest

import inferpipe as ip
from inferpipe.core.errors import StoreError
from inferpipe.core.events import Event
from inferpipe.core.records import (
    NewRun,
    NewWait,
    RunStatus,
    StepKind,
    StepRecord,
    StepStatus,
    WaitKind,
)
from inferpipe.engine.engine import Engine
from inferpipe.engine.worker import Worker
from inferpipe.store import admin, store_from_url
from inferpipe.store.base import Outcome, PlannedEvent, Progress, WakeClaim
from inferpipe.store.migrations import migration_files
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.postgres.listener import APPLICATION_NAME
from inferpipe.streams.store import StorePubSub
from tests.servers import free_port
from tests.store.conftest import PostgresServer, unique_workspace
from tests.streams.test_conformance import take

NOW = 1_700_000_000_000
MIGRATIONS = [name for _, name, _ in migration_files("postgres")]
LATEST = max(version for version, _, _ in migration_files("postgres"))


async def test_many_processes_migrating_at_once_apply_each_migration_once(
    postgres: PostgresServer,
) -> None:
    url = await postgres.new_database()
    stores = [PostgresStore(url) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        state = await admin.status(url)
        assert [m["name"] for m in state["applied"]] == MIGRATIONS
        assert state["pending"] == [] and state["version"] == LATEST
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_admin_status_and_migrate_on_postgres(postgres: PostgresServer) -> None:
    url = await postgres.new_database()
    before = await admin.status(url)
    assert before["dialect"] == "postgres" and before["version"] == 0
    assert before["pending"] == MIGRATIONS
    done = await admin.migrate(url)
    assert done["applied_now"] == MIGRATIONS and done["pending"] == []
    again = await admin.migrate(url)
    assert again["applied_now"] == [] and again["version"] == LATEST


async def test_admin_status_and_migrate_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'app.db'}"
    sqlite_migrations = [name for _, name, _ in migration_files("sqlite")]
    before = await admin.status(url)
    assert before["dialect"] == "sqlite" and before["pending"] == sqlite_migrations
    assert not (tmp_path / "db" / "app.db").exists()  # status creates nothing
    done = await admin.migrate(url)
    assert done["applied_now"] == sqlite_migrations and done["pending"] == []


def test_url_selects_the_store_and_passwords_are_hidden() -> None:
    store = store_from_url("postgresql://u:secret@db.example:5432/app", "ws")
    assert isinstance(store, PostgresStore) and store.workspace == "ws"
    shown = admin.redact_url("postgresql://u:secret@db.example:5432/app")
    assert shown == "postgresql://u:***@db.example:5432/app"


async def test_unreachable_server_fails_clearly_after_retrying() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x", retry_s=0.3)
    with pytest.raises(StoreError, match="unreachable"):
        await store.open()
    await store.close()


async def test_missing_database_fails_at_once(postgres: PostgresServer) -> None:
    store = PostgresStore(postgres.url.rsplit("/", 1)[0] + "/no_such_db", retry_s=30)
    with pytest.raises(StoreError, match="no_such_db"):
        await asyncio.wait_for(store.open(), timeout=10)
    await store.close()


async def test_listen_wakes_when_runs_become_ready(postgres: PostgresServer) -> None:
    workspace = unique_workspace()
    mine = PostgresStore(postgres.url, workspace)
    await mine.open()
    other = mine.for_workspace(workspace + "-other")
    woken = asyncio.Event()
    unlisten = await mine.listen(woken.set)
    try:
        await other.ingest([_planned("o", runs=1)], NOW)
        await mine.ingest([_planned("nothing-starts")], NOW)  # no run made ready: no NOTIFY
        await mine.ingest([_planned("m", runs=1)], NOW)
        await asyncio.wait_for(woken.wait(), timeout=10)
        woken.clear()
        # notifications arrive in commit order: the ones above are all delivered by now
        await mine.ingest([_planned("m2", runs=1)], NOW)
        await asyncio.wait_for(woken.wait(), timeout=10)
    finally:
        await unlisten()
        await mine.close()


async def test_notifications_of_other_workspaces_do_not_wake(postgres: PostgresServer) -> None:
    workspace = unique_workspace()
    mine = PostgresStore(postgres.url, workspace)
    await mine.open()
    calls: list[str] = []
    unlisten = await mine.listen(lambda: calls.append("woken"))
    try:
        await mine.for_workspace(workspace + "-x").ingest([_planned("o", runs=1)], NOW)
        marker = asyncio.Event()
        unlisten_marker = await mine.for_workspace(workspace + "-x").listen(marker.set)
        await mine.for_workspace(workspace + "-x").ingest([_planned("o2", runs=1)], NOW)
        await asyncio.wait_for(marker.wait(), timeout=10)
        await unlisten_marker()
        assert calls == []
    finally:
        await unlisten()
        await mine.close()


async def test_the_listen_connection_outlives_its_subscriptions_until_the_store_closes(
    postgres: PostgresServer,
) -> None:
    url = await postgres.new_database()
    mine, theirs = PostgresStore(url), PostgresStore(url)
    await mine.open()
    await theirs.open()
    try:
        for n in range(3):  # results awaited one after another: one connection for them all
            finished = asyncio.Event()
            unlisten = await mine.listen(finished.set, run_id=f"r{n}")
            await theirs.create_runs([NewRun(f"r{n}", "fn", [], [], NOW)], NOW)
            (claimed,) = await theirs.claim("w", ["fn"], 1, NOW, 10_000)
            await theirs.finish(claimed.lease, Outcome(RunStatus.COMPLETED), [], NOW)
            await asyncio.wait_for(finished.wait(), timeout=10)
            await unlisten()
            assert await _listening(url) == 1
    finally:
        await mine.close()
        await theirs.close()
    for _ in range(200):  # the server ends the closed session's backend on its own time
        if await _listening(url) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _listening(url) == 0


async def test_wake_ups_and_stream_appends_share_one_listen_connection(
    postgres: PostgresServer,
) -> None:
    url = await postgres.new_database()
    workspace = unique_workspace()
    mine, theirs = PostgresStore(url, workspace), PostgresStore(url, workspace)
    await mine.open()
    await theirs.open()  # another process's store: its own pool, not listening
    woken = asyncio.Event()
    unlisten = await mine.listen(woken.set)
    unlisten_view = await mine.for_workspace(workspace + "-b").listen(lambda: None)
    consumer, producer = StorePubSub.for_store(mine), StorePubSub.for_store(theirs)
    try:
        async with await consumer.subscribe("t") as sub:
            assert await _listening(url) == 1
            await producer.publish("t", "before")
            assert [e.data for e in await take(sub, 1)] == ["before"]
            await theirs.ingest([_planned("m", runs=1)], NOW)
            await asyncio.wait_for(woken.wait(), timeout=10)
            woken.clear()
            await _cut_listening(url)  # both are restored on the one reconnected connection
            await asyncio.wait_for(woken.wait(), timeout=10)
            await producer.publish("t", "after")
            assert [e.data for e in await take(sub, 1)] == ["after"]
    finally:
        await unlisten_view()
        await unlisten()
        await consumer.close()
        await producer.close()
        await mine.close()
        await theirs.close()


async def _listening(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = $1 AND pid <> pg_backend_pid()",
                APPLICATION_NAME,
            )
        )
    finally:
        await conn.close()


async def _cut_listening(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1",
            APPLICATION_NAME,
        )
    finally:
        await conn.close()


class _Counter(logging.Handler):
    """Sets `reached` once `count` records mention `text`."""

    def __init__(self, text: str, count: int) -> None:
        super().__init__(logging.WARNING)
        self.text, self.left = text, count
        self.reached = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.left -= 1
            if self.left <= 0:
                self.reached.set()


async def test_worker_keeps_going_while_the_database_is_away() -> None:
    """Every store call fails (nothing listens on the port): the worker logs, backs off and
    carries on until told to stop, instead of dying."""
    app = ip.App("away")

    @app.function(id="f", trigger=ip.on_event("x"))
    async def f(ctx: ip.Context) -> None:
        return None

    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x", retry_s=0.1)
    await store._db.start()  # no migration: the server is not there
    worker = Worker(Engine(store, app.registry), poll_ms=50)
    failures = _Counter("store unavailable", 3)
    logger = logging.getLogger("inferpipe.worker")
    logger.addHandler(failures)
    loop = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(failures.reached.wait(), timeout=20)
        assert not loop.done()
    finally:
        logger.removeHandler(failures)
        worker.notify_shutdown()
        await asyncio.wait_for(loop, timeout=10)
        await store.close()


def _planned(name: str, *, runs: int = 0) -> PlannedEvent:
    event = Event(name, {}, id=f"{name}-{unique_workspace()}", ts_ms=NOW)
    made = [NewRun(f"run-{unique_workspace()}", "fn", [event.id or ""], [], NOW)] * runs
    return PlannedEvent(event, made)


async def test_wake_claim_reads_again_a_journal_written_after_its_snapshot(
    postgres: PostgresServer,
) -> None:
    """The statement that resolves a wait and takes its run reads the journal in its snapshot,
    taken before the run's row lock is granted: a run claimed, given a step and parked again
    in between (its `attempts` moved) is read again, and the step is in the journal taken."""
    store = PostgresStore(postgres.url, unique_workspace())
    await store.open()
    other = await asyncpg.connect(postgres.url)
    try:
        await store.create_runs([NewRun("run-moved", "fn", [], [], NOW)], NOW)
        (claimed,) = await store.claim("w1", ["fn"], 1, NOW, 10_000)
        wait = NewWait(claimed.run.id, WaitKind.STEP, "go", None, "wait")
        waiting = StepRecord(
            claimed.run.id, "wait", "wait", StepKind.WAIT_FOR_EVENT, StepStatus.WAITING
        )
        await store.commit(claimed.lease, Progress(steps=[waiting], waits=[wait]), NOW)
        await store.park(claimed.lease, RunStatus.WAITING, None, NOW)

        holder = other.transaction()
        await holder.start()
        await other.execute("SELECT 1 FROM runs WHERE id = 'run-moved' FOR UPDATE")
        claim = WakeClaim("w2", ["fn"], 10_000)
        ingest = asyncio.create_task(store.ingest([_planned("go")], NOW + 1, claim=claim))
        while not await other.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            assert not ingest.done()
            await asyncio.sleep(0.01)
        # as a claim, a step and a park of another worker would leave it
        await other.execute(
            "UPDATE runs SET attempts = attempts + 1, lease_token = lease_token + 1"
            " WHERE id = 'run-moved'"
        )
        await other.execute(
            "INSERT INTO steps (run_id, key, seq, name, kind, status, output)"
            " VALUES ('run-moved', 'more', 2, 'more', 'run', 'completed', '7')"
        )
        await holder.commit()
        (taken,) = (await ingest).runs_claimed
    finally:
        await other.close()
        await store.close()
    assert taken.run.executions == 3 and taken.lease.token == claimed.lease.token + 2
    assert taken.journal["more"].output == 7
    assert taken.journal["wait"].status is StepStatus.COMPLETED
