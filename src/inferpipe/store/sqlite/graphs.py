"""`GraphTable` in a SQLite file (tables of migration 0003_workflows.sql)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from inferpipe.store.graphs import CURRENT_GRAPHS, SQLGraphs
from inferpipe.store.sqlite.database import Database, Runner


class SQLiteGraphs(SQLGraphs):
    """One workspace's graph versions beside the runs, through the store's connection thread
    (so saves take part in its group commits and need no second connection)."""

    def __init__(self, db: Database, workspace: str) -> None:
        super().__init__(Runner(db), workspace)


def saved_documents(path: Path | str, workspace: str) -> list[str]:
    """The current graph documents of `workspace` in the file at `path`, read without opening
    a store: a missing file or missing tables read as none."""
    if str(path) == ":memory:" or not Path(path).exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute(CURRENT_GRAPHS, (workspace,)).fetchall()
        except sqlite3.OperationalError:  # the workflow tables do not exist yet
            return []
    return [str(row[0]) for row in rows]
