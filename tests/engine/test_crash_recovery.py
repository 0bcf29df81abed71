"""A worker process killed with SIGKILL mid-run loses nothing: steps recorded durably are not
executed again and the run completes when a worker is back.

Set INFERPIPE_CRASH_LOOPS to run the kill cases that many times in a row."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.core.records import Run
from inferpipe.engine.lifecycle import RunListener, StepStart
from tests.engine import crash_app

APP_FILE = Path(crash_app.__file__)
LOOPS = int(os.environ.get("INFERPIPE_CRASH_LOOPS", "1"))
WAIT_S = 120.0
"""How long a case waits for a worker to reach a point: a bound for a hang, not a timing test."""


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inferpipe", "worker", str(APP_FILE), "--lease-ms", "1000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_for(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("round_", range(LOOPS))
async def test_sigkill_mid_run_then_recovery(tmp_path: Path, round_: int) -> None:
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    log, hold = tmp_path / "steps.log", tmp_path / "hold"
    env = {
        **os.environ,
        "INFERPIPE_DATABASE_URL": db,
        "CRASH_LOG": str(log),
        "CRASH_HOLD": str(hold),
    }
    hold.touch()
    app = ip.App("observer", database=db)
    async with app:
        first = start_worker(env)
        run_id = await _invoke(db)
        await wait_for(lambda: log.exists() and "slow" in log.read_text().split())
        first.send_signal(signal.SIGKILL)
        first.wait()
        before = await app.engine.store.get_run(run_id)
        assert before is not None and before.status is ip.RunStatus.RUNNING
        # Step records are pipelined: `b`'s may still have been on its way to the disk.
        durable = [s.key for s in await app.engine.store.get_steps(run_id)]
        assert durable == ["a", "b"][: len(durable)]

        hold.unlink()
        second = start_worker(env)
        try:
            await wait_for_status(app, run_id)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=20) == 0
        run = await app.engine.store.get_run(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        assert run.output == ["a", "b", "slow", "c", "d"]
        # What was durable at the crash is not executed again; `slow` was in flight, and `b`
        # if its record was not yet durable: at least once. Everything after: exactly once.
        lost = [k for k in ["a", "b"] if k not in durable]
        assert log.read_text().split() == ["a", "b", "slow", *lost, "slow", "c", "d"]


async def _invoke(db: str) -> str:
    # Invoke through the app that owns the function, as a client process would.
    crash_app.app.database = db
    async with crash_app.app as app:
        return await app.invoke("pipeline")


async def wait_for_status(app: ip.App, run_id: str) -> None:
    async def finished() -> bool:
        run = await app.engine.store.get_run(run_id)
        return run is not None and run.status.finished

    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await finished():
        assert asyncio.get_running_loop().time() < deadline, "run did not finish after recovery"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("round_", range(LOOPS))
async def test_sigterm_finishes_the_step_in_flight_and_hands_the_run_back(
    tmp_path: Path, round_: int
) -> None:
    db = f"sqlite:///{tmp_path / 'term.db'}"
    log, hold = tmp_path / "steps.log", tmp_path / "hold"
    env = {
        **os.environ,
        "INFERPIPE_DATABASE_URL": db,
        "CRASH_LOG": str(log),
        "CRASH_HOLD": str(hold),
    }
    hold.touch()
    app = ip.App("observer", database=db)
    async with app:
        worker = start_worker(env)
        run_id = await _invoke(db)
        await wait_for(lambda: log.exists() and "slow" in log.read_text().split())
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert worker.poll() is None, "the worker must wait for its step in flight"
        hold.unlink()
        assert worker.wait(timeout=20) == 0
        run = await app.engine.store.get_run(run_id)
        assert run is not None and run.status is ip.RunStatus.QUEUED and run.lease_owner is None
        assert [s.key for s in await app.engine.store.get_steps(run_id)] == ["a", "b", "slow"]
        second = start_worker(env)
        try:
            await wait_for_status(app, run_id)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=20)
        assert log.read_text().split() == ["a", "b", "slow", "c", "d"]


async def test_a_lost_lease_stops_the_user_code_at_once(tmp_path: Path) -> None:
    """Another worker takes the run over while a step waits: the worker that lost the lease
    cancels the function's own code (not only its driver), so no later step starts there; the
    new holder runs the step again and its history shows the abandoned attempt."""
    app = ip.App("lease-loss", database=f"sqlite:///{tmp_path / 'app.db'}")
    in_step, stopped = asyncio.Event(), asyncio.Event()
    started: list[str] = []

    @app.function(id="slow")
    async def slow(ctx: ip.Context) -> str:
        async def wait_long() -> str:
            if stopped.is_set():
                return "second try"
            in_step.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                stopped.set()
                raise
            return "never"

        started.append("wait")
        first = await ctx.step.run("wait", wait_long)
        started.append("after")
        return str(first)

    async with app:
        worker = app.worker(lease_ms=600)
        running = asyncio.create_task(worker.run())
        try:
            run_id = await app.invoke("slow")
            await asyncio.wait_for(in_step.wait(), 10)
            # a thief claims the run as if its lease had expired: a new lease, a new token
            later = app.engine.clock.now_ms() + 60_000
            (taken,) = await app.engine.store.claim("thief", ["slow"], 1, later, 60_000)
            await asyncio.wait_for(stopped.wait(), 10)
        finally:
            worker.notify_shutdown()
            await running
        assert started == ["wait"]
        assert taken.lease.owner == "thief" and taken.taken_over
        await app.engine.executor.execute(taken)
        run = await app.get_run(run_id)
        (step,) = await app.engine.store.get_steps(run_id)
    assert run.output == "second try" and started == ["wait", "wait", "after"]
    (abandoned,) = step.meta["attempts"]
    assert abandoned["code"] == "abandoned" and abandoned["execution"] == 1


async def test_a_step_has_one_idempotency_key_across_attempts(tmp_path: Path) -> None:
    app = ip.App("keys", database=f"sqlite:///{tmp_path / 'app.db'}")
    seen: list[str] = []

    @app.function(id="charge", retries=2, backoff=ip.Backoff(base_s=0, jitter=0))
    async def charge(ctx: ip.Context) -> list[str]:
        def pay() -> str:
            seen.append(ctx.idempotency_key())
            if len(seen) < 2:
                raise ConnectionError("payment API timed out")
            return seen[-1]

        keys = [await ctx.step.run("pay", pay) for _ in range(2)]
        try:
            ctx.idempotency_key()
        except RuntimeError:
            keys.append("outside a step")
        return keys

    async with app:
        run_id = await app.invoke("charge")
        await app.worker().run_until_idle()
        run = await app.result(run_id, timeout=10)
    assert seen == [f"{run_id}:pay", f"{run_id}:pay", f"{run_id}:pay:1"]
    assert run.output == [f"{run_id}:pay", f"{run_id}:pay:1", "outside a step"]


@pytest.mark.parametrize("callable_kind", ["sync", "async"])
async def test_no_step_is_called_once_its_lease_may_have_ended(
    tmp_path: Path, callable_kind: str
) -> None:
    """The lease is checked right before a step's code is called, after everything the step
    does first (for a sync callable: in its thread, which may start long after the step was
    reached when every thread is busy). A lease that ends in between calls nothing; the run
    is not failed, and is taken up again under a new lease."""
    app = ip.App("late-start", database=f"sqlite:///{tmp_path / 'app.db'}")
    called: list[str] = []

    def effect() -> str:
        called.append("effect")
        return "done"

    async def effect_async() -> str:
        return effect()

    @app.function(id="one-step")
    async def one_step(ctx: ip.Context) -> str:
        return str(
            await ctx.step.run("effect", effect if callable_kind == "sync" else effect_async)
        )

    ended, reached = threading.Event(), asyncio.Event()

    class EndsAsTheStepStarts(RunListener):
        def step_started(self, run: Run, step: StepStart) -> None:
            # The step passed its first check; its lease ends before its code is called (the
            # worker was starved or stopped, or, for a sync step, no thread was free).
            ended.set()
            reached.set()

    async with app:
        app.engine.add_listener(EndsAsTheStepStarts())
        run_id = await app.invoke("one-step")
        (claimed,) = await app.engine.store.claim(
            "w", ["one-step"], 1, app.engine.clock.now_ms(), 60_000
        )
        await app.engine.executor.execute(claimed, lease_ending=ended.is_set)
        assert reached.is_set()
        run = await app.get_run(run_id)
        steps = await app.engine.store.get_steps(run_id)
    assert called == []
    assert run.status is ip.RunStatus.RUNNING and steps == []
