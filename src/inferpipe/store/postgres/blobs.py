"""`PostgresBlobStore`: offloaded payloads in a table of the PostgreSQL database, the default
blob store there (workers on many machines share it as they share the database)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib
from collections.abc import AsyncIterator

from inferpipe.store.blobs.base import CHUNK_BYTES, BlobInfo, BlobNotFoundError, bounded
from inferpipe.store.postgres.database import Database

_PUT = """
INSERT INTO blobs (workspace, sha256, data, size, stored_at_ms) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (workspace, sha256) DO UPDATE SET stored_at_ms = EXCLUDED.stored_at_ms
"""


class PostgresBlobStore:
    """Compressed blobs in the `blobs` table; a write is durable when its commit returns."""

    url = "postgresql:blobs"

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, workspace: str, data: bytes) -> str:
        sha, packed = await asyncio.to_thread(_pack, data)  # off the loop: MBs to hash and pack
        now_ms = int(time.time() * 1000)
        await self._db.transaction(
            lambda c: c.execute(_PUT, workspace, sha, packed, len(data), now_ms)
        )
        return sha

    async def get(self, workspace: str, sha256: str) -> bytes:
        row = await self._db.read(
            lambda c: c.fetchrow(
                "SELECT data FROM blobs WHERE workspace = $1 AND sha256 = $2", workspace, sha256
            )
        )
        if row is None:
            raise BlobNotFoundError(workspace, sha256)
        return await asyncio.to_thread(zlib.decompress, row[0])

    async def open(self, workspace: str, sha256: str) -> AsyncIterator[bytes]:
        row = await self._db.read(
            lambda c: c.fetchrow(
                "SELECT data FROM blobs WHERE workspace = $1 AND sha256 = $2", workspace, sha256
            )
        )
        if row is None:
            raise BlobNotFoundError(workspace, sha256)
        return _unpacked(bytes(row[0]))

    async def get_many(self, workspace: str, shas: list[str]) -> dict[str, bytes]:
        rows = await self._db.read(
            lambda c: c.fetch(
                "SELECT sha256, data FROM blobs WHERE workspace = $1 AND sha256 = ANY($2)",
                workspace,
                shas,
            )
        )
        packed = {str(r[0]): bytes(r[1]) for r in rows}
        return await asyncio.to_thread(
            lambda: {sha: zlib.decompress(data) for sha, data in packed.items()}
        )

    async def delete(
        self, workspace: str, sha256: str, *, written_before_ms: int | None = None
    ) -> bool:
        # One statement: a concurrent put's upsert either renewed stored_at_ms first (kept)
        # or inserts the row again after it (written anew).
        before = written_before_ms if written_before_ms is not None else 2**62
        status = await self._db.transaction(
            lambda c: c.execute(
                "DELETE FROM blobs WHERE workspace = $1 AND sha256 = $2 AND stored_at_ms < $3",
                workspace,
                sha256,
                before,
            )
        )
        return str(status) != "DELETE 0"

    async def collect_leftovers(
        self, workspace: str, *, now_ms: int, written_before_ms: int
    ) -> None:
        return None  # a put and a delete are one statement each: nothing is left half-done

    async def list_blobs(self, workspace: str) -> list[BlobInfo]:
        rows = await self._db.read(
            lambda c: c.fetch(
                "SELECT sha256, stored_at_ms FROM blobs WHERE workspace = $1", workspace
            )
        )
        return [BlobInfo(str(r[0]), int(r[1])) for r in rows]

    async def workspaces(self) -> list[str]:
        rows = await self._db.read(
            lambda c: c.fetch("SELECT DISTINCT workspace FROM blobs ORDER BY workspace")
        )
        return [str(r[0]) for r in rows]


def _pack(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(data).hexdigest(), zlib.compress(data, 1)


async def _unpacked(packed: bytes) -> AsyncIterator[bytes]:
    """The row's bytes decompressed a chunk at a time (the compressed row is read whole)."""
    unpacker = zlib.decompressobj()
    view = memoryview(packed)
    for start in range(0, len(view), CHUNK_BYTES // 4):
        for data in await asyncio.to_thread(
            bounded, unpacker, bytes(view[start : start + CHUNK_BYTES // 4])
        ):
            yield data
    if tail := unpacker.flush():
        yield tail
