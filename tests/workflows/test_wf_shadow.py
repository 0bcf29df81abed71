"""Shadow runs end to end on a real SQLite file, the fake LLM provider and a real loopback
HTTP server: shadows run, primaries are unaffected, side effects stay off, the report's
figures match a hand computation, and the cutover promotes and rolls back."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import inferpipe as ip
from inferpipe.net.egress import EgressPolicy
from inferpipe.testing import Harness
from inferpipe.webhooks.delivery import DeliverySettings, enable_delivery, list_deliveries
from inferpipe.webhooks.subscriptions import EventType, webhook_subscriptions
from inferpipe.workflows.errors import (
    GraphNotFoundError,
    ShadowPolicyInvalidError,
    ShadowPolicyNotFoundError,
    ShadowStateError,
)
from inferpipe.workflows.runtime import WorkflowRuntime, run_cost
from inferpipe.workflows.shadow.compare import node_output
from inferpipe.workflows.shadow.report import parity_report, policy_report, wilson_interval
from inferpipe.workflows.shadow.run import SHADOW_FUNCTION_ID
from tests.webhooks import receiver as webhook_receiver
from tests.workflows import wf_build as b
from tests.workflows.wf_run import runtime, steps_by_key, task

# "summarize" keeps the first sentence: equal to "echo" for one-sentence inputs only.
INPUTS = ["Hello there", "One. Two.", "Short note", "A b c. More words here.", "Single"]
EQUAL_INPUTS = 3


class _Counter(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self.requests.append(body)
        data = json.dumps({"stored": body}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[str]:
    """A loopback HTTP server counting the requests it gets (`_Counter.requests`)."""
    _Counter.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def answer_graph(url: str) -> dict[str, Any]:
    """An LLM answer, then an http node that stores it (a side effect)."""
    notify = {
        "id": "notify",
        "type": "http",
        "method": "POST",
        "url": url + "/answers",
        "body": {"answer": "{{ nodes.answer.output }}"},
        "allow_private": True,
    }
    return b.document(
        [b.llm("answer", "{{ input.q }}"), notify],
        edges=[b.edge("answer", "notify")],
        output={"answer": "nodes.answer.output", "stored": "nodes.notify.output.body.stored"},
    )


def shadow_runtime() -> tuple[ip.App, WorkflowRuntime]:
    return runtime(egress=EgressPolicy(allow_private=True), retries=0)


async def test_a_model_candidate_shadows_every_run_and_the_report_adds_up(receiver: str) -> None:
    app, rt = shadow_runtime()
    async with Harness(app) as h:
        await rt.save(answer_graph(receiver))
        baseline = await h.settle(await rt.run("g", {"q": INPUTS[0]}))
        assert baseline is not None
        policy = await rt.shadow_policies().create(
            "g", overrides={"answer.model": "fake/summarize"}
        )
        primaries = [await rt.run("g", {"q": q}) for q in INPUTS]
        await h.settle()
        runs = [await h.run(run_id) for run_id in primaries]
        shadows = await h.runs_of(SHADOW_FUNCTION_ID)
        comparisons = await app.engine.store.shadows.comparisons(policy.id)
        primary_steps = {r.id: await h.steps(r.id) for r in runs}
        shadow_steps = {s.id: await h.steps(s.id) for s in shadows}
        with_policy = await steps_by_key(h, primaries[0])
        without = await steps_by_key(h, baseline.id)
        report = parity_report(policy, comparisons)

    # Primaries: completed, same outputs as the candidate never existed; one request each.
    assert [r.status for r in runs] == [ip.RunStatus.COMPLETED] * len(INPUTS)
    assert [r.output["answer"] for r in runs] == INPUTS
    assert len(_Counter.requests) == 1 + len(INPUTS)  # the baseline + one per primary
    node_keys = {"node-answer-llm", "node-notify-http"}
    for key in node_keys:  # the node steps of a primary under the policy are the baseline's
        left, right = with_policy[key], without[key]
        assert (left.status, node_output(left), left.duration_ms) == (
            right.status,
            node_output(right),
            right.duration_ms,
        )
    assert set(with_policy) - set(without) == {"defer:shadow"}  # the planned shadow, recorded

    # Shadows: one per primary, parent = primary, the http node reused the primary's output.
    assert sorted(s.parent_run_id or "" for s in shadows) == sorted(primaries)
    for shadow in shadows:
        assert shadow.status is ip.RunStatus.COMPLETED, shadow.error
        notify = {s.key: s for s in shadow_steps[shadow.id]}["node-notify-http"]
        assert notify.meta["shadow"] == "reused"
        primary = {s.key: s for s in primary_steps[shadow.parent_run_id or ""]}
        assert notify.output == primary["node-notify-http"].output

    # The report, by hand: 3 of 5 outputs equal; tokens summed from the step records.
    assert report["counts"] == {
        "shadow_runs": 5,
        "compared": 5,
        "equal": EQUAL_INPUTS,
        "different": 2,
        "primary_failed": 0,
        "shadow_failed": 0,
    }
    assert report["match_rate"] == pytest.approx(0.6)
    low, high = report["match_rate_ci95"]
    assert (low, high) == pytest.approx((0.2307, 0.8824), abs=1e-4)
    primary_tokens = sum(run_cost(steps).total_tokens for steps in primary_steps.values())
    shadow_tokens = sum(run_cost(steps).total_tokens for steps in shadow_steps.values())
    assert report["tokens"]["primary"]["total"] == primary_tokens
    assert report["tokens"]["shadow"]["total"] == shadow_tokens
    assert report["tokens"]["delta_total"] == shadow_tokens - primary_tokens < 0
    assert report["cost_usd"]["primary"]["total"] == 0.0  # the fake provider is free
    assert {n["node_id"]: n["equal"] for n in report["nodes"]} == {"answer": 3, "notify": 5}
    worst = report["worst"]
    assert len(worst) == 2 and all(w["first_difference"] == "answer" for w in worst)
    assert {w["primary_run_id"] for w in worst} == {
        r.id for r in runs if r.output["answer"] in ("One. Two.", "A b c. More words here.")
    }


def test_wilson_interval_matches_the_formula() -> None:
    z = 1.959963984540054
    for k, n in [(0, 1), (3, 5), (10, 10), (57, 100)]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert wilson_interval(k, n) == pytest.approx(
            (max(0, centre - half), min(1, centre + half))
        )
    assert wilson_interval(0, 0) is None


async def test_side_effect_tasks_stand_in_and_call_nodes_opt_in(receiver: str) -> None:
    app, rt = shadow_runtime()
    calls: list[str] = []

    @rt.task("charge", side_effect=True)
    def charge(q: str) -> str:
        calls.append(f"charge {q}")
        return f"charged {q}"

    @rt.task("lookup")
    def lookup(q: str) -> str:
        calls.append(f"lookup {q}")
        return f"found {q}"

    graph = answer_graph(receiver)
    graph["nodes"] += [task("charge", "charge", q="input.q"), task("look", "lookup", q="input.q")]
    graph["output"].update(charged="nodes.charge.output", looked="nodes.look.output")
    async with Harness(app) as h:
        await rt.save(graph)
        policies = rt.shadow_policies()
        await policies.create("g", candidate_version=1, call_nodes=["notify"])
        primary = await rt.run("g", {"q": "x"})
        await h.settle()
        (shadow,) = await h.runs_of(SHADOW_FUNCTION_ID)
        steps = await steps_by_key(h, shadow.id)
        primary_output = (await h.run(primary)).output
    assert shadow.status is ip.RunStatus.COMPLETED, shadow.error
    assert shadow.output == primary_output
    # charge: a side effect, reused; lookup: no side effect, ran again; notify: opted in.
    assert sorted(calls) == ["charge x", "lookup x", "lookup x"]
    assert steps["node-charge-task"].meta["shadow"] == "reused"
    assert "shadow" not in steps["node-look-task"].meta
    assert "shadow" not in steps["node-notify-http"].meta
    assert len(_Counter.requests) == 2  # the primary's and the opted-in shadow's


async def test_a_side_effect_the_primary_never_recorded_is_skipped_with_a_reason() -> None:
    app, rt = shadow_runtime()
    calls: list[str] = []

    @rt.task("send", side_effect=True)
    def send(q: str) -> str:
        calls.append(q)
        return "sent"

    graph = b.document(
        [
            b.transform("size", "size(input.q)"),
            {
                "id": "route",
                "type": "branch",
                "cases": [{"when": "nodes.size.output > 3", "then": ["mail"]}],
                "else": ["nothing"],
            },
            task("mail", "send", q="input.q"),
            b.transform("nothing", "'none'"),
        ],
        edges=[b.edge("size", "route")],
        output={"sent": "nodes.mail.output"},
    )
    candidate = {"route.cases": [{"when": "nodes.size.output > 0", "then": ["mail"]}]}
    async with Harness(app) as h:
        await rt.save(graph)
        policy = await rt.shadow_policies().create("g", overrides=candidate)
        await rt.run("g", {"q": "ab"})
        await h.settle()
        (shadow,) = await h.runs_of(SHADOW_FUNCTION_ID)
        mail = (await steps_by_key(h, shadow.id))["node-mail-task"]
        (comparison,) = await app.engine.store.shadows.comparisons(policy.id)
    assert calls == []
    assert mail.meta["shadow"] == "skipped" and "recorded no output" in mail.meta["shadow_reason"]
    assert comparison.body["equal"] is True  # both map `sent` to null
    node = {n["node_id"]: n for n in comparison.body["nodes"]}["mail"]
    assert node["primary_status"] == "completed" and node["shadow_action"] == "skipped"


async def test_sampling_is_deterministic_per_run_id_and_off_means_off() -> None:
    app, rt = shadow_runtime()
    async with Harness(app) as h:
        await rt.save(b.document([b.llm("answer", "{{ input.q }}")]))
        policies = rt.shadow_policies()
        policy = await policies.create("g", overrides={"answer.model": "fake/summarize"}, rate=0.5)
        sampled = [await rt.run("g", {"q": f"q{i}"}) for i in range(20)]
        await h.settle()
        await policies.update(policy.id, enabled=False)
        unsampled = [await rt.run("g", {"q": "off"}) for _ in range(3)]
        await h.settle()
        shadows = await h.runs_of(SHADOW_FUNCTION_ID)
    expected = {run_id for run_id in sampled if policy.samples(run_id)}
    assert 0 < len(expected) < 20
    assert {s.parent_run_id for s in shadows} == expected
    assert not {s.parent_run_id for s in shadows} & set(unsampled)


async def test_shadow_runs_send_no_lifecycle_events() -> None:
    app, rt = shadow_runtime()
    finished: list[str] = []

    @app.function(
        id="watch",
        trigger=ip.on_event("inferpipe/function.finished", "event.data.function_id != 'watch'"),
    )
    async def watch(ctx: ip.Context) -> None:
        finished.append(str(ctx.event.data["function_id"]))

    async with Harness(app) as h:
        await rt.save(b.document([b.llm("answer", "{{ input.q }}")]))
        await rt.shadow_policies().create("g", overrides={"answer.model": "fake/summarize"})
        await rt.run("g", {"q": "x"})
        await h.settle()
        assert len(await h.runs_of(SHADOW_FUNCTION_ID)) == 1
    assert finished == ["workflow-run"]


async def test_bad_policies_are_refused_with_every_problem_and_nothing_stored() -> None:
    app, rt = shadow_runtime()
    async with Harness(app) as h:
        await rt.save(b.document([b.llm("answer", "{{ input.q }}")]))
        policies = rt.shadow_policies()
        with pytest.raises(GraphNotFoundError, match="'nope'"):
            await policies.create("nope", candidate_version=1)
        with pytest.raises(GraphNotFoundError, match="version 7"):
            await policies.create("g", candidate_version=7)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"overrides": {"missing.model": "fake/echo"}}, "no node 'missing'"),
            ({"overrides": {"answer": "x"}}, "name a field"),
            ({"overrides": {"answer.prompt.deep": 1}}, "'prompt' is not an object"),
            ({"overrides": {"answer.model": "fake/nosuch"}}, "unknown_model"),
            ({"overrides": {"answer.colour": "red"}}, "colour"),
            ({"candidate_version": 1, "rate": 1.5}, r"within \[0, 1\]"),
            ({"candidate_version": 1, "rate": "all"}, "a number from 0 to 1"),
            ({"candidate_version": 1, "call_nodes": ["ghost"]}, "no node 'ghost'"),
            ({}, "name a candidate"),
        ]
        for fields, message in cases:
            with pytest.raises(ShadowPolicyInvalidError, match=message):
                await policies.create("g", **fields)
        assert await policies.list() == []
        with pytest.raises(ShadowPolicyNotFoundError):
            await policies.get("nope")
        del h


async def test_promote_makes_the_candidate_current_and_rollback_restores() -> None:
    app, rt = shadow_runtime()
    async with Harness(app) as h:
        await rt.save(b.document([b.llm("answer", "{{ input.q }}")]))
        policies = rt.shadow_policies()
        policy = await policies.create("g", overrides={"answer.model": "fake/summarize"})
        await rt.run("g", {"q": "One. Two."})
        await h.settle()
        promoted = await policies.promote(policy.id)
        current = await rt.graphs.get("g")
        after = await h.settle(await rt.run("g", {"q": "One. Two."}))
        with pytest.raises(ShadowStateError, match="promoted already"):
            await policies.promote(policy.id)
        rolled = await policies.rollback(policy.id)
        restored = await rt.graphs.get("g")
        with pytest.raises(ShadowStateError, match="rolled back already"):
            await policies.rollback(policy.id)
        kept = await app.engine.store.shadows.comparisons(policy.id)
        shadows_after = len(await h.runs_of(SHADOW_FUNCTION_ID))
    assert promoted.promotion is not None and not promoted.enabled
    assert (promoted.promotion.previous_version, promoted.promotion.version) == (1, 2)
    assert current.info.version == 2 and current.graph.nodes[0].model == "fake/summarize"
    assert after is not None and after.output == {"result": "One."}
    assert shadows_after == 1  # the promoted policy is off: no shadow of the new primary
    assert rolled.promotion is not None and rolled.promotion.rolled_back_at_ms is not None
    assert restored.info.version == 1
    assert len(kept) == 1  # the report's record remains


async def test_a_wait_node_reuses_the_event_the_primary_received() -> None:
    app, rt = shadow_runtime()
    document = b.document(
        [
            {
                "id": "approval",
                "type": "wait",
                "event": "review/decided",
                "match": "async.data.ticket == input.q",
                "timeout": "2d",
            },
            b.llm("say", "{{ nodes.approval.output.verdict }}"),
        ]
    )
    async with Harness(app) as h:
        await rt.save(document)
        await rt.shadow_policies().create("g", overrides={"say.model": "fake/summarize"})
        primary = await rt.run("g", {"q": "t-1"})
        await h.run_ready()
        await h.send(ip.Event("review/decided", {"ticket": "t-1", "verdict": "Yes. Ship it."}))
        await h.settle()
        (shadow,) = await h.runs_of(SHADOW_FUNCTION_ID)
        wait = (await steps_by_key(h, shadow.id))["node-approval-wait"]
        outputs = ((await h.run(primary)).output, shadow.output)
    assert wait.meta["shadow"] == "reused"
    assert outputs == ({"result": "Yes. Ship it."}, {"result": "Yes."})


async def test_scorers_run_on_both_and_a_shadow_fires_no_webhook() -> None:
    app = ip.App("wf-test")

    @app.scorer(id="length")
    async def length(ctx: ip.Context) -> ip.Score:
        return ip.Score("length", float(len(str(ctx.input["output"]["result"]))))

    rt = WorkflowRuntime(app, retries=0, scorers=[length])
    egress = EgressPolicy(allow_private=True)
    enable_delivery(app, DeliverySettings(egress=egress, backoff=ip.Backoff(base_s=1, jitter=0)))
    events = [EventType.RUN_FINISHED, EventType.SCORE_RECORDED]
    with webhook_receiver.receiver() as hook:
        async with Harness(app) as h:
            sub, _ = await webhook_subscriptions(h.engine.store).create(
                "default", hook.url, events=events, allow_private=True
            )
            await rt.save(b.document([b.llm("answer", "{{ input.q }}")]))
            policy = await rt.shadow_policies().create(
                "g", overrides={"answer.model": "fake/summarize"}
            )
            await rt.run("g", {"q": "First. Second."})
            await h.settle()
            report = await policy_report(policy, h.engine.store)
            deliveries = await list_deliveries(h.engine.store, sub.id)
    assert report["scores"] == [
        {
            "name": "length",
            "primary_mean": 14.0,
            "shadow_mean": 6.0,
            "primary_count": 1,
            "shadow_count": 1,
            "delta_mean": -8.0,
        }
    ]
    about = sorted((d.type, d.payload["data"]["function_id"]) for d in deliveries)
    assert about == [
        ("run.finished", "length"),  # the scorer of the primary
        ("run.finished", "length"),  # the scorer of the shadow: a run of its own
        ("run.finished", "workflow-run"),
        ("score.recorded", "workflow-run"),
    ]
