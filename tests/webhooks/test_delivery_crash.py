"""A worker process killed with SIGKILL between two attempts of a delivery loses nothing: the
next worker makes the next attempt, and the receiver (a real HTTP server, counting what it
gets) sees each attempt once and the delivery accepted exactly once. On SQLite and on
PostgreSQL (a fresh database per loop on the session's server).

Run it in a loop with ``INFERPIPE_WEBHOOK_CRASH_LOOPS=20``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import standardwebhooks
from cryptography.fernet import Fernet

from inferpipe.core.events import Event
from inferpipe.store.base import RunFilter
from inferpipe.webhooks.delivery import DELIVER_FUNCTION_ID, get_delivery
from inferpipe.webhooks.subscriptions import EventType, webhook_subscriptions
from tests.store.conftest import session_postgres
from tests.webhooks import delivery_app
from tests.webhooks.receiver import receiver

APP_FILE = Path(delivery_app.__file__)
LOOPS = int(os.environ.get("INFERPIPE_WEBHOOK_CRASH_LOOPS", "1"))


def start_worker(env: dict[str, str], lease_ms: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inferpipe", "worker", str(APP_FILE), "--lease-ms", str(lease_ms)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 45.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("loop", range(LOOPS))
async def test_sigkill_between_attempts_delivers_once(
    tmp_path: Path, loop: int, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "sqlite":
        db = f"sqlite:///{tmp_path / 'crash.db'}"
    else:
        db = await session_postgres().new_database()
        # Sealed subscription secrets: the same operator key in this process and the workers.
        monkeypatch.setenv("INFERPIPE_SECRETS_KEY", Fernet.generate_key().decode())
    env = {
        **os.environ,
        "INFERPIPE_DATABASE_URL": db,
        "INFERPIPE_EGRESS_PRIVATE": "*",  # the operator allows the loopback receiver
        "WEBHOOK_BACKOFF_S": "2",
    }
    app = delivery_app.build(db, private=True, backoff_s=2)
    with receiver([500]) as hook:
        async with app:
            store = app.engine.store
            sub, secret = await webhook_subscriptions(store).create(
                "default", hook.url, events=[EventType.RUN_FINISHED], allow_private=True
            )
            # The killed worker's lease is short, so the next one takes its run over soon;
            # the next one's is long, so a loaded machine does not make it look dead too (its
            # run would then be taken over again and an attempt made twice: at least once).
            first = start_worker(env, lease_ms=1000)
            second: subprocess.Popen[bytes] | None = None
            try:
                await app.send(Event("test/work", {"n": loop}))

                async def sleeping_between_attempts() -> bool:
                    runs = await store.list_runs(RunFilter(function_id=DELIVER_FUNCTION_ID))
                    if not runs.items:
                        return False
                    steps = await store.get_steps(runs.items[0].id)
                    return any(s.key == "backoff" for s in steps)

                await wait_for(sleeping_between_attempts)
                first.send_signal(signal.SIGKILL)
                first.wait()
                assert [r.answered for r in hook.all()] == [500]

                second = start_worker(env, lease_ms=30_000)

                async def accepted() -> bool:
                    return len(hook.accepted()) >= 1

                await wait_for(accepted)
                runs = await store.list_runs(RunFilter(function_id=DELIVER_FUNCTION_ID))

                async def settled() -> bool:
                    run = await store.get_run(runs.items[0].id)
                    return run is not None and run.status.value == "completed"

                await wait_for(settled)
            finally:
                for worker in (first, second):
                    if worker is not None and worker.poll() is None:
                        worker.send_signal(signal.SIGTERM)
                        worker.wait(timeout=30)
            calls = hook.all()
            assert [c.answered for c in calls] == [500, 200]
            assert len({c.headers["webhook-id"] for c in calls}) == 1
            for call in calls:
                standardwebhooks.Webhook(secret).verify(call.body, call.headers)
            logged = await get_delivery(store, calls[0].headers["webhook-id"])
            assert logged.subscription_id == sub.id and logged.status == "succeeded"
            assert [(a["n"], a["status_code"]) for a in logged.attempts] == [(0, 500), (1, 200)]
