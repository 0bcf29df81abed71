"""Tracebacks stored with a failed step or run: the user's frames, trimmed and size-capped.

The engine's own frames (inferpipe, asyncio, threads) say nothing about the failure and are
dropped; a run of library frames (site-packages, the standard library) is collapsed to its
last frame, where it raised; what remains is capped at `MAX_TRACEBACK_CHARS`, cut in the
middle so the outermost frame, the innermost frames and the error line survive.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from pathlib import Path

MAX_TRACEBACK_CHARS = 8_000
"""Upper bound on a stored traceback, in characters."""

MAX_CHAIN = 3
"""Causes (`raise ... from ...`, or an error raised while handling another) shown at most."""

_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve()) + os.sep
_PLUMBING = tuple(
    _STDLIB + name
    for name in (f"asyncio{os.sep}", f"concurrent{os.sep}", "contextlib.py", "threading.py")
)
_LIBRARIES = ("site-packages", "dist-packages")


def format_traceback(exc: BaseException, *, cause: str | None = None) -> str | None:
    """The exception's traceback as text, its causes first (as Python prints them). `cause`,
    when given, is an already formatted traceback shown first instead of the exception's own
    causes (a failed step's, for the error raised at the step's call). None when there is no
    frame to show."""
    chain = [exc]
    if cause is None:
        link = _cause_of(exc)
        while link is not None and len(chain) <= MAX_CHAIN and link not in chain:
            chain.append(link)
            link = _cause_of(link)
    parts = [cause] if cause else []
    for link in reversed(chain):
        frames = _frames(link)
        if frames:
            lines = ["Traceback (most recent call last):\n", *frames]
            parts.append("".join(lines + traceback.format_exception_only(type(link), link)))
    if not parts:
        return None
    return _capped(
        "\nThe above exception was the direct cause of the following exception:\n\n".join(parts)
    )


def _cause_of(exc: BaseException) -> BaseException | None:
    return exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def _frames(exc: BaseException) -> list[str]:
    kept: list[str] = []
    library_run: list[traceback.FrameSummary] = []

    def flush() -> None:
        if len(library_run) > 1:
            kept.append(f"  ... {len(library_run) - 1} library frames ...\n")
        if library_run:
            kept.extend(traceback.format_list([library_run[-1]]))
        library_run.clear()

    for frame in traceback.extract_tb(exc.__traceback__):
        path = os.path.abspath(frame.filename)
        if path.startswith(_PACKAGE) or path.startswith(_PLUMBING):
            continue
        if any(part in path for part in _LIBRARIES) or path.startswith(_STDLIB):
            library_run.append(frame)
            continue
        flush()
        kept.extend(traceback.format_list([frame]))
    flush()
    return kept


def _capped(text: str) -> str:
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    marker = "  ... {} characters cut ...\n"
    keep = MAX_TRACEBACK_CHARS - len(marker) - 8
    head = text[: keep // 4]
    tail = text[len(text) - (keep - len(head)) :]
    return head + marker.format(len(text) - len(head) - len(tail)) + tail
