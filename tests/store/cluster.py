"""Worker processes of `pg_app` on one database (PostgreSQL, or a SQLite file), an observer of
the runs' statuses, and the checks made on the side effects the steps leave in files.

The checks read the workers' execution files (`pg_app.log_execution`), never the engine's
journal: what must hold is what ran, not what the engine says ran.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

import inferpipe as ip
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore
from tests.store import pg_app

APP_FILE = Path(pg_app.__file__)
LEASE_MS = 2000
DEADLINE_S = 120.0


class Cluster:
    """Worker processes of `pg_app` on the database at `url`, and an observer of its runs."""

    def __init__(self, url: str, folder: Path, *, step_ms: int = 10) -> None:
        self.url = url
        self.folder = folder
        self.step_ms = step_ms
        self.workers: list[subprocess.Popen[bytes]] = []
        self._pg: asyncpg.Connection | None = None

    def start_worker(self, *, cron: bool = False, concurrency: int = 50) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PG_TEST_LOG_DIR": str(self.folder),
            "PG_TEST_CRON": "1" if cron else "0",
            "PG_TEST_STEP_MS": str(self.step_ms),
        }
        err = (self.folder / f"worker-{len(self.workers)}.err").open("wb")
        args = ["worker", str(APP_FILE), "--database", self.url, "--lease-ms", str(LEASE_MS)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "inferpipe", *args, "--concurrency", str(concurrency)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        err.close()
        self.workers.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused worker must hear the SIGTERM
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None

    async def reconnect(self) -> None:
        """After a server restart: the observer's connection was cut."""
        await self.close()

    async def runs(self) -> list[tuple[str, str, str | None]]:
        """(id, status, lease owner) of every run of `five-steps`."""
        sql = "SELECT id, status, lease_owner FROM runs WHERE function_id = 'five-steps'"
        if self.url.startswith("sqlite"):
            path = self.url.removeprefix("sqlite:///")
            return await asyncio.to_thread(_sqlite_rows, path, sql)
        if self._pg is None:
            self._pg = await asyncpg.connect(self.url)
        return [(r[0], r[1], r[2]) for r in await self._pg.fetch(sql)]

    async def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for _, status, _ in await self.runs():
            counts[status] += 1
        return dict(counts)

    async def completed(self) -> int:
        return (await self.statuses()).get("completed", 0)

    async def held_by(self, proc: subprocess.Popen[bytes]) -> list[str]:
        """The runs `proc` holds now (lease owners are `host:pid:suffix`)."""
        return [
            run_id
            for run_id, status, owner in await self.runs()
            if status == "running" and owner is not None and owner.split(":")[1] == str(proc.pid)
        ]

    async def busiest_worker(self) -> tuple[subprocess.Popen[bytes], list[str]]:
        live = [p for p in self.workers if p.poll() is None]
        held = {p.pid: await self.held_by(p) for p in live}
        best = max(live, key=lambda p: len(held[p.pid]))
        return best, held[best.pid]

    async def describe(self, run_ids: list[str]) -> str:
        """The rows of `run_ids` and what every session of the database is doing (PostgreSQL):
        why runs were not taken over."""
        if self.url.startswith("sqlite") or self._pg is None:
            return ""
        now_ms = int(time.time() * 1000)
        rows = await self._pg.fetch(
            "SELECT id, status, lease_owner, lease_expires_at_ms - $2, lease_token FROM runs"
            " WHERE id = ANY($1::text[]) ORDER BY id",
            run_ids,
            now_ms,
        )
        sessions = await self._pg.fetch(
            "SELECT pid, state, wait_event_type, wait_event, now() - xact_start,"
            " left(query, 120) FROM pg_stat_activity WHERE datname = current_database()"
        )
        locks = await self._pg.fetch(
            "SELECT l.pid, l.locktype, l.mode, l.granted, c.relname FROM pg_locks l"
            " LEFT JOIN pg_class c ON c.oid = l.relation WHERE l.database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND (c.relname IS NULL OR c.relname NOT LIKE 'pg_%')"
        )
        workers = " ".join(
            f"{p.pid}:{'up' if p.poll() is None else p.returncode}" for p in self.workers
        )
        return "\n".join(
            [f"workers {workers}", "runs (id, status, owner, lease ends in ms, token):"]
            + [str(tuple(r)) for r in rows]
            + ["sessions (pid, state, wait type, wait, xact age, query):"]
            + [str(tuple(r)) for r in sessions]
            + ["locks (pid, type, mode, granted, relation):"]
            + [str(tuple(r)) for r in locks]
        )

    async def unfinished(self, run_ids: list[str]) -> int:
        wanted = set(run_ids)
        return sum(
            1
            for run_id, status, _ in await self.runs()
            if run_id in wanted and status != "completed"
        )

    async def send_load(self, runs: int) -> None:
        app = pg_app.build_app()
        if self.url.startswith("sqlite"):
            store: PostgresStore | SQLiteStore = SQLiteStore(self.url.removeprefix("sqlite:///"))
        else:
            store = PostgresStore(self.url)
        await app.start(store=store)
        try:
            for first in range(0, runs, 200):
                batch = range(first, min(runs, first + 200))
                await app.send([ip.Event("load/item", {"i": i}) for i in batch])
        finally:
            await app.close()

    def errors(self) -> str:
        """What the workers wrote to stderr (for a failure message)."""
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.folder.glob("*.err"))


def _sqlite_rows(path: str, sql: str) -> list[tuple[str, str, str | None]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return [(r[0], r[1], r[2]) for r in conn.execute(sql)]
    finally:
        conn.close()


async def eventually(
    check: Callable[[], Awaitable[bool]],
    timeout_s: float = DEADLINE_S,
    *,
    describe: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """Poll an outside observation (other processes do the work) until it holds; on timeout
    the failure says what `describe` finds then."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            found = await describe() if describe is not None else ""
            raise AssertionError(f"not reached within {timeout_s} s\n{found}")
        await asyncio.sleep(0.1)


@dataclass(frozen=True, slots=True)
class Execution:
    key: str
    phase: str  #: `start` (the step's code began) or `done` (its side effect was made)
    pid: int
    ns: int  #: CLOCK_MONOTONIC: one order for every process on the machine
    execution_ns: int  #: when the run's execution that ran this step began (same clock)


@dataclass
class SideEffects:
    """What the execution files say about every run."""

    by_run: dict[str, list[Execution]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def read(cls, folder: Path) -> SideEffects:
        made = cls()
        for log in folder.glob("exec-*.log"):
            for line in log.read_text().splitlines():
                run_id, key, phase, pid, ns, execution_ns = line.split()
                made.by_run[run_id].append(
                    Execution(key, phase, int(pid), int(ns), int(execution_ns))
                )
        for executions in made.by_run.values():
            executions.sort(key=lambda e: e.ns)
        return made

    def missing(self, runs: int) -> list[str]:
        """Runs whose steps did not all make their side effect (or fewer runs than sent)."""
        keys = {f"s{i}" for i in range(pg_app.STEPS)}
        short = [
            run_id
            for run_id, executions in self.by_run.items()
            if {e.key for e in executions if e.phase == "done"} != keys
        ]
        return short + ["(runs never started)"] * max(0, runs - len(self.by_run))

    def restarted_after_record(self) -> list[str]:
        """Steps that started again after a later step had started that starts only once this
        one's record is committed (step records are pipelined: a step starts once the records
        more than `pg_app.PIPELINE_STEPS` steps back are durable), so these reran a recorded
        step."""
        ahead = pg_app.PIPELINE_STEPS + 1
        found = []
        for run_id, executions in self.by_run.items():
            first_start: dict[str, int] = {}
            last_start: dict[str, int] = {}
            for e in executions:
                if e.phase == "start":
                    first_start.setdefault(e.key, e.ns)
                    last_start[e.key] = e.ns
            for i in range(pg_app.STEPS - ahead):
                this, nxt = f"s{i}", f"s{i + ahead}"
                if (
                    this in last_start
                    and nxt in first_start
                    and last_start[this] > first_start[nxt]
                ):
                    found.append(f"{run_id}/{this}")
        return found

    def duplicated(self) -> int:
        """Side effects made more than once (a step in flight when its worker died or lost
        the lease runs again: at least once)."""
        done: dict[tuple[str, str], int] = defaultdict(int)
        for run_id, executions in self.by_run.items():
            for e in executions:
                if e.phase == "done":
                    done[(run_id, e.key)] += 1
        return sum(n - 1 for n in done.values())

    def started_after(
        self, pid: int, run_ids: list[str], after_ns: int
    ) -> tuple[list[str], list[str]]:
        """Steps of `run_ids` that process `pid` started after `after_ns`: those of executions
        begun before then (under a lease it held before), and those of executions begun
        after (it took the run again, under a new lease: these may run steps)."""
        wanted = set(run_ids)
        started = [
            (f"{run_id}/{e.key}", e.execution_ns < after_ns)
            for run_id, executions in self.by_run.items()
            if run_id in wanted
            for e in executions
            if e.pid == pid and e.phase == "start" and e.ns > after_ns
        ]
        return [s for s, old in started if old], [s for s, old in started if not old]

    def started_after_takeover(self, pid: int, run_ids: list[str]) -> list[str]:
        """Steps of `run_ids` that process `pid` started after another process took the run
        over from that execution: after the other started a step of it, in an execution of
        `pid` begun before (its lease then had ended, by its own clock too)."""
        wanted = set(run_ids)
        found = []
        for run_id, executions in self.by_run.items():
            if run_id not in wanted:
                continue
            others = [e.ns for e in executions if e.pid != pid and e.phase == "start"]
            found += [
                f"{run_id}/{e.key}"
                for e in executions
                if e.pid == pid
                and e.phase == "start"
                and any(e.execution_ns < ns < e.ns for ns in others)
            ]
        return found


async def verify(cluster: Cluster, runs: int) -> SideEffects:
    """Every run completed (none failed by the faults), every step made its side effect, and
    no step started again once recorded."""
    statuses = await cluster.statuses()
    assert statuses == {"completed": runs}, f"{statuses}\n{cluster.errors()}"
    effects = SideEffects.read(cluster.folder)
    assert not effects.missing(runs)
    assert not effects.restarted_after_record(), effects.restarted_after_record()[:10]
    return effects
