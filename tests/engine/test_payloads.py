"""Large step and run outputs go to the blob store; the journal keeps references."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

import inferpipe as ip
from inferpipe.core.errors import StoreError
from inferpipe.server import retention
from inferpipe.store import payloads
from inferpipe.store.base import Progress
from inferpipe.store.blobs.base import CHUNK_BYTES
from inferpipe.testing import Harness
from tests.store.conftest import PostgresServer
from tests.store.pg_harness import PostgresHarness

BIG = "x" * (300 * 1024)  #: over the 256 KB default threshold


def _row_bytes(db: Path, run_id: str, key: str) -> int:
    with sqlite3.connect(db) as conn:
        (size,) = conn.execute(
            "SELECT length(output) FROM steps WHERE run_id = ? AND key = ?", (run_id, key)
        ).fetchone()
    return int(size)


async def test_a_large_step_output_is_offloaded_and_replayed_whole(tmp_path: Path) -> None:
    app = ip.App("blobs")
    calls: list[int] = []

    def make() -> dict[str, str]:
        calls.append(1)
        return {"text": BIG, "password": "hunter2"}

    @app.function(id="f")
    async def f(ctx: ip.Context) -> int:
        doc = await ctx.step.run("doc", make)
        await ctx.step.sleep("pause", "1h")  # the run resumes from its journal
        assert doc == {"text": BIG, "password": "[REDACTED]"}
        return len(doc["text"])

    async with Harness(app, path=tmp_path / "app.db") as h:
        run_id = await h.invoke("f")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run.error
        assert run.output == len(BIG) and calls == [1]
        steps = await h.steps(run_id)
        ref = payloads.ref_of(steps[0].output)
        assert ref is not None and ref.workspace == "default"
        assert ref.size_bytes > len(BIG) and ref.preview.startswith('{"text":"xxx')
        assert _row_bytes(tmp_path / "app.db", run_id, "doc") < 1024
        blob = await h.engine.store.blobs.get("default", ref.sha256)
        assert b"hunter2" not in blob  # redacted before it was stored
        files = list((tmp_path / "blobs").rglob("*.json.gz"))
        assert [p.name for p in files] == [f"{ref.sha256}.json.gz"]
        assert files[0].stat().st_size < 4096  # compressed


async def test_a_large_run_output_is_offloaded_and_result_resolves_it(tmp_path: Path) -> None:
    app = ip.App("blobs")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> list[str]:
        return [BIG, "end"]

    async with Harness(app, path=tmp_path / "app.db") as h:
        run_id = await h.invoke("f")
        await h.settle(run_id)
        stored = await h.run(run_id)
        assert payloads.ref_of(stored.output) is not None
        run = await app.result(run_id, timeout=5)
        assert run.output == [BIG, "end"]


async def test_an_invoked_child_with_a_large_output_reaches_its_parent(tmp_path: Path) -> None:
    app = ip.App("blobs")

    @app.function(id="child")
    async def child(ctx: ip.Context) -> str:
        return BIG

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> bool:
        got = await ctx.step.invoke("call", "child")
        return bool(got == BIG)

    async with Harness(app, path=tmp_path / "app.db") as h:
        run_id = await h.invoke("parent")
        run = await h.settle(run_id)
        assert run is not None and run.output is True, run.error


async def test_small_outputs_stay_inline(tmp_path: Path) -> None:
    app = ip.App("blobs")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> str:
        return str(await ctx.step.run("small", lambda: "y" * 1000))

    async with Harness(app, path=tmp_path / "app.db") as h:
        run_id = await h.invoke("f")
        await h.settle(run_id)
        assert (await h.steps(run_id))[0].output == "y" * 1000
        assert not (tmp_path / "blobs").exists()


async def test_the_ceiling_still_refuses_an_output_over_it(tmp_path: Path) -> None:
    app = ip.App("blobs", limits=ip.Limits(step_output_bytes=400 * 1024))

    @app.function(id="f", retries=0)
    async def f(ctx: ip.Context) -> None:
        await ctx.step.run("huge", lambda: "z" * (500 * 1024))

    async with Harness(app, path=tmp_path / "app.db") as h:
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.status is ip.RunStatus.FAILED
        assert run.error is not None and run.error["code"] == "payload_too_large"
        assert not (tmp_path / "blobs").exists()


async def test_a_reference_to_another_workspaces_blob_is_refused(tmp_path: Path) -> None:
    app = ip.App("blobs")

    @app.function(id="f", retries=0)
    async def f(ctx: ip.Context) -> object:
        forged = await ctx.step.run("forge", lambda: forged_ref)
        await ctx.step.sleep("pause", "1h")  # the replay resolves the recorded reference
        return forged

    async with Harness(app, path=tmp_path / "app.db") as h:
        sha = await h.engine.store.blobs.put("victim", b'"the other workspace\'s secret"')
        forged_ref = payloads.BlobRef("victim", sha, 30, "").to_json()
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.status is ip.RunStatus.FAILED
        assert run.error is not None and run.error["code"] == "blob_forbidden"
        assert "secret" not in str(run.error)


async def test_a_100_mb_step_output_works(tmp_path: Path) -> None:
    app = ip.App("blobs")
    size = 100 * 1024 * 1024

    @app.function(id="f")
    async def f(ctx: ip.Context) -> int:
        text = await ctx.step.run("huge", lambda: "h" * size)
        await ctx.step.sleep("pause", "1m")
        return len(text)

    async with Harness(app, path=tmp_path / "app.db") as h:
        run_id = await h.invoke("f")
        run = await h.settle(run_id)
        assert run is not None and run.output == size, run.error
        assert _row_bytes(tmp_path / "app.db", run_id, "huge") < 1024
        (blob,) = (tmp_path / "blobs").rglob("*.json.gz")
        assert blob.stat().st_size < size / 100


async def test_a_100_mb_step_output_works_on_postgresql(postgres: PostgresServer) -> None:
    app = ip.App("blobs")
    text = os.urandom(50 * 1024 * 1024).hex()  # 100 MB that gzip leaves at over half its size

    @app.function(id="f")
    async def f(ctx: ip.Context) -> str:
        replayed = await ctx.step.run("huge", lambda: text)
        await ctx.step.sleep("pause", "1m")  # the run resumes from its journal and the blob
        return hashlib.sha256(replayed.encode()).hexdigest()

    async with PostgresHarness(app, postgres.url) as h:
        run_id = await h.invoke("f")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run.error
        assert run.output == hashlib.sha256(text.encode()).hexdigest()
        ref = payloads.ref_of((await h.steps(run_id))[0].output)
        assert ref is not None and ref.size_bytes == len(text) + 2  # the JSON string's quotes
        conn = await asyncpg.connect(postgres.url)
        try:
            row_bytes = await conn.fetchval(
                "SELECT length(output::text) FROM steps WHERE run_id = $1 AND key = 'huge'",
                run_id,
            )
            size = await conn.fetchval(
                "SELECT size FROM blobs WHERE workspace = $1 AND sha256 = $2",
                h.workspace,
                ref.sha256,
            )
            chunks = await conn.fetchrow(
                "SELECT count(*) AS n, sum(length(data)) AS packed, max(length(data)) AS largest"
                " FROM blob_chunks WHERE workspace = $1 AND sha256 = $2",
                h.workspace,
                ref.sha256,
            )
        finally:
            await conn.close()
        assert row_bytes < 1024
        assert size == ref.size_bytes
        assert chunks["packed"] > 40 * 1024 * 1024  # random hex: tens of MB stay after gzip
        assert chunks["largest"] <= CHUNK_BYTES and chunks["n"] > 40  # rows of a megabyte


async def test_an_orphan_of_a_failed_commit_is_swept_after_its_grace(tmp_path: Path) -> None:
    app = ip.App("blobs")
    attempts: list[str] = []

    def draft() -> str:
        attempts.append(uuid.uuid4().hex)  # each attempt writes a different blob
        return attempts[-1] * 10_000

    @app.function(id="f")
    async def f(ctx: ip.Context) -> int:
        return len(await ctx.step.run("draft", draft))

    async with Harness(app, path=tmp_path / "app.db") as h:
        store = h.engine.store
        real_commit = store.commit

        async def commit_fails_once(lease: Any, progress: Progress, now_ms: int) -> Any:
            if progress.steps and len(attempts) == 1:
                raise StoreError("the disk went away after the blob was written")
            return await real_commit(lease, progress, now_ms)

        store.commit = commit_fails_once  # type: ignore[method-assign]
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run.error
        assert len(attempts) == 2
        assert len(await store.blobs.list_blobs("default")) == 2  # one is an orphan

        now = int(time.time() * 1000)
        assert await payloads.sweep(store, now) == 0  # within its grace period
        assert await payloads.sweep(store, now + payloads.SWEEP_GRACE_MS + 1000) == 1
        (kept,) = await store.blobs.list_blobs("default")
        (step,) = await h.steps(run.id)
        assert kept.sha256 == payloads.ref_of(step.output).sha256  # type: ignore[union-attr]


async def test_retention_deletes_the_blobs_of_purged_runs(tmp_path: Path) -> None:
    app = ip.App("blobs")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> str:
        return str(await ctx.step.run("doc", lambda: BIG))

    async with Harness(app, path=tmp_path / "app.db") as h:
        await h.settle(await h.invoke("f"))
        store = h.engine.store
        assert len(await store.blobs.list_blobs("default")) == 1  # the step's and the run's: one
        soon = h.now_ms + 3 * retention.DAY_MS  # the run's clock: the run is 3 days old
        assert await retention.purge_older_than(store, 30, now_ms=soon) == 0
        assert len(await store.blobs.list_blobs("default")) == 1  # still referenced
        # The wall clock the blob files know, past the sweep's grace period.
        later = int(time.time() * 1000) + 3 * retention.DAY_MS
        removed = await retention.purge_older_than(store, 1, now_ms=later)
        assert removed >= 3  # the run, its event, its blob
        assert await store.blobs.list_blobs("default") == []


async def test_a_scorer_and_a_triggered_function_see_a_large_output_whole(
    tmp_path: Path,
) -> None:
    app = ip.App("blobs")
    seen: list[int] = []

    @app.scorer(id="length")
    async def length(ctx: ip.Context) -> ip.Score:
        return ip.Score("length", len(ctx.input["output"]))

    @app.function(id="f", scorers=[length])
    async def f(ctx: ip.Context) -> str:
        return BIG

    finished_f = ip.on_event("inferpipe/function.finished", if_exp="event.data.function_id == 'f'")

    @app.function(id="after", trigger=finished_f)
    async def after(ctx: ip.Context) -> None:
        seen.append(len(ctx.event.data["output"]))

    async with Harness(app, path=tmp_path / "app.db") as h:
        run_id = await h.invoke("f")
        await h.settle()
        assert [s.value for s in await h.app.scores(run_id=run_id)] == [len(BIG)]
        assert seen == [len(BIG)]


async def test_an_event_carrying_another_workspaces_reference_fails_its_run(
    tmp_path: Path,
) -> None:
    app = ip.App("blobs")

    @app.function(id="on-doc", trigger=ip.on_event("doc/uploaded"), retries=0)
    async def on_doc(ctx: ip.Context) -> object:
        return ctx.event.data["doc"]

    async with Harness(app, path=tmp_path / "app.db") as h:
        sha = await h.engine.store.blobs.put("victim", b'"the other workspace\'s secret"')
        forged = payloads.BlobRef("victim", sha, 30, "").to_json()
        await h.send(ip.Event("doc/uploaded", {"doc": forged}))
        await h.settle()
        (run,) = await h.runs_of("on-doc")
        assert run.status is ip.RunStatus.FAILED
        assert run.error is not None and run.error["code"] == "blob_forbidden"


async def test_a_replay_reads_its_offloaded_outputs_in_one_read(tmp_path: Path) -> None:
    app = ip.App("blobs")
    parts = [f"{n:03d}" + "p" * (300 * 1024) for n in range(5)]
    seen: list[list[str]] = []

    @app.function(id="f")
    async def f(ctx: ip.Context) -> int:
        got = [await ctx.step.run(f"part-{n}", lambda n=n: parts[n]) for n in range(5)]
        seen.append(got)
        await ctx.step.sleep("pause", "1h")
        return len(got)

    async with Harness(app, path=tmp_path / "app.db") as h:
        blobs = h.engine.store.blobs
        reads: list[tuple[str, int]] = []
        real_get, real_get_many = blobs.get, blobs.get_many

        async def get(workspace: str, sha256: str) -> bytes:
            reads.append(("get", 1))
            return await real_get(workspace, sha256)

        async def get_many(workspace: str, shas: list[str]) -> dict[str, bytes]:
            reads.append(("get_many", len(shas)))
            return await real_get_many(workspace, shas)

        blobs.get, blobs.get_many = get, get_many  # type: ignore[method-assign]
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.output == 5, run.error
    assert seen == [parts, parts]  # the first execution, then the replay after the sleep
    assert reads == [("get_many", 5)]
