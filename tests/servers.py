"""Start real servers for tests and benchmarks, on a free loopback port in a temp dir.

Reusable by every suite (and by ``bench/``)::

    url, stop = start_redis(tmp_path)
    try:
        ...
    finally:
        stop()
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

#: How long a server may take to accept connections before we give up.
STARTUP_TIMEOUT_S = 15.0
#: Attempts with a fresh port, in case another process grabbed ours between probe and bind.
START_ATTEMPTS = 3


class ServerStartError(RuntimeError):
    """A test server binary is missing or the server did not come up."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _stopper(process: subprocess.Popen[bytes]) -> Callable[[], None]:
    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    return stop


def _launch_redis(binary: str, workdir: Path, port: int) -> subprocess.Popen[bytes] | None:
    log_path = workdir / f"redis-{port}.log"
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "dir": str(workdir),
        "save": "",  # no snapshots: test data is throwaway
        "appendonly": "no",
        "daemonize": "no",
        "logfile": str(log_path),
    }
    argv = [binary, *(arg for name, value in options.items() for arg in (f"--{name}", value))]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None  # exited: most likely the port was taken; the caller retries
        if _redis_answers(port):
            return process
        time.sleep(0.02)  # startup polling, not test synchronization
    _stopper(process)()
    return None


def start_redis(tmp_path: Path) -> tuple[str, Callable[[], None]]:
    """Start ``redis-server`` on a free loopback port, with its files in ``tmp_path``.

    Returns:
        The ``redis://`` URL and a function that stops the server (idempotent).

    Raises:
        ServerStartError: ``redis-server`` is not installed, or did not start.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerStartError(
            "redis-server is not installed: run scripts/test (it installs it), "
            "or `apt-get install -y redis-server`"
        )
    tmp_path.mkdir(parents=True, exist_ok=True)
    for _ in range(START_ATTEMPTS):
        port = free_port()
        process = _launch_redis(binary, tmp_path, port)
        if process is not None:
            return f"redis://127.0.0.1:{port}/0", _stopper(process)
    logs = sorted(tmp_path.glob("redis-*.log"))
    tail = ""
    if logs:
        with contextlib.suppress(OSError):
            tail = logs[-1].read_text(errors="replace")[-2000:]
    raise ServerStartError(f"redis-server did not start in {tmp_path}; last log:\n{tail}")


# PostgreSQL ---------------------------------------------------------------------------------

#: The user that owns and runs a test cluster when we are root (postgres refuses to run as root).
POSTGRES_OS_USER = "postgres"


def _postgres_bindir() -> Path:
    """The folder with initdb and pg_ctl: `pg_config --bindir`, else the newest Debian install."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout
            candidates.append(Path(out.strip()))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(debian)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise ServerStartError(
        "PostgreSQL server binaries (initdb, pg_ctl) are not installed: run scripts/test "
        "(it installs them), or `apt-get install -y postgresql`"
    )


def _as_server_user(args: list[str]) -> list[str]:
    """Run `args` as the postgres OS user when we are root."""
    import os  # noqa: PLC0415 - only needed here

    if os.geteuid() != 0:
        return args
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", POSTGRES_OS_USER, "--", *args]
    return ["su", POSTGRES_OS_USER, "-s", "/bin/sh", "-c", " ".join(args)]


def _give_to_server_user(path: Path) -> None:
    import os  # noqa: PLC0415
    import pwd  # noqa: PLC0415

    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise ServerStartError(
            f"running as root needs an OS user {POSTGRES_OS_USER!r} to run PostgreSQL: "
            "`apt-get install -y postgresql` creates it"
        ) from None
    os.chown(path, entry.pw_uid, entry.pw_gid)


def start_postgres(
    tmp_dir: Path,
) -> tuple[str, Callable[[], None], Callable[[], None]]:
    """Start a PostgreSQL cluster on a free loopback port, with its files in ``tmp_dir``.

    ``tmp_dir`` must be reachable by the ``postgres`` OS user when running as root (it is
    handed to that user; pytest's own temp folders are not: use ``tempfile.mkdtemp()``).
    Commits are durable (fsync and synchronous_commit on), as in production.

    Returns:
        The ``postgresql://`` URL, a function that stops the server and removes its files
        (idempotent), and a function that crashes it and starts it again after a given number
        of seconds (``pg_ctl stop -m immediate``: every connection is cut, as in a crash;
        then ``pg_ctl start`` with the same settings and port).

    Raises:
        ServerStartError: the server binaries are missing, or the server did not start.
    """
    bindir = _postgres_bindir()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    _give_to_server_user(tmp_dir)
    data = tmp_dir / "data"
    log = tmp_dir / "postgres.log"
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
    result = subprocess.run(
        _as_server_user([*initdb, "-E", "UTF8", "--no-sync", "--no-instructions"]),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServerStartError(f"initdb failed in {data}:\n{result.stderr[-2000:]}")
    pg_ctl = str(bindir / "pg_ctl")
    for _ in range(START_ATTEMPTS):
        port = free_port()
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={tmp_dir}"
            " -c fsync=on -c synchronous_commit=on -c max_connections=200"
        )
        started = subprocess.run(
            _as_server_user(
                [pg_ctl, "start", "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode == 0:
            return f"postgresql://postgres@127.0.0.1:{port}/postgres", *_pg_controls(
                pg_ctl, data, log, options
            )
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise ServerStartError(f"PostgreSQL did not start in {data}; last log:\n{tail}")


def _pg_controls(
    pg_ctl: str, data: Path, log: Path, options: str
) -> tuple[Callable[[], None], Callable[[float], None]]:
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        subprocess.run(
            _as_server_user([pg_ctl, "stop", "-D", str(data), "-m", "immediate", "-w"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(data.parent, ignore_errors=True)

    def control(*args: str) -> None:
        # -l: the new server must not inherit our pipes, or reading them would never end.
        result = subprocess.run(
            _as_server_user([pg_ctl, *args, "-D", str(data), "-w", "-t", "60"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServerStartError(f"pg_ctl {args[0]} failed: {result.stderr[-2000:]}")

    def restart(down_s: float = 0.0) -> None:
        control("stop", "-m", "immediate")
        time.sleep(down_s)
        control("start", "-l", str(log), "-o", options)

    return stop, restart
