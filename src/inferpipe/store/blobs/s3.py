"""`S3BlobStore`: blobs as gzip objects in an S3-compatible bucket (the `s3` extra, `obstore`).

Keys: `<prefix>/<workspace>/<sha256[:2]>/<sha256>.json.gz`, the workspace percent-encoded. S3
acknowledges a PUT once the object is stored durably, so a blob is whole or absent.
Credentials, region and endpoint come from the standard `AWS_*` environment variables
(`AWS_ENDPOINT_URL` for a server other than AWS, `AWS_ALLOW_HTTP=true` for plain HTTP).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import zlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
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

_SUFFIX = ".json.gz"

READ_CONCURRENCY = 8
"""Objects `get_many` reads at a time."""


class S3BlobStore:
    """Blobs in a bucket, under an optional prefix.

    Example::

        blobs = S3BlobStore.from_url("s3://my-bucket/inferpipe")
    """

    def __init__(self, store: S3Store, url: str) -> None:
        self._store = store
        self.url = url

    @classmethod
    def from_url(cls, url: str, **config: Any) -> S3BlobStore:
        """A store for `s3://bucket/prefix`; `config` overrides the `AWS_*` environment."""
        try:
            return cls(S3Store.from_url(url, **config), url)
        except Exception as exc:  # obstore raises its own errors for a bad URL or config
            raise BlobError(f"cannot open blob store {url}: {exc}") from exc

    async def put(self, workspace: str, data: bytes) -> str:
        sha, packed = await asyncio.to_thread(_pack, data)  # off the loop: MBs of work
        try:
            await obstore.put_async(self._store, _key(workspace, sha), packed)
        except Exception as exc:
            raise BlobError(f"cannot write blob {sha} to {self.url}: {exc}") from exc
        return sha

    async def get(self, workspace: str, sha256: str) -> bytes:
        if not SHA256.fullmatch(sha256):
            raise BlobNotFoundError(workspace, sha256)
        try:
            found = await obstore.get_async(self._store, _key(workspace, sha256))
            packed = await found.bytes_async()
        except FileNotFoundError:
            raise BlobNotFoundError(workspace, sha256) from None
        except Exception as exc:
            raise BlobError(f"cannot read blob {sha256} from {self.url}: {exc}") from exc
        try:
            return await asyncio.to_thread(gzip.decompress, packed.to_bytes())
        except (OSError, zlib.error, EOFError) as exc:
            raise BlobError(f"blob {sha256} in {self.url} is damaged: {exc}") from exc

    async def open(self, workspace: str, sha256: str) -> AsyncIterator[bytes]:
        if not SHA256.fullmatch(sha256):
            raise BlobNotFoundError(workspace, sha256)
        try:
            found = await obstore.get_async(self._store, _key(workspace, sha256))
        except FileNotFoundError:
            raise BlobNotFoundError(workspace, sha256) from None
        except Exception as exc:
            raise BlobError(f"cannot read blob {sha256} from {self.url}: {exc}") from exc
        return self._unpacked(found.stream(min_chunk_size=CHUNK_BYTES), sha256)

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
        key = _key(workspace, sha256)
        try:
            if written_before_ms is not None:
                # S3 has no delete conditional on age: a PUT landing between this HEAD and the
                # DELETE (one round trip) is lost; see docs/payloads.md.
                meta = await obstore.head_async(self._store, key)
                if _written_ms(meta["last_modified"]) >= written_before_ms:
                    return False
            await obstore.delete_async(self._store, key)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise BlobError(f"cannot delete blob {sha256} from {self.url}: {exc}") from exc
        return True

    async def list_blobs(self, workspace: str) -> list[BlobInfo]:
        found = []
        try:
            async for chunk in obstore.list(self._store, workspace_dir(workspace)):
                for meta in chunk:
                    sha = meta["path"].rsplit("/", 1)[-1].removesuffix(_SUFFIX)
                    if SHA256.fullmatch(sha):
                        found.append(BlobInfo(sha, _written_ms(meta["last_modified"])))
        except Exception as exc:
            raise BlobError(f"cannot list blobs in {self.url}: {exc}") from exc
        return found

    async def workspaces(self) -> list[str]:
        try:
            top = await obstore.list_with_delimiter_async(self._store)
        except Exception as exc:
            raise BlobError(f"cannot list blobs in {self.url}: {exc}") from exc
        return sorted(unquote(p.rstrip("/")) for p in top["common_prefixes"])


def _pack(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(data).hexdigest(), gzip.compress(data, COMPRESS_LEVEL, mtime=0)


def _written_ms(last_modified: datetime) -> int:
    # S3 keeps Last-Modified to the second: a blob counts as written at the end of its second.
    return int(last_modified.timestamp()) * 1000 + 999


def _key(workspace: str, sha256: str) -> str:
    return f"{workspace_dir(workspace)}/{sha256[:2]}/{sha256}{_SUFFIX}"
