"""What a route needs, resolved per request: the caller's workspace engine and the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from inferpipe.core.errors import ConfigurationError
from inferpipe.core.json import KB, MB
from inferpipe.engine.engine import Engine
from inferpipe.engine.runs import Runs
from inferpipe.server import views
from inferpipe.server.auth import Principal
from inferpipe.server.errors import FieldProblem, InvalidRequestError
from inferpipe.server.metrics import Metrics
from inferpipe.server.workspaces import Workspaces
from inferpipe.store.base import ScoreFilter, Store
from inferpipe.wire import schemas


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Limits of the HTTP API.

    Attributes:
        max_body_bytes: a request body over this answers 413 before it is parsed.
        max_batch_events: events in one POST /v1/events.
        preview_bytes: a step or run value whose JSON is larger is cut to a preview (and
            flagged) unless the caller asks for `?full=true`.
        allowed_hosts: without keys, `Host` names served besides loopback ones.
    """

    max_body_bytes: int = 4 * MB
    max_batch_events: int = 1000
    preview_bytes: int = 16 * KB
    allowed_hosts: tuple[str, ...] = ()


class ScoreReader(Protocol):
    """Where `GET /v1/runs/{id}/scores` reads from (the store by default; pass another to
    `create_api(scores=...)` to serve scores kept elsewhere, e.g. an evaluation service)."""

    async def scores_for_run(self, store: Store, run_id: str) -> list[schemas.ScoreInfo]: ...


class StoreScores:
    """Scores as the store keeps them: inline, from scorer runs, and feedback, oldest first."""

    async def scores_for_run(self, store: Store, run_id: str) -> list[schemas.ScoreInfo]:
        found = await store.list_scores(ScoreFilter(run_id=run_id))
        return [views.score_info(score) for score in found]


@dataclass(slots=True)
class Services:
    """Everything the routes share, kept in ``api.state.services`` once the app has started."""

    workspaces: Workspaces
    settings: ApiSettings
    metrics: Metrics
    scores: ScoreReader = field(default_factory=StoreScores)


@dataclass(frozen=True, slots=True)
class Scope:
    """A request's view: the principal, its workspace's engine and store, and the services."""

    principal: Principal
    engine: Engine
    services: Services

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def runs(self) -> Runs:
        return self.engine.runs

    @property
    def settings(self) -> ApiSettings:
        return self.services.settings

    def preview_limit(self, full: bool) -> int | None:
        return None if full else self.settings.preview_bytes


def services(request: Request) -> Services:
    found = getattr(request.app.state, "services", None)
    if not isinstance(found, Services):
        raise ConfigurationError("the API has not started: its lifespan did not run")
    return found


def request_scope(request: Request) -> Scope:
    svc = services(request)
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        # Fail closed: a route reached without the auth middleware must not serve any workspace.
        raise ConfigurationError("no principal on the request: the auth middleware is missing")
    return Scope(principal, svc.workspaces.engine(principal.workspace), svc)


RequestScope = Annotated[Scope, Depends(request_scope)]


def check_query(request: Request) -> None:
    """Refuse query parameters the route does not declare, so a typo such as ``?functon=x``
    answers 422 instead of silently listing everything, and a parameter given twice (every
    one takes a single value: ``?name=a&name=b`` would otherwise quietly mean ``b``)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = _query_names(dependant)
    unknown = [name for name in request.query_params if name not in allowed]
    if unknown:
        raise InvalidRequestError(
            f"unknown query parameter(s): {', '.join(map(repr, unknown))}; "
            f"this route accepts: {', '.join(sorted(allowed)) or 'none'}",
            [FieldProblem(f"query.{name}", "unknown parameter") for name in unknown],
        )
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidRequestError(
            f"query parameter(s) given more than once: {', '.join(map(repr, repeated))}",
            [FieldProblem(f"query.{name}", "given more than once") for name in repeated],
        )


def _query_names(dependant: Any) -> set[str]:
    names = {str(param.alias) for param in getattr(dependant, "query_params", [])}
    for sub in getattr(dependant, "dependencies", []):
        names |= _query_names(sub)
    return names
