"""scripts/demo installs inferpipe without the dev extras; scripts/test installs them all."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of scripts/ whose .venv python records the pip command it is given."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/../pip-calls"\n', "utf-8")
    python.chmod(0o755)
    return tmp_path


def _installs(checkout: Path, source_line: str, *script_args: str) -> str:
    subprocess.run(["bash", "-c", source_line, "script", *script_args], cwd=checkout, check=True)
    return (checkout / ".venv" / "pip-calls").read_text("utf-8").strip()


def _demo_source() -> str:
    return next(
        line
        for line in (ROOT / "scripts" / "demo").read_text("utf-8").splitlines()
        if "bootstrap.sh" in line and not line.startswith("#")
    ).replace('$(dirname "$0")', "scripts")


def test_the_demo_installs_no_dev_extras(checkout: Path) -> None:
    installed = _installs(checkout, _demo_source())
    assert installed.endswith("install -q --disable-pip-version-check -e .")


def test_the_demos_arguments_are_not_taken_for_extras(checkout: Path) -> None:
    """`scripts/demo --port 9000` passes its arguments to `inferpipe dev`, not to pip."""
    installed = _installs(checkout, _demo_source(), "--port", "9000")
    assert installed.endswith("install -q --disable-pip-version-check -e .")


def test_the_test_script_installs_every_extra(checkout: Path) -> None:
    test_source = next(
        line
        for line in (ROOT / "scripts" / "test").read_text("utf-8").splitlines()
        if "bootstrap.sh" in line
    )
    assert test_source.endswith("bootstrap.sh all")
    assert _installs(checkout, test_source).endswith("-e .[all]")


def test_the_readme_has_two_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    set_up = readme.split("## Set up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in set_up.strip().splitlines()]
    assert commands == ["./scripts/demo", "./scripts/test"]
