"""Executing graphs durably: parallel nodes, branches, maps, failures and re-runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.testing import Harness
from inferpipe.workflows import spec
from inferpipe.workflows.errors import GraphNotFoundError, WorkflowInputError
from inferpipe.workflows.runtime import run_cost
from tests.workflows import wf_build as b
from tests.workflows.wf_run import run_graph, runtime, steps_by_key, task

OVERLAP_TIMEOUT_S = 5.0
"""Bound on waiting for a sibling node; it only matters when nodes do not overlap (a bug)."""


async def test_independent_nodes_overlap_in_time() -> None:
    app, rt = runtime(retries=0)
    arrived = {"left": asyncio.Event(), "right": asyncio.Event()}
    log: list[str] = []

    @rt.task("meet")
    async def meet(name: str, other: str) -> str:
        log.append(f"enter {name}")
        arrived[name].set()
        # Returns only once the other node has started: sequential execution cannot pass.
        await asyncio.wait_for(arrived[other].wait(), timeout=OVERLAP_TIMEOUT_S)
        log.append(f"exit {name}")
        return name

    document = b.document(
        [
            task("left", "meet", name="'left'", other="'right'"),
            task("right", "meet", name="'right'", other="'left'"),
            b.transform("both", "[nodes.left.output, nodes.right.output, input.q]"),
        ]
    )
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "x"})
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert run.output == {"result": ["left", "right", "x"]}
    assert sorted(log[:2]) == ["enter left", "enter right"]


async def test_branch_runs_the_chosen_arm_and_records_the_others_skipped() -> None:
    app, rt = runtime()
    document = b.document(
        [
            b.transform("size", "size(input.q)"),
            {
                "id": "route",
                "type": "branch",
                "cases": [{"when": "nodes.size.output > 3", "then": ["long"]}],
                "else": ["short"],
            },
            b.transform("long", "'long: ' + input.q"),
            b.transform("short", "'short: ' + input.q"),
            b.transform("after_long", "nodes.long.output + '!'"),
        ],
        output={
            "long": "nodes.long.output",
            "short": "nodes.short.output",
            "after": "nodes.after_long.output",
        },
    )
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "hi"})
        steps = await steps_by_key(h, run.id)
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert run.output == {"long": None, "short": "short: hi", "after": None}
    assert steps["node-route-branch"].output == {"arm": 1, "when": None, "targets": ["short"]}
    for skipped in ("node-long-transform", "node-after_long-transform"):
        assert steps[skipped].status is ip.StepStatus.COMPLETED
        assert steps[skipped].output["skipped"] is True
        assert steps[skipped].meta["skipped"] is True
    assert "chose the else arm" in steps["node-long-transform"].output["reason"]
    assert "'long'" in steps["node-after_long-transform"].output["reason"]


async def test_map_keeps_item_order_and_bounds_concurrency() -> None:
    app, rt = runtime()
    state = {"active": 0, "peak": 0, "started": 0}
    paired = asyncio.Event()

    @rt.task("work")
    async def work(x: int, index: int) -> int:
        state["active"] += 1
        state["started"] += 1
        state["peak"] = max(state["peak"], state["active"])
        # Items start as their arguments are evaluated (in worker processes), so overlap is not
        # a given: the first items wait until two run at once (or the last has started).
        if state["active"] == 2 or state["started"] == 6:
            paired.set()
        await paired.wait()
        for _ in range(10 - index):  # later items finish sooner once they start
            await asyncio.sleep(0)
        state["active"] -= 1
        return x * 10

    document = b.document(
        [
            b.transform("items", "[5, 4, 3, 2, 1, 0]"),
            {
                "id": "each",
                "type": "map",
                "over": "nodes.items.output",
                "concurrency": 2,
                "node": {"type": "task", "task": "work", "args": {"x": "item", "index": "index"}},
            },
        ]
    )
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "x"})
        steps = await steps_by_key(h, run.id)
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert run.output == {"result": [50, 40, 30, 20, 10, 0]}
    assert state["peak"] == 2
    assert [steps[f"node-each-task-{i}"].output for i in range(6)] == [50, 40, 30, 20, 10, 0]
    assert steps["node-each-map"].output == [50, 40, 30, 20, 10, 0]


async def test_a_map_over_too_many_items_fails_at_run_time() -> None:
    app, rt = runtime()
    item_node = {"type": "transform", "expression": "item + size(input.q)"}
    each = {"id": "each", "type": "map", "over": "[1, 2, 3]", "max_items": 2, "node": item_node}
    document = b.document([each])
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "x"})
        step = (await steps_by_key(h, run.id))["node-each-map"]
    assert run.status is ip.RunStatus.FAILED
    assert step.error is not None and "yielded 3 items; max_items is 2" in step.error["message"]


async def test_failed_node_fails_the_run_and_a_rerun_resumes_there() -> None:
    app, rt = runtime(retries=1)
    calls: dict[str, int] = {}
    broken = {"b": True}

    @rt.task("count")
    def count(name: str) -> str:
        calls[name] = calls.get(name, 0) + 1
        if broken.get(name):
            raise RuntimeError(f"{name} is down")
        return name

    document = b.document(
        [
            task("a", "count", name="'a'"),
            task("d", "count", name="'d'"),
            task("b", "count", name="'b'"),
            task("c", "count", name="'c'"),
        ],
        edges=[b.edge("a", "b"), b.edge("b", "c")],
        output={"c": "nodes.c.output", "d": "nodes.d.output", "q": "input.q"},
    )
    async with Harness(app) as h:
        failed = await run_graph(h, rt, document, {"q": "x"})
        assert failed.status is ip.RunStatus.FAILED
        assert failed.error is not None and failed.error["code"] == "node_failed"
        assert "node 'b' (node-b-task) failed: RuntimeError: b is down" in failed.error["message"]
        assert calls == {"a": 1, "d": 1, "b": 2}
        failed_step = (await steps_by_key(h, failed.id))["node-b-task"]
        assert failed_step.status is ip.StepStatus.FAILED and failed_step.attempt == 1

        broken["b"] = False
        rerun = await h.app.rerun(failed.id, from_failed_step=True)
        done = await h.settle(rerun.id)
    assert done is not None and done.status is ip.RunStatus.COMPLETED, done and done.error
    assert done.output == {"c": "c", "d": "d", "q": "x"}
    assert calls == {"a": 1, "d": 1, "b": 3, "c": 1}, "a completed node ran again"


async def test_wait_node_resumes_on_a_matching_event_or_times_out() -> None:
    app, rt = runtime()
    document = b.document(
        [
            b.transform("ticket", "input.q"),
            {
                "id": "approval",
                "type": "wait",
                "event": "review/decided",
                "match": "async.data.ticket == nodes.ticket.output",
                "timeout": "2d",
            },
            b.transform("decision", "nodes.approval.output == null ? 'timeout' : 'approved'"),
        ]
    )
    async with Harness(app) as h:
        await rt.save(document)
        waiting = await rt.run("g", {"q": "t-1"})
        timing_out = await rt.run("g", {"q": "t-2"})
        await h.run_ready()
        assert (await h.run(waiting)).status is ip.RunStatus.WAITING
        await h.send(ip.Event("review/decided", {"ticket": "t-1"}))
        approved = await h.settle(waiting)
        timed_out = await h.run(timing_out)
        wait_step = (await steps_by_key(h, waiting))["node-approval-wait"]
    assert approved is not None and approved.output == {"result": "approved"}
    assert timed_out.output == {"result": "timeout"}
    assert wait_step.kind is ip.StepKind.WAIT_FOR_EVENT
    assert wait_step.input["if"] == 'async.data.ticket == "t-1"'


async def test_llm_steps_record_inputs_tokens_and_cost() -> None:
    app, rt = runtime()
    document = b.document(
        [
            b.llm("ask", "Hello {{ input.q }}. How are you?", system="Be brief."),
            b.llm(
                "label",
                "Is this billing or bug? {{ nodes.ask.output }}",
                model="fake/classify",
                output="json",
                output_schema={
                    "type": "object",
                    "properties": {"kind": {"enum": ["bug", "billing"]}},
                    "required": ["kind"],
                },
            ),
        ]
    )
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "Ada"})
        steps = await steps_by_key(h, run.id)
        cost = run_cost(await h.steps(run.id))
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert run.output == {"result": {"kind": "billing"}}
    ask = steps["node-ask-llm"]
    assert ask.kind is ip.StepKind.LLM and ask.output["content"] == "Hello Ada. How are you?"
    assert [(m["role"], m["content"]) for m in ask.input["messages"]] == [
        ("system", "Be brief."),
        ("user", "Hello Ada. How are you?"),
    ]
    assert ask.meta["usage"] == {"input_tokens": 7, "output_tokens": 5, "cached_tokens": 0}
    assert ask.meta["cost"]["known"] is True and ask.meta["model_ref"] == "fake/echo"
    assert ask.duration_ms is not None and ask.attempt == 0
    assert cost.llm_steps == 2 and cost.input_tokens > 7 and cost.cost_usd == 0.0


async def test_bad_expression_data_fails_the_node_with_a_recorded_reason() -> None:
    app, rt = runtime()
    document = b.document([b.transform("t", "input.q + 1")])
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "text"})
        step = (await steps_by_key(h, run.id))["node-t-transform"]
    assert run.status is ip.RunStatus.FAILED
    assert step.status is ip.StepStatus.FAILED and step.attempt == 0, "deterministic: no retry"
    assert step.error is not None and step.error["code"] == "expression_failed"


async def test_input_is_checked_against_the_input_schema() -> None:
    app, rt = runtime()
    async with Harness(app) as h:
        await rt.save(b.document([b.transform("t")]))
        with pytest.raises(WorkflowInputError, match="'q' is a required property"):
            await rt.run("g", {})
        with pytest.raises(GraphNotFoundError):
            await rt.run("missing", {"q": "x"})
        # An invocation that bypasses `run` fails the run with the same reason.
        run = await h.settle(await h.invoke("workflow-run", {"graph_id": "g", "input": {}}))
    assert run is not None and run.status is ip.RunStatus.FAILED
    assert run.error is not None and run.error["code"] == "workflow_input_invalid"


async def test_a_run_keeps_the_version_it_started_with() -> None:
    app, rt = runtime()
    async with Harness(app) as h:
        await rt.save(b.document([b.transform("t", "'v1'")], output={"v": "nodes.t.output"}))
        run_id = await rt.run("g", {"q": "x"})
        await rt.save(b.document([b.transform("t", "'v2'")], output={"v": "nodes.t.output"}))
        first = await h.settle(run_id)
        second = await h.settle(await rt.run("g", {"q": "x"}))
        pinned = await h.settle(await rt.run("g", {"q": "x"}, version=1))
    assert first is not None and first.output == {"v": "v1"}
    assert second is not None and second.output == {"v": "v2"}
    assert pinned is not None and pinned.output == {"v": "v1"}


async def test_event_and_cron_triggers_run_the_current_version() -> None:
    app, rt = runtime()
    on_event = b.document(
        [b.transform("t", "input.q + '!'")],
        id="shout",
        trigger={"event": "text/received", "match": "event.data.q != 'skip'"},
    )
    on_cron = b.document(
        [b.transform("t", "input.q")], id="tick", trigger={"cron": "0 * * * *", "input": {"q": "c"}}
    )
    trigger = spec.parse_graph(on_event).trigger
    assert trigger is not None and rt.add_trigger("shout", trigger) == "workflow:shout"
    assert rt.add_graph_trigger(spec.parse_graph(on_cron)) == "workflow:tick"
    async with Harness(app, start_ms=1_700_000_000_000) as h:
        await rt.save(on_event)
        await rt.save(on_cron)
        await h.send(
            [ip.Event("text/received", {"q": "hey"}), ip.Event("text/received", {"q": "skip"})]
        )
        await h.run_ready()
        await h.advance("1h")
        shouted = await h.runs_of("workflow:shout")
        ticked = await h.runs_of("workflow:tick")
    assert [r.output for r in shouted] == [{"result": "hey!"}]
    assert [r.output for r in ticked] == [{"result": "c"}]


async def test_saved_triggers_are_registered_from_the_database(tmp_path: Path) -> None:
    path = tmp_path / "saved.db"
    saved_by, saving_rt = runtime()
    document = b.document([b.transform("t", "input.q")], trigger={"event": "text/in"})
    async with Harness(saved_by, path=path):
        await saving_rt.save(document)
    app, rt = runtime()
    assert rt.load_saved_triggers(f"sqlite:///{path}") == ["workflow:g"]
    async with Harness(app, path=path) as h:
        await h.send(ip.Event("text/in", {"q": "hello"}))
        await h.run_ready()
        runs = await h.runs_of("workflow:g")
    assert [r.output for r in runs] == [{"result": "hello"}]
    assert runtime()[1].load_saved_triggers(tmp_path / "missing.db") == []


async def test_an_invocation_may_name_the_version_by_content_hash(tmp_path: Path) -> None:
    app, rt = runtime()
    v1 = b.document([b.transform("t", "'one'")])
    async with Harness(app, path=tmp_path / "a.db") as h:
        first = (await rt.save(v1)).version.info
        await rt.save(b.document([b.transform("t", "'two'")]))
        data = {"graph_id": "g", "content_hash": first.content_hash, "input": {"q": "x"}}
        run = await h.settle(await h.invoke("workflow-run", data))
    assert run is not None and run.output == {"result": "one"}
    # The same runtime on another database: its own versions, not a cached plan.
    async with Harness(app, path=tmp_path / "b.db") as h:
        await rt.save(b.document([b.transform("t", "'elsewhere'")]))
        run = await h.settle(await rt.run("g", {"q": "x"}))
    assert run is not None and run.output == {"result": "elsewhere"}


async def test_nodes_beside_a_waiting_node_keep_running() -> None:
    app, rt = runtime()
    document = b.document(
        [
            {"id": "approval", "type": "wait", "event": "review/decided", "timeout": "1d"},
            b.transform("t1", "input.q"),
            b.transform("t2", "nodes.t1.output"),
            b.transform("t3", "nodes.t2.output"),
        ],
        output={"t3": "nodes.t3.output", "approval": "nodes.approval.output"},
    )
    async with Harness(app) as h:
        await rt.save(document)
        run_id = await rt.run("g", {"q": "x"})
        await h.run_ready()
        recorded = await steps_by_key(h, run_id)
    assert "node-t3-transform" in recorded, "the chain stalled behind the waiting node"
