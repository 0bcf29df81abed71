"""A worker process killed with SIGKILL mid-run, then another one: the spans of the steps the
first one recorded are not made again, the run's spans stay in one trace, and the attempt in
flight at the kill has one span (from the execution that recorded it).

Set INFERPIPE_CRASH_LOOPS to run the crash case that many times in a row.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.core.trace_context import run_span
from tests.engine.test_crash_recovery import _invoke, start_worker, wait_for, wait_for_status
from tests.telemetry.conftest import otel_environment
from tests.telemetry.otlp_receiver import otlp_receiver

LOOPS = int(os.environ.get("INFERPIPE_CRASH_LOOPS", "1"))


@pytest.mark.parametrize("loop", range(LOOPS))
async def test_sigkill_and_recovery_do_not_duplicate_spans(tmp_path: Path, loop: int) -> None:
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    log, hold = tmp_path / "steps.log", tmp_path / "hold"
    with otlp_receiver() as receiver:
        env = {
            **os.environ,
            **otel_environment(receiver),
            "OTEL_SERVICE_NAME": "crash-worker",
            "INFERPIPE_DATABASE_URL": db,
            "CRASH_LOG": str(log),
            "CRASH_HOLD": str(hold),
        }
        hold.touch()
        app = ip.App("observer", database=db, telemetry=False)
        async with app:
            first = start_worker(env)
            run_id = await _invoke(db)
            await wait_for(lambda: log.exists() and "slow" in log.read_text().split())
            # What the first worker recorded has been exported before it dies.
            receiver.wait_for(lambda spans: {"step a", "step b"} <= {s.name for s in spans})
            first.send_signal(signal.SIGKILL)
            first.wait()
            # Step records are pipelined: the last ones may still have been on their way to the
            # disk; those steps run again (their first attempts' spans were made as recorded).
            durable = [s.key for s in await app.engine.store.get_steps(run_id)]
            assert durable == ["a", "b"][: len(durable)]
            hold.unlink()
            second = start_worker(env)
            try:
                await wait_for_status(app, run_id)
            finally:
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=20) == 0  # its close flushed its spans
            run = await app.engine.store.get_run(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        lost = [key for key in ["a", "b"] if key not in durable]
        assert log.read_text().split() == ["a", "b", "slow", *lost, "slow", "c", "d"]
        spans = list(receiver.spans)
    counts = Counter(s.name for s in spans)
    assert counts == {
        "run pipeline": 1,
        "step a": 1 + ("a" in lost),
        "step b": 1 + ("b" in lost),
        "step slow": 1,
        "step c": 1,
        "sleep pause": 1,
        "step d": 1,
    }
    root = run_span(run_id, [])
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert {s.parent_span_id for s in spans if s.name != "run pipeline"} == {root.span_id}
    executions = {s.name: s.attributes.get("inferpipe.execution") for s in spans}
    # the last span of each name: the run's second execution ran again what was lost
    assert executions["step a"] == 1 + ("a" in lost)
    assert executions["step b"] == 1 + ("b" in lost)
    assert executions["step slow"] == executions["step c"] == 2
    assert executions["step d"] == 3
    assert {s.service for s in spans} == {"crash-worker"}
