"""What each entry point loads: the client only the wire format, the package root nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import inferpipe

_LOADED = """
import json, sys
before = set(sys.modules)
import {module}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _loaded_by(module: str) -> list[str]:
    """The modules a fresh interpreter loads to import `module`."""
    out = subprocess.run(
        [sys.executable, "-c", _LOADED.format(module=module)],
        check=True,
        capture_output=True,
        text=True,
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def _ours(modules: list[str]) -> set[str]:
    return {m for m in modules if m == "inferpipe" or m.startswith("inferpipe.")}


def test_the_client_loads_the_wire_format_and_core_only() -> None:
    loaded = _loaded_by("inferpipe.client")
    layers = {m.split(".")[1] for m in _ours(loaded) if "." in m}
    assert layers <= {"client", "_client_errors", "_client_stream", "core", "wire"}
    assert "wire" in layers
    assert not {"fastapi", "starlette", "cel"} & {m.split(".")[0] for m in loaded}


def test_the_package_root_loads_its_names_on_first_use() -> None:
    assert _ours(_loaded_by("inferpipe")) == {"inferpipe"}
    for name in inferpipe.__all__:
        assert getattr(inferpipe, name) is not None
    assert inferpipe.NonRetryableError is inferpipe.NonRetriableError


def test_an_unknown_name_of_the_root_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = inferpipe.NoSuchThing  # type: ignore[attr-defined]
