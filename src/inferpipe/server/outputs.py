"""Values offloaded to the blob store, as the API shows them: a preview (with `output_url`,
`input_url` or `data_url`) in listings, the whole value with `full` (outputs, inputs) or from
one event's route, and the raw JSON of an output, an input or an event's data from the download
routes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
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
    """The JSON of a value (an output, an input, an event's data), whole: what is offloaded
    in it is streamed from its blobs a chunk at a time, in place (a 100 MB output is never
    held whole); a missing or forbidden blob is answered as an error before the response
    starts."""
    refs = payloads.refs_in(value)
    if not refs:
        return Response(_dumps(value), media_type="application/json")
    opened = [await _payloads(scope).open(ref) for ref in refs]  # each checked, up front
    return StreamingResponse(_spliced(value, opened), media_type="application/json")


async def _spliced(value: Any, blobs: list[AsyncIterator[bytes]]) -> AsyncIterator[bytes]:
    """The JSON of `value`, each reference in it replaced by its blob's JSON (`blobs`, in
    the order `payloads.refs_in` finds them, which is the order the JSON writes them)."""
    placeholder = f"$inferpipe.download:{secrets.token_hex(16)}"
    around = _dumps(_replaced(value, placeholder)).split(_dumps(placeholder))
    for text, blob in zip(around, blobs, strict=False):
        if text:
            yield text
        async for chunk in blob:
            yield chunk
    if around[-1]:
        yield around[-1]


def _replaced(value: Any, placeholder: str) -> Any:
    if payloads.ref_of(value) is not None:
        return placeholder
    if isinstance(value, dict):
        return {k: _replaced(v, placeholder) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, placeholder) for v in value]
    return value


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
