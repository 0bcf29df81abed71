"""`S3BlobStore`: blobs as gzip objects in an S3-compatible bucket (the `s3` extra, `obstore`).

Keys: each put that writes a blob writes a copy of its own,
`<prefix>/<workspace>/<sha256[:2]>/<sha256>/<copy id>.json.gz` (the workspace percent-encoded),
and never overwrites a key: S3 has no delete conditional on age, so the sweep deletes only the
copies it listed and found old, and a put racing it writes a key the sweep never saw. Blobs
written before this layout (`<sha256[:2]>/<sha256>.json.gz`) are read and collected too.
S3 acknowledges a PUT once the object is stored durably, so a copy is whole or absent.
Credentials, region and endpoint come from the standard `AWS_*` environment variables
(`AWS_ENDPOINT_URL` for a server other than AWS, `AWS_ALLOW_HTTP=true` for plain HTTP).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import os
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import obstore
from obstore.store import S3Store

from inferpipe.store.blobs.base import (
    CHUNK_BYTES,
    BlobError,
    BlobInfo,
    BlobNotFoundError,
    bounded,
)
from inferpipe.store.blobs.file import COMPRESS_LEVEL, SHA256, workspace_dir

if TYPE_CHECKING:
    from obstore import ObjectMeta  # in the type stubs only

_log = logging.getLogger("inferpipe.blobs")

_SUFFIX = ".json.gz"

READ_CONCURRENCY = 8
"""Objects `get_many` reads at a time."""

REUSE_MS = 3_600_000
"""A put of content whose newest copy was written less than this long ago writes nothing (a
document processed again and again is uploaded once an hour at most). The copy counts as
renewed by such a put: the conditional delete spares a blob whose newest copy is younger than
its cutoff plus this, so the sweep collects an orphan this much later than its grace period."""

_READS = 3

KNOWN_COPIES = 10_000
"""Blobs whose newest copy key a store remembers (the most recently used): a read of one of them
is one GET, with no listing first, until that copy is gone."""
"""Listings a read makes when the copy it listed is gone (replaced by a newer one meanwhile)."""


class S3BlobStore:
    """Blobs in a bucket, under an optional prefix.

    Args:
        store: the bucket (and prefix) as an obstore `S3Store`.
        url: the URL it was opened from, for messages.
        reuse_ms: see `REUSE_MS` (0: every put writes a copy). Every process sharing the
            bucket must use the same: the conditional delete allows for this one's.

    Example::

        blobs = S3BlobStore.from_url("s3://my-bucket/inferpipe")
    """

    def __init__(self, store: S3Store, url: str, *, reuse_ms: int = REUSE_MS) -> None:
        self._store = store
        self.url = url
        self.reuse_ms = reuse_ms
        self._known: OrderedDict[tuple[str, str], str] = OrderedDict()

    @classmethod
    def from_url(cls, url: str, *, reuse_ms: int = REUSE_MS, **config: Any) -> S3BlobStore:
        """A store for `s3://bucket/prefix`; `config` overrides the `AWS_*` environment."""
        try:
            return cls(S3Store.from_url(url, **config), url, reuse_ms=reuse_ms)
        except Exception as exc:  # obstore raises its own errors for a bad URL or config
            raise BlobError(f"cannot open blob store {url}: {exc}") from exc

    async def put(self, workspace: str, data: bytes) -> str:
        # Off the loop: MBs of work; compressed only when written (not for a reused copy).
        sha = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        try:
            copies = await self._copies(workspace, sha)
            if self.reuse_ms > 0 and copies and _started_ms(copies[0]) > _now_ms() - self.reuse_ms:
                self._remember(workspace, sha, copies[0]["path"])
                return sha  # recent enough: renewed (see REUSE_MS)
            packed = await asyncio.to_thread(gzip.compress, data, COMPRESS_LEVEL, mtime=0)
            key = _copy_key(workspace, sha)
            await obstore.put_async(self._store, key, packed)
        except Exception as exc:
            raise BlobError(f"cannot write blob {sha} to {self.url}: {exc}") from exc
        self._remember(workspace, sha, key)
        if copies:
            # Superseded by the copy just written, which stays whatever the sweep decides.
            await self._drop([c["path"] for c in copies])
        return sha

    async def get(self, workspace: str, sha256: str) -> bytes:
        if not SHA256.fullmatch(sha256):
            raise BlobNotFoundError(workspace, sha256)
        found = await self._get(workspace, sha256)
        try:
            packed = await found.bytes_async()
        except Exception as exc:
            raise BlobError(f"cannot read blob {sha256} from {self.url}: {exc}") from exc
        try:
            return await asyncio.to_thread(gzip.decompress, packed.to_bytes())
        except (OSError, zlib.error, EOFError) as exc:
            raise BlobError(f"blob {sha256} in {self.url} is damaged: {exc}") from exc

    async def open(self, workspace: str, sha256: str) -> AsyncIterator[bytes]:
        if not SHA256.fullmatch(sha256):
            raise BlobNotFoundError(workspace, sha256)
        found = await self._get(workspace, sha256)
        return self._unpacked(found.stream(min_chunk_size=CHUNK_BYTES), sha256)

    async def _get(self, workspace: str, sha256: str) -> Any:
        """The newest copy's GET response (an obstore `GetResult`): of the copy this store last
        wrote, reused or read when it is still there, else of the newest one listed."""
        try:
            if known := self._known.get((workspace, sha256)):
                try:
                    found = await obstore.get_async(self._store, known)
                except FileNotFoundError:
                    self._known.pop((workspace, sha256), None)  # superseded or swept since
                else:
                    self._known.move_to_end((workspace, sha256))
                    return found
            for _ in range(_READS):
                copies = await self._copies(workspace, sha256)
                key = copies[0]["path"] if copies else _legacy_key(workspace, sha256)
                try:
                    found = await obstore.get_async(self._store, key)
                except FileNotFoundError:
                    if not copies:
                        break  # no copy, nor a blob of the former layout
                else:
                    self._remember(workspace, sha256, key)
                    return found
        except Exception as exc:
            raise BlobError(f"cannot read blob {sha256} from {self.url}: {exc}") from exc
        raise BlobNotFoundError(workspace, sha256)

    async def _unpacked(self, packed: AsyncIterator[Any], sha256: str) -> AsyncIterator[bytes]:
        unpacker = zlib.decompressobj(31)  # 31: gzip framing
        try:
            async for chunk in packed:
                for data in await asyncio.to_thread(bounded, unpacker, bytes(chunk)):
                    yield data
            if tail := unpacker.flush():
                yield tail
        except zlib.error as exc:
            raise BlobError(f"blob {sha256} in {self.url} is damaged: {exc}") from exc
        except Exception as exc:
            raise BlobError(f"cannot read blob {sha256} from {self.url}: {exc}") from exc

    async def get_many(self, workspace: str, shas: list[str]) -> dict[str, bytes]:
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(sha: str) -> tuple[str, bytes | None]:
            async with gate:
                try:
                    return sha, await self.get(workspace, sha)
                except BlobNotFoundError:
                    return sha, None

        found = await asyncio.gather(*(one(sha) for sha in shas))
        return {sha: data for sha, data in found if data is not None}

    async def delete(
        self, workspace: str, sha256: str, *, written_before_ms: int | None = None
    ) -> bool:
        if not SHA256.fullmatch(sha256):
            return False
        legacy = _legacy_key(workspace, sha256)
        try:
            copies = await self._copies(workspace, sha256)
            try:
                old = [await obstore.head_async(self._store, legacy)]
            except FileNotFoundError:
                old = []
        except Exception as exc:
            raise BlobError(f"cannot delete blob {sha256} from {self.url}: {exc}") from exc
        if written_before_ms is not None and (
            any(_written_ms(c) + self.reuse_ms >= written_before_ms for c in copies)
            or any(_written_ms(o) >= written_before_ms for o in old)
        ):
            return False
        # Exactly the keys listed: a put from now on writes a key of its own, which stays.
        # (Only inferpipe before copies wrote the former layout's key, and overwrote it.)
        keys = [c["path"] for c in copies] + [legacy] * bool(old)
        if not keys:
            return False
        try:
            await obstore.delete_async(self._store, keys)
        except Exception as exc:
            raise BlobError(f"cannot delete blob {sha256} from {self.url}: {exc}") from exc
        self._known.pop((workspace, sha256), None)
        return True

    async def list_blobs(self, workspace: str) -> list[BlobInfo]:
        return [
            BlobInfo(sha, max(_written_ms(o) for o in objects))
            for sha, objects in (await self._objects(workspace)).items()
        ]

    async def collect_leftovers(
        self, workspace: str, *, now_ms: int, written_before_ms: int
    ) -> None:
        """Delete every object of a blob but its newest copy: copies a put superseded and
        did not delete (it failed or was killed first), and a former layout's object."""
        superseded = []
        for sha, objects in (await self._objects(workspace)).items():
            legacy = _legacy_key(workspace, sha)
            copies = [o for o in objects if o["path"] != legacy]
            if copies:
                newest = max(copies, key=_newest_first_key)
                superseded += [o["path"] for o in objects if o is not newest]
        if superseded:
            await self._drop(superseded)

    async def workspaces(self) -> list[str]:
        try:
            top = await obstore.list_with_delimiter_async(self._store)
        except Exception as exc:
            raise BlobError(f"cannot list blobs in {self.url}: {exc}") from exc
        return sorted(unquote(p.rstrip("/")) for p in top["common_prefixes"])

    async def _copies(self, workspace: str, sha256: str) -> list[ObjectMeta]:
        """The copies of a blob, newest first."""
        found: list[ObjectMeta] = []
        async for chunk in obstore.list(self._store, _copies_dir(workspace, sha256)):
            found.extend(chunk)
        return sorted(found, key=_newest_first_key, reverse=True)

    async def _objects(self, workspace: str) -> dict[str, list[ObjectMeta]]:
        """Every object of `workspace`, by the sha256 of the blob it holds."""
        found: dict[str, list[ObjectMeta]] = {}
        try:
            async for chunk in obstore.list(self._store, workspace_dir(workspace)):
                for meta in chunk:
                    if sha := _sha_of(meta["path"]):
                        found.setdefault(sha, []).append(meta)
        except Exception as exc:
            raise BlobError(f"cannot list blobs in {self.url}: {exc}") from exc
        return found

    def _remember(self, workspace: str, sha256: str, key: str) -> None:
        self._known[(workspace, sha256)] = key
        self._known.move_to_end((workspace, sha256))
        if len(self._known) > KNOWN_COPIES:
            self._known.popitem(last=False)

    async def _drop(self, superseded: Sequence[str]) -> None:
        # Each has a newer copy beside it: a failure leaves extra bytes, never a missing blob
        # (the next sweep deletes them).
        try:
            await obstore.delete_async(self._store, superseded)
        except Exception as exc:
            _log.warning(
                "cannot delete %d superseded blob copies in %s: %s", len(superseded), self.url, exc
            )


def _written_ms(meta: ObjectMeta) -> int:
    # S3 keeps Last-Modified to the second: an object counts as written at the end of its second.
    return _second_ms(meta["last_modified"]) + 999


def _started_ms(meta: ObjectMeta) -> int:
    """The earliest the object can have been written (its age, counted as a put would reuse
    it, is never less than the true one)."""
    return _second_ms(meta["last_modified"])


def _now_ms() -> int:
    return int(time.time() * 1000)


def _second_ms(last_modified: datetime) -> int:
    return int(last_modified.timestamp()) * 1000


def _newest_first_key(meta: ObjectMeta) -> tuple[datetime, str]:
    return meta["last_modified"], meta["path"]


def _copies_dir(workspace: str, sha256: str) -> str:
    return f"{workspace_dir(workspace)}/{sha256[:2]}/{sha256}"


def _copy_key(workspace: str, sha256: str) -> str:
    # Sortable by time, and unique: two puts never write the same key.
    copy_id = f"{time.time_ns():020d}-{os.urandom(6).hex()}"
    return f"{_copies_dir(workspace, sha256)}/{copy_id}{_SUFFIX}"


def _legacy_key(workspace: str, sha256: str) -> str:
    """Where a blob was kept before copies (one key per blob, overwritten by each put)."""
    return f"{_copies_dir(workspace, sha256)}{_SUFFIX}"


def _sha_of(key: str) -> str | None:
    """The sha256 of the blob `key` holds (a copy or a former layout's object), or None."""
    parts = key.split("/")
    name = parts[-1].removesuffix(_SUFFIX)
    sha = name if SHA256.fullmatch(name) else parts[-2] if len(parts) >= 2 else ""
    return sha if SHA256.fullmatch(sha) and name != parts[-1] else None
