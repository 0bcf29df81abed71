"""Find the application a command should run (`module:attr`, `file.py:attr` or `file.py`) and
the workspace it reads."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from inferpipe.app import App
from inferpipe.cli import parser
from inferpipe.core.errors import ConfigurationError


def load_app(target: str | None) -> App:
    """Import the App named by `target` (or $INFERPIPE_APP)."""
    target = target or os.environ.get("INFERPIPE_APP")
    if not target:
        raise ConfigurationError(
            "no app given: pass APP as 'module:attribute' or 'path/to/app.py' "
            "(or set INFERPIPE_APP)"
        )
    location, _, attr = target.partition(":")
    module = _import(location)
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, App):
            raise ConfigurationError(f"{target!r}: {attr!r} is not an inferpipe App")
        return app
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) != 1:
        raise ConfigurationError(
            f"{location!r} defines {len(apps)} inferpipe Apps; name one as '{location}:attribute'"
        )
    return apps[0]


def workspace_of(given: str | None) -> str:
    """The workspace a command reads: `--workspace`, else $INFERPIPE_WORKSPACE, else default."""
    return given or os.environ.get("INFERPIPE_WORKSPACE") or parser.DEFAULT_WORKSPACE


def _import(location: str) -> object:
    if location.endswith(".py") or os.sep in location:
        path = Path(location).resolve()
        if not path.exists():
            raise ConfigurationError(f"app file not found: {location}")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"cannot import {location}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"cannot import app module {location!r}: {exc}") from exc
