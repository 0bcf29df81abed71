"""A worker SIGKILLed between a blob's write and the commit of the row that references it
leaves an orphan blob, never a reference without its blob; the run completes on another
worker, and the sweep collects the orphan (after its grace period) and only it.

Set INFERPIPE_ORPHAN_LOOPS=20 to repeat the crash 20 times in a row."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.store import payloads
from inferpipe.store.blobs import BlobNotFoundError, FileBlobStore
from inferpipe.store.sqlite import SQLiteStore
from tests.engine import orphan_app

LOOPS = int(os.environ.get("INFERPIPE_ORPHAN_LOOPS", "1"))
ROOT = Path(__file__).resolve().parents[2]


def start_worker(db: Path, hold: Path, marker: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.orphan_app", str(db), str(hold), str(marker)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_until(check: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("round_", range(LOOPS))
async def test_a_worker_killed_after_the_blob_write_leaves_an_orphan_the_sweep_collects(
    tmp_path: Path, round_: int
) -> None:
    db, hold, marker = tmp_path / "app.db", tmp_path / "hold", tmp_path / "marker"
    hold.touch()
    blobs = FileBlobStore(tmp_path / "blobs")
    store = SQLiteStore(db, blobs=blobs)
    await orphan_app.app.start(store=store)  # to invoke, as a client process would
    try:
        first = start_worker(db, hold, marker)
        run_id = await orphan_app.app.invoke("doc")

        async def blob_written() -> bool:
            return marker.exists() and marker.read_text() != ""

        await wait_until(blob_written)
        first.send_signal(signal.SIGKILL)
        first.wait()
        orphan = marker.read_text()
        assert [b.sha256 for b in await blobs.list_blobs("default")] == [orphan]
        assert await store.get_steps(run_id) == []  # the row never committed
        assert await store.blob_refs() == set()

        hold.unlink()
        second = start_worker(db, hold, marker)
        try:

            async def finished() -> bool:
                run = await store.get_run(run_id)
                return run is not None and run.status.finished

            await wait_until(finished)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
        run = await store.get_run(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run.error
        (step,) = await store.get_steps(run_id)
        ref = payloads.ref_of(step.output)
        assert ref is not None and ref.sha256 != orphan
        assert sorted(b.sha256 for b in await blobs.list_blobs("default")) == sorted(
            [orphan, ref.sha256]
        )

        now = int(time.time() * 1000)
        assert await payloads.sweep(store, now) == 0  # within its grace period
        assert await payloads.sweep(store, now + payloads.SWEEP_GRACE_MS + 1000) == 1
        with pytest.raises(BlobNotFoundError):
            await blobs.get("default", orphan)
        assert (await blobs.get("default", ref.sha256)).startswith(b'"')
    finally:
        await orphan_app.app.close()
