"""The `/api/v2` endpoints: each handler follows its endpoint's page of the API docs
(https://developer.hashicorp.com/terraform/cloud-docs/api-docs).

Each handler is wrapped by `endpoint()`, which does what every real endpoint does first:
authenticate (401), rate-limit per principal (429), require the JSON:API content type on
POST (415), and turn an `ApiError` into the JSON:API error body. Anything the caller may not
see or do is 404, never 403 (reference 0).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from watchdog.simulator import render
from watchdog.simulator import runs as machine
from watchdog.simulator.access import ADMIN, READ, WRITE
from watchdog.simulator.errors import ApiError, not_found
from watchdog.simulator.middleware import JSONAPI, _number
from watchdog.simulator.state import Principal, Run, Workspace, World

if TYPE_CHECKING:
    from watchdog.simulator.app import Simulator

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
RATE_LIMITED = {
    "errors": [
        {
            "detail": "You have exceeded the API's rate limit.",
            "status": 429,
            "title": "Too many requests",
        }
    ]
}


def document(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status, headers=headers, media_type=JSONAPI
    )


def error(exc: ApiError) -> Response:
    return document(exc.body(), exc.status)


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
            headers["X-RateLimit-Limit"] = _number(per_minute)
        if wait is not None:
            return document(
                RATE_LIMITED,
                429,
                {"X-RateLimit-Limit": _number(limit), "X-RateLimit-Reset": f"{wait:.3f}"},
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


# --- query helpers --------------------------------------------------------------------------


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


def _page(request: Request) -> tuple[int, int]:
    number = max(1, _int(request, "page[number]", 1))
    size = min(MAX_PAGE_SIZE, max(1, _int(request, "page[size]", DEFAULT_PAGE_SIZE)))
    return number, size


def _csv(request: Request, name: str) -> list[str]:
    return [part.strip() for part in request.query_params.get(name, "").split(",") if part.strip()]


_PAGE_KEYS = ("page[number]", "page[size]")


def _links(
    request: Request, number: int, size: int, last: int | None, has_next: bool
) -> dict[str, Any]:
    # What `request.url.include_query_params(...)` gives, with the URL parsed once instead
    # of once per link (it was most of a small page's server time).
    url = request.url
    kept = urlencode(
        [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in _PAGE_KEYS]
    )
    prefix = f"{url.replace(query='')}?{kept}&" if kept else f"{url.replace(query='')}?"

    def at(page: int) -> str:
        return prefix + urlencode([("page[number]", str(page)), ("page[size]", str(size))])

    links: dict[str, Any] = {
        "self": at(number),
        "first": at(1),
        "prev": at(number - 1) if number > 1 else None,
        "next": at(number + 1) if has_next else None,
    }
    if last is not None:
        links["last"] = at(last)
    return links


def _paginate(
    request: Request, items: list[str], totals: bool = True
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """(page of items, meta.pagination, links): with totals, or without (org runs list)."""
    number, size = _page(request)
    start = (number - 1) * size
    page = items[start : start + size]
    total_pages = max(1, -(-len(items) // size))
    has_next = start + size < len(items)
    pagination: dict[str, Any] = {
        "current-page": number,
        "page-size": size,
        "prev-page": number - 1 if number > 1 else None,
        "next-page": number + 1 if has_next else None,
    }
    if totals:
        pagination |= {"total-pages": total_pages, "total-count": len(items)}
    links = _links(request, number, size, total_pages if totals else None, has_next)
    return page, {"pagination": pagination}, links


def _wildcard(pattern: str) -> Callable[[str], bool]:
    """`search[wildcard-name]`: `*` as prefix, suffix or both (reference 1.1)."""
    core = pattern.strip("*")
    if pattern.startswith("*") and pattern.endswith("*") and len(pattern) > 1:
        return lambda name: core in name
    if pattern.startswith("*"):
        return lambda name: name.endswith(core)
    if pattern.endswith("*"):
        return lambda name: name.startswith(core)
    return lambda name: name == core


def _workspace_filters(ctx: Ctx) -> list[Callable[[Workspace], bool]]:
    q = ctx.request.query_params
    world = ctx.world
    checks: list[Callable[[Workspace], bool]] = []
    if not ctx.principal.sees_every_workspace:
        checks.append(lambda ws: ctx.principal.rank(ws) >= READ)
    if name := q.get("search[name]"):
        needle = name.lower()
        checks.append(lambda ws: needle in ws.name.lower())
    if wildcard := q.get("search[wildcard-name]"):
        match = _wildcard(wildcard)
        checks.append(lambda ws: match(ws.name))
    if tags := _csv(ctx.request, "search[tags]"):
        checks.append(lambda ws: all(tag in ws.tags for tag in tags))
    if excluded := _csv(ctx.request, "search[exclude-tags]"):
        checks.append(lambda ws: not any(tag in ws.tags for tag in excluded))
    if project := q.get("filter[project][id]"):
        checks.append(lambda ws: ws.project_id == project)
    if statuses := set(_csv(ctx.request, "filter[current-run][status]")):
        checks.append(
            lambda ws: (
                ws.current_run_id is not None and world.runs[ws.current_run_id].status in statuses
            )
        )
    return checks


def _include(request: Request) -> set[str]:
    return set(_csv(request, "include"))


def _workspace_doc(ctx: Ctx, ws: Workspace) -> Response:
    body: dict[str, Any] = {"data": render.workspace(ctx.world, ws, ctx.principal)}
    include = _include(ctx.request)
    if include:
        body["included"] = render.included(ctx.world, [ws], include, ctx.principal)
    return document(body)


# --- handlers -------------------------------------------------------------------------------


async def ping(request: Request) -> Response:
    """`GET /ping`: 204, only for the headers go-tfe reads (reference 6). No auth needed."""
    return Response(status_code=204)


async def list_workspaces(ctx: Ctx) -> Response:
    """`GET /organizations/:org/workspaces` (reference 0 pagination, 1.1 filters)."""
    ids = ctx.organization_workspaces(ctx.param("org"))
    if ctx.request.query_params.get("sort") == "-name":
        ids = ids[::-1]
    checks = _workspace_filters(ctx)
    workspaces = ctx.world.workspaces
    if checks:
        ids = [i for i in ids if all(check(workspaces[i]) for check in checks)]
    page, meta, links = _paginate(ctx.request, ids)
    items = [workspaces[i] for i in page]
    body: dict[str, Any] = {
        "data": [render.workspace(ctx.world, ws, ctx.principal) for ws in items],
        "links": links,
        "meta": meta,
    }
    include = _include(ctx.request)
    if include:
        body["included"] = render.included(ctx.world, items, include, ctx.principal)
    return document(body)


async def show_workspace(ctx: Ctx) -> Response:
    """`GET /workspaces/:id` (reference 1.1 "Show")."""
    return _workspace_doc(ctx, ctx.workspace(ctx.param("id")))


async def show_workspace_by_name(ctx: Ctx) -> Response:
    """`GET /organizations/:org/workspaces/:name` (reference 1.1 "Show")."""
    ctx.organization_workspaces(ctx.param("org"))
    org = ctx.world.organizations[ctx.param("org")]
    ws_id = org.by_name.get(ctx.param("name"))
    if ws_id is None:
        raise not_found()
    return _workspace_doc(ctx, ctx.workspace(ws_id))


def _run_filter(request: Request) -> Callable[[Run], bool]:
    """`filter[status]` and `filter[status_group]`; unknown values match nothing (ref 3.1)."""
    statuses = set(_csv(request, "filter[status]"))
    group = request.query_params.get("filter[status_group]")

    def keep(run: Run) -> bool:
        if statuses and run.status not in statuses:
            return False
        if group is None:
            return True
        if group not in machine.STATUS_GROUPS:
            return False
        members = machine.STATUS_GROUPS[group]
        return not machine.is_final(run.status) if members is None else run.status in members

    return keep


def _run_list(ctx: Ctx, run_ids: Iterable[str], totals: bool) -> Response:
    keep = _run_filter(ctx.request)
    runs = ctx.world.runs
    ids = [i for i in run_ids if keep(runs[i])]
    page, meta, links = _paginate(ctx.request, ids, totals=totals)
    return document(
        {
            "data": [render.run(ctx.world, runs[i], ctx.principal) for i in page],
            "links": links,
            "meta": meta,
        }
    )


async def list_workspace_runs(ctx: Ctx) -> Response:
    """`GET /workspaces/:id/runs`, newest first; 30 requests per minute (reference 3.1)."""
    ws = ctx.workspace(ctx.param("id"))
    return _run_list(ctx, reversed(ws.run_ids), totals=True)


async def list_organization_runs(ctx: Ctx) -> Response:
    """`GET /organizations/:org/runs`: pagination without totals (reference 0, 3.1)."""
    org_name = ctx.param("org")
    ctx.organization_workspaces(org_name)
    world = ctx.world
    names = set(_csv(ctx.request, "filter[workspace_names]"))

    def visible(run_id: str) -> bool:
        ws = world.workspaces[world.runs[run_id].workspace_id]
        return ctx.principal.rank(ws) >= READ and (not names or ws.name in names)

    run_ids = world.organizations[org_name].run_ids
    return _run_list(ctx, (i for i in reversed(run_ids) if visible(i)), totals=False)


async def show_run(ctx: Ctx) -> Response:
    """`GET /runs/:id` (reference 3.1 "Show", 3.4)."""
    return document({"data": render.run(ctx.world, ctx.run(ctx.param("id")), ctx.principal)})


def _principal_doc(ctx: Ctx, kind: str) -> Response:
    other = ctx.world.principals.get(ctx.param("id"))
    if other is None or other.kind != kind or other.organization != ctx.principal.organization:
        raise not_found()
    return document({"data": render.principal(other)})


async def show_user(ctx: Ctx) -> Response:
    """`GET /users/:id`: what `locked-by` points at for user locks."""
    return _principal_doc(ctx, "user")


async def show_team(ctx: Ctx) -> Response:
    """`GET /teams/:id`: what `locked-by` points at for team locks."""
    return _principal_doc(ctx, "team")


async def account_details(ctx: Ctx) -> Response:
    """`GET /account/details`: the token's user; team and organization tokens get 404."""
    if ctx.principal.kind != "user":
        raise not_found()
    return document({"data": render.principal(ctx.principal)})


async def _lock_reason(request: Request) -> str:
    """Both documented body forms (reference 2 "Body-format caveat"); no body = ""."""
    raw = await request.body()
    if not raw.strip():
        return ""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "bad request", "The request body is not valid JSON.") from exc
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        body = body["data"].get("attributes") or {}
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else ""


async def workspace_action(ctx: Ctx) -> Response:
    """`POST /workspaces/:id/actions/{lock,unlock,force-unlock}`: 200 + workspace (ref 2)."""
    action = ctx.param("action")
    world = ctx.world
    if action == "lock":
        ws = ctx.workspace(ctx.param("id"), WRITE)
        world.lock(ws, ctx.principal, await _lock_reason(ctx.request))
    elif action == "unlock":
        ws = ctx.workspace(ctx.param("id"), WRITE)
        world.unlock(ws, ctx.principal)
    elif action == "force-unlock":
        ws = ctx.workspace(ctx.param("id"), ADMIN)
        world.force_unlock(ws)
    else:
        raise not_found()
    return _workspace_doc(ctx, ws)


async def run_action(ctx: Ctx) -> Response:
    """`POST /runs/:id/actions/{cancel,force-cancel,discard,apply}`: 202, no body (ref 4)."""
    actions: dict[str, tuple[int, Callable[[Run], None]]] = {
        "cancel": (WRITE, ctx.world.cancel),
        "force-cancel": (ADMIN, ctx.world.force_cancel),
        "discard": (WRITE, ctx.world.discard),
        "apply": (WRITE, ctx.world.apply),
    }
    action = actions.get(ctx.param("action"))
    # Organization tokens may not use run actions at all (reference 4).
    if action is None or ctx.principal.is_organization_token:
        raise not_found()
    need, perform = action
    perform(ctx.run(ctx.param("id"), need))
    return Response(status_code=202)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in JSON:API like the rest of the API."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    title = "not found" if status == 404 else "method not allowed" if status == 405 else "error"
    return error(ApiError(status, title))


EXCEPTION_HANDLERS: dict[Any, Any] = {HTTPException: _http_exception}

ROUTES = [
    Route("/ping", ping, methods=["GET"]),
    Route("/organizations/{org}/workspaces", endpoint(list_workspaces), methods=["GET"]),
    Route(
        "/organizations/{org}/workspaces/{name}", endpoint(show_workspace_by_name), methods=["GET"]
    ),
    Route(
        "/organizations/{org}/runs",
        endpoint(list_organization_runs, run_list=True),
        methods=["GET"],
    ),
    Route("/workspaces/{id}", endpoint(show_workspace), methods=["GET"]),
    Route("/workspaces/{id}/runs", endpoint(list_workspace_runs, run_list=True), methods=["GET"]),
    Route("/workspaces/{id}/actions/{action}", endpoint(workspace_action), methods=["POST"]),
    Route("/runs/{id}", endpoint(show_run), methods=["GET"]),
    Route("/runs/{id}/actions/{action}", endpoint(run_action), methods=["POST"]),
    Route("/users/{id}", endpoint(show_user), methods=["GET"]),
    Route("/teams/{id}", endpoint(show_team), methods=["GET"]),
    Route("/account/details", endpoint(account_details), methods=["GET"]),
]
