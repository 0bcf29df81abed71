"""Blob stores: where payloads above the offload threshold live (see docs/payloads.md).

`BlobStore` is the extension point; `blob_store_from_url` picks an implementation:
`file:///path` (the default, a folder beside the SQLite file), `s3://bucket/prefix` (the `s3`
extra) or `memory://`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from inferpipe.core.errors import ConfigurationError
from inferpipe.store.blobs.base import (
    BlobError,
    BlobInfo,
    BlobNotFoundError,
    BlobStore,
    BlobWorkspaceError,
)
from inferpipe.store.blobs.file import FileBlobStore
from inferpipe.store.blobs.memory import MemoryBlobStore


def blob_store_from_url(url: str | None, default_root: Path | str | None = None) -> BlobStore:
    """A blob store for `url`, else $INFERPIPE_BLOBS_URL, else a folder at `default_root`
    (in memory when it is None)."""
    url = url or os.environ.get("INFERPIPE_BLOBS_URL")
    if not url:
        return MemoryBlobStore() if default_root is None else FileBlobStore(default_root)
    if url.startswith("file://"):
        return FileBlobStore(url.removeprefix("file://") or ".")
    if url == "memory://":
        return MemoryBlobStore()
    if url.startswith("s3://"):
        try:
            s3 = importlib.import_module("inferpipe.store.blobs.s3")
        except ImportError as exc:
            raise ConfigurationError(
                f"s3:// blobs need the s3 extra (pip install 'inferpipe[s3]'): {exc}"
            ) from exc
        store: BlobStore = s3.S3BlobStore.from_url(url)
        return store
    raise ConfigurationError(
        f"unsupported blob store URL {url!r}: use file:///path, s3://bucket/prefix or memory://"
    )


__all__ = [
    "BlobError",
    "BlobInfo",
    "BlobNotFoundError",
    "BlobStore",
    "BlobWorkspaceError",
    "FileBlobStore",
    "MemoryBlobStore",
    "blob_store_from_url",
]
