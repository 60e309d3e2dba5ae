"""GitLab's GraphQL answers about Terraform states -> `BackendLock`s. Pure: no I/O.

The read API is GitLab's documented GraphQL `Project.terraformStates` / `Project.terraformState`
(https://docs.gitlab.com/api/graphql/reference/#terraformstate): a state's `name`,
`lockedAt` (GitLab's own clock, set when the lock was taken) and `lockedByUser`. GitLab keeps
no more of Terraform's lock info than that: the lock ID (`lock_xid`) is not readable through
any read API, and Operation, Info, Version and Path are not stored at all (GitLab's 409 answer
to a second `LOCK` echoes those from the request, with only ID, Who and Created from the
holder). So a GitLab lock is identified by (state id, `lockedAt`, user); its
`TerraformLockInfo.id` is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from watchdog.model import BackendLock, Source, TerraformLockInfo
from watchdog.sources.lockinfo import (
    CLOCK_SKEW_ALLOWANCE,
    EARLIEST_CREATED,
    LockInfoError,
    parse_go_time,
    unparsed_lock_info,
)

PAGE_SIZE: Final = 100
# 100 pages of 100: far more Terraform states than one project holds. A server that keeps
# answering `hasNextPage: true` is cut off here and the read marked incomplete.
MAX_PAGES: Final = 100

_STATE_FIELDS = """
        id
        name
        lockedAt
        lockedByUser { username }
        latestVersion { serial createdAt }"""

# The only two queries the watchdog sends (the simulator's GitLab part serves exactly these).
STATES_QUERY: Final = (
    "query TfcWatchdogTerraformStates($fullPath: ID!, $after: String) {\n"
    "  project(fullPath: $fullPath) {\n"
    f"    terraformStates(first: {PAGE_SIZE}, after: $after) {{\n"
    "      pageInfo { hasNextPage endCursor }\n"
    f"      nodes {{{_STATE_FIELDS}\n      }}\n"
    "    }\n"
    "  }\n"
    "}\n"
)
STATE_QUERY: Final = (
    "query TfcWatchdogTerraformState($fullPath: ID!, $name: String!) {\n"
    "  project(fullPath: $fullPath) {\n"
    f"    terraformState(name: $name) {{{_STATE_FIELDS}\n    }}\n"
    "  }\n"
    "}\n"
)


class AnswerError(ValueError):
    """The answer is not the shape asked for; one line, safe to log. `reason` is a metrics
    error reason."""

    def __init__(self, detail: str, *, reason: str = "bad_response") -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Page:
    locks: tuple[BackendLock, ...]
    has_next: bool
    end_cursor: str | None
    # Nodes without a readable name: whether one of them is a lock cannot be known.
    unreadable: int = 0


def lock_path(project: str, state: str) -> str:
    """A GitLab lock's state path, what `match.paths` globs see: `<project path>/<state>`."""
    return f"{project}/{state}"


def state_name(lock: BackendLock) -> str:
    return lock.path.removeprefix(f"{lock.store}/")


def _project(data: dict[str, Any], project: str) -> dict[str, Any]:
    node = data.get("project")
    if node is None:
        # GitLab answers null both for a project that does not exist and for one the token
        # may not see.
        raise AnswerError(
            f"project {project} not found, or the token may not read it", reason="not_found"
        )
    if not isinstance(node, dict):
        raise AnswerError(f"project {project}: `project` is not an object")
    return node


def parse_states_page(data: dict[str, Any], project: str, now: datetime) -> Page:
    """One page of `terraformStates`. Raises AnswerError when the page cannot be read."""
    connection = _project(data, project).get("terraformStates")
    if connection is None:
        raise AnswerError(
            f"project {project}: terraformStates is null (the token needs at least the "
            "Developer role to read Terraform states)",
            reason="unauthorized",
        )
    if not isinstance(connection, dict):
        raise AnswerError(f"project {project}: terraformStates is not an object")
    info = connection.get("pageInfo")
    nodes = connection.get("nodes")
    if not isinstance(info, dict) or not isinstance(nodes, list):
        raise AnswerError(f"project {project}: terraformStates has no pageInfo or nodes list")
    has_next = info.get("hasNextPage")
    cursor = info.get("endCursor")
    if not isinstance(has_next, bool) or not (cursor is None or isinstance(cursor, str)):
        raise AnswerError(f"project {project}: pageInfo is not {{hasNextPage, endCursor}}")
    if has_next and not cursor:
        raise AnswerError(f"project {project}: hasNextPage without an endCursor")
    locks: list[BackendLock] = []
    unreadable = 0
    for node in nodes:
        name = node.get("name") if isinstance(node, dict) else None
        if not isinstance(name, str) or not name:
            unreadable += 1
            continue
        lock = lock_of_state(node, project, now)
        if lock is not None:
            locks.append(lock)
    return Page(tuple(locks), has_next, cursor, unreadable)


def parse_state(data: dict[str, Any], project: str, name: str, now: datetime) -> BackendLock | None:
    """`terraformState(name:)`: the state's lock, or None when it is unlocked or gone."""
    node = _project(data, project).get("terraformState")
    if node is None:
        return None
    if not isinstance(node, dict) or node.get("name") != name:
        raise AnswerError(f"state {project}/{name}: the answer is not that state")
    return lock_of_state(node, project, now)


def lock_of_state(node: dict[str, Any], project: str, now: datetime) -> BackendLock | None:
    """The lock a `TerraformState` node shows, or None when `lockedAt` is null. A lock whose
    fields cannot be read is returned with `problem` set: reported, never acted on."""
    name = str(node["name"])
    locked_at_text = node.get("lockedAt")
    if locked_at_text is None:
        return None
    path = lock_path(project, name)
    state_id = node.get("id")
    user = node.get("lockedByUser")
    username = user.get("username") if isinstance(user, dict) else None
    problem: str | None = None
    locked_at: datetime | None = None
    if not isinstance(locked_at_text, str):
        problem = "lockedAt is not a string"
    else:
        try:
            locked_at = parse_go_time(locked_at_text)
        except LockInfoError as exc:
            problem = f"lockedAt: {exc}"
    if problem is None and locked_at is not None:
        if locked_at < EARLIEST_CREATED:
            problem = f"lockedAt {locked_at.isoformat()} is before 2000"
        elif locked_at > now + CLOCK_SKEW_ALLOWANCE:
            problem = f"lockedAt {locked_at.isoformat()} is in the future of GitLab's own clock"
    if problem is None and not isinstance(state_id, str):
        problem = "the state has no id"
    if problem is None and (not isinstance(username, str) or not username):
        # A lock whose holder cannot be read (a deleted user, a field the token may not see)
        # cannot be compared on the re-read: it is never acted on.
        problem = "lockedByUser is not readable"
    if problem is not None or locked_at is None or not isinstance(username, str):
        return BackendLock(
            source=Source.GITLAB,
            store=project,
            path=path,
            info=unparsed_lock_info(locked_at or now),
            token="",
            problem=problem or "unreadable lock",
        )
    return BackendLock(
        source=Source.GITLAB,
        store=project,
        path=path,
        info=TerraformLockInfo(
            id="", operation="", who=username, version="", created=locked_at, path=""
        ),
        # What the re-read before the unlock must see again: the same state, locked at the
        # same server time by the same user.
        token=f"{state_id}|{locked_at_text}|{username}",
        last_modified=locked_at,
    )
