"""What each entry point loads: the client only the wire format, the package root and the
command's parser nothing of the engine, the store or the server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import inferpipe
from inferpipe import store
from inferpipe.cli import parser
from inferpipe.store import keys

_LOADED = """
import contextlib, json, sys
before = set(sys.modules)
with contextlib.suppress(SystemExit):
    {statement}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _loaded_by(statement: str) -> list[str]:
    """The modules a fresh interpreter loads to run `statement`."""
    out = subprocess.run(
        [sys.executable, "-c", _LOADED.format(statement=statement)],
        check=True,
        capture_output=True,
        text=True,
    )
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1])
    return loaded


def _ours(modules: list[str]) -> set[str]:
    return {m for m in modules if m == "inferpipe" or m.startswith("inferpipe.")}


def test_the_client_loads_the_wire_format_and_core_only() -> None:
    loaded = _loaded_by("import inferpipe.client")
    layers = {m.split(".")[1] for m in _ours(loaded) if "." in m}
    assert layers <= {"client", "_client_errors", "_client_stream", "core", "wire"}
    assert "wire" in layers
    assert not {"fastapi", "starlette", "cel"} & {m.split(".")[0] for m in loaded}


def test_the_package_root_loads_its_names_on_first_use() -> None:
    assert _ours(_loaded_by("import inferpipe")) == {"inferpipe"}
    for name in inferpipe.__all__:
        assert getattr(inferpipe, name) is not None
    assert inferpipe.NonRetryableError is inferpipe.NonRetriableError


def test_the_app_loads_no_expression_language_model_prices_or_web_framework() -> None:
    loaded = {m.split(".")[0] for m in _loaded_by("from inferpipe import App")}
    assert not {"cel", "prompt_toolkit", "genai_prices", "fastapi", "starlette"} & loaded


def test_the_commands_help_loads_no_subcommand() -> None:
    loaded = _ours(_loaded_by("from inferpipe.cli import main; main(['--help'])"))
    assert {m for m in loaded if m.startswith("inferpipe.cli.")} == {"inferpipe.cli.parser"}
    layers = {m.split(".")[1] for m in loaded if "." in m}
    assert layers == {"cli", "core"}


def test_the_parser_names_the_stores_defaults() -> None:
    assert parser.DEFAULT_DATABASE == store.DEFAULT_DATABASE
    assert parser.DEFAULT_RATE_LIMIT_PER_MIN == keys.DEFAULT_RATE_LIMIT_PER_MIN


def test_an_unknown_name_of_the_root_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = inferpipe.NoSuchThing  # type: ignore[attr-defined]
