"""The `inferpipe` command.

The parser (`inferpipe.cli.parser`) names each subcommand's handler; its module is imported
only when that subcommand runs, so `inferpipe --help` loads neither the engine nor the server.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from inferpipe.cli.parser import build_parser
from inferpipe.core.errors import InferpipeError

_Command = Callable[[Any], Coroutine[Any, Any, None]]


def _handler(name: str) -> _Command:
    """`"server:serve"` -> `inferpipe.cli.server.serve`."""
    module, _, function = name.partition(":")
    command: _Command = getattr(importlib.import_module(f"inferpipe.cli.{module}"), function)
    return command


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `inferpipe` command."""
    args = build_parser().parse_args(argv)
    import asyncio  # noqa: PLC0415 - `--help` and usage errors answer before asyncio loads

    try:
        asyncio.run(_handler(args.handler)(args))
    except InferpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
