"""Numbered SQL migrations per dialect: `<dialect>/NNNN_name.sql`, applied in order once."""

from __future__ import annotations

import itertools
from importlib import resources


def migration_files(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration of `dialect`, in order."""
    folder = resources.files(__package__) / dialect
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    found.sort()
    for (v1, n1, _), (v2, n2, _) in itertools.pairwise(found):
        if v1 == v2:  # the second would be taken as applied and silently skipped
            raise RuntimeError(f"migrations {n1} and {n2} share version {v1}: renumber one")
    return found
