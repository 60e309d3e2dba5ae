"""JSON:API documents of the workspaces endpoints -> the domain types of watchdog.model.

Pure functions (they only log). Tolerant where the API is known to vary (https://developer.hashicorp.com/terraform/cloud-docs/api-docs):
`locked-reason` null or ""; unknown run statuses (kept as-is, the model treats them as
non-final); missing `actions` (all False, which only ever forbids actions). Recorded on the
Workspace (`problems`, counted as parse errors) where protection, rule matching or acting
depends on a field that is missing or malformed: `tag-names`, the project, `locked-reason`
of a locked workspace, `permissions`, the holder of a locked workspace; decide takes no
action on such a workspace. Strict where a wrong value could hasten an action: a present but
unreadable timestamp among those read (`created-at`, the current status's `<status>-at`,
`canceled-at`, `force-cancel-available-at`; the other status timestamps are not read at
all), an unknown holder type, or a current run that the document references but does not
include make the whole entry unreadable, so that workspace gets no action this cycle. A
missing `<status>-at` is no error: the run's age is unknown, and decide acts on nothing
there.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from watchdog.model import (
    Holder,
    HolderType,
    Run,
    RunActions,
    RunPermissions,
    Workspace,
    WorkspacePermissions,
    status_timestamp_key,
)
from watchdog.sources.tfc.client import BadResponseError

log = structlog.get_logger(__name__)

PARSE_ENDPOINT = "parse"
_HOLDER_TYPES = {"users": HolderType.USER, "teams": HolderType.TEAM, "runs": HolderType.RUN}
# Which attribute of an included holder is its human name.
_HOLDER_NAME = {"users": "username", "teams": "name", "runs": "status"}

Included = Mapping[tuple[str, str], Mapping[str, Any]]


class EntryError(ValueError):
    """One entry of a document cannot be read."""


# --- public ---------------------------------------------------------------------------------


def parse_workspace_page(
    doc: Mapping[str, Any], organization: str
) -> tuple[list[Workspace], list[str], int]:
    """A workspaces list page -> (workspaces, ids of unreadable entries, parse errors).

    A malformed entry never fails the page. A page whose `data` is not a list does: that is
    not a workspace list at all (BadResponseError).
    """
    data = doc.get("data")
    if not isinstance(data, list):
        raise BadResponseError(
            endpoint=PARSE_ENDPOINT, detail="workspace list `data` is not a list"
        )
    included = index_included(doc)
    workspaces: list[Workspace] = []
    unreadable: list[str] = []
    errors = 0
    for entry in data:
        try:
            workspace = _workspace(entry, organization, included)
            workspaces.append(workspace)
            if workspace.problems:
                # Readable, so reported; but a field the policy may depend on is missing or
                # malformed: a parse problem, and decide takes no action on it.
                errors += 1
                log.warning(
                    "tfc.parse_problem",
                    organization=organization,
                    workspace_id=workspace.id,
                    problems=[detail for _, detail in workspace.problems],
                )
        except EntryError as exc:
            errors += 1
            entry_id = entry.get("id") if isinstance(entry, dict) else None
            if isinstance(entry_id, str) and entry_id:
                unreadable.append(entry_id)
            log.warning(
                "tfc.parse_error",
                organization=organization,
                workspace_id=entry_id if isinstance(entry_id, str) else None,
                error=str(exc),
            )
    return workspaces, unreadable, errors


def parse_workspace_document(doc: Mapping[str, Any], organization: str) -> Workspace:
    """A single-workspace document (GET /workspaces/:id) -> Workspace, or BadResponseError.

    The organization comes from the document's `organization` relationship when present,
    else from the argument.
    """
    entry = doc.get("data")
    if not isinstance(entry, dict):
        raise BadResponseError(endpoint=PARSE_ENDPOINT, detail="workspace `data` is not an object")
    try:
        related = _related(entry, "organization")
        if related is not None and related[0] == "organizations" and related[1]:
            organization = related[1]
        return _workspace(entry, organization, index_included(doc))
    except EntryError as exc:
        entry_id = entry.get("id")
        raise BadResponseError(
            endpoint=PARSE_ENDPOINT, detail=f"workspace {entry_id!r}: {exc}"
        ) from None


def index_included(doc: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """`included` by (type, id); malformed entries are ignored (what references them fails)."""
    index: dict[tuple[str, str], Mapping[str, Any]] = {}
    included = doc.get("included")
    if not isinstance(included, list):
        return index
    for resource in included:
        if not isinstance(resource, dict):
            continue
        kind, ident = resource.get("type"), resource.get("id")
        if isinstance(kind, str) and isinstance(ident, str):
            index[(kind, ident)] = resource
    return index


def parse_time(value: Any) -> datetime:
    """An API timestamp (`...Z`, `...+00:00`, with or without fractions) -> aware UTC."""
    if not isinstance(value, str):
        raise EntryError(f"timestamp {value!r} is not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EntryError(f"timestamp {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # `0001-01-01T00:00:00+01:00` is valid ISO 8601 but before year 1 in UTC.
        raise EntryError(f"timestamp {value!r} is out of range in UTC") from None


def parse_run(resource: Mapping[str, Any]) -> Run:
    """A `runs` resource -> Run (EntryError when unreadable)."""
    run_id = resource.get("id")
    if not isinstance(run_id, str) or not run_id:
        raise EntryError("run without an id")
    attributes = _attributes(resource, f"run {run_id}")
    status = attributes.get("status")
    if not isinstance(status, str) or not status:
        raise EntryError(f"run {run_id}: status is {status!r}")
    timestamps = attributes.get("status-timestamps")
    if timestamps is None:
        timestamps = {}
    if not isinstance(timestamps, dict):
        raise EntryError(f"run {run_id}: status-timestamps is not an object")
    actions = _flags(attributes.get("actions"))
    permissions = _flags(attributes.get("permissions"))
    # Only the timestamp of the current status is parsed (and must be readable): it is the
    # one a run's age is read from (Run.entered_status_at); the others (~8 per run, parsed
    # for every workspace's current run) were a fifth of the parse time at 10,000 workspaces
    # and nothing read them.
    key = status_timestamp_key(status)
    entered = timestamps.get(key)
    return Run(
        id=run_id,
        status=status,
        created_at=parse_time(attributes.get("created-at")),
        status_timestamps={} if entered is None else {key: parse_time(entered)},
        actions=RunActions(
            is_cancelable=actions.get("is-cancelable") is True,
            is_force_cancelable=actions.get("is-force-cancelable") is True,
            is_discardable=actions.get("is-discardable") is True,
            is_confirmable=actions.get("is-confirmable") is True,
        ),
        permissions=RunPermissions(
            can_cancel=permissions.get("can-cancel") is True,
            can_force_cancel=permissions.get("can-force-cancel") is True,
            can_discard=permissions.get("can-discard") is True,
            can_apply=permissions.get("can-apply") is True,
        ),
        canceled_at=_optional_time(attributes.get("canceled-at")),
        force_cancel_available_at=_optional_time(attributes.get("force-cancel-available-at")),
    )


# --- internals ------------------------------------------------------------------------------


def _workspace(entry: Any, organization: str, included: Included) -> Workspace:
    if not isinstance(entry, dict):
        raise EntryError("entry is not an object")
    ws_id = entry.get("id")
    if not isinstance(ws_id, str) or not ws_id:
        raise EntryError("workspace without an id")
    kind = entry.get("type")
    if kind is not None and kind != "workspaces":
        raise EntryError(f"type is {kind!r}, not workspaces")
    attributes = _attributes(entry, f"workspace {ws_id}")
    name = attributes.get("name")
    if not isinstance(name, str) or not name:
        raise EntryError(f"workspace {ws_id}: name is {name!r}")
    locked = attributes.get("locked", False)
    if not isinstance(locked, bool):
        raise EntryError(f"workspace {ws_id}: locked is {locked!r}")
    problems: list[tuple[str, str]] = []
    reason = attributes.get("locked-reason")
    if locked and "locked-reason" not in attributes:
        problems.append(("locked-reason", "locked-reason missing"))
    elif reason is not None and not isinstance(reason, str):
        problems.append(("locked-reason", f"locked-reason is a {_kind(reason)}, not a string"))
    tags = _tags(attributes, problems)
    permissions = _permissions(attributes, problems)
    project_id, project_name = _project(entry, included, problems)
    holder = _holder(entry, included, ws_id) if locked else None
    if locked and holder is None:
        problems.append(("locked-by", "locked, but locked-by names no holder"))
    latest_change_at = _latest_change_at(attributes, problems)
    plan_average = _duration_average(attributes, "plan-duration-average", problems)
    apply_average = _duration_average(attributes, "apply-duration-average", problems)
    return Workspace(
        organization=organization,
        id=ws_id,
        name=name,
        project_id=project_id,
        project_name=project_name,
        tags=tags,
        locked=locked,
        locked_reason=reason if isinstance(reason, str) and reason else None,
        holder=holder,
        current_run=_current_run(entry, included, ws_id),
        latest_change_at=latest_change_at,
        plan_duration_average=plan_average,
        apply_duration_average=apply_average,
        problems=tuple(problems),
        permissions=WorkspacePermissions(
            can_lock=permissions.get("can-lock") is True,
            can_unlock=permissions.get("can-unlock") is True,
            can_force_unlock=permissions.get("can-force-unlock") is True,
            can_queue_run=permissions.get("can-queue-run") is True,
        ),
    )


def _latest_change_at(
    attributes: Mapping[str, Any], problems: list[tuple[str, str]]
) -> datetime | None:
    """`latest-change-at`, a sign of life of a lock's holder: absent or null is None (older
    TFE releases); present but unreadable is a problem, so an age it could have shortened
    is never acted on."""
    value = attributes.get("latest-change-at")
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(("latest-change-at", f"latest-change-at is a {_kind(value)}, not a time"))
        return None
    try:
        return parse_time(value)
    except EntryError:
        problems.append(("latest-change-at", "latest-change-at is not ISO 8601"))
        return None


# A month of milliseconds: no plan or apply averages that; a larger value is garbage, and
# would only ever be clamped to an adaptive threshold's `max`.
MAX_AVERAGE_MS = 31 * 86400 * 1000


def _duration_average(
    attributes: Mapping[str, Any], key: str, problems: list[tuple[str, str]]
) -> timedelta | None:
    """`plan-duration-average` / `apply-duration-average`, milliseconds
    (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/workspaces). Absent or
    null (no run yet) is None. Unreadable is None too, and a problem to count; the policy
    does not let it block anything, since an adaptive threshold then uses its fallback,
    never something shorter than its `min`."""
    value = attributes.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append((key, f"{key} is a {_kind(value)}, not a number"))
        return None
    if not 0 <= value <= MAX_AVERAGE_MS:  # also rejects NaN
        problems.append((key, f"{key} is {value!r}, not a duration in milliseconds"))
        return None
    return timedelta(milliseconds=value)


def _attributes(resource: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    attributes = resource.get("attributes")
    if not isinstance(attributes, dict):
        raise EntryError(f"{what}: attributes is not an object")
    return attributes


def _related(resource: Mapping[str, Any], name: str) -> tuple[str, str] | None:
    """(type, id) of a to-one relationship; None when absent or `data: null`."""
    relationships = resource.get("relationships")
    if relationships is None:
        return None
    if not isinstance(relationships, dict):
        raise EntryError("relationships is not an object")
    relationship = relationships.get(name)
    if relationship is None:
        return None
    if not isinstance(relationship, dict):
        raise EntryError(f"relationship {name} is not an object")
    data = relationship.get("data")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise EntryError(f"relationship {name}: data is not an object")
    kind, ident = data.get("type"), data.get("id")
    if not isinstance(kind, str) or not isinstance(ident, str) or not ident:
        raise EntryError(f"relationship {name}: type/id are {kind!r}/{ident!r}")
    return kind, ident


def _holder(entry: Mapping[str, Any], included: Included, ws_id: str) -> Holder | None:
    related = _related(entry, "locked-by")
    if related is None:
        return None
    kind, ident = related
    holder_type = _HOLDER_TYPES.get(kind)
    if holder_type is None:
        raise EntryError(f"workspace {ws_id}: locked by unknown type {kind!r}")
    name = None
    resource = included.get(related)
    if resource is not None:
        attributes = resource.get("attributes")
        value = attributes.get(_HOLDER_NAME[kind]) if isinstance(attributes, dict) else None
        name = value if isinstance(value, str) and value else None
    return Holder(type=holder_type, id=ident, name=name)


def _current_run(entry: Mapping[str, Any], included: Included, ws_id: str) -> Run | None:
    related = _related(entry, "current-run")
    if related is None:
        return None
    if related[0] != "runs":
        raise EntryError(f"workspace {ws_id}: current-run has type {related[0]!r}")
    resource = included.get(related)
    if resource is None:
        # Without its status nobody can tell whether the run still works on the state.
        raise EntryError(f"workspace {ws_id}: current run {related[1]} is not included")
    return parse_run(resource)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _tags(attributes: Mapping[str, Any], problems: list[tuple[str, str]]) -> tuple[str, ...]:
    """`tag-names`; missing or malformed is recorded: an unreadable tag list must not read as
    "no tags" where a tag protects the workspace or selects its rule."""
    if "tag-names" not in attributes:
        problems.append(("tag-names", "tag-names missing"))
        return ()
    tags = attributes["tag-names"]
    if not isinstance(tags, list):
        problems.append(("tag-names", f"tag-names is a {_kind(tags)}, not a list"))
        return ()
    if not all(isinstance(tag, str) for tag in tags):
        problems.append(("tag-names", "tag-names holds a value that is not a string"))
    return tuple(tag for tag in tags if isinstance(tag, str))


_PERMISSION_FLAGS = ("can-lock", "can-unlock", "can-force-unlock", "can-queue-run")


def _permissions(
    attributes: Mapping[str, Any], problems: list[tuple[str, str]]
) -> Mapping[str, Any]:
    value = attributes.get("permissions")
    if not isinstance(value, dict):
        what = "missing" if "permissions" not in attributes else f"a {_kind(value)}"
        problems.append(("permissions", f"permissions {what}, not an object"))
        return _NO_FLAGS
    odd = [flag for flag in _PERMISSION_FLAGS if not isinstance(value.get(flag, False), bool)]
    if odd:
        problems.append(("permissions", f"permissions {', '.join(odd)} not true/false"))
    return value


def _project(
    entry: Mapping[str, Any], included: Included, problems: list[tuple[str, str]]
) -> tuple[str | None, str | None]:
    relationships = entry.get("relationships")
    if not isinstance(relationships, dict) or "project" not in relationships:
        # `data: null` says "no project"; no relationship at all says nothing (older TFE
        # releases have no projects: only a policy that matches projects cares).
        problems.append(("project", "project relationship missing"))
        return None, None
    related = _related(entry, "project")
    if related is None:
        return None, None
    resource = included.get(related)
    attributes = resource.get("attributes") if resource is not None else None
    name = attributes.get("name") if isinstance(attributes, dict) else None
    if not isinstance(name, str) or not name:
        problems.append(("project", f"project {related[1]} name not included"))
        return related[1], None
    return related[1], name


_NO_FLAGS: Mapping[str, Any] = {}


def _flags(value: Any) -> Mapping[str, Any]:
    """A map of booleans, read as `flags.get(key) is True`: anything but a literal true
    reads as False. (A plain map, not a reader closure: three per workspace at 10,000
    workspaces per cycle.)"""
    return value if isinstance(value, dict) else _NO_FLAGS


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else parse_time(value)
