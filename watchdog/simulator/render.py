"""JSON:API documents, shaped like the samples of the public API docs (https://developer.hashicorp.com/terraform/cloud-docs/api-docs).

Every function takes the caller (`viewer`) because `permissions` blocks are computed for the
calling token (docs/tfc-api.md, "Workspaces"). Nothing here changes state.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from watchdog.simulator import runs as machine
from watchdog.simulator.access import run_permissions, workspace_permissions
from watchdog.simulator.clock import iso_ms, iso_seconds
from watchdog.simulator.state import Principal, Project, Run, Workspace, World

API = "/api/v2"
Doc = dict[str, Any]


def _ref(kind: str, ident: str | None, related: str | None = None) -> Doc:
    rel: Doc = {"data": None if ident is None else {"id": ident, "type": kind}}
    if ident is not None and related is not None:
        rel["links"] = {"related": related}
    return rel


def locked_by_ref(workspace: Workspace) -> tuple[str, str] | None:
    """(type, id) as `locked-by` shows it; None when unlocked or held by an org token."""
    if workspace.locked_by is None or workspace.locked_by[0] == "organization":
        return None
    return workspace.locked_by


def _ms(value: timedelta | None) -> int | None:
    return None if value is None else round(value.total_seconds() * 1000)


def workspace(world: World, ws: Workspace, viewer: Principal) -> Doc:
    holder = locked_by_ref(ws)
    org = ws.organization
    return {
        "id": ws.id,
        "type": "workspaces",
        "attributes": {
            "name": ws.name,
            "created-at": iso_ms(ws.created_at),
            "updated-at": iso_ms(ws.created_at),
            # The creation time of the latest state version (the workspace's own before any).
            "latest-change-at": iso_ms(ws.latest_change_at or ws.created_at),
            # Milliseconds, null without history (public workspaces API docs).
            "plan-duration-average": _ms(ws.plan_duration_average),
            "apply-duration-average": _ms(ws.apply_duration_average),
            "execution-mode": ws.execution_mode,
            "operations": ws.execution_mode != "local",
            "auto-apply": False,
            "terraform-version": "1.9.5",
            "locked": ws.locked,
            "locked-reason": ws.locked_reason,
            "tag-names": list(ws.tags),
            "actions": {"is-destroyable": True},
            "permissions": workspace_permissions(viewer.rank(ws), viewer.is_organization_token),
        },
        "relationships": {
            "organization": _ref("organizations", org),
            "project": _ref("projects", ws.project_id),
            "current-run": _ref("runs", ws.current_run_id, f"{API}/runs/{ws.current_run_id}"),
            "latest-run": _ref("runs", ws.current_run_id, f"{API}/runs/{ws.current_run_id}"),
            "locked-by": _ref(holder[0], holder[1], f"{API}/{holder[0]}/{holder[1]}")
            if holder
            else {"data": None},
        },
        "links": {
            "self": f"{API}/organizations/{org}/workspaces/{ws.name}",
            "self-html": f"/app/{org}/workspaces/{ws.name}",
        },
    }


def run(world: World, r: Run, viewer: Principal) -> Doc:
    ws = world.workspaces[r.workspace_id]
    attributes: Doc = {
        "status": r.status,
        "status-timestamps": {key: iso_seconds(at) for key, at in r.status_timestamps.items()},
        "created-at": iso_ms(r.created_at),
        "canceled-at": iso_ms(r.canceled_at) if r.canceled_at else None,
        "message": r.message,
        "source": "tfe-api",
        "trigger-reason": "manual",
        "plan-only": False,
        "is-destroy": False,
        "has-changes": True,
        "auto-apply": False,
        "terraform-version": "1.9.5",
        "actions": {
            "is-cancelable": machine.is_cancelable(r.status),
            "is-confirmable": r.status in machine.CONFIRMABLE,
            "is-discardable": r.status in machine.DISCARDABLE,
            "is-force-cancelable": world.is_force_cancelable(r),
        },
        "permissions": run_permissions(viewer.rank(ws), viewer.is_organization_token),
    }
    # Present only once a cancel was sent (docs/tfc-api.md, "Runs").
    if r.force_cancel_available_at is not None:
        attributes["force-cancel-available-at"] = iso_ms(r.force_cancel_available_at)
    suffix = r.id.removeprefix("run-")
    return {
        "id": r.id,
        "type": "runs",
        "attributes": attributes,
        "relationships": {
            "workspace": _ref("workspaces", ws.id, f"{API}/workspaces/{ws.id}"),
            "created-by": _ref("users", r.created_by, f"{API}/users/{r.created_by}"),
            "plan": _ref("plans", f"plan-{suffix}"),
            "apply": _ref("applies", f"apply-{suffix}"),
        },
        "links": {"self": f"{API}/runs/{r.id}"},
    }


def principal(p: Principal) -> Doc:
    """A user (`username`) or a team (`name`), as `include=locked_by` returns them."""
    if p.kind == "user":
        return {
            "id": p.id,
            "type": "users",
            "attributes": {"username": p.name, "is-service-account": False},
            "links": {"self": f"{API}/users/{p.id}"},
        }
    return {
        "id": p.id,
        "type": "teams",
        "attributes": {"name": p.name, "visibility": "organization"},
        "links": {"self": f"{API}/teams/{p.id}"},
    }


def project(p: Project) -> Doc:
    return {
        "id": p.id,
        "type": "projects",
        "attributes": {"name": p.name},
        "relationships": {"organization": _ref("organizations", p.organization)},
        "links": {"self": f"{API}/projects/{p.id}"},
    }


def included(
    world: World, workspaces: list[Workspace], include: set[str], viewer: Principal
) -> list[Doc]:
    """The `included` array for `include=current_run,locked_by,project`, without duplicates."""
    seen: set[tuple[str, str]] = set()
    out: list[Doc] = []

    def add(doc: Doc) -> None:
        key = (doc["type"], doc["id"])
        if key not in seen:
            seen.add(key)
            out.append(doc)

    for ws in workspaces:
        if "current_run" in include and ws.current_run_id:
            add(run(world, world.runs[ws.current_run_id], viewer))
        holder = locked_by_ref(ws)
        if "locked_by" in include and holder is not None:
            kind, ident = holder
            if kind == "runs":
                add(run(world, world.runs[ident], viewer))
            else:
                add(principal(world.principals[ident]))
        if "project" in include:
            add(project(world.organizations[ws.organization].projects[ws.project_id]))
    return out
