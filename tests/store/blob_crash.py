"""A process the folder store's crash tests kill: `python -m tests.store.blob_crash MODE ROOT
MARKER [SHA]`.

`sweep`: deletes blob SHA as the sweep does (conditionally), and stops for good right after
renaming it aside, before it decides. `put`: writes a blob and stops for good after writing
its temporary file, before the fsync. Either way it first writes MARKER: the test SIGKILLs it
there.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import Any

from inferpipe.store.blobs import FileBlobStore

WORKSPACE = "default"
DOCUMENT = b'{"doc": "' + b"k" * 300_000 + b'"}'


def stop_after(name: str, marker: Path) -> None:
    """Replace `os.<name>` by a call of it that then marks MARKER and blocks for good."""
    real = getattr(os, name)

    def stopping(*args: Any) -> Any:
        result = real(*args)
        marker.write_text(name)
        threading.Event().wait()
        return result

    setattr(os, name, stopping)


def main(mode: str, root: Path, marker: Path, sha: str = "") -> None:
    blobs = FileBlobStore(root)
    if mode == "sweep":
        stop_after("rename", marker)
        asyncio.run(blobs.delete(WORKSPACE, sha, written_before_ms=2**62))
    else:
        stop_after("fsync", marker)
        asyncio.run(blobs.put(WORKSPACE, DOCUMENT))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), *sys.argv[4:5])
