"""Every Python block of the README and docs/ runs as written.

The blocks of one document run in order in one fresh directory, each as its own script (a
block that defines `test_` functions runs under pytest, with pytest-asyncio in auto mode, as the
README says to configure it), beside copies of the graph files of examples/workflows/. Markers on the line before a block's fence:

- `<!-- file: NAME.py -->`: the block is saved as NAME.py, so later blocks can import it;
- `<!-- fragment: why -->`: the block is a deliberate fragment (it needs a running server or
  an external database, or continues a block above); it is not run. Keep these few.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!--\s*(file|fragment):\s*(.*?)\s*-->")
EXAMPLE_FILES = ROOT / "examples" / "workflows"
MAX_FRAGMENTS = 7
"""Blocks that may be marked as fragments, over every document."""


@dataclass(frozen=True)
class Block:
    """One ```python block of a document."""

    document: Path
    line: int
    code: str
    marker: tuple[str, str] | None

    @property
    def label(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def python_blocks(document: Path) -> list[Block]:
    """The document's python blocks, indented ones (in list items) included."""
    lines = document.read_text(encoding="utf-8").splitlines()
    blocks, number = [], 0
    while number < len(lines):
        fence = lines[number]
        if fence.strip() != "```python":
            number += 1
            continue
        indent = fence[: len(fence) - len(fence.lstrip())]
        end = number + 1
        while lines[end].strip() != "```":
            end += 1
        before = next((x for x in reversed(lines[:number]) if x.strip()), "")
        found = MARKER.search(before)
        code = textwrap.dedent("\n".join(x.removeprefix(indent) for x in lines[number + 1 : end]))
        marker = (found.group(1), found.group(2)) if found else None
        blocks.append(Block(document, number + 1, code + "\n", marker))
        number = end + 1
    return blocks


def test_fragments_are_few_and_say_why() -> None:
    fragments = [
        b for d in DOCUMENTS for b in python_blocks(d) if b.marker and b.marker[0] == "fragment"
    ]
    assert all(b.marker and b.marker[1] for b in fragments)
    assert len(fragments) <= MAX_FRAGMENTS, [b.label for b in fragments]


@pytest.mark.parametrize(
    "document",
    [d for d in DOCUMENTS if python_blocks(d)],
    ids=lambda d: str(d.relative_to(ROOT)),
)
def test_python_blocks_run(document: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERPIPE_")}
    env["PYTHONPATH"] = str(tmp_path)
    for example in EXAMPLE_FILES.glob("*.json"):
        shutil.copy(example, tmp_path / example.name)
    for block in python_blocks(document):
        if block.marker and block.marker[0] == "fragment":
            continue
        name = block.marker[1] if block.marker else f"block_{block.line}.py"
        script = tmp_path / name
        script.write_text(block.code, encoding="utf-8")
        command = [sys.executable, str(script)]
        if re.search(r"^(async )?def test_", block.code, re.MULTILINE):
            pytest_options = ["-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto"]
            command = [sys.executable, "-m", "pytest", *pytest_options, str(script)]
        done = subprocess.run(
            command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{block.label}:\n{done.stdout}\n{done.stderr}"
