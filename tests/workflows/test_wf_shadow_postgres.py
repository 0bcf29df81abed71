"""Shadow runs on PostgreSQL: policies and comparisons in the app's PostgreSQL database, one
enabled policy per graph, and a shadowed run compared and reported."""

from __future__ import annotations

import inferpipe as ip
from inferpipe.store.base import RunFilter
from inferpipe.workflows.runtime import WorkflowRuntime
from inferpipe.workflows.shadow.report import policy_report
from inferpipe.workflows.shadow.run import SHADOW_FUNCTION_ID
from tests.store.conftest import PostgresServer
from tests.workflows import wf_build as b


async def test_a_shadowed_run_on_postgres(postgres: PostgresServer) -> None:
    app = ip.App("wf-pg-shadow", database=await postgres.new_database())
    rt = WorkflowRuntime(app, retries=0)
    async with app:
        await rt.save(b.document([b.llm("ask", "{{ input.q }}")]))
        policies = rt.shadow_policies()
        first = await policies.create("g", candidate_version=1)
        second = await policies.create("g", overrides={"ask.model": "fake/summarize"})
        assert [p.enabled for p in await policies.list("g")] == [True, False]
        assert (await policies.active("g")) == await policies.get(second.id)
        run_ids = [await rt.run("g", {"q": q}) for q in ("Same", "One. Two.")]
        worker = app.worker()
        while await worker.run_until_idle():
            pass
        shadows = await app.list_runs(RunFilter(function_id=SHADOW_FUNCTION_ID))
        report = await policy_report(second, app.engine.store)
        untouched = await app.engine.store.shadows.comparisons(first.id)
    assert {s.parent_run_id for s in shadows.items} == set(run_ids)
    assert report["counts"]["compared"] == 2 and report["counts"]["equal"] == 1
    assert report["match_rate"] == 0.5 and untouched == []
