"""A fast path for the common workspaces page: typed decoding of only the fields read.

Decoding a 10,000-workspace walk into generic dicts (orjson) and then walking them in
parse.py was two thirds of a cycle's CPU; most of each page (21 permission flags, links, run
attributes nobody reads) was built into Python objects only to be dropped. msgspec decodes
straight into the small typed structs below, skipping every other field in C
(https://jcristharif.com/msgspec/structs.html).

Safety: this path only ever answers for a page that is entirely well formed, and then with
exactly what the tolerant parser (parse.py) answers for the same body. Any deviation, a
value of another type, a missing field whose absence parse.py records as a problem, an
unreadable timestamp, a reference not included, a body json would not read, makes
`decode_workspace_page` return None, and the caller decodes and parses the body the
tolerant way. So every tolerance rule of parse.py holds unchanged; this module adds none and
removes none (tests/unit/test_typed_page.py checks the two agree).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from watchdog.model import (
    Holder,
    HolderType,
    Run,
    RunActions,
    RunPermissions,
    Workspace,
    WorkspacePermissions,
    is_final_status,
    status_timestamp_key,
)
from watchdog.sources.tfc.parse import MAX_AVERAGE_MS, EntryError, parse_time

# A count the client reads from `meta.pagination`: a non-negative integer JSON numbers
# represent exactly. Anything else goes the tolerant way, where the client judges it.
_Count = Annotated[int, Meta(ge=0, le=2**53)]


# gc=False: these structs hold no cycles, and tens of thousands per walk need not be tracked
# by the collector. Fields not declared are skipped.
class _Ref(Struct, gc=False):
    type: str
    id: str


class _Relationship(Struct, gc=False):
    data: _Ref | None = None


class _Relationships(Struct, rename="kebab", gc=False):
    # UNSET: the relationship is absent, which parse.py tells apart from `null` for projects.
    project: _Relationship | UnsetType | None = UNSET
    current_run: _Relationship | None = None
    locked_by: _Relationship | None = None


class _WorkspacePermissions(Struct, rename="kebab", gc=False):
    can_lock: bool = False
    can_unlock: bool = False
    can_force_unlock: bool = False
    can_queue_run: bool = False


class _WorkspaceAttributes(Struct, rename="kebab", gc=False):
    name: str
    tag_names: list[str]
    permissions: _WorkspacePermissions
    locked: bool = False
    locked_reason: str | UnsetType | None = UNSET
    latest_change_at: str | None = None
    plan_duration_average: int | float | None = None
    apply_duration_average: int | float | None = None


class _Entry(Struct, gc=False):
    id: str
    attributes: _WorkspaceAttributes
    relationships: _Relationships
    type: str | None = None


class _RunActions(Struct, rename="kebab", gc=False):
    is_cancelable: bool = False
    is_force_cancelable: bool = False
    is_discardable: bool = False
    is_confirmable: bool = False


class _RunPermissions(Struct, rename="kebab", gc=False):
    can_cancel: bool = False
    can_force_cancel: bool = False
    can_discard: bool = False
    can_apply: bool = False


class _IncludedAttributes(Struct, rename="kebab", gc=False):
    """The attributes of any included resource (runs, projects, users, teams) that are read.

    Holder names read any value leniently in parse.py; here a name of another type is a
    deviation like any other (the tolerant way then reads it)."""

    name: str | None = None
    username: str | None = None
    status: str | None = None
    created_at: str | None = None
    status_timestamps: dict[str, Any] | None = None
    actions: _RunActions | None = None
    permissions: _RunPermissions | None = None
    canceled_at: str | None = None
    force_cancel_available_at: str | None = None


class _Included(Struct, gc=False):
    type: str
    id: str
    attributes: _IncludedAttributes | None = None


class _Pagination(Struct, rename="kebab", gc=False):
    current_page: _Count | UnsetType | None = UNSET
    page_size: _Count | UnsetType | None = UNSET
    prev_page: _Count | UnsetType | None = UNSET
    next_page: _Count | UnsetType | None = UNSET
    total_pages: _Count | UnsetType | None = UNSET
    total_count: _Count | UnsetType | None = UNSET


class _Meta(Struct, gc=False):
    pagination: _Pagination | None = None


class _Page(Struct, gc=False):
    data: list[_Entry]
    included: list[_Included] = []
    meta: _Meta | None = None


_DECODER = msgspec.json.Decoder(_Page)
_HOLDER_TYPES = {"users": HolderType.USER, "teams": HolderType.TEAM, "runs": HolderType.RUN}
_HOLDER_NAME = {"users": "username", "teams": "name", "runs": "status"}


class _Deviation(Exception):
    """This page is not the common well-formed shape: read it the tolerant way."""


def decode_workspace_page(body: bytes, organization: str) -> ParsedPage | None:
    """A workspaces list body -> ParsedPage, or None: decode it the tolerant way instead."""
    try:
        # msgspec does not check the UTF-8 of the strings it skips; json (the tolerant
        # decoder's last resort) refuses such a body as a whole, and so must this path.
        body.decode("utf-8")
        page = _DECODER.decode(body)
        return _read(page, organization)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError, _Deviation, EntryError):
        # msgspec.ValidationError is a DecodeError.
        return None


class ParsedPage(dict[str, Any]):
    """A workspaces page read by the fast path.

    As a document it holds only what TfcClient checks of every list page: `data` (one
    `{"id": ...}` per entry, in order, for the list's id and count checks) and
    `meta.pagination`. `entries` is, in page order, each workspace's id and the Workspace
    parse.parse_workspace_page reads from the body when TfcSource keeps it (`worth_keeping`:
    locked, or a current run that is not final), else None: a Workspace that would be
    dropped at once is not built. No entry of such a page is unreadable or has a problem.
    JSON decoding never yields this type, so a body cannot pose as one.
    """

    __slots__ = ("entries",)

    def __init__(
        self, document: dict[str, Any], entries: list[tuple[str, Workspace | None]]
    ) -> None:
        super().__init__(document)
        self.entries = entries


def _read(page: _Page, organization: str) -> ParsedPage:
    included = {(resource.type, resource.id): resource for resource in page.included}
    entries = [_entry(entry, organization, included) for entry in page.data]
    # What TfcClient reads of every list page: the entries' ids and `meta.pagination`.
    document: dict[str, Any] = {"data": [{"id": ident} for ident, _ in entries]}
    if page.meta is not None:
        meta: dict[str, Any] = {}
        if page.meta.pagination is not None:
            fields = msgspec.structs.asdict(page.meta.pagination).items()
            meta["pagination"] = {
                name.replace("_", "-"): value for name, value in fields if value is not UNSET
            }
        document["meta"] = meta
    return ParsedPage(document, entries)


def _entry(
    entry: _Entry, organization: str, included: dict[tuple[str, str], _Included]
) -> tuple[str, Workspace | None]:
    """parse._workspace for an entry without a problem, every field checked as it does;
    _Deviation where it would record a problem or find the entry unreadable."""
    if not entry.id or (entry.type is not None and entry.type != "workspaces"):
        raise _Deviation
    attributes = entry.attributes
    if not attributes.name:
        raise _Deviation
    locked = attributes.locked
    reason = attributes.locked_reason
    if locked and reason is UNSET:
        raise _Deviation
    relationships = entry.relationships
    project_id, project_name = _project(relationships, included)
    holder = _holder(relationships, included) if locked else None
    run_id, run = _current_run(relationships, included)
    latest_change_at = _optional_time(attributes.latest_change_at)
    plan_average = _average(attributes.plan_duration_average)
    apply_average = _average(attributes.apply_duration_average)
    # source.worth_keeping, before anything is built (checked against it in the tests).
    keep = locked or (run is not None and not is_final_status(run.status or ""))
    current_run = _run(run_id, run, build=keep) if run is not None else None
    if not keep:
        return entry.id, None
    permissions = attributes.permissions
    return entry.id, Workspace(
        organization=organization,
        id=entry.id,
        name=attributes.name,
        project_id=project_id,
        project_name=project_name,
        tags=tuple(attributes.tag_names),
        locked=locked,
        locked_reason=reason if isinstance(reason, str) and reason else None,
        holder=holder,
        current_run=current_run,
        latest_change_at=latest_change_at,
        plan_duration_average=plan_average,
        apply_duration_average=apply_average,
        problems=(),
        permissions=WorkspacePermissions(
            can_lock=permissions.can_lock,
            can_unlock=permissions.can_unlock,
            can_force_unlock=permissions.can_force_unlock,
            can_queue_run=permissions.can_queue_run,
        ),
    )


def _reference(relationship: _Relationship | None) -> _Ref | None:
    if relationship is None or relationship.data is None:
        return None
    if not relationship.data.id:
        raise _Deviation
    return relationship.data


def _project(
    relationships: _Relationships, included: dict[tuple[str, str], _Included]
) -> tuple[str | None, str | None]:
    if relationships.project is UNSET:
        raise _Deviation
    reference = _reference(relationships.project)
    if reference is None:
        return None, None
    resource = included.get((reference.type, reference.id))
    name = resource.attributes.name if resource and resource.attributes else None
    if not name:
        raise _Deviation
    return reference.id, name


def _holder(relationships: _Relationships, included: dict[tuple[str, str], _Included]) -> Holder:
    reference = _reference(relationships.locked_by)
    if reference is None:
        raise _Deviation  # locked by nobody: a problem parse.py records
    holder_type = _HOLDER_TYPES.get(reference.type)
    if holder_type is None:
        raise _Deviation
    resource = included.get((reference.type, reference.id))
    name = None
    if resource is not None and resource.attributes is not None:
        name = getattr(resource.attributes, _HOLDER_NAME[reference.type]) or None
    return Holder(type=holder_type, id=reference.id, name=name)


def _current_run(
    relationships: _Relationships, included: dict[tuple[str, str], _Included]
) -> tuple[str, _IncludedAttributes | None]:
    reference = _reference(relationships.current_run)
    if reference is None:
        return "", None
    if reference.type != "runs":
        raise _Deviation
    resource = included.get(("runs", reference.id))
    if resource is None or resource.attributes is None:
        raise _Deviation
    return reference.id, resource.attributes


def _run(run_id: str, attributes: _IncludedAttributes, *, build: bool) -> Run | None:
    """parse.parse_run: every field it reads is checked; the Run is built when `build`."""
    status = attributes.status
    if not status or attributes.created_at is None:
        raise _Deviation
    key = status_timestamp_key(status)
    timestamps = attributes.status_timestamps
    entered = timestamps.get(key) if timestamps is not None else None
    created_at = parse_time(attributes.created_at)
    entered_at = None if entered is None else parse_time(entered)
    canceled_at = _optional_time(attributes.canceled_at)
    force_cancel_available_at = _optional_time(attributes.force_cancel_available_at)
    if not build:
        return None
    actions = attributes.actions or _NO_ACTIONS
    permissions = attributes.permissions or _NO_PERMISSIONS
    return Run(
        id=run_id,
        status=status,
        created_at=created_at,
        status_timestamps={} if entered_at is None else {key: entered_at},
        actions=RunActions(
            is_cancelable=actions.is_cancelable,
            is_force_cancelable=actions.is_force_cancelable,
            is_discardable=actions.is_discardable,
            is_confirmable=actions.is_confirmable,
        ),
        permissions=RunPermissions(
            can_cancel=permissions.can_cancel,
            can_force_cancel=permissions.can_force_cancel,
            can_discard=permissions.can_discard,
            can_apply=permissions.can_apply,
        ),
        canceled_at=canceled_at,
        force_cancel_available_at=force_cancel_available_at,
    )


_NO_ACTIONS = _RunActions()
_NO_PERMISSIONS = _RunPermissions()


def _optional_time(value: str | None) -> datetime | None:
    return None if value is None else parse_time(value)


def _average(value: float | None) -> timedelta | None:
    if value is None:
        return None
    if not 0 <= value <= MAX_AVERAGE_MS:
        raise _Deviation
    return timedelta(milliseconds=value)
