"""A worker process for the orphan test: `python -m tests.engine.orphan_app DB HOLD MARKER`.

Its blob store writes each blob durably, then, while HOLD exists, records the blob's sha256 in
MARKER and holds the step there for good, before the row that references the blob commits: the test
SIGKILLs the process in that window. Each process's output differs (it carries the pid), so
the killed one's blob stays an orphan once another worker has run the step again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import inferpipe as ip
from inferpipe.store.blobs import FileBlobStore
from inferpipe.store.sqlite import SQLiteStore

app = ip.App("orphans")


@app.function(id="doc", retries=0)
async def doc(ctx: ip.Context) -> int:
    text = await ctx.step.run("extract", lambda: f"{os.getpid()}:" + "o" * (300 * 1024))
    return len(text)


class HoldingBlobs(FileBlobStore):
    def __init__(self, root: Path, hold: Path, marker: Path) -> None:
        super().__init__(root)
        self.hold, self.marker = hold, marker

    async def put(self, workspace: str, data: bytes) -> str:
        sha = await super().put(workspace, data)  # durable when this returns
        if self.hold.exists():
            self.marker.write_text(sha)
            await asyncio.Event().wait()  # the test kills this process here
        return sha


async def main(db: Path, hold: Path, marker: Path) -> None:
    store = SQLiteStore(db, blobs=HoldingBlobs(db.parent / "blobs", hold, marker))
    await app.start(store=store)
    worker = app.worker(concurrency=1, lease_ms=1000)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.notify_shutdown)
    try:
        await worker.run()
    finally:
        await app.close()


if __name__ == "__main__":
    asyncio.run(main(*(Path(arg) for arg in sys.argv[1:4])))
