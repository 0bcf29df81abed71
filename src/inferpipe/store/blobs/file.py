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
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, unquote

from inferpipe.store.blobs.base import CHUNK_BYTES, BlobError, BlobInfo, BlobNotFoundError

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
        # Hashed, compressed and written in a thread: 100 MB is a second of work off the loop.
        return await asyncio.to_thread(self._put, workspace, data)

    def _put(self, workspace: str, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self._write(self._path(workspace, sha), data)
        return sha

    async def get(self, workspace: str, sha256: str) -> bytes:
        path = self._path(workspace, sha256)
        try:
            return await asyncio.to_thread(_read_or_held, path)
        except FileNotFoundError:
            raise BlobNotFoundError(workspace, sha256) from None
        except (OSError, zlib.error, EOFError) as exc:
            raise BlobError(f"cannot read blob {path}: {exc}") from exc

    async def open(self, workspace: str, sha256: str) -> AsyncIterator[bytes]:
        path = self._path(workspace, sha256)
        try:
            src = await asyncio.to_thread(_open_or_held, path)
        except FileNotFoundError:
            raise BlobNotFoundError(workspace, sha256) from None
        except OSError as exc:
            raise BlobError(f"cannot read blob {path}: {exc}") from exc
        return _stream(src, path)

    async def get_many(self, workspace: str, shas: list[str]) -> dict[str, bytes]:
        paths = {sha: self._path(workspace, sha) for sha in shas if SHA256.fullmatch(sha)}
        try:
            return await asyncio.to_thread(_read_many, paths)  # one thread hop for them all
        except (OSError, zlib.error, EOFError) as exc:
            raise BlobError(f"cannot read blobs in {self.root}: {exc}") from exc

    async def delete(
        self, workspace: str, sha256: str, *, written_before_ms: int | None = None
    ) -> bool:
        path = self._path(workspace, sha256)
        try:
            return await asyncio.to_thread(_delete, path, written_before_ms)
        except OSError as exc:
            raise BlobError(f"cannot delete blob {path}: {exc}") from exc

    async def list_blobs(self, workspace: str) -> list[BlobInfo]:
        return await asyncio.to_thread(self._list, self.root / workspace_dir(workspace))

    async def collect_leftovers(
        self, workspace: str, *, now_ms: int, written_before_ms: int
    ) -> None:
        """Put back each blob a killed sweep left held aside (`_delete`; held more than
        `HELD_MS` before `now_ms`), to be decided on as any other, and remove temporary
        files of writes killed half-way, last written before `written_before_ms`."""
        directory = self.root / workspace_dir(workspace)
        try:
            await asyncio.to_thread(_collect_leftovers, directory, now_ms, written_before_ms)
        except OSError as exc:
            raise BlobError(f"cannot tidy blobs in {directory}: {exc}") from exc

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
                try:
                    _touch(path)  # renewed: a sweep deciding now keeps it (see _delete)
                except FileNotFoundError:
                    pass  # a sweep took it just now: written again below
                else:
                    # utime finds the file by name before it sets the time: a sweep's rename
                    # and check can fall in between and unlink a file this touched. Still
                    # under its name after the touch, the touch came first (the sweep keeps it).
                    if path.exists():
                        return
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}{_TMP}")
            try:
                with open(tmp, "wb") as out:
                    _compress_into(out.fileno(), data)
                    os.fsync(out.fileno())
                _touch(tmp)
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


def _touch(path: Path) -> None:
    # The exact time: a file's own timestamp comes from the kernel's coarse clock, which lags
    # time.time() by a few ms, and a sweep's cutoff is compared with it.
    now_ns = time.time_ns()
    os.utime(path, ns=(now_ns, now_ns))


def _read(path: Path) -> bytes:
    with gzip.open(path, "rb") as src:
        return src.read()


_HELD = ".sweep"
"""The suffix of a blob a sweep holds aside while it decides (see `_delete`)."""

_TMP = ".tmp"
"""The suffix of a blob being written (see `FileBlobStore._write`)."""

HELD_MS = 10_000
"""How long a blob held aside (for the instant of one check) is left to the sweep holding it
before another sweep puts it back: that sweep was killed."""


def _read_or_held(path: Path) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        # A sweep may hold it aside for an instant; its content is the same (content-addressed).
        for held in path.parent.glob(f".{path.name}.*{_HELD}"):
            try:
                return _read(held)
            except FileNotFoundError:
                continue
        try:
            return _read(path)  # put back meanwhile
        except FileNotFoundError:
            raise


def _open_or_held(path: Path) -> gzip.GzipFile:
    try:
        return gzip.open(path, "rb")
    except FileNotFoundError:
        for held in path.parent.glob(f".{path.name}.*{_HELD}"):
            try:
                return gzip.open(held, "rb")
            except FileNotFoundError:
                continue
        return gzip.open(path, "rb")  # put back meanwhile, or FileNotFoundError


async def _stream(src: gzip.GzipFile, path: Path) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(src.read, CHUNK_BYTES):
            yield chunk
    except (OSError, zlib.error, EOFError) as exc:
        raise BlobError(f"cannot read blob {path}: {exc}") from exc
    finally:
        src.close()


def _read_many(paths: dict[str, Path]) -> dict[str, bytes]:
    found = {}
    for sha, path in paths.items():
        try:
            found[sha] = _read_or_held(path)
        except FileNotFoundError:
            continue
    return found


def _delete(path: Path, written_before_ms: int | None) -> bool:
    """Unlink `path`; with `written_before_ms`, only when last written before then.

    The blob is first renamed aside (atomic), so a `put` renewing it either renewed it before
    the rename (the held file's mtime is recent: it is put back) or finds it gone and writes
    it again. A check of the mtime and then an unlink would lose a renewal made in between.
    """
    if written_before_ms is None:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True
    held = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}{_HELD}")
    try:
        os.rename(path, held)
    except FileNotFoundError:
        return False
    try:
        if int(held.stat().st_mtime * 1000) >= written_before_ms:
            os.replace(held, path)  # renewed: back (a put that wrote it again wrote the same)
            return False
        held.unlink()
    except FileNotFoundError:
        return False  # put back by another sweep meanwhile (`_collect_leftovers`): kept
    return True


def _collect_leftovers(directory: Path, now_ms: int, written_before_ms: int) -> None:
    if not directory.is_dir():
        return
    for shard in os.scandir(directory):
        if not shard.is_dir() or len(shard.name) != 2:
            continue
        for entry in os.scandir(shard.path):
            name = entry.name
            sha = name[1:].split(".", 1)[0]
            if not (name.startswith(".") and SHA256.fullmatch(sha)):
                continue
            try:
                if name.endswith(_HELD):
                    # A rename sets the ctime: when the blob was held aside.
                    if entry.stat().st_ctime * 1000 < now_ms - HELD_MS:
                        _put_back(Path(entry.path), Path(shard.path) / f"{sha}{_SUFFIX}")
                elif name.endswith(_TMP) and entry.stat().st_mtime * 1000 < written_before_ms:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue  # gone meanwhile: another sweep took care of it


def _put_back(held: Path, path: Path) -> None:
    """Return `held` to `path`, unless a put wrote the blob again there since (the same
    content, renewed: a rename over it would lose the renewal)."""
    try:
        os.link(held, path)
    except FileExistsError:
        pass
    else:
        _fsync_dir(path.parent)  # under its name durably before the held name goes
    held.unlink()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
