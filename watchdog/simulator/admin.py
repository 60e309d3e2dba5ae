"""The `/_sim/` admin API: drive and inspect the simulator from tests and the demo.

No authentication, never under `/api/v2`, not rate-limited, not fault-injected and not in the
request log. Bodies are JSON (a scenario may also be posted as YAML). Workspaces are named
by name (add `"organization"` when two organizations share a name) or by id; principals by
token, name or id. Errors: 400 `{"error": "..."}`.

| Call | Body | Effect |
|---|---|---|
| `POST /_sim/scenario` | YAML text, or `{"name": "demo"}` | replace the world |
| `GET/DELETE /_sim/requests` | | read / clear the request log |
| `GET /_sim/clock` | | `{"now": ISO, "time_scale": x}` |
| `POST /_sim/clock/advance` | `{"seconds": 3600}` | move the clock forward |
| `GET/POST/DELETE /_sim/faults` | see faults.py | list / add / clear faults |
| `POST /_sim/workspaces/{ws}/lock` | `{"principal", "reason"}` | lock as a user or team |
| `POST /_sim/workspaces/{ws}/unlock` | | release any lock (a run lock too) |
| `POST /_sim/workspaces/{ws}/runs` | `{"status", "principal", "age", "duration", | start a run |
|   |  `"hangs_on_cancel"}` (seconds) | |
| `POST /_sim/workspaces/{ws}/state-version-pending` | `{"unlocks": N}` | next N unlocks: 503 |
| `POST /_sim/workspaces/{ws}/state-versions` | `{"principal", "finalized"}` | a state version |
| `POST /_sim/state-versions/{id}/finalize` | | its state upload lands |
| `POST /_sim/runs/{id}/status` | `{"status"}` | move a run |
| `POST /_sim/runs/{id}/hangs-on-cancel` | `{"value": true}` | ignore cancels |
| `POST /_sim/settings` | `{"rate_limit", "run_list_per_minute", "latency_ms", | change limits |
|   |  "snapshot_interval", "current_run_filter"}` | (filter: core.Settings) |
| `GET /_sim/state` | `?organization=&locked=true` | compact dump of workspaces |
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from watchdog.simulator import render
from watchdog.simulator.core import CURRENT_RUN_FILTER_MODES
from watchdog.simulator.errors import ApiError
from watchdog.simulator.scenario import ScenarioError, load_builtin, load_text
from watchdog.simulator.state import Principal, Run, Workspace, World

if TYPE_CHECKING:
    from watchdog.simulator.core import Simulator


class AdminError(Exception):
    pass


def _sim(request: Request) -> Simulator:
    sim: Simulator = request.app.state.sim
    return sim


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise AdminError("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise AdminError("the body must be a JSON object")
    return body


def _workspace(world: World, ref: str, organization: str | None) -> Workspace:
    if ref in world.workspaces:
        return world.workspaces[ref]
    found = [
        world.workspaces[org.by_name[ref]]
        for name, org in world.organizations.items()
        if ref in org.by_name and organization in (None, name)
    ]
    if len(found) != 1:
        raise AdminError(f"workspace {ref!r}: {'ambiguous' if found else 'not found'}")
    return found[0]


def _principal(world: World, ref: str, organization: str) -> Principal:
    if ref in world.tokens:
        return world.principals[world.tokens[ref]]
    if ref in world.principals:
        return world.principals[ref]
    try:
        return world.principal_by_name(organization, ref)
    except KeyError as exc:
        raise AdminError(str(exc.args[0])) from exc


def _run(world: World, run_id: str) -> Run:
    if run_id not in world.runs:
        raise AdminError(f"run {run_id!r} not found")
    return world.runs[run_id]


def _summary(world: World, ws: Workspace) -> dict[str, Any]:
    current = world.runs.get(ws.current_run_id or "")
    holder = None
    if ws.locked_by is not None:
        kind, ident = ws.locked_by
        holder = {
            "type": kind,
            "id": ident,
            "name": None if kind == "runs" else world.principals[ident].name,
        }
    return {
        "id": ws.id,
        "organization": ws.organization,
        "name": ws.name,
        "locked": ws.locked,
        "locked_reason": ws.locked_reason,
        "locked_at": ws.locked_at.isoformat() if ws.locked_at else None,
        "holder": holder,
        "current_run": {"id": current.id, "status": current.status} if current else None,
        "queue": list(ws.queue),
        "tags": list(ws.tags),
    }


Admin = Callable[[Request, "Simulator", dict[str, Any]], Awaitable[Any]]


def admin(handler: Admin) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        try:
            # A scenario body is YAML; every other POST body is a JSON object.
            raw_body = request.method == "POST" and not request.url.path.endswith("/scenario")
            body = await _body(request) if raw_body else {}
            result = await handler(request, _sim(request), body)
        except (AdminError, ScenarioError, ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        except ApiError as exc:
            return JSONResponse({"error": exc.detail or exc.title, "status": exc.status}, 409)
        if result is None:
            return Response(status_code=204)
        return JSONResponse(result)

    return wrapped


async def load_scenario(request: Request, sim: Simulator, _: dict[str, Any]) -> Any:
    raw = (await request.body()).decode()
    name = request.query_params.get("name")
    if name is None and raw.lstrip().startswith("{"):
        name = json.loads(raw).get("name")
    scale = sim.world.clock.time_scale
    loaded = load_builtin(name, time_scale=scale) if name else load_text(raw, time_scale=scale)
    sim.replace_world(loaded)
    return {
        "organizations": sorted(loaded.world.organizations),
        "workspaces": len(loaded.world.workspaces),
    }


async def get_requests(request: Request, sim: Simulator, _: dict[str, Any]) -> Any:
    return list(sim.request_log)


async def clear_requests(request: Request, sim: Simulator, _: dict[str, Any]) -> Any:
    sim.request_log.clear()
    return None


async def get_clock(request: Request, sim: Simulator, _: dict[str, Any]) -> Any:
    return {"now": sim.world.now().isoformat(), "time_scale": sim.world.clock.time_scale}


async def advance_clock(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    sim.world.clock.advance(float(body["seconds"]))
    sim.world.tick()
    return await get_clock(request, sim, body)


async def get_faults(request: Request, sim: Simulator, _: dict[str, Any]) -> Any:
    return sim.faults.describe()


async def add_fault(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    return sim.faults.add(body).describe()


async def clear_faults(request: Request, sim: Simulator, _: dict[str, Any]) -> Any:
    sim.faults.clear()
    return None


def _target(request: Request, sim: Simulator, body: dict[str, Any]) -> Workspace:
    return _workspace(sim.world, request.path_params["ws"], body.get("organization"))


async def lock_workspace(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    ws = _target(request, sim, body)
    who = _principal(sim.world, str(body["principal"]), ws.organization)
    sim.world.lock(ws, who, str(body.get("reason", "")))
    return _summary(sim.world, ws)


async def unlock_workspace(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    ws = _target(request, sim, body)
    sim.world.release(ws)
    return _summary(sim.world, ws)


async def start_run(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    ws = _target(request, sim, body)
    who = body.get("principal")
    creator = _principal(sim.world, str(who), ws.organization).id if who else None
    run = sim.world.add_run(
        ws,
        str(body.get("status", "planning")),
        age=timedelta(seconds=float(body.get("age", 0))),
        created_by=creator,
        hangs_on_cancel=bool(body.get("hangs_on_cancel", False)),
        duration=timedelta(seconds=float(body["duration"])) if "duration" in body else None,
    )
    return {"id": run.id, "status": run.status, "workspace": _summary(sim.world, ws)}


async def state_version_pending(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    ws = _target(request, sim, body)
    ws.pending_state_version_unlocks = int(body.get("unlocks", 1))
    return _summary(sim.world, ws)


async def add_state_version(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    """A state version created and not yet uploaded, as a CLI killed mid-upload leaves it."""
    ws = _target(request, sim, body)
    who = body.get("principal")
    creator = _principal(sim.world, str(who), ws.organization).id if who else "user-admin"
    sv = sim.world.add_state_version(ws, creator)
    if body.get("finalized"):
        # An intermediate snapshot of a long apply: created and uploaded at once.
        sim.world.finalize_state_version(sv)
    status = "finalized" if sv.finalized else "pending"
    return {"id": sv.id, "status": status, "workspace": _summary(sim.world, ws)}


async def finalize_state_version(request: Request, sim: Simulator, _: dict[str, Any]) -> Any:
    sv = sim.world.state_versions.get(request.path_params["sv"])
    if sv is None:
        raise AdminError(f"state version {request.path_params['sv']!r} not found")
    if not sv.finalized:
        sim.world.finalize_state_version(sv)
    return {"id": sv.id, "status": "finalized"}


async def set_run_status(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    run = _run(sim.world, request.path_params["run"])
    sim.world.set_run_status(run, str(body["status"]))
    return {"id": run.id, "status": run.status}


async def hangs_on_cancel(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    run = _run(sim.world, request.path_params["run"])
    run.hangs_on_cancel = bool(body.get("value", True))
    return {"id": run.id, "hangs_on_cancel": run.hangs_on_cancel}


async def show_run(request: Request, sim: Simulator, _: dict[str, Any]) -> Any:
    """The run as an admin-level user token would see it (for assertions)."""
    run = _run(sim.world, request.path_params["run"])
    ws = sim.world.workspaces[run.workspace_id]
    viewer = Principal("sim-admin", "user", "simulator", ws.organization, [("*", "admin")])
    return render.run(sim.world, run, viewer)


async def change_settings(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    keys = ("rate_limit", "run_list_per_minute", "latency_ms", "snapshot_interval")
    for key in keys:
        if key in body:
            setattr(sim.settings, key, float(body[key]))
    if "current_run_filter" in body:
        mode = body["current_run_filter"]
        if mode not in CURRENT_RUN_FILTER_MODES:
            raise AdminError(f"current_run_filter must be one of {CURRENT_RUN_FILTER_MODES}")
        sim.settings.current_run_filter = mode
    sim.limiter.reset()
    return {
        **{key: getattr(sim.settings, key) for key in keys},
        "current_run_filter": sim.settings.current_run_filter,
    }


async def dump_state(request: Request, sim: Simulator, _: dict[str, Any]) -> Any:
    world = sim.world
    only_org = request.query_params.get("organization")
    only_locked = request.query_params.get("locked") in {"1", "true"}
    out: dict[str, list[dict[str, Any]]] = {}
    for name, org in world.organizations.items():
        if only_org not in (None, name):
            continue
        out[name] = [
            _summary(world, world.workspaces[i])
            for i in org.ordered_ids
            if not only_locked or world.workspaces[i].locked
        ]
    return {"now": world.now().isoformat(), "organizations": out}


ROUTES = [
    Route("/scenario", admin(load_scenario), methods=["POST"]),
    Route("/requests", admin(get_requests), methods=["GET"]),
    Route("/requests", admin(clear_requests), methods=["DELETE"]),
    Route("/clock", admin(get_clock), methods=["GET"]),
    Route("/clock/advance", admin(advance_clock), methods=["POST"]),
    Route("/faults", admin(get_faults), methods=["GET"]),
    Route("/faults", admin(add_fault), methods=["POST"]),
    Route("/faults", admin(clear_faults), methods=["DELETE"]),
    Route("/workspaces/{ws}/lock", admin(lock_workspace), methods=["POST"]),
    Route("/workspaces/{ws}/unlock", admin(unlock_workspace), methods=["POST"]),
    Route("/workspaces/{ws}/runs", admin(start_run), methods=["POST"]),
    Route("/workspaces/{ws}/state-version-pending", admin(state_version_pending), methods=["POST"]),
    Route("/workspaces/{ws}/state-versions", admin(add_state_version), methods=["POST"]),
    Route("/state-versions/{sv}/finalize", admin(finalize_state_version), methods=["POST"]),
    Route("/runs/{run}", admin(show_run), methods=["GET"]),
    Route("/runs/{run}/status", admin(set_run_status), methods=["POST"]),
    Route("/runs/{run}/hangs-on-cancel", admin(hangs_on_cancel), methods=["POST"]),
    Route("/settings", admin(change_settings), methods=["POST"]),
    Route("/state", admin(dump_state), methods=["GET"]),
]
