"""Persistence. `Store` is the protocol every backend implements."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import os
from pathlib import Path

from inferpipe.core.errors import ConfigurationError
from inferpipe.store.base import Store
from inferpipe.store.blobs import blob_store_from_url

DEFAULT_DATABASE = "sqlite:///.inferpipe/inferpipe.db"
"""The embedded default: a SQLite file under ./.inferpipe."""


def database_url(url: str | None = None) -> str:
    """The URL to use: the argument, else INFERPIPE_DATABASE_URL, else the embedded default."""
    return url or os.environ.get("INFERPIPE_DATABASE_URL") or DEFAULT_DATABASE


def store_from_url(
    url: str | None = None, workspace: str = "default", *, blobs: str | None = None
) -> Store:
    """A store for `sqlite:///path`, a plain file path, or `postgresql://...`, with its blob
    store at `blobs` (a `file://` or `s3://` URL), else $INFERPIPE_BLOBS_URL, else a `blobs`
    folder beside the SQLite file (the database's `blobs` table for PostgreSQL)."""
    url = database_url(url)
    blob_store = blob_store_from_url(blobs) if blobs else None
    if url.startswith(("postgresql://", "postgres://")):
        try:
            postgres = importlib.import_module("inferpipe.store.postgres")
        except ImportError as exc:
            raise ConfigurationError(f"PostgreSQL support is not available: {exc}") from exc
        store: Store = postgres.PostgresStore(url, workspace, blobs=blob_store)
        return store
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://").removeprefix("/") or ":memory:"
        if url.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
    elif "://" in url:
        raise ConfigurationError(
            f"unsupported database URL {url!r}: use sqlite:/// or postgresql://"
        )
    else:
        path = url
    from inferpipe.store.sqlite import SQLiteStore  # noqa: PLC0415 - keeps import of base light

    return SQLiteStore(Path(path) if path != ":memory:" else path, workspace, blobs=blob_store)


def saved_documents(url: str, workspace: str) -> list[str]:
    """The current graph documents of `workspace` in the database at `url` (a `sqlite:///` or
    `postgresql://` URL, or a file path), read without opening a store, so nothing is created
    or migrated: a missing SQLite file or missing tables read as none. Works at import time
    and from code already running in an event loop.

    Raises:
        StoreError: the PostgreSQL database cannot be reached or read.
    """
    from inferpipe.store.sqlite import SQLiteStore, graphs  # noqa: PLC0415

    store = store_from_url(url, workspace)  # only to parse the URL: nothing is opened
    if isinstance(store, SQLiteStore):
        return graphs.saved_documents(store.path, workspace)
    from inferpipe.store.postgres import graphs as pg_graphs  # noqa: PLC0415 - optional

    # On an event loop of its own, in a thread: the caller may be inside a running loop.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inferpipe-wf") as pool:
        return pool.submit(asyncio.run, pg_graphs.saved_documents(url, workspace)).result()


__all__ = ["DEFAULT_DATABASE", "Store", "database_url", "saved_documents", "store_from_url"]
