"""A node's own `retries` replaces the function's for its steps (task, llm and map items)."""

from __future__ import annotations

from typing import Any

import inferpipe as ip
from inferpipe.llm import errors as llm_errors
from inferpipe.llm._fake import FakeProvider
from inferpipe.llm.providers import ProviderRegistry
from inferpipe.llm.types import ChatRequest
from inferpipe.testing import Harness
from tests.workflows import wf_build as b
from tests.workflows.wf_run import run_graph, runtime, steps_by_key, task

FUNCTION_RETRIES = 3
"""The function's retries (WorkflowRuntime's default), which a node's `retries` overrides."""


def _flaky(calls: dict[str, int]) -> Any:
    def flaky(name: str) -> str:
        calls[name] = calls.get(name, 0) + 1
        raise RuntimeError(f"{name} is down")

    return flaky


async def test_a_node_with_retries_0_fails_at_once() -> None:
    # The real backoff (seconds apart): the virtual clock jumps over it.
    app, rt = runtime(retries=FUNCTION_RETRIES, backoff=ip.Backoff())
    calls: dict[str, int] = {}
    rt.task("flaky")(_flaky(calls))
    document = b.document(
        [{**task("once", "flaky", name="'once'"), "retries": 0}],
        output={"once": "nodes.once.output"},
    )
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "x"})
        step = (await steps_by_key(h, run.id))["node-once-task"]
    assert run.status is ip.RunStatus.FAILED
    assert calls == {"once": 1}
    assert step.status is ip.StepStatus.FAILED and step.attempt == 0
    assert [a["attempt"] for a in step.meta["attempts"]] == [0]


async def test_a_node_without_retries_gets_the_functions() -> None:
    app, rt = runtime(retries=FUNCTION_RETRIES, backoff=ip.Backoff())
    calls: dict[str, int] = {}
    rt.task("flaky")(_flaky(calls))
    document = b.document([task("plain", "flaky", name="'plain'")])
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "x"})
    assert run.status is ip.RunStatus.FAILED
    assert calls == {"plain": FUNCTION_RETRIES + 1}


async def test_a_node_with_retries_5_gets_6_attempts() -> None:
    app, rt = runtime(retries=FUNCTION_RETRIES, backoff=ip.Backoff())
    calls: dict[str, int] = {}
    rt.task("flaky")(_flaky(calls))
    document = b.document(
        [{**task("stubborn", "flaky", name="'stubborn'"), "retries": 5}],
        output={"stubborn": "nodes.stubborn.output"},
    )
    async with Harness(app) as h:
        started_ms = h.now_ms
        run = await run_graph(h, rt, document, {"q": "x"})
        step = (await steps_by_key(h, run.id))["node-stubborn-task"]
        waited_ms = h.now_ms - started_ms
    assert run.status is ip.RunStatus.FAILED
    assert run.error is not None and "node 'stubborn'" in run.error["message"]
    assert calls == {"stubborn": 6}
    assert step.attempt == 5 and len(step.meta["attempts"]) == 6
    assert waited_ms > 0, "the retries' backoff passed on the virtual clock"


async def test_map_items_use_their_own_retries_else_the_maps() -> None:
    app, rt = runtime(retries=FUNCTION_RETRIES)
    calls: dict[str, int] = {}
    rt.task("flaky")(_flaky(calls))
    item = {"type": "task", "task": "flaky", "args": {"name": "'own-' + string(index)"}}
    inherited = {"type": "task", "task": "flaky", "args": {"name": "'map-' + string(index)"}}
    document = b.document(
        [
            {
                "id": "own",
                "type": "map",
                "over": "[0]",
                "retries": 4,
                "node": {**item, "retries": 1},
            },
            {"id": "inherit", "type": "map", "over": "[0]", "retries": 2, "node": inherited},
        ],
        output={"own": "nodes.own.output", "inherit": "nodes.inherit.output"},
    )
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "x"})
    assert run.status is ip.RunStatus.FAILED
    assert calls == {"own-0": 2, "map-0": 3}


async def test_an_llm_node_passes_its_retries_to_the_model_call() -> None:
    calls: list[str] = []

    def unavailable(request: ChatRequest) -> str:
        calls.append(request.model)
        raise llm_errors.ProviderUnavailableError("overloaded", provider="fake")

    providers = ProviderRegistry([FakeProvider(unavailable)])
    app, rt = runtime(retries=FUNCTION_RETRIES, providers=providers)
    document = b.document([b.llm("ask", retries=1)])
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "x"})
        step = (await steps_by_key(h, run.id))["node-ask-llm"]
    assert run.status is ip.RunStatus.FAILED
    assert len(calls) == 2
    assert step.kind is ip.StepKind.LLM and step.attempt == 1
