"""`FileBlobStore`: blobs as gzip files in a directory, written durably.

Layout: `<root>/<workspace>/<sha256[:2]>/<sha256>.json.gz` (the workspace name percent-encoded).
A write goes to a temporary file in the final directory, is fsynced, renamed into place and the
directory fsynced, so a blob either exists whole or not at all, across a crash.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import re
import time
import zlib
from pathlib import Path
from urllib.parse import quote, unquote

from inferpipe.store.blobs.base import BlobError, BlobInfo, BlobNotFoundError

CHUNK_BYTES = 1024 * 1024
"""How much is compressed and written at a time."""

COMPRESS_LEVEL = 1
"""gzip level: JSON shrinks most of the way at level 1, at several times level 6's speed."""

SHA256 = re.compile(r"[0-9a-f]{64}")
_SUFFIX = ".json.gz"


class FileBlobStore:
    """Blobs in a local directory (created on first write).

    Example::

        blobs = FileBlobStore(".inferpipe/blobs")
        sha = await blobs.put("default", b'{"text": "..."}')
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root.resolve()}"

    async def put(self, workspace: str, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._write, self._path(workspace, sha), data)
        return sha

    async def get(self, workspace: str, sha256: str) -> bytes:
        path = self._path(workspace, sha256)
        try:
            return await asyncio.to_thread(_read, path)
        except FileNotFoundError:
            raise BlobNotFoundError(workspace, sha256) from None
        except (OSError, zlib.error, EOFError) as exc:
            raise BlobError(f"cannot read blob {path}: {exc}") from exc

    async def delete(self, workspace: str, sha256: str) -> None:
        path = self._path(workspace, sha256)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            raise BlobError(f"cannot delete blob {path}: {exc}") from exc

    async def list_blobs(self, workspace: str) -> list[BlobInfo]:
        return await asyncio.to_thread(self._list, self.root / workspace_dir(workspace))

    async def workspaces(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(unquote(p.name) for p in self.root.iterdir() if p.is_dir())

    def _path(self, workspace: str, sha256: str) -> Path:
        if not SHA256.fullmatch(sha256):
            raise BlobNotFoundError(workspace, sha256)
        return self.root / workspace_dir(workspace) / sha256[:2] / f"{sha256}{_SUFFIX}"

    def _write(self, path: Path, data: bytes) -> None:
        try:
            if path.exists():
                os.utime(path)  # renewed: a sweep running now must not take it
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
            try:
                with open(tmp, "wb") as out:
                    _compress_into(out.fileno(), data)
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            for directory in (path.parent, path.parent.parent, self.root):
                _fsync_dir(directory)
        except OSError as exc:
            raise BlobError(f"cannot write blob {path}: {exc}") from exc

    @staticmethod
    def _list(directory: Path) -> list[BlobInfo]:
        if not directory.is_dir():
            return []
        found = []
        for path in directory.glob(f"??/*{_SUFFIX}"):
            sha = path.name.removesuffix(_SUFFIX)
            if SHA256.fullmatch(sha):
                found.append(BlobInfo(sha, int(path.stat().st_mtime * 1000)))
        return found


def workspace_dir(workspace: str) -> str:
    """The folder (or key prefix) of a workspace's blobs."""
    # Percent-encoded so no workspace name can climb out of the root or into another's folder.
    return quote(workspace, safe="").replace(".", "%2E") or "%00"


def _compress_into(fd: int, data: bytes) -> None:
    packer = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_BYTES):
        _write_all(fd, packer.compress(view[start : start + CHUNK_BYTES]))
    _write_all(fd, packer.flush())


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]


def _read(path: Path) -> bytes:
    with gzip.open(path, "rb") as src:
        return src.read()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
