"""PostgresStore: many workers on many machines sharing one PostgreSQL database."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from inferpipe.core.errors import InvalidScoreError, RunNotFoundError
from inferpipe.core.records import (
    ClaimedRun,
    IngestResult,
    Lease,
    LogRecord,
    NewRun,
    Run,
    RunStatus,
    StepRecord,
)
from inferpipe.core.scores import ScoreRecord
from inferpipe.store import payloads
from inferpipe.store.base import (
    Claim,
    FinishResult,
    Outcome,
    Page,
    PlannedEvent,
    Progress,
    ProgressResult,
    RunFilter,
    ScoreFilter,
    WakeClaim,
)
from inferpipe.store.blobs import BlobStore, blob_store_from_url
from inferpipe.store.payloads import MARKER
from inferpipe.store.postgres import claims, finishes, intake, schema, scores, work
from inferpipe.store.postgres.blobs import PostgresBlobStore
from inferpipe.store.postgres.database import (
    CHANNEL,
    FINISHED_CHANNEL,
    IDLE_IN_TRANSACTION_MS,
    POOL_SIZE,
    RETRY_S,
    Conn,
    Database,
    Runner,
    cut_stalled_sessions,
    notify,
)
from inferpipe.store.postgres.finish_writer import FinishWriter
from inferpipe.store.postgres.graphs import PostgresGraphs
from inferpipe.store.postgres.journal import JournalWriter
from inferpipe.store.postgres.keys import PostgresKeys
from inferpipe.store.postgres.listener import Notifications
from inferpipe.store.postgres.rows import (
    RUN_COLUMNS,
    STEP_COLUMNS,
    dec,
    log_from_row,
    run_from_row,
    step_from_row,
)
from inferpipe.store.postgres.secrets import PostgresSecrets
from inferpipe.store.postgres.stream_log import PostgresStreamLog
from inferpipe.store.postgres.webhooks import PostgresWebhooks
from inferpipe.store.shadows import SQLShadows

_log = logging.getLogger("inferpipe.store.postgres")

CUT_STALLED_EVERY_S = IDLE_IN_TRANSACTION_MS / 2000
"""How often a process's claims look for sessions of stopped processes to end: with the wait
that qualifies them, a stopped process's rows are free after 1 to 1.5 times that timeout."""


class PostgresStore:
    """A `Store` on PostgreSQL: claims with `FOR UPDATE SKIP LOCKED`, leases fenced by token,
    wake-ups across processes with LISTEN/NOTIFY (see `listen`), flow control enforced in the
    database under advisory locks, so limits hold across every worker process and machine.

    Args:
        url: ``postgresql://user:password@host:port/database``.
        workspace: the workspace this view is scoped to.
        pool_size: connections held at most by this process.
        retry_s: how long an operation retries through a lost server before `StoreError`.
        blobs: where large payloads go; by default $INFERPIPE_BLOBS_URL, else the database's
            own `blobs` table (shared by every worker that reaches the database).

    Example::

        store = PostgresStore("postgresql://inferpipe@db:5432/inferpipe")
        await app.start(store=store)        # applies pending migrations
    """

    def __init__(
        self,
        url: str,
        workspace: str = "default",
        *,
        pool_size: int = POOL_SIZE,
        retry_s: float = RETRY_S,
        blobs: BlobStore | None = None,
        _db: Database | None = None,
        _journal: JournalWriter | None = None,
        _finishes: FinishWriter | None = None,
        _renewals: Database | None = None,
        _notifications: Notifications | None = None,
    ) -> None:
        self.url = url
        self.workspace = workspace
        self._db = _db or Database(url, pool_size=pool_size, retry_s=retry_s)
        self.blobs: BlobStore = blobs or _default_blobs(self._db)
        self._journal = _journal or JournalWriter(self._db)
        self._finishes = _finishes or FinishWriter(self._db)
        # Lease renewals on a connection of their own: they never queue for a pool connection
        # behind bulk work (a worker whose renewals wait loses its leases and stops its runs).
        self._renewals = _renewals or Database(url, pool_size=1, retry_s=retry_s)
        self._notifications = _notifications or Notifications(url)
        self._owner = _db is None
        self._flow_checks = False  #: the last claim met runs that flow control checks
        self._cut_stalled_at = 0.0  #: when claims next end stalled sessions (monotonic)
        self.keys = PostgresKeys(self._db)
        self.graphs = PostgresGraphs(self._db, workspace)
        self.shadows = SQLShadows(Runner(self._db), workspace)
        self.secrets = PostgresSecrets(self._db)
        self.stream_log = PostgresStreamLog(self._db, self._notifications)
        self.webhooks = PostgresWebhooks(self._db)

    def for_workspace(self, workspace: str) -> PostgresStore:
        return PostgresStore(
            self.url,
            workspace,
            blobs=self.blobs,
            _db=self._db,
            _journal=self._journal,
            _finishes=self._finishes,
            _renewals=self._renewals,
            _notifications=self._notifications,
        )

    async def open(self) -> None:
        await self._db.start()
        await self._renewals.start()
        await schema.migrate(self._db)

    async def close(self) -> None:
        if self._owner:
            await self._notifications.close()
            await self._db.close()
            await self._renewals.close()

    async def schema_version(self) -> int:
        return int((await schema.status(self._db))["version"])

    async def listen(
        self, callback: Callable[[], None], *, run_id: str | None = None
    ) -> Callable[[], Awaitable[None]]:
        """LISTEN/NOTIFY on the process's one listening connection (`Notifications`), told of
        this process's changes too; `callback` also runs after each reconnection (notifications
        sent meanwhile are lost)."""
        channel, wanted = (
            (CHANNEL, self.workspace)
            if run_id is None
            else (FINISHED_CHANNEL, f"{self.workspace} {run_id}")
        )

        def on_notify(payload: str) -> None:
            if payload == wanted:
                callback()

        return await self._notifications.subscribe(channel, on_notify, callback)

    # events -------------------------------------------------------------------------------
    async def ingest(
        self, events: list[PlannedEvent], now_ms: int, *, claim: WakeClaim | None = None
    ) -> IngestResult:
        if not events:
            return IngestResult([], [], [], [], [])

        # The names' locks are taken with BEGIN: the events are stored and their waits looked
        # up in one statement after it.
        return await self._db.transaction(
            lambda c: intake.ingest(c, self.workspace, events, now_ms, locked=True, claim=claim),
            first=intake.lock_names_sql(self.workspace, intake.event_names(events)),
        )

    async def get_event(self, event_id: str) -> dict[str, Any] | None:
        row = await self._db.read(
            lambda c: c.fetchrow(
                "SELECT body, received_at_ms FROM events WHERE workspace = $1 AND id = $2"
                " ORDER BY seq DESC LIMIT 1",
                self.workspace,
                event_id,
            )
        )
        return None if row is None else {**dec(row[0]), "received_at": row[1]}

    async def list_events(
        self,
        *,
        name: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        where, params = _filters(
            self.workspace,
            ("name = {}", name),
            ("received_at_ms >= {}", since_ms),
            ("received_at_ms < {}", until_ms),
            ("seq < {}", int(cursor) if cursor else None),
        )
        sql = (
            f"SELECT seq, body, received_at_ms FROM events WHERE {where}"
            f" ORDER BY seq DESC LIMIT ${len(params) + 1}"
        )
        rows = await self._db.read(lambda c: c.fetch(sql, *params, limit + 1))
        items = [{**dec(r[1]), "received_at": r[2]} for r in rows[:limit]]
        nxt = str(rows[limit - 1][0]) if len(rows) > limit else None
        return Page(items, nxt)

    # runs ---------------------------------------------------------------------------------
    async def create_runs(self, runs: list[NewRun], now_ms: int) -> None:
        if not runs:
            return
        if intake.insert_is_one_statement(runs):  # an invoke, a deferred run: one round trip
            await self._db.read(
                lambda c: intake.insert_runs(c, self.workspace, runs, now_ms, notify_ready=True)
            )
            return
        await self._db.transaction(lambda c: intake.create_runs(c, self.workspace, runs, now_ms))

    async def get_run(self, run_id: str) -> Run | None:
        row = await self._db.read(
            lambda c: c.fetchrow(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 AND workspace = $2",
                run_id,
                self.workspace,
            )
        )
        return None if row is None else run_from_row(row)

    async def list_runs(
        self, flt: RunFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Run]:
        flt = flt or RunFilter()
        where, params = _filters(
            self.workspace,
            ("function_id = {}", flt.function_id),
            ("status = {}", flt.status.value if flt.status else None),
            ("created_at_ms >= {}", flt.since_ms),
            ("created_at_ms < {}", flt.until_ms),
            ("parent_run_id = {}", flt.parent_run_id),
            ("id IN (SELECT run_id FROM run_triggers WHERE event_id = {})", flt.event_id),
            ("id < {}", cursor),
        )
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs WHERE {where}"
            f" ORDER BY id DESC LIMIT ${len(params) + 1}"
        )
        rows = await self._db.read(lambda c: c.fetch(sql, *params, limit + 1))
        runs = [run_from_row(r) for r in rows[:limit]]
        return Page(runs, runs[-1].id if len(rows) > limit else None)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._db.read(
            lambda c: c.fetch(
                f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = $1 AND EXISTS"
                " (SELECT 1 FROM runs WHERE id = $1 AND workspace = $2)"
                " ORDER BY seq, started_at_ms, key",
                run_id,
                self.workspace,
            )
        )
        return [step_from_row(r) for r in rows]

    async def get_logs(self, run_id: str) -> list[LogRecord]:
        rows = await self._db.read(
            lambda c: c.fetch(
                "SELECT run_id, seq, level, message, ts_ms, step_key, meta FROM logs"
                " WHERE run_id = $1 AND EXISTS (SELECT 1 FROM runs WHERE id = $1"
                " AND workspace = $2) ORDER BY seq",
                run_id,
                self.workspace,
            )
        )
        return [log_from_row(r) for r in rows]

    async def request_cancel(self, run_id: str, reason: str, now_ms: int) -> Run:
        async def cancel(c: Conn) -> None:
            exists = await c.fetchval(
                "SELECT 1 FROM runs WHERE id = $1 AND workspace = $2", run_id, self.workspace
            )
            if exists is None:
                raise RunNotFoundError(run_id)
            if await intake.request_cancel(c, run_id, reason, now_ms):
                await notify(c, self.workspace)

        await self._db.transaction(cancel)
        return await self._must_get(run_id)

    async def rerun(
        self, run_id: str, new_run_id: str, *, from_failed_step: bool, now_ms: int
    ) -> Run:
        made = await self._db.transaction(
            lambda c: work.rerun(c, self.workspace, run_id, new_run_id, from_failed_step, now_ms)
        )
        if not made:
            raise RunNotFoundError(run_id)
        return await self._must_get(new_run_id)

    async def _must_get(self, run_id: str) -> Run:
        run = await self.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        return run

    # work ---------------------------------------------------------------------------------
    async def claim(
        self, owner: str, function_ids: list[str], limit: int, now_ms: int, lease_ms: int
    ) -> list[ClaimedRun]:
        return (await self.claim_ready(owner, function_ids, limit, now_ms, lease_ms)).runs

    async def claim_ready(
        self, owner: str, function_ids: list[str], limit: int, now_ms: int, lease_ms: int
    ) -> Claim:
        if not function_ids or limit <= 0:
            return Claim([], more=False)
        if time.monotonic() >= self._cut_stalled_at:
            # Runs whose rows a stopped process keeps locked could not be taken over.
            self._cut_stalled_at = time.monotonic() + CUT_STALLED_EVERY_S
            if cut := await self._db.read(cut_stalled_sessions):
                _log.warning("ended %d sessions of processes stopped mid-statement", cut)
        args = (self.workspace, owner, function_ids, limit, now_ms, lease_ms)
        # One statement when no ready run needs a flow control check; once one did, claims
        # go page by page until they see none again (saves the one-statement attempt).
        if not self._flow_checks:
            plain = await self._db.read(lambda c: claims.claim_plain(c, *args))
            if plain is not None:
                return plain
        claimed, self._flow_checks = await self._db.transaction(lambda c: claims.claim(c, *args))
        return Claim.of(claimed)

    async def start_run(
        self, run: NewRun, now_ms: int, owner: str, lease_ms: int
    ) -> ClaimedRun | None:
        return await self._db.read(
            lambda c: claims.start_run(c, self.workspace, run, now_ms, owner, lease_ms)
        )

    async def next_ready_at(
        self, function_ids: list[str], *, after_ms: int | None = None
    ) -> int | None:
        if not function_ids:
            return None
        return await self._db.read(
            lambda c: claims.next_ready_at(c, self.workspace, function_ids, after_ms)
        )

    async def count_runs_by_status(self) -> dict[str, int]:
        async def count(c: Conn) -> dict[str, int]:
            rows = await c.fetch("SELECT status, COUNT(*) FROM runs GROUP BY status")
            return {str(r[0]): int(r[1]) for r in rows}

        return await self._db.read(count)

    async def check_writable(self, now_ms: int) -> None:
        await self._db.transaction(
            lambda c: c.execute(
                "INSERT INTO store_probes (workspace, at_ms) VALUES ($1, $2)"
                " ON CONFLICT (workspace) DO UPDATE SET at_ms = excluded.at_ms",
                self.workspace,
                now_ms,
            )
        )

    async def renew_leases(self, leases: list[Lease], until_ms: int) -> list[str]:
        if not leases:
            return []
        return await self._renewals.read(lambda c: work.renew(c, leases, until_ms))

    async def commit(self, lease: Lease, progress: Progress, now_ms: int) -> ProgressResult:
        if progress.waits or progress.events or progress.runs or progress.scores:
            return await self._db.transaction(
                lambda c: work.commit(c, self.workspace, lease, progress, now_ms)
            )
        # The hot path: steps and logs only, group-committed with other runs' writes.
        written = await self._journal.write(lease, progress)
        final = {}
        if written.final_keys:
            keys = written.final_keys
            final = await self._db.read(lambda c: work.final_steps(c, lease.run_id, keys))
        return ProgressResult(cancel_requested=written.cancel_requested, resolved={}, final=final)

    async def park(
        self,
        lease: Lease,
        status: RunStatus,
        ready_at_ms: int | None,
        now_ms: int,
        *,
        batch_wakes_ms: int | None = None,
    ) -> None:
        ready, freed = await self._db.read(
            lambda c: work.park(c, lease, status, ready_at_ms, now_ms, batch_wakes_ms)
        )
        if freed or (ready is not None and ready <= now_ms):
            await self._db.read(lambda c: notify(c, self.workspace))

    async def finish(
        self, lease: Lease, outcome: Outcome, events: list[PlannedEvent], now_ms: int
    ) -> FinishResult:
        if any(run.flow is not None for p in events for run in p.runs):
            # Flow keys are locked before any row: such a finish goes alone.
            return await self._db.transaction(
                lambda c: work.finish(c, self.workspace, lease, outcome, events, now_ms)
            )
        return await self._finishes.finish(
            finishes.Finish(self.workspace, lease, outcome, events, now_ms)
        )

    async def claim_cancelled(
        self, owner: str, run_id: str, function_ids: list[str], now_ms: int, lease_ms: int
    ) -> ClaimedRun | None:
        if not function_ids:
            return None
        return await self._db.transaction(
            lambda c: claims.claim_cancelled(
                c, self.workspace, owner, run_id, function_ids, now_ms, lease_ms
            )
        )

    # scores -------------------------------------------------------------------------------
    async def put_score(
        self, score: ScoreRecord, now_ms: int, events: list[PlannedEvent] | None = None
    ) -> ScoreRecord:
        await self._must_get(score.run_id)

        async def put(c: Conn) -> ScoreRecord:
            await scores.put(c, self.workspace, [score], now_ms)
            stored = await scores.get(c, self.workspace, score.id)
            if stored is None:  # the id belongs to another workspace's score: nothing is kept
                raise InvalidScoreError(f"score id {score.id!r} is already used")
            if events:
                await intake.ingest(c, self.workspace, events, now_ms)
            return stored

        return await self._db.transaction(put)

    async def list_scores(self, flt: ScoreFilter, *, limit: int = 1000) -> list[ScoreRecord]:
        return await self._db.read(lambda c: scores.query(c, self.workspace, flt, limit))

    async def blob_refs(self) -> set[str]:
        rows = await self._db.read(lambda c: c.fetch(_BLOB_REFS, self.workspace, MARKER))
        return payloads.shas_in(row[0] for row in rows)

    async def purge(self, older_than_ms: int) -> int:
        return await self._db.transaction(lambda c: work.purge(c, self.workspace, older_than_ms))


_BLOB_REFS = """
SELECT s.output::text FROM steps s JOIN runs r ON r.id = s.run_id
 WHERE r.workspace = $1 AND strpos(s.output::text, $2) > 0
UNION ALL SELECT s.input::text FROM steps s JOIN runs r ON r.id = s.run_id
 WHERE r.workspace = $1 AND strpos(s.input::text, $2) > 0
UNION ALL SELECT output::text FROM runs WHERE workspace = $1 AND strpos(output::text, $2) > 0
UNION ALL SELECT input::text FROM runs WHERE workspace = $1 AND strpos(input::text, $2) > 0
UNION ALL SELECT body::text FROM events WHERE workspace = $1 AND strpos(body::text, $2) > 0
UNION ALL SELECT body FROM webhook_records WHERE workspace = $1 AND strpos(body, $2) > 0
"""
"""Rows whose JSON mentions a blob reference (decoded and checked by `payloads.shas_in`): a
webhook delivery's payload keeps a large run output's reference after the run is purged."""


def _filters(workspace: str, *clauses: tuple[str, object]) -> tuple[str, list[object]]:
    """A WHERE clause scoped to the workspace, with `{}` in each clause numbered in order."""
    where = ["workspace = $1"]
    params: list[object] = [workspace]
    for clause, value in clauses:
        if value is not None:
            params.append(value)
            where.append(clause.format(f"${len(params)}"))
    return " AND ".join(where), params


def _default_blobs(db: Database) -> BlobStore:
    """$INFERPIPE_BLOBS_URL's store, else the database's own `blobs` table."""
    url = os.environ.get("INFERPIPE_BLOBS_URL")
    return blob_store_from_url(url) if url else PostgresBlobStore(db)
