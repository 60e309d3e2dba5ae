"""The `/api/v2` endpoints: each handler follows its endpoint's page of the API docs
(https://developer.hashicorp.com/terraform/cloud-docs/api-docs).

Each handler is wrapped by `endpoint.endpoint()` (authentication, rate limits, content type,
errors); answers are built with `jsonapi`. Anything the caller may not see or do is 404,
never 403 (docs/tfc-api.md, "Conventions").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from watchdog.simulator import render
from watchdog.simulator import runs as machine
from watchdog.simulator.access import ADMIN, READ, WRITE
from watchdog.simulator.endpoint import Ctx, endpoint
from watchdog.simulator.errors import ApiError, not_found
from watchdog.simulator.jsonapi import csv, document, error, paginate
from watchdog.simulator.state import Run, Workspace


def _wildcard(pattern: str) -> Callable[[str], bool]:
    """`search[wildcard-name]`: `*` as prefix, suffix or both (docs/tfc-api.md, "Workspaces")."""
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
    if tags := csv(ctx.request, "search[tags]"):
        checks.append(lambda ws: all(tag in ws.tags for tag in tags))
    if excluded := csv(ctx.request, "search[exclude-tags]"):
        checks.append(lambda ws: not any(tag in ws.tags for tag in excluded))
    if project := q.get("filter[project][id]"):
        checks.append(lambda ws: ws.project_id == project)
    if statuses := set(csv(ctx.request, "filter[current-run][status]")):
        mode = ctx.sim.settings.current_run_filter
        if mode == "reject" or (mode == "reject_list" and len(statuses) > 1):
            raise ApiError(
                400, "invalid filter", "filter[current-run][status] takes a single status"
            )
        if mode == "empty":
            checks.append(lambda ws: False)
        elif mode != "ignore":
            checks.append(
                lambda ws: (
                    ws.current_run_id is not None
                    and world.runs[ws.current_run_id].status in statuses
                )
            )
    return checks


def _include(request: Request) -> set[str]:
    return set(csv(request, "include"))


def _workspace_doc(ctx: Ctx, ws: Workspace) -> Response:
    body: dict[str, Any] = {"data": render.workspace(ctx.world, ws, ctx.principal)}
    include = _include(ctx.request)
    if include:
        body["included"] = render.included(ctx.world, [ws], include, ctx.principal)
    return document(body)


# --- handlers -------------------------------------------------------------------------------


async def ping(request: Request) -> Response:
    """`GET /ping`: 204, only for the headers go-tfe reads (docs/tfc-api.md, "Tokens and
    headers"). No auth needed."""
    return Response(status_code=204)


async def list_workspaces(ctx: Ctx) -> Response:
    """`GET /organizations/:org/workspaces` (docs/tfc-api.md, "Pagination", "Workspaces")."""
    ids = ctx.organization_workspaces(ctx.param("org"))
    if ctx.request.query_params.get("sort") == "-name":
        ids = ids[::-1]
    checks = _workspace_filters(ctx)
    workspaces = ctx.world.workspaces
    if checks:
        ids = [i for i in ids if all(check(workspaces[i]) for check in checks)]
    page, meta, links = paginate(ctx.request, ids)
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
    """`GET /workspaces/:id` (docs/tfc-api.md, "Workspaces")."""
    return _workspace_doc(ctx, ctx.workspace(ctx.param("id")))


async def show_workspace_by_name(ctx: Ctx) -> Response:
    """`GET /organizations/:org/workspaces/:name` (docs/tfc-api.md, "Workspaces")."""
    ctx.organization_workspaces(ctx.param("org"))
    org = ctx.world.organizations[ctx.param("org")]
    ws_id = org.by_name.get(ctx.param("name"))
    if ws_id is None:
        raise not_found()
    return _workspace_doc(ctx, ctx.workspace(ws_id))


def _run_filter(request: Request) -> Callable[[Run], bool]:
    """`filter[status]` and `filter[status_group]`; unknown values match nothing
    (docs/tfc-api.md, "Runs")."""
    statuses = set(csv(request, "filter[status]"))
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
    page, meta, links = paginate(ctx.request, ids, totals=totals)
    return document(
        {
            "data": [render.run(ctx.world, runs[i], ctx.principal) for i in page],
            "links": links,
            "meta": meta,
        }
    )


async def list_workspace_runs(ctx: Ctx) -> Response:
    """`GET /workspaces/:id/runs`, newest first; 30 requests per minute (docs/tfc-api.md,
    "Rate limits")."""
    ws = ctx.workspace(ctx.param("id"))
    return _run_list(ctx, reversed(ws.run_ids), totals=True)


async def list_organization_runs(ctx: Ctx) -> Response:
    """`GET /organizations/:org/runs`: pagination without totals (docs/tfc-api.md, "Pagination")."""
    org_name = ctx.param("org")
    ctx.organization_workspaces(org_name)
    world = ctx.world
    names = set(csv(ctx.request, "filter[workspace_names]"))

    def visible(run_id: str) -> bool:
        ws = world.workspaces[world.runs[run_id].workspace_id]
        return ctx.principal.rank(ws) >= READ and (not names or ws.name in names)

    run_ids = world.organizations[org_name].run_ids
    return _run_list(ctx, (i for i in reversed(run_ids) if visible(i)), totals=False)


async def show_run(ctx: Ctx) -> Response:
    """`GET /runs/:id` (docs/tfc-api.md, "Runs")."""
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
    """The reason from either body form the docs show (docs/tfc-api.md, "Lock, unlock and
    force-unlock"); no body = ""."""
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
    """`POST /workspaces/:id/actions/{lock,unlock,force-unlock}`: 200 + workspace
    (docs/tfc-api.md, "Lock, unlock and force-unlock")."""
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
    """`POST /runs/:id/actions/{cancel,force-cancel,discard,apply}`: 202, no body
    (docs/tfc-api.md, "Run actions")."""
    actions: dict[str, tuple[int, Callable[[Run], None]]] = {
        "cancel": (WRITE, ctx.world.cancel),
        "force-cancel": (ADMIN, ctx.world.force_cancel),
        "discard": (WRITE, ctx.world.discard),
        "apply": (WRITE, ctx.world.apply),
    }
    action = actions.get(ctx.param("action"))
    # Organization tokens may not use run actions at all (docs/tfc-api.md, "Run actions").
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
