"""A GitLab-compatible endpoint for GitLab-managed Terraform state: its own Starlette app.

Two parts, following GitLab's public docs and API source:

- the state API Terraform's `http` backend calls
  (https://docs.gitlab.com/user/infrastructure/iac/terraform_state/):
  `GET|POST|DELETE /api/v4/projects/:id/terraform/state/:name` and `POST|DELETE .../lock`,
  `:id` a numeric id or the URL-encoded full path. Semantics as GitLab's
  `Terraform::RemoteStateHandler`: LOCK takes a free lock (200) or answers 409 with the
  holder's ID, Who (a GitLab username) and Created, the rest of the Lock Info echoed from the
  request; UNLOCK with an `ID` (query or JSON body, as Terraform sends it) answers 409 unless it
  is the holder's, and without one clears any lock (`terraform force-unlock`); a state write
  must carry the holder's `?ID=` when the state is locked, and none when it is not.
  Authentication is HTTP basic (any user name, the token as password: how Terraform sends it),
  `Authorization: Bearer` or `PRIVATE-TOKEN`. Reading needs the Developer role, writing,
  locking and unlocking the Maintainer role.
- the GraphQL read API, `POST /api/graphql`, serving ONLY the two queries tfc-watchdog sends
  (operations `TfcWatchdogTerraformStates` and `TfcWatchdogTerraformState`, recognised by name,
  with the fields of https://docs.gitlab.com/api/graphql/reference/#terraformstate). Anything
  else gets a GraphQL error: it is a query matcher, not a GraphQL server.

Self-contained (nothing from the product is imported): tests and the demo build it with
`build_gitlab_app(GitLabWorld(...))`. Every request is logged (method, path, principal,
status, monotonic time) so tests assert what reached the server; `Date` comes from the world's
clock, which `advance()` moves forward (serve with uvicorn's own Date header off).
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Role = Literal["reporter", "developer", "maintainer"]
_RANK: dict[str, int] = {"reporter": 1, "developer": 2, "maintainer": 3}
_LOCK_FIELDS = ("ID", "Operation", "Info", "Who", "Version", "Created", "Path")
_OPERATION = re.compile(r"^\s*query\s+(\w+)")
_FIRST = re.compile(r"terraformStates\(first:\s*(\d+)")
_SERVED = frozenset({"TfcWatchdogTerraformStates", "TfcWatchdogTerraformState"})


@dataclass
class Member:
    username: str
    role: Role


@dataclass
class StateVersion:
    serial: int
    created_at: datetime


@dataclass
class TerraformState:
    id: int
    project: str
    name: str
    data: bytes | None = None
    versions: list[StateVersion] = field(default_factory=list)
    lock_xid: str | None = None
    locked_by: str | None = None
    locked_at: datetime | None = None

    @property
    def gid(self) -> str:
        return f"gid://gitlab/Terraform::State/{self.id}"


class GitLabWorld:
    """Projects, members (by token), Terraform states and their locks; thread-safe, since
    tests change it from their own thread while uvicorn serves it."""

    def __init__(self, projects: dict[str, int], members: dict[str, Member]) -> None:
        self.projects = dict(projects)  # full path -> numeric id
        self.members = dict(members)  # token -> member (of every project)
        self.states: dict[tuple[str, str], TerraformState] = {}
        self.request_log: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.mutex = threading.RLock()
        self._offset = timedelta(0)
        self._next_id = 1

    # --- the clock ---------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += timedelta(seconds=seconds)
        return self.now()

    # --- for tests ---------------------------------------------------------------------------

    def state(self, project: str, name: str) -> TerraformState | None:
        with self.mutex:
            return self.states.get((project, name))

    def put_lock(self, project: str, name: str, username: str, lock_id: str) -> TerraformState:
        """Lock a state as `username` would by LOCK (created if missing)."""
        with self.mutex:
            state = self.find_or_create(project, name)
            state.lock_xid, state.locked_by, state.locked_at = lock_id, username, self.now()
            return state

    def requests(self) -> list[dict[str, Any]]:
        with self.mutex:
            return list(self.request_log)

    # --- used by the app ---------------------------------------------------------------------

    def project_path(self, ident: str) -> str | None:
        if ident in self.projects:
            return ident
        return next((p for p, number in self.projects.items() if str(number) == ident), None)

    def find_or_create(self, project: str, name: str) -> TerraformState:
        state = self.states.get((project, name))
        if state is None:
            state = TerraformState(id=self._next_id, project=project, name=name)
            self._next_id += 1
            self.states[(project, name)] = state
        return state

    def member(self, request: Request) -> Member | None:
        token = _token(request)
        return None if token is None else self.members.get(token)


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return request.headers.get("private-token") or None


def _iso(moment: datetime) -> str:
    """GitLab's GraphQL `Time`: ISO 8601 in whole seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_ms(moment: datetime) -> str:
    """Rails' JSON time (the LOCK answer's `Created`): milliseconds, `Z`."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _message(status: int, text: str) -> JSONResponse:
    return JSONResponse({"message": f"{status} {text}"}, status_code=status)


# --- the state API ------------------------------------------------------------------------------


async def state_api(request: Request) -> Response:
    world: GitLabWorld = request.app.state.world
    rest: str = request.path_params["rest"]
    project_ident, sep, tail = rest.partition("/terraform/state/")
    if not sep or not tail:
        return _message(404, "Not Found")
    name, is_lock = (tail[: -len("/lock")], True) if tail.endswith("/lock") else (tail, False)
    member = world.member(request)
    if member is None:
        return _message(401, "Unauthorized")
    body = await request.body()
    with world.mutex:
        project = world.project_path(project_ident)
        if project is None:
            return _message(404, "Project Not Found")
        request.state.principal = member.username
        if _RANK[member.role] < _RANK["developer"]:
            return _message(403, "Forbidden")
        writing = is_lock or request.method != "GET"
        if writing and _RANK[member.role] < _RANK["maintainer"]:
            return _message(403, "Forbidden")
        if is_lock and request.method == "POST":
            return _lock(world, project, name, member, body)
        if is_lock and request.method == "DELETE":
            return _unlock(world, project, name, request, body)
        if is_lock:
            return _message(405, "Method Not Allowed")
        return _state(world, project, name, request, body)


def _lock(world: GitLabWorld, project: str, name: str, member: Member, body: bytes) -> Response:
    try:
        info = json.loads(body or b"{}")
    except ValueError:
        return _message(400, "Bad request")
    if not isinstance(info, dict) or any(not isinstance(info.get(k), str) for k in _LOCK_FIELDS):
        return JSONResponse(
            {"error": "ID, Operation, Info, Who, Version, Created, Path are missing"},
            status_code=400,
        )
    state = world.find_or_create(project, name)
    status = 200
    if state.lock_xid is not None:
        status = 409
    else:
        state.lock_xid, state.locked_by, state.locked_at = info["ID"], member.username, world.now()
    answer = {
        "Operation": info["Operation"],
        "Info": info["Info"],
        "Version": info["Version"],
        "Path": info["Path"],
        "ID": state.lock_xid,
        "Who": state.locked_by,
        "Created": _iso_ms(state.locked_at) if state.locked_at else None,
    }
    return Response(json.dumps(answer), status_code=status, media_type="application/json")


def _lock_id_param(request: Request, body: bytes) -> str | None:
    if "ID" in request.query_params:
        return request.query_params["ID"]
    try:
        document = json.loads(body) if body else None
    except ValueError:
        return None
    value = document.get("ID") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


def _unlock(world: GitLabWorld, project: str, name: str, request: Request, body: bytes) -> Response:
    lock_id = _lock_id_param(request, body)
    state = world.find_or_create(project, name)
    # GitLab: force-unlock sends no ID, so a missing ID clears whatever lock there is.
    if lock_id is not None and state.lock_xid != lock_id:
        return _message(409, "Conflict")
    state.lock_xid = state.locked_by = state.locked_at = None
    return Response(status_code=200)


def _state(world: GitLabWorld, project: str, name: str, request: Request, body: bytes) -> Response:
    lock_id = request.query_params.get("ID")
    if request.method == "GET":
        state = world.states.get((project, name))
        if state is None:
            return _message(404, "Not Found")
        if state.data is None:
            return Response(status_code=204)
        return Response(state.data, media_type="application/json")
    if request.method == "POST" and not body:
        return Response(status_code=204)
    state = world.find_or_create(project, name)
    if state.lock_xid != lock_id:  # both None: an unlocked state written without -lock
        return _message(409, "Conflict")
    if request.method == "DELETE":
        del world.states[(project, name)]
        return Response(status_code=200)
    if request.method != "POST":
        return _message(405, "Method Not Allowed")
    try:
        serial = int(json.loads(body).get("serial", 0))
    except (ValueError, AttributeError, TypeError):
        return _message(400, "Bad request")
    state.data = body
    state.versions.append(StateVersion(serial, world.now()))
    return Response(status_code=200)


# --- the GraphQL read subset --------------------------------------------------------------------


def _state_node(state: TerraformState) -> dict[str, Any]:
    latest = state.versions[-1] if state.versions else None
    return {
        "id": state.gid,
        "name": state.name,
        "lockedAt": _iso(state.locked_at) if state.locked_at else None,
        "lockedByUser": {"username": state.locked_by} if state.locked_by else None,
        "latestVersion": (
            None
            if latest is None
            else {"serial": latest.serial, "createdAt": _iso(latest.created_at)}
        ),
    }


def _graphql_error(message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message}]})


async def graphql(request: Request) -> Response:
    world: GitLabWorld = request.app.state.world
    member = world.member(request)
    if member is not None:
        request.state.principal = member.username
    try:
        document = json.loads(await request.body())
    except ValueError:
        return _graphql_error("Invalid JSON")
    query = document.get("query") if isinstance(document, dict) else None
    variables = document.get("variables") or {} if isinstance(document, dict) else {}
    match = _OPERATION.match(query) if isinstance(query, str) else None
    if match is None or match[1] not in _SERVED or not isinstance(variables, dict):
        return _graphql_error("the simulator serves only tfc-watchdog's queries")
    if request.headers.get("authorization") and member is None:
        return _message(401, "Unauthorized")
    with world.mutex:
        project = world.project_path(str(variables.get("fullPath", "")))
        if project is None or member is None:
            # Anonymous callers and unknown projects alike: a null project.
            return JSONResponse({"data": {"project": None}})
        may_read = _RANK[member.role] >= _RANK["developer"]
        if match[1] == "TfcWatchdogTerraformStates":
            first = _FIRST.search(query or "")
            return JSONResponse(
                {
                    "data": {
                        "project": {
                            "terraformStates": _states_page(
                                world,
                                project,
                                int(first[1]) if first else 100,
                                variables.get("after"),
                            )
                            if may_read
                            else None
                        }
                    }
                }
            )
        if match[1] == "TfcWatchdogTerraformState":
            state = world.states.get((project, str(variables.get("name", ""))))
            node = _state_node(state) if may_read and state is not None else None
            return JSONResponse({"data": {"project": {"terraformState": node}}})
    return _graphql_error("the simulator serves only tfc-watchdog's queries")


def _states_page(world: GitLabWorld, project: str, first: int, after: Any) -> dict[str, Any]:
    states = sorted((s for s in world.states.values() if s.project == project), key=lambda s: s.id)
    start = 0
    if isinstance(after, str):
        try:
            start = int(base64.b64decode(after).decode())
        except ValueError:
            start = 0
    page = states[start : start + max(1, min(first, 100))]
    end = start + len(page)
    return {
        "pageInfo": {
            "hasNextPage": end < len(states),
            "endCursor": base64.b64encode(str(end).encode()).decode() if page else None,
        },
        "nodes": [_state_node(s) for s in page],
    }


# --- the app ------------------------------------------------------------------------------------


class _RequestLog:
    """Logs every request with its status and principal, and puts the world's clock in the
    `Date` header (the watchdog ages locks by it)."""

    def __init__(self, app: ASGIApp, world: GitLabWorld) -> None:
        self.app = app
        self.world = world

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "status": None,
            "principal": None,
            "monotonic": time.monotonic(),
        }
        # Logged on arrival (status and principal filled in as they become known): the log's
        # order is the order requests reached the server.
        with self.world.mutex:
            self.world.request_log.append(entry)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Complete before the caller can see the answer.
                entry["status"] = message["status"]
                entry["principal"] = state.get("principal")
                date = email.utils.format_datetime(self.world.now(), usegmt=True).encode()
                message["headers"] = [*message.get("headers", []), (b"date", date)]
            await send(message)

        await self.app(scope, receive, sending)


def build_gitlab_app(world: GitLabWorld) -> ASGIApp:
    app = Starlette(
        routes=[
            Route("/api/graphql", graphql, methods=["POST"]),
            Route(
                "/api/v4/projects/{rest:path}",
                state_api,
                methods=["GET", "POST", "DELETE"],
            ),
        ]
    )
    app.state.world = world
    return _RequestLog(app, world)


# --- served by `tfc-watchdog simulator` ---------------------------------------------------------

GITLAB_PREFIX = "/gitlab"
DEMO_PROJECT = "demo/infra"
# token -> (username, role): the simulator's own, printed at start and in `--help`.
DEMO_GITLAB_TOKENS: dict[str, tuple[str, Role]] = {
    "glpat-demo-terraform": ("ci-runner", "maintainer"),
    "glpat-demo-watchdog": ("watchdog-bot", "maintainer"),
    "glpat-demo-developer": ("dev", "developer"),
}
# How old the demo's one lock is at start: stale under any sensible rule.
DEMO_LOCK_AGE = timedelta(hours=3)


def demo_gitlab_world() -> GitLabWorld:
    """Project `demo/infra` (id 1) with an unlocked state `dev` and a state `prod` locked by
    `ci-runner` three hours ago."""
    world = GitLabWorld(
        projects={DEMO_PROJECT: 1},
        members={token: Member(name, role) for token, (name, role) in DEMO_GITLAB_TOKENS.items()},
    )
    world.find_or_create(DEMO_PROJECT, "dev")
    state = world.put_lock(DEMO_PROJECT, "prod", "ci-runner", "6c1f0d6e-demo-lock")
    with world.mutex:
        state.locked_at = world.now() - DEMO_LOCK_AGE
    return world


def with_gitlab(app: ASGIApp, gitlab: ASGIApp, prefix: str = GITLAB_PREFIX) -> ASGIApp:
    """`app`, with `gitlab` answering every path under `prefix` (GitLab under a relative URL
    root, which GitLab supports: https://docs.gitlab.com/install/relative_url/). Dispatched
    ahead of `app`'s middleware, so the TFC simulator's faults, rate limit and tokens never
    apply to GitLab requests."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == prefix or path.startswith(f"{prefix}/"):
            inner = dict(scope)
            inner["path"] = path[len(prefix) :] or "/"
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.startswith(prefix.encode()):
                inner["raw_path"] = raw[len(prefix) :] or b"/"
            await gitlab(inner, receive, send)
            return
        await app(scope, receive, send)

    return dispatch
