"""The worker process of `inferpipe.engine.sandbox`: evaluates CEL requests read from stdin.

Run as a script (``python -I _sandbox_worker.py MEMORY_BYTES``), so it imports only `cel` and
the standard library. Each request is a frame (8-byte big-endian length, then a pickle) holding
``(expression, [variables, ...])``; each reply is a frame holding one ``(ok, value)`` per
variables: the value, or the error message. An empty frame first says the worker is ready.
The worker exits when stdin closes.
"""

from __future__ import annotations

import pickle
import resource
import struct
import sys
from functools import lru_cache
from typing import Any, BinaryIO

import cel

_HEADER = struct.Struct("!Q")


@lru_cache(maxsize=256)
def _program(expression: str) -> Any:
    return cel.compile(expression)


def _evaluate(expression: str, variables: dict[str, Any]) -> tuple[bool, Any]:
    try:
        return True, _program(expression).execute(variables)
    except Exception as exc:  # the parent turns the message into ExpressionEvalError
        kind = "missing field" if isinstance(exc, KeyError) else type(exc).__name__
        return False, f"{kind} {exc}"


def _read(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def main() -> None:
    memory_bytes = int(sys.argv[1])
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    sink.write(_HEADER.pack(0))  # ready: the parent's time budget starts from here
    sink.flush()
    while True:
        header = _read(source, _HEADER.size)
        if header is None:
            return
        body = _read(source, _HEADER.unpack(header)[0])
        if body is None:
            return
        expression, batch = pickle.loads(body)
        replies = [_evaluate(expression, variables) for variables in batch]
        try:
            payload = pickle.dumps(replies)
        except Exception as exc:
            payload = pickle.dumps([(False, f"the result cannot be returned: {exc}")] * len(batch))
        sink.write(_HEADER.pack(len(payload)) + payload)
        sink.flush()


if __name__ == "__main__":
    main()
