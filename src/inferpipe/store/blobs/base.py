"""The `BlobStore` protocol: where payloads too large for a journal row are kept.

Blobs are content-addressed (the sha256 of the uncompressed bytes) and scoped by workspace:
a blob is read, listed and deleted through the workspace that wrote it, never another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from inferpipe.core.errors import StoreError

CHUNK_BYTES = 1024 * 1024
"""How much of a blob is compressed, written or streamed at a time."""


def bounded(unpacker: Any, packed: bytes) -> list[bytes]:
    """`packed` decompressed by `unpacker` (a `zlib.decompressobj`) in pieces of at most
    `CHUNK_BYTES`: a megabyte of compressed JSON can hold far more than that."""
    pieces = []
    while packed:
        if piece := unpacker.decompress(packed, CHUNK_BYTES):
            pieces.append(piece)
        packed = unpacker.unconsumed_tail
    return pieces


class BlobError(StoreError):
    """A blob could not be written or read (the backend failed); retryable."""

    code = "blob_error"


class BlobNotFoundError(BlobError):
    """No blob with this hash in this workspace (deleted, or never written there)."""

    code = "blob_not_found"
    retryable = False

    def __init__(self, workspace: str, sha256: str) -> None:
        super().__init__(f"no blob {sha256} in workspace {workspace!r}")
        self.workspace = workspace
        self.sha256 = sha256


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob, as a listing shows it."""

    sha256: str
    stored_at_ms: int  #: when it was last written (a write of the same content may renew it)


class BlobStore(Protocol):
    """Durable, content-addressed storage of compressed bytes, per workspace.

    Implementations: `FileBlobStore` (a directory, the default, beside the SQLite file) and
    `S3BlobStore` (an S3-compatible bucket, the `s3` extra). `blob_store_from_url` picks one.
    """

    url: str

    async def put(self, workspace: str, data: bytes) -> str:
        """Store `data` (compressed) and return its sha256; durable when this returns.
        Storing bytes already there renews them: a `delete` with a `written_before_ms` before
        this call leaves them (most stores set `stored_at_ms` to now; S3 may reuse a recent
        copy as it is, see `S3BlobStore.reuse_ms`)."""
        ...

    async def get(self, workspace: str, sha256: str) -> bytes:
        """The uncompressed bytes. Raises `BlobNotFoundError`."""
        ...

    async def open(self, workspace: str, sha256: str) -> AsyncIterator[bytes]:
        """The uncompressed bytes as a stream of chunks (about `CHUNK_BYTES` each), for a
        download that must not hold a large blob whole. Raises `BlobNotFoundError` here,
        before the first chunk."""
        ...

    async def get_many(self, workspace: str, shas: list[str]) -> dict[str, bytes]:
        """The uncompressed bytes of each of `shas` found (missing ones are left out), read
        at once: a replay reads every offloaded output its journal references this way."""
        ...

    async def delete(
        self, workspace: str, sha256: str, *, written_before_ms: int | None = None
    ) -> bool:
        """Remove a blob; a missing one is not an error. Returns whether one was removed.

        With `written_before_ms`, only a blob not `put` (written or renewed) since then is
        removed, and atomically with respect to a concurrent `put` of the same content: a
        `put` that returns leaves its blob stored, whether it ran just before the delete or
        just after. The orphan sweep relies on it (see `inferpipe.store.payloads.sweep`).
        """
        ...

    async def collect_leftovers(
        self, workspace: str, *, now_ms: int, written_before_ms: int
    ) -> None:
        """Tidy what a `put` or a `delete` killed half-way left in `workspace`: the folder
        store puts back a blob a sweep held aside more than a few seconds before `now_ms`
        and removes temporary files last written before `written_before_ms`; S3 deletes
        copies superseded by a newer one. The sweep calls it first."""
        ...

    async def list_blobs(self, workspace: str) -> list[BlobInfo]:
        """Every blob of `workspace`."""
        ...

    async def workspaces(self) -> list[str]:
        """The workspaces that have blobs."""
        ...


class BlobWorkspaceError(BlobError):
    """A reference names a blob of another workspace: refused, never read."""

    code = "blob_forbidden"
    retryable = False

    def __init__(self, workspace: str, owner: str) -> None:
        super().__init__(f"a blob of workspace {owner!r} cannot be read from {workspace!r}")
        self.workspace = workspace
        self.owner = owner
