"""Helpers shared by the flow control tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import inferpipe as ip
from inferpipe.testing import Harness


async def starts(h: Harness, function_id: str) -> list[int]:
    """Start times of a function's runs, relative to the harness's start, in run order."""
    runs = await h.runs_of(function_id)
    return [r.started_at_ms - T0 for r in runs if r.started_at_ms is not None]


async def by_status(h: Harness, function_id: str) -> dict[ip.RunStatus, list[ip.Run]]:
    found: dict[ip.RunStatus, list[ip.Run]] = {}
    for run in await h.runs_of(function_id):
        found.setdefault(run.status, []).append(run)
    return found


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Wait until `check()` holds (a worker task runs meanwhile)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


T0 = 1_700_000_000_000
"""The harness's virtual start time."""
