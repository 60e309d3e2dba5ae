"""What the Terraform CLI's `cloud` block calls, for workspaces in local execution mode.

Sequences and shapes: what the Terraform CLI's `cloud` block sends
(https://developer.hashicorp.com/terraform/cli/cloud; checked against Terraform 1.15.5).
Every command starts with service discovery, `/ping`, the organization's entitlement set and
the workspace read by name; `apply` then locks, reads the current state version, creates a
new one (only while it holds the lock), PUTs the state blobs to the upload URLs this server
hands out, and unlocks. The state is kept per workspace, so a `plan` after a clean apply
shows no changes.

Blob URLs live on this server under `/_blobs/`: uploads carry no credentials (the URL is the
capability, as with the real archivist), downloads carry the API token.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from watchdog.simulator.access import READ, WRITE
from watchdog.simulator.clock import iso_ms
from watchdog.simulator.endpoint import Ctx, endpoint
from watchdog.simulator.errors import ApiError, conflict, not_found
from watchdog.simulator.jsonapi import document, error, paginate
from watchdog.simulator.render import API
from watchdog.simulator.state import Principal, StateVersion, Workspace

if TYPE_CHECKING:
    from watchdog.simulator.core import Simulator

# Service discovery: every TFE service at /api/v2/ (docs/tfc-api.md, "What the Terraform CLI
# calls").
DISCOVERY = {
    "tfe.v2": "/api/v2/",
    "tfe.v2.1": "/api/v2/",
    "tfe.v2.2": "/api/v2/",
    "motd.v1": "/api/terraform/motd",
    "state.v2": "/api/v2/",
    "modules.v1": "/api/registry/v1/modules/",
}
BLOBS = "/_blobs"
_BLOB_KINDS = ("state", "json-state")


# --- documents ----------------------------------------------------------------------------


def _server(request: Request) -> str:
    """`https://localhost:PORT` as the caller addressed us: where the blob URLs point."""
    return f"{request.url.scheme}://{request.url.netloc}"


def state_version_doc(sv: StateVersion, server: str) -> dict[str, Any]:
    blob = f"{server}{BLOBS}/{sv.id}"
    return {
        "id": sv.id,
        "type": "state-versions",
        "attributes": {
            "serial": sv.serial,
            "md5": sv.md5,
            "lineage": sv.lineage,
            "status": _status(sv),
            "created-at": iso_ms(sv.created_at),
            "size": len(sv.state or b""),
            "state-version": 4,
            "resources-processed": sv.finalized,
            "hosted-state-upload-url": f"{blob}/state",
            "hosted-json-state-upload-url": f"{blob}/json-state",
            "hosted-state-download-url": f"{blob}/state",
            "hosted-json-state-download-url": f"{blob}/json-state",
        },
        "relationships": {
            "workspace": {"data": {"id": sv.workspace_id, "type": "workspaces"}},
            "created-by": {"data": {"id": sv.created_by, "type": "users"}},
        },
        "links": {"self": f"{API}/state-versions/{sv.id}"},
    }


def _simple_type(detailed: Any) -> str:
    """TFE's coarse `type` next to the cty `detailed-type` (string, number, boolean, array,
    hash)."""
    name = detailed[0] if isinstance(detailed, list) and detailed else detailed
    return {
        "bool": "boolean",
        "list": "array",
        "set": "array",
        "tuple": "array",
        "map": "hash",
        "object": "hash",
    }.get(str(name), str(name))


def outputs_doc(sv: StateVersion) -> list[dict[str, Any]]:
    items = []
    for index, (name, output) in enumerate(sorted(sv.outputs.items())):
        sensitive = bool(output.get("sensitive"))
        detailed = output.get("type")
        items.append(
            {
                "id": f"wsout-{sv.id.removeprefix('sv-')}{index}",
                "type": "state-version-outputs",
                "attributes": {
                    "name": name,
                    "sensitive": sensitive,
                    "type": _simple_type(detailed),
                    # The list endpoint hides sensitive values, like the real one.
                    "value": None if sensitive else output.get("value"),
                    "detailed-type": detailed,
                },
            }
        )
    return items


# --- request helpers ----------------------------------------------------------------------


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(422, "invalid attribute", f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "invalid attribute", f"{what} is not valid base64") from exc


def _outputs(attributes: dict[str, Any]) -> dict[str, dict[str, object]]:
    raw = attributes.get("json-state-outputs")
    if not raw:
        return {}
    try:
        decoded = json.loads(_b64(raw, "json-state-outputs"))
    except ValueError as exc:
        raise ApiError(422, "invalid attribute", "json-state-outputs is not JSON") from exc
    if not isinstance(decoded, dict):
        return {}
    return {str(k): v for k, v in decoded.items() if isinstance(v, dict)}


async def _attributes(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, "bad request", "The request body is not valid JSON.") from exc
    data = body.get("data") if isinstance(body, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict):
        raise ApiError(422, "invalid attribute", "data.attributes is required")
    return attributes


def _current(ctx: Ctx, ws: Workspace) -> StateVersion:
    sv = ctx.world.state_versions.get(ws.current_state_version_id or "")
    if sv is None:
        raise not_found()
    return sv


def _finalize(ws: Workspace, sv: StateVersion) -> None:
    ws.current_state_version_id = sv.id


# --- /api/v2 handlers ---------------------------------------------------------------------


async def entitlement_set(ctx: Ctx) -> Response:
    """`GET /organizations/:org/entitlement-set`: Terraform's cloud block reads it first."""
    org = ctx.param("org")
    ctx.organization_workspaces(org)
    attributes = {
        "operations": True,
        "state-storage": True,
        "private-module-registry": True,
        "private-policy-agents": False,
        "private-vcs": False,
        "run-tasks": False,
        "sentinel": False,
        "sso": False,
        "teams": False,
        "vcs-integrations": False,
        "agents": False,
        "audit-logging": False,
        "cost-estimation": False,
    }
    return document(
        {"data": {"id": f"org-{org}", "type": "entitlement-sets", "attributes": attributes}}
    )


def _snapshot_interval(ctx: Ctx, response: Response) -> Response:
    """HCP Terraform's `X-Terraform-Snapshot-Interval` on the answers Terraform reads it from
    (the current state version and a created one), when the simulator is set to send it."""
    seconds = ctx.sim.settings.snapshot_interval
    if seconds > 0:
        response.headers["X-Terraform-Snapshot-Interval"] = str(int(seconds))
    return response


async def current_state_version(ctx: Ctx) -> Response:
    """`GET /workspaces/:id/current-state-version`: 404 when the workspace has no state."""
    ws = ctx.workspace(ctx.param("id"))
    try:
        sv = _current(ctx, ws)
    except ApiError as exc:
        return _snapshot_interval(ctx, error(exc))
    return _snapshot_interval(ctx, document({"data": state_version_doc(sv, _server(ctx.request))}))


async def current_state_version_outputs(ctx: Ctx) -> Response:
    """`GET /workspaces/:id/current-state-version-outputs` (`terraform output`)."""
    ws = ctx.workspace(ctx.param("id"))
    items = outputs_doc(_current(ctx, ws))
    pagination = {
        "current-page": 1,
        "page-size": max(20, len(items)),
        "prev-page": None,
        "next-page": None,
        "total-pages": 1,
        "total-count": len(items),
    }
    return document({"data": items, "meta": {"pagination": pagination}})


async def create_state_version(ctx: Ctx) -> Response:
    """`POST /workspaces/:id/state-versions`: only while the caller holds the lock.

    Modern flow: 201 with upload URLs; the version becomes current when its state blob is
    PUT. Legacy flow (the state inline, base64): stored and current at once.
    """
    ws = ctx.workspace(ctx.param("id"), WRITE)
    if not ctx.world.holds_lock(ws, ctx.principal):
        raise conflict("The workspace must be locked by the caller to create a state version.")
    attributes = await _attributes(ctx.request)
    serial = attributes.get("serial")
    md5 = attributes.get("md5")
    if not isinstance(serial, int) or isinstance(serial, bool) or not isinstance(md5, str):
        raise ApiError(422, "invalid attribute", "serial (integer) and md5 are required")
    sv = StateVersion(
        id=ctx.world.new_id("sv-"),
        workspace_id=ws.id,
        serial=serial,
        md5=md5,
        lineage=str(attributes.get("lineage") or ""),
        created_at=ctx.world.now(),
        created_by=ctx.principal.id,
        outputs=_outputs(attributes),
    )
    if attributes.get("state"):
        sv.state = _b64(attributes["state"], "state")
        if attributes.get("json-state"):
            sv.json_state = _b64(attributes["json-state"], "json-state")
        _finalize(ws, sv)
    ctx.world.state_versions[sv.id] = sv
    ws.latest_change_at = sv.created_at
    return _snapshot_interval(
        ctx, document({"data": state_version_doc(sv, _server(ctx.request))}, 201)
    )


_STATUSES = ("pending", "finalized", "discarded")


async def list_state_versions(ctx: Ctx) -> Response:
    """`GET /state-versions?filter[workspace][name]=&filter[organization][name]=`, newest
    first, optionally `filter[status]=pending|finalized|discarded`.

    Both name filters are required (https://developer.hashicorp.com/terraform/cloud-docs/
    api-docs/state-versions, "List State Versions for a Workspace"); without them, or for a
    workspace the caller may not read, 404.
    """
    query = ctx.request.query_params
    org = query.get("filter[organization][name]", "")
    name = query.get("filter[workspace][name]", "")
    if not org or not name:
        raise not_found()
    ctx.organization_workspaces(org)
    ws_id = ctx.world.organizations[org].by_name.get(name)
    if ws_id is None:
        raise not_found()
    ws = ctx.workspace(ws_id)
    status = query.get("filter[status]")
    if status is not None and status not in _STATUSES:
        raise ApiError(422, "invalid attribute", f"filter[status] must be one of {_STATUSES}")
    versions = sorted(
        (sv for sv in ctx.world.state_versions.values() if sv.workspace_id == ws.id),
        key=lambda sv: (sv.created_at, sv.id),
        reverse=True,
    )
    if status is not None:
        versions = [sv for sv in versions if _status(sv) == status]
    by_id = {sv.id: sv for sv in versions}
    page, meta, links = paginate(ctx.request, list(by_id))
    server = _server(ctx.request)
    body = {
        "data": [state_version_doc(by_id[i], server) for i in page],
        "links": links,
        "meta": meta,
    }
    return document(body)


def _status(sv: StateVersion) -> str:
    return "finalized" if sv.finalized else "pending"


async def show_state_version(ctx: Ctx) -> Response:
    """`GET /state-versions/:id`."""
    sv = ctx.world.state_versions.get(ctx.param("id"))
    if sv is None:
        raise not_found()
    ctx.workspace(sv.workspace_id)
    return document({"data": state_version_doc(sv, _server(ctx.request))})


# --- outside /api/v2: discovery and blobs -------------------------------------------------


async def discovery(request: Request) -> Response:
    """`GET /.well-known/terraform.json`: anonymous, plain JSON."""
    return JSONResponse(DISCOVERY)


def _caller(sim: Simulator, request: Request) -> Principal | None:
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    principal_id = sim.world.tokens.get(token) if token else None
    return None if principal_id is None else sim.world.principals[principal_id]


async def blob(request: Request) -> Response:
    """`PUT` (no auth: the URL is the capability) or `GET` (with the token) a state blob."""
    sim: Simulator = request.app.state.sim
    kind = request.path_params["kind"]
    sv = sim.world.state_versions.get(request.path_params["id"])
    if sv is None or kind not in _BLOB_KINDS:
        return error(not_found())
    ws = sim.world.workspaces[sv.workspace_id]
    if request.method == "PUT":
        data = await request.body()
        if kind == "state":
            if sv.state is not None:
                return error(conflict("This state version's state was already uploaded."))
            sv.state = data
            _finalize(ws, sv)
        else:
            sv.json_state = data
        return Response(status_code=200)
    principal = _caller(sim, request)
    if principal is None:
        return error(ApiError(401, "unauthorized"))
    request.state.principal_name = principal.name
    content = sv.state if kind == "state" else sv.json_state
    if principal.rank(ws) < READ or content is None:
        return error(not_found())
    return Response(content, media_type="application/octet-stream")


API_ROUTES = [
    Route("/organizations/{org}/entitlement-set", endpoint(entitlement_set), methods=["GET"]),
    Route(
        "/workspaces/{id}/current-state-version",
        endpoint(current_state_version),
        methods=["GET"],
    ),
    Route(
        "/workspaces/{id}/current-state-version-outputs",
        endpoint(current_state_version_outputs),
        methods=["GET"],
    ),
    Route("/workspaces/{id}/state-versions", endpoint(create_state_version), methods=["POST"]),
    Route("/state-versions", endpoint(list_state_versions), methods=["GET"]),
    Route("/state-versions/{id}", endpoint(show_state_version), methods=["GET"]),
]
ROOT_ROUTES = [
    Route("/.well-known/terraform.json", discovery, methods=["GET"]),
    Route(BLOBS + "/{id}/{kind}", blob, methods=["GET", "PUT"]),
]
