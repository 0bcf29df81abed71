"""`PostgresBlobStore`: offloaded payloads in a table of the PostgreSQL database, the default
blob store there (workers on many machines share it as they share the database)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import time
import zlib
from collections.abc import AsyncIterator

from asyncpg import Record

from inferpipe.store.blobs.base import CHUNK_BYTES, BlobInfo, BlobNotFoundError, bounded
from inferpipe.store.postgres.database import Conn, Database

_PUT = """
INSERT INTO blobs (workspace, sha256, data, size, stored_at_ms) VALUES ($1, $2, NULL, $3, $4)
ON CONFLICT (workspace, sha256) DO UPDATE SET stored_at_ms = EXCLUDED.stored_at_ms
RETURNING xmax = 0
"""
_PUT_CHUNK = "INSERT INTO blob_chunks (workspace, sha256, seq, data) VALUES ($1, $2, $3, $4)"

# One statement, one snapshot: a blob's row and all its chunks, or nothing of it. A blob
# written before chunks (0015) has its bytes in `blobs.data` and no chunk.
_READ = """
SELECT b.sha256, coalesce(c.data, b.data) FROM blobs b
LEFT JOIN blob_chunks c ON c.workspace = b.workspace AND c.sha256 = b.sha256
WHERE b.workspace = $1 AND b.sha256 = ANY($2) ORDER BY b.sha256, c.seq
"""
_CHUNKS_READ_AT_ONCE = 4
"""Chunks `open` fetches per query: a few megabytes held at a time."""


class PostgresBlobStore:
    """Compressed blobs in the `blobs` table, their bytes in `blob_chunks` rows of about
    `CHUNK_BYTES` each; a write is durable when its commit returns."""

    url = "postgresql:blobs"

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, workspace: str, data: bytes) -> str:
        sha = await asyncio.to_thread(_sha256, data)  # off the loop: MBs to hash
        now_ms = int(time.time() * 1000)

        async def write(c: Conn) -> None:
            # A put of a blob already stored only renews its time (the row lock orders it
            # after a concurrent first put, which wrote the chunks or rolled back).
            if await c.fetchval(_PUT, workspace, sha, len(data), now_ms):
                seq = 0
                async for packed in _packed(data):
                    await c.execute(_PUT_CHUNK, workspace, sha, seq, packed)
                    seq += 1

        await self._db.transaction(write)
        return sha

    async def get(self, workspace: str, sha256: str) -> bytes:
        found = await self.get_many(workspace, [sha256])
        if sha256 not in found:
            raise BlobNotFoundError(workspace, sha256)
        return found[sha256]

    async def open(self, workspace: str, sha256: str) -> AsyncIterator[bytes]:
        row = await self._db.read(
            lambda c: c.fetchrow(
                "SELECT data FROM blobs WHERE workspace = $1 AND sha256 = $2", workspace, sha256
            )
        )
        if row is None:
            raise BlobNotFoundError(workspace, sha256)
        if row[0] is not None:
            return _unpacked(_pieces(bytes(row[0])), workspace, sha256)
        return _unpacked(self._chunks(workspace, sha256), workspace, sha256)

    async def _chunks(self, workspace: str, sha256: str) -> AsyncIterator[bytes]:
        async def fetch(c: Conn, after: int) -> list[Record]:
            return await c.fetch(
                "SELECT seq, data FROM blob_chunks WHERE workspace = $1 AND sha256 = $2"
                " AND seq >= $3 ORDER BY seq LIMIT $4",
                workspace,
                sha256,
                after,
                _CHUNKS_READ_AT_ONCE,
            )

        seq = 0
        while rows := await self._db.read(functools.partial(fetch, after=seq)):
            for row in rows:
                yield bytes(row[1])
            seq = int(rows[-1][0]) + 1

    async def get_many(self, workspace: str, shas: list[str]) -> dict[str, bytes]:
        rows = await self._db.read(lambda c: c.fetch(_READ, workspace, shas))
        packed: dict[str, list[bytes]] = {}
        for row in rows:
            packed.setdefault(str(row[0]), []).append(bytes(row[1]))
        del rows
        return await asyncio.to_thread(
            lambda: {sha: _unpack(packed.pop(sha)) for sha in list(packed)}
        )

    async def delete(
        self, workspace: str, sha256: str, *, written_before_ms: int | None = None
    ) -> bool:
        # One statement (its chunks go with the row, ON DELETE CASCADE): a concurrent put's
        # upsert either renewed stored_at_ms first (kept) or inserts the row again after it
        # (written anew).
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
        return None  # a put and a delete are one transaction each: nothing is left half-done

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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _packed(data: bytes) -> AsyncIterator[bytes]:
    """`data` compressed, in pieces of `CHUNK_BYTES` (the last one shorter), each compressed
    in a thread: the whole compressed blob is never held at once."""
    packer = zlib.compressobj(1)
    view = memoryview(data)
    pending = bytearray()
    for start in range(0, len(view), 4 * CHUNK_BYTES):
        pending += await asyncio.to_thread(packer.compress, view[start : start + 4 * CHUNK_BYTES])
        while len(pending) >= CHUNK_BYTES:
            yield bytes(pending[:CHUNK_BYTES])
            del pending[:CHUNK_BYTES]
    pending += packer.flush()
    while pending:
        yield bytes(pending[:CHUNK_BYTES])
        del pending[:CHUNK_BYTES]


def _unpack(pieces: list[bytes]) -> bytes:
    """The compressed `pieces` (consumed as they are read) decompressed into one buffer."""
    unpacker = zlib.decompressobj()
    out = io.BytesIO()  # getvalue() hands over its buffer: the bytes are not copied again
    pieces.reverse()
    while pieces:
        out.write(unpacker.decompress(pieces.pop()))
    out.write(unpacker.flush())
    return out.getvalue()


async def _pieces(packed: bytes) -> AsyncIterator[bytes]:
    view = memoryview(packed)
    for start in range(0, len(view), CHUNK_BYTES // 4):
        yield bytes(view[start : start + CHUNK_BYTES // 4])


async def _unpacked(
    packed: AsyncIterator[bytes], workspace: str, sha256: str
) -> AsyncIterator[bytes]:
    """The compressed pieces decompressed a chunk at a time."""
    unpacker = zlib.decompressobj()
    async for piece in packed:
        for data in await asyncio.to_thread(bounded, unpacker, piece):
            yield data
    if tail := unpacker.flush():
        yield tail
    if not unpacker.eof:
        raise BlobNotFoundError(workspace, sha256)  # deleted while it was read
