"""Saved graphs read at import: the current versions straight from a database URL.

`saved_graphs` reads without opening (or migrating) a store, so an application can register
the triggers of its saved graphs at import time, before it starts.

Example::

    for graph in saved_graphs("postgresql://db/inferpipe", "default"):
        print(graph.id, graph.trigger)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from inferpipe.store import database_url, store_from_url
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.store.sqlite.graphs import saved_documents
from inferpipe.workflows import spec

T = TypeVar("T")


def saved_graphs(database: str | Path | None, workspace: str) -> list[spec.Graph]:
    """The current version of every graph saved in `database` for `workspace`, by graph id.

    `database` is a `sqlite:///` or `postgresql://` URL or a file path (None: the default
    database, as for `App`). Nothing is created: a missing SQLite file or missing tables
    read as no graphs.

    Raises:
        StoreError: the PostgreSQL database cannot be reached or read.
    """
    url = database_url(None if database is None else str(database))
    store = store_from_url(url, workspace)  # only to parse the URL: nothing is opened
    if isinstance(store, SQLiteStore):
        documents = saved_documents(store.path, workspace)
    else:
        from inferpipe.store.postgres import graphs  # noqa: PLC0415 - PostgreSQL is optional

        documents = _apart(graphs.saved_documents(url, workspace))
    return [spec.Graph.model_validate_json(document) for document in documents]


def _apart(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to completion on an event loop of its own, in a thread, so this works both
    at import time and when called from code already running in an event loop."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inferpipe-wf") as pool:
        return pool.submit(asyncio.run, work).result()
