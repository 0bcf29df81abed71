"""`MemoryBlobStore`: blobs in this process's memory, for an in-memory database."""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import AsyncIterator

from inferpipe.store.blobs.base import CHUNK_BYTES, BlobInfo, BlobNotFoundError


class MemoryBlobStore:
    """Compressed blobs in a dict; gone with the process, like the `:memory:` database."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._blobs: dict[tuple[str, str], tuple[bytes, int]] = {}

    async def put(self, workspace: str, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self._blobs[(workspace, sha)] = (zlib.compress(data, 1), int(time.time() * 1000))
        return sha

    async def get(self, workspace: str, sha256: str) -> bytes:
        found = self._blobs.get((workspace, sha256))
        if found is None:
            raise BlobNotFoundError(workspace, sha256)
        return zlib.decompress(found[0])

    async def open(self, workspace: str, sha256: str) -> AsyncIterator[bytes]:
        data = await self.get(workspace, sha256)
        return _chunks(data)

    async def get_many(self, workspace: str, shas: list[str]) -> dict[str, bytes]:
        found = {sha: self._blobs.get((workspace, sha)) for sha in shas}
        return {sha: zlib.decompress(b[0]) for sha, b in found.items() if b is not None}

    async def delete(
        self, workspace: str, sha256: str, *, written_before_ms: int | None = None
    ) -> bool:
        # One event loop: nothing runs between the check and the removal.
        found = self._blobs.get((workspace, sha256))
        if found is None or (written_before_ms is not None and found[1] >= written_before_ms):
            return False
        del self._blobs[(workspace, sha256)]
        return True

    async def collect_leftovers(
        self, workspace: str, *, now_ms: int, written_before_ms: int
    ) -> None:
        return None  # a put and a delete leave nothing half-done

    async def list_blobs(self, workspace: str) -> list[BlobInfo]:
        return [BlobInfo(sha, at) for (ws, sha), (_, at) in self._blobs.items() if ws == workspace]

    async def workspaces(self) -> list[str]:
        return sorted({ws for ws, _ in self._blobs})


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]
