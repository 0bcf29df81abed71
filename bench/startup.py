"""Start-up cost of the package, the client and the command, each in fresh processes.

    .venv/bin/python -m bench.startup [--repeat 7]

Prints, per case, the median wall time and the median CPU time (user + system) of a fresh
interpreter doing it, and the interpreter alone for reference. CPU time is the steadier figure
on a busy machine; wall time is what a user waits. Also prints how many modules
`import inferpipe.client` loads and whether any of them is the engine, the store, the streams
or the server (the client should load only the wire package and httpx).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

_CLIENT_MODULES = """
import json, sys
before = set(sys.modules)
import inferpipe.client
loaded = sorted(set(sys.modules) - before)
print(json.dumps(loaded))
"""

_KEPT_FROM_CLIENT = (
    "inferpipe.engine",
    "inferpipe.store",
    "inferpipe.streams",
    "inferpipe.server",
    "inferpipe.app",
    "inferpipe.agents",
    "inferpipe.llm",
    "fastapi",
    "starlette",
    "cel",
)


def _command() -> str:
    return str(Path(sys.executable).with_name("inferpipe"))


def _once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process running `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _median(argv: list[str], repeat: int) -> tuple[float, float]:
    _once(argv)  # warm the file cache and the bytecode cache
    runs = [_once(argv) for _ in range(repeat)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per case")
    args = parser.parse_args()

    py = sys.executable
    cases = {
        "python (interpreter alone)": [py, "-c", "pass"],
        "import inferpipe": [py, "-c", "import inferpipe"],
        "import inferpipe.client": [py, "-c", "import inferpipe.client"],
        "inferpipe --help": [_command(), "--help"],
    }
    print(f"median of {args.repeat} fresh processes")
    print(f"{'':30} {'wall':>9} {'cpu':>9}")
    for name, argv in cases.items():
        wall, cpu = _median(argv, args.repeat)
        print(f"{name:30} {wall * 1000:7.0f} ms {cpu * 1000:6.0f} ms")

    out = subprocess.run([py, "-c", _CLIENT_MODULES], check=True, capture_output=True, text=True)
    loaded: list[str] = json.loads(out.stdout)
    ours = [m for m in loaded if m == "inferpipe" or m.startswith("inferpipe.")]
    kept = sorted({p for m in loaded for p in _KEPT_FROM_CLIENT if m == p or m.startswith(p + ".")})
    print(f"import inferpipe.client loads {len(loaded)} modules, {len(ours)} of inferpipe")
    print(f"  of which engine/store/streams/server/...: {', '.join(kept) or 'none'}")


if __name__ == "__main__":
    main()
