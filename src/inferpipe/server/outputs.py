"""Values offloaded to the blob store, as the API shows them: a preview (with `output_url`
for an output) in listings, the whole value with `full` (outputs, inputs) or from one event's
route, and the raw JSON of an output from the download routes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import Response
from fastapi.responses import StreamingResponse

from inferpipe.core.records import Run, StepRecord
from inferpipe.server import views
from inferpipe.server.deps import Scope
from inferpipe.store import payloads
from inferpipe.wire import schemas


def _payloads(scope: Scope) -> payloads.Payloads:
    # Scoped to the caller's workspace: a reference to another workspace's blob is refused.
    return payloads.Payloads(scope.store.blobs, scope.store.workspace, threshold_bytes=0)


async def run_view(scope: Scope, run: Run, limit_bytes: int | None) -> schemas.RunInfo:
    """`views.run_info` with the run's totals (its steps are read), and an offloaded output
    read whole when there is no limit."""
    info = views.run_info(run, limit_bytes, await scope.store.get_steps(run.id))
    if limit_bytes is None:
        info.output = await _payloads(scope).resolve(run.output)
        info.input = await _payloads(scope).resolve(run.input)
    return info


async def run_views(
    scope: Scope, runs: Iterable[Run], limit_bytes: int | None
) -> list[schemas.RunInfo]:
    """A page of runs as `views.run_info`, each with its totals: one read of the steps per run
    (totals are summed when a run is read, not kept on its row)."""
    return [views.run_info(r, limit_bytes, await scope.store.get_steps(r.id)) for r in runs]


async def step_view(scope: Scope, step: StepRecord, limit_bytes: int | None) -> schemas.StepInfo:
    """`views.step_info`, with an offloaded output read whole when there is no limit."""
    info = views.step_info(step, limit_bytes)
    if limit_bytes is None:
        info.output = await _payloads(scope).resolve(step.output)
        info.input = await _payloads(scope).resolve(step.input)
    return info


async def event_view(scope: Scope, event: dict[str, Any]) -> schemas.EventInfo:
    """`views.event_info` with offloaded members of its data read whole."""
    info = views.event_info(event)
    info.data = await _payloads(scope).resolve(info.data)
    return info


async def download(scope: Scope, value: Any) -> Response:
    """The JSON of an output, whole: an offloaded one streamed from its blob a chunk at a
    time (a 100 MB output is never held whole); a missing or forbidden blob is answered as an
    error before the response starts."""
    blob = payloads.ref_of(value)
    if blob is not None:
        chunks = await _payloads(scope).open(blob)
        return StreamingResponse(chunks, media_type="application/json")
    raw = orjson.dumps(await _payloads(scope).resolve(value), option=orjson.OPT_NON_STR_KEYS)
    return Response(raw, media_type="application/json")
