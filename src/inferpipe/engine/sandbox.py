"""Tenant expressions evaluated apart: in worker processes, with a time and a memory budget.

The CEL library evaluates while holding the GIL, so a slow expression evaluated anywhere in the
server's process, even in a thread, stops its event loop (a 234-character filter of nested
`map`s held `/healthz` for seconds). Expressions a tenant writes (dashboard `where` filters,
graph transforms, branch conditions, map sources, task arguments, output mappings) are
therefore evaluated in a small pool of worker processes: the caller waits off the event loop;
an evaluation over its time budget kills its worker (another starts on the next call) and
fails with `ExpressionBudgetError`; a worker's address space is capped, so an expression that
builds huge values takes down its worker, not the server.

Every expression is also checked statically before it is sent (length, comprehension nesting:
`inferpipe.core.expr.compile_expr`).

Example::

    sandbox = default_sandbox()
    total = await sandbox.evaluate("input.items.map(i, i.price)", {"input": data})
    keep = await sandbox.matches_many("run.status == 'failed'", views)
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferpipe.core import expr
from inferpipe.core.errors import ExpressionBudgetError

_HEADER = struct.Struct("!Q")
_WORKER_SCRIPT = Path(__file__).with_name("_sandbox_worker.py")

DEFAULT_TIME_S = 1.0
"""Wall-clock time one call may take (one expression, over one or a batch of inputs)."""
DEFAULT_MEMORY_BYTES = 1024 * 1024 * 1024
"""Address space of a worker process: the interpreter and `cel` need about a tenth of it."""
DEFAULT_WORKERS = 2
"""Worker processes at most; calls beyond wait for one to be free."""
STARTUP_TIMEOUT_S = 60.0
"""How long a new worker may take to start (not counted in any budget)."""


@dataclass(frozen=True, slots=True)
class Budget:
    """What one evaluation call may use.

    Args:
        time_s: wall-clock seconds for the call (a batch shares it).
        memory_bytes: the worker's address space (0: unlimited).
    """

    time_s: float = DEFAULT_TIME_S
    memory_bytes: int = DEFAULT_MEMORY_BYTES


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, memory_bytes: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(_WORKER_SCRIPT), str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin
        self._out = self.process.stdout.fileno()

    def ready(self) -> bool:
        """Wait for the worker's ready frame; False when it did not start."""
        try:
            return self._read(_HEADER.size, time.monotonic() + STARTUP_TIMEOUT_S) is not None
        except OSError:
            return False

    def call(self, request: bytes, deadline: float) -> bytes | None:
        """Send a request and read its reply; None when the deadline passes or the worker
        dies first (the worker is then killed)."""
        try:
            self._in.write(_HEADER.pack(len(request)) + request)
            self._in.flush()
            header = self._read(_HEADER.size, deadline)
            return None if header is None else self._read(_HEADER.unpack(header)[0], deadline)
        except (BrokenPipeError, OSError):
            return None

    def _read(self, size: int, deadline: float) -> bytes | None:
        chunks, left = [], size
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._out], [], [], remaining)[0]:
                return None
            chunk = os.read(self._out, min(left, 1 << 20))
            if not chunk:
                return None  # the worker died (out of memory, killed)
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()


class ExpressionSandbox:
    """A pool of worker processes evaluating CEL under a `Budget`.

    Args:
        budget: the time and memory each call may use.
        workers: worker processes at most (started on demand, kept while idle).
    """

    def __init__(self, budget: Budget | None = None, *, workers: int = DEFAULT_WORKERS) -> None:
        self.budget = budget or Budget()
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        # One thread per worker process waits on its pipe: calls beyond queue here, not in
        # the event loop's default executor (which DNS lookups and sync tasks share).
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="inferpipe-cel"
        )
        self._closed = False

    async def evaluate(self, expression: str, variables: dict[str, Any]) -> Any:
        """The value of `expression` over `variables`.

        Raises:
            InvalidExpressionError: it does not compile or fails the static checks.
            ExpressionEvalError: it failed on this data (missing field, wrong type).
            ExpressionBudgetError: it ran over the time or memory budget.
        """
        ((ok, value),) = await self._run(expression, [variables])
        if not ok:
            raise expr.ExpressionEvalError(expression, str(value))
        return value

    async def matches_many(self, expression: str, batch: list[dict[str, Any]]) -> list[bool]:
        """For each variables of `batch`, whether `expression` is true (an error: false).

        Raises:
            InvalidExpressionError, ExpressionBudgetError: as `evaluate`.
        """
        if not batch:
            expr.compile_expr(expression)
            return []
        replies = await self._run(expression, batch)
        return [ok and value is True for ok, value in replies]

    def close(self) -> None:
        """Stop every idle worker; calls after this start none."""
        self._closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return

    async def _run(self, expression: str, batch: list[dict[str, Any]]) -> list[tuple[bool, Any]]:
        expr.compile_expr(expression)  # static checks and syntax, before any worker is used
        request = pickle.dumps((expression, batch))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._call, expression, request)

    def _call(self, expression: str, request: bytes) -> list[tuple[bool, Any]]:
        if self._closed:
            raise RuntimeError("the expression sandbox is closed")
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            worker = _Worker(self.budget.memory_bytes)
            if not worker.ready():
                worker.kill()
                raise RuntimeError("an expression worker process did not start") from None
        started = time.monotonic()
        reply = worker.call(request, started + self.budget.time_s)
        if reply is None:
            timed_out = time.monotonic() - started >= self.budget.time_s
            exit_code = worker.process.poll()
            worker.kill()
            what = (
                f"ran over its time budget of {self.budget.time_s:g} s"
                if timed_out or exit_code is None
                else f"ended its worker process (exit {exit_code}): most likely over the "
                f"memory budget of {self.budget.memory_bytes >> 20} MB"
            )
            raise ExpressionBudgetError(expression, what)
        if self._closed:
            worker.kill()
        else:
            self._idle.put(worker)
        replies: list[tuple[bool, Any]] = pickle.loads(reply)
        return replies


_DEFAULT: ExpressionSandbox | None = None
_DEFAULT_LOCK = threading.Lock()


def default_sandbox() -> ExpressionSandbox:
    """The process's shared sandbox (its workers stop when the process exits)."""
    global _DEFAULT  # noqa: PLW0603 - one pool per process, made on first use
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = ExpressionSandbox()
            atexit.register(_DEFAULT.close)
        return _DEFAULT
