"""What every authenticated `/api/v2` endpoint does before its handler: `endpoint()`.

Authenticate (401), rate-limit per principal (429 with `X-RateLimit-Reset`), require the
JSON:API content type on POST (415), and turn an `ApiError` into the JSON:API error body
(docs/tfc-api.md, "Conventions" and "Rate limits"). A handler gets a `Ctx`: the request,
the simulator and the calling principal, with look-ups that answer 404 for what the caller
may not see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from watchdog.simulator.access import READ
from watchdog.simulator.errors import ApiError, not_found
from watchdog.simulator.jsonapi import JSONAPI, document, error, number
from watchdog.simulator.state import Principal, Run, Workspace, World

if TYPE_CHECKING:
    from watchdog.simulator.core import Simulator

RATE_LIMITED = {
    "errors": [
        {
            "detail": "You have exceeded the API's rate limit.",
            "status": 429,
            "title": "Too many requests",
        }
    ]
}


@dataclass
class Ctx:
    request: Request
    sim: Simulator
    principal: Principal

    @property
    def world(self) -> World:
        return self.sim.world

    def param(self, name: str) -> str:
        value: str = self.request.path_params[name]
        return value

    def workspace(self, workspace_id: str, need: int = READ) -> Workspace:
        ws = self.world.workspaces.get(workspace_id)
        if ws is None or self.principal.rank(ws) < max(need, READ):
            raise not_found()
        return ws

    def run(self, run_id: str, need: int = READ) -> Run:
        run = self.world.runs.get(run_id)
        if run is None:
            raise not_found()
        self.workspace(run.workspace_id, need)
        return run

    def organization_workspaces(self, org: str) -> list[str]:
        organization = self.world.organizations.get(org)
        if organization is None or self.principal.organization != org:
            raise not_found()
        return organization.ordered_ids


Handler = Callable[[Ctx], Awaitable[Response]]


def endpoint(
    handler: Handler, *, run_list: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        principal_id = sim.world.tokens.get(token) if token else None
        if principal_id is None:
            return error(ApiError(401, "unauthorized"))
        principal = sim.world.principals[principal_id]
        request.state.principal_name = principal.name
        limit = sim.settings.rate_limit
        wait = sim.limiter.take(principal.id, "api", limit, limit)
        headers: dict[str, str] = {}
        if run_list and wait is None:
            per_minute = sim.settings.run_list_per_minute
            wait = sim.limiter.take(principal.id, "run-list", per_minute / 60, per_minute)
            limit = per_minute
            headers["X-RateLimit-Limit"] = number(per_minute)
        if wait is not None:
            return document(
                RATE_LIMITED,
                429,
                {"X-RateLimit-Limit": number(limit), "X-RateLimit-Reset": f"{wait:.3f}"},
            )
        if request.method == "POST" and not request.headers.get("content-type", "").startswith(
            JSONAPI
        ):
            return error(ApiError(415, "unsupported media type", f"Content-Type must be {JSONAPI}"))
        try:
            response = await handler(Ctx(request, sim, principal))
        except ApiError as exc:
            response = error(exc)
        response.headers.update(headers)
        return response

    return wrapped
