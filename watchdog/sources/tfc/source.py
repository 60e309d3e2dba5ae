"""The TFC/TFE lock source: observe workspaces, re-read one, and the five mutating calls.

A full walk costs ceil(N/100) workspace-list requests per organization and nothing else: the
run lists allow only 30 requests per minute (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/run),
so runs come in
through `include=current_run`, never from per-workspace run lists. With two-tier polling
(`tfc.full_scan_interval`, watchdog/sources/tfc/twotier.py) the cycles between full walks
list only the workspaces whose current run is not final (one request per 100 of them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import structlog

from watchdog import TOKEN_ENV
from watchdog.metrics import Metrics
from watchdog.model import (
    NON_FINAL_STATUSES,
    Holder,
    HolderType,
    Observation,
    Source,
    Workspace,
    format_duration,
)
from watchdog.sources.errors import ChangedError, ForbiddenError, RetryLaterError, SourceError
from watchdog.sources.tfc.client import (
    ACCEPTED,
    CREATED,
    OK,
    BadResponseError,
    ConflictError,
    NotFoundError,
    ServerError,
    StateVersionPendingError,
    TfcClient,
    TfcError,
    TransportError,
)
from watchdog.sources.tfc.parse import parse_workspace_document, parse_workspace_page
from watchdog.sources.tfc.twotier import (
    FAST_PATH_RECHECK,
    FastRead,
    OrganizationSchedule,
    carried_view,
    non_final_runs,
)
from watchdog.sources.tfc.typedpage import ParsedPage, decode_workspace_page

log = structlog.get_logger(__name__)

PAGE_SIZE: Final = "100"  # the API's maximum
INCLUDE: Final = "current_run,locked_by,project"
LIST_WORKSPACES: Final = "GET /organizations/:org/workspaces"
SHOW_WORKSPACE: Final = "GET /workspaces/:id"
SHOW_WORKSPACE_BY_NAME: Final = "GET /organizations/:org/workspaces/:name"
ACCOUNT_DETAILS: Final = "GET /account/details"
LIST_STATE_VERSIONS: Final = "GET /state-versions"
_PENDING_STATE = "state version is still pending"
# The fast path's filter: the workspaces whose current run has one of these statuses
# (docs/tfc-api.md, "Workspaces"). A server that does not take a comma list answers 400 or
# 422; one that does not know the parameter at all would answer 400 too.
_RUN_STATUS_FILTER: Final = "filter[current-run][status]"
_REFUSED: Final = frozenset({400, 422})


class _FastPathUnusableError(Exception):
    """The server refused the fast path's filter: walk every workspace instead."""


def _segment(value: str) -> str:
    # Ids and names go into the path; quoting keeps a strange one from changing the route.
    return quote(value, safe="")


# What the on-call engineer can do about the failures a user can cause.
_HINTS = {
    "unauthorized": f"the token was refused (HTTP 401): check {TOKEN_ENV} or "
    "tfc.token_file; it may have expired",
    "tls": "the server's certificate is not trusted: set tfc.ca_bundle to the PEM of its CA",
    "not_found": "the organization does not exist or the token may not read it (the API "
    "answers 404 for both)",
    "transport": "the API could not be reached: check tfc.address and the network",
    "timeout": "the API did not answer within tfc.timeout",
    "bad_response": "the API's answer was not a readable, whole workspace list (a proxy or "
    "cache in between can cause this); the next cycle reads it again",
}


class TfcSource:
    source = Source.TFC

    def __init__(
        self,
        client: TfcClient,
        organizations: Sequence[str],
        metrics: Metrics,
        *,
        full_scan_interval: timedelta = timedelta(0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._organizations = tuple(organizations)
        self._metrics = metrics
        # Two-tier polling (watchdog/sources/tfc/twotier.py): 0 walks every workspace every
        # cycle.
        self._full_scan_interval = full_scan_interval
        self._two_tier = bool(full_scan_interval)
        self._clock = clock
        self._schedules = {
            organization: OrganizationSchedule(full_scan_interval)
            for organization in self._organizations
        }
        if self._two_tier:
            for organization in self._organizations:
                metrics.fast_path_disabled.labels(organization=organization).set(0)

    def now(self) -> datetime:
        return self._client.server_now()

    # --- reading ----------------------------------------------------------------------------

    async def observe(self) -> list[Observation]:
        """One Observation per organization (in config order); never raises for API errors."""
        return list(await asyncio.gather(*(self._observe_one(org) for org in self._organizations)))

    async def _observe_one(self, organization: str) -> Observation:
        schedule = self._schedules[organization]
        if not schedule.full_due(self._clock()):
            try:
                return await self._fast(organization, schedule)
            except _FastPathUnusableError:
                pass  # refused by the server: walk every workspace this cycle instead
        return await self._full(organization, schedule)

    async def _full(self, organization: str, schedule: OrganizationSchedule) -> Observation:
        try:
            listed = await self._list(organization, {}, kind="full")
        except TfcError as exc:
            return self._failed(organization, exc)
        if self._two_tier:
            missed = schedule.full_walk_done(
                self._clock(), listed.workspaces, listed.workspace_count
            )
            if missed:
                self._disable(
                    organization,
                    schedule,
                    "the fast path missed non-final runs the full walk found",
                    runs=sorted(run for _, run in missed)[:10],
                    missed=len(missed),
                )
            self._metrics.fast_path_disabled.labels(organization=organization).set(
                1 if schedule.disabled(self._clock()) else 0
            )
        return self._observation(organization, listed, full_read_every=self._full_scan_interval)

    async def _fast(self, organization: str, schedule: OrganizationSchedule) -> Observation:
        started = self._client.server_now()
        try:
            listed = await self._fast_list(organization, schedule)
        except TfcError as exc:
            if exc.status in _REFUSED:
                self._disable(
                    organization,
                    schedule,
                    "the server refused the fast path's filter",
                    status=exc.status,
                    error=str(exc),
                )
                raise _FastPathUnusableError from exc
            return self._failed(organization, exc)
        if listed.unfiltered:
            # A workspace whose current run is final (or that has none) in a filtered list:
            # the server ignored the filter. This read is still right (a superset); the
            # next cycles walk in full instead of paying for the same list twice.
            self._disable(
                organization,
                schedule,
                "the server ignored the fast path's filter",
                unfiltered=listed.unfiltered,
            )
        else:
            self._metrics.fast_path_disabled.labels(organization=organization).set(0)
            schedule.last_fast = FastRead(
                started,
                frozenset(non_final_runs(listed.workspaces, created_before=None)),
                frozenset(listed.unreadable),
            )
        carried = [carried_view(ws) for ws in schedule.carried if ws.id not in listed.read]
        return self._observation(
            organization, listed, fast=True, carried=carried, total=schedule.total
        )

    async def _fast_list(self, organization: str, schedule: OrganizationSchedule) -> _Listed:
        statuses = NON_FINAL_STATUSES
        if not schedule.comma_list_refused:
            try:
                return await self._list(
                    organization, {_RUN_STATUS_FILTER: ",".join(statuses)}, kind="fast"
                )
            except TfcError as exc:
                if exc.status not in _REFUSED:
                    raise
                schedule.comma_list_refused = True
                log.warning(
                    "tfc.fast_path_comma_list_refused",
                    organization=organization,
                    status=exc.status,
                    error=str(exc),
                    note=f"one request per status from now on ({len(statuses)} statuses)",
                )
        # One list per status, one after the other (the rate limiter spaces them anyway). A
        # workspace whose run moved on between two of them may be on two: it is kept once.
        merged = _Listed()
        for status in statuses:
            merged.merge(await self._list(organization, {_RUN_STATUS_FILTER: status}, kind="fast"))
        return merged

    async def _list(self, organization: str, extra: dict[str, str], *, kind: str) -> _Listed:
        """Every page of the organization's workspace list (with `extra` filters), parsed."""
        counter = self._metrics.read_requests.labels(kind=kind)

        def parse(page: dict[str, Any]) -> _Page:
            # Parsed and filtered as each page arrives (TfcClient.map_pages): the raw page is
            # dropped at once, and of the workspaces only the ids of those decide has nothing
            # to say about are kept.
            counter.inc()
            if isinstance(page, ParsedPage):
                # Read by the typed path: no entry of it is unreadable or has a problem.
                return _Page(
                    entries=page.entries,
                    unreadable=[],
                    parse_errors=0,
                    total_count=_total_count(page),
                )
            try:
                parsed, bad_ids, errors = parse_workspace_page(page, organization)
            except BadResponseError as exc:
                raise BadResponseError(endpoint=LIST_WORKSPACES, detail=exc.detail) from None
            return _Page(
                entries=[(ws.id, ws if worth_keeping(ws) else None) for ws in parsed],
                unreadable=list(bad_ids),
                parse_errors=errors,
                total_count=_total_count(page),
            )

        pages = await self._client.map_pages(
            f"/organizations/{_segment(organization)}/workspaces",
            endpoint=LIST_WORKSPACES,
            params={"page[size]": PAGE_SIZE, "include": INCLUDE, **extra},
            each=parse,
            # The common well-formed page is decoded and parsed in one typed pass;
            # any other goes the tolerant way (typedpage.py).
            decode=lambda body: decode_workspace_page(body, organization),
        )
        listed = _Listed(total=pages[0].total_count)
        for page in pages:
            if page.parse_errors:
                self._metrics.parse_errors.inc(page.parse_errors)
            listed.unreadable.update(page.unreadable)
            for workspace_id, workspace in page.entries:
                # map_pages refuses a list with an id on two pages (a page answered twice, or
                # a list that shifted while it was walked); this only keeps one per id.
                if workspace_id in listed.read:
                    continue
                listed.read.add(workspace_id)
                run = workspace.current_run if workspace is not None else None
                if run is None or run.is_final:
                    listed.unfiltered += 1
                if workspace is not None:
                    listed.workspaces.append(workspace)
        return listed

    def _observation(
        self,
        organization: str,
        listed: _Listed,
        *,
        fast: bool = False,
        carried: Sequence[Workspace] = (),
        total: int | None = None,
        full_read_every: timedelta = timedelta(0),
    ) -> Observation:
        read_ids = frozenset(listed.read)
        if total is None:
            total = listed.workspace_count
        return Observation(
            source=self.source,
            organization=organization,
            server_now=self._client.server_now(),
            workspaces=(*listed.workspaces, *carried),
            unreadable=frozenset(listed.unreadable - listed.read),
            complete=True,
            total_workspaces=total,
            listed_ids=read_ids,
            fast=fast,
            full_read_every=full_read_every,
        )

    def _failed(self, organization: str, exc: TfcError) -> Observation:
        self._metrics.observe_error(self.source.value, exc.reason)
        # The one line per cycle that says why nothing was read (and so nothing is done).
        log.error(
            "tfc.observe_failed",
            organization=organization,
            reason=exc.reason,
            error=str(exc),
            hint=_HINTS.get(exc.reason),
            note="no action is taken on what could not be read",
        )
        return Observation(
            source=self.source,
            organization=organization,
            server_now=self._client.server_now(),
            complete=False,
            error=str(exc),
            error_reason=exc.reason,
        )

    def _disable(
        self, organization: str, schedule: OrganizationSchedule, why: str, **fields: Any
    ) -> None:
        """Switch the organization to full walks every cycle (logged once per switch)."""
        self._metrics.fast_path_disabled.labels(organization=organization).set(1)
        if schedule.disable(self._clock()):
            log.warning(
                "tfc.fast_path_disabled",
                organization=organization,
                why=why,
                recheck_after=format_duration(FAST_PATH_RECHECK),
                note="every workspace is read every cycle until then",
                **fields,
            )

    async def read_workspace(self, workspace_id: str, organization: str) -> Workspace:
        """A fresh read of one workspace (act.py re-verifies with it). Raises SourceError
        (see `neutral_error`), also when the answer cannot be parsed.

        `organization` is the one the workspace was observed in (a planned action carries
        it): the single-workspace document's `organization` relationship wins when present,
        this fills in when it is not."""
        try:
            return await self._read_workspace(workspace_id, organization)
        except TfcError as exc:
            raise neutral_error(exc) from exc

    async def _read_workspace(self, workspace_id: str, organization: str) -> Workspace:
        document = await self._client.get(
            f"/workspaces/{_segment(workspace_id)}",
            endpoint=SHOW_WORKSPACE,
            params={"include": INCLUDE},
        )
        self._metrics.read_requests.labels(kind="reread").inc()
        return self._parse_one(document, organization, SHOW_WORKSPACE, logged_id=workspace_id)

    async def read_workspace_by_name(self, organization: str, name: str) -> Workspace:
        """A fresh read of one workspace by its name (the commands that take
        `<org>/<workspace>`)."""
        document = await self._client.get(
            f"/organizations/{_segment(organization)}/workspaces/{_segment(name)}",
            endpoint=SHOW_WORKSPACE_BY_NAME,
            params={"include": INCLUDE},
        )
        return self._parse_one(document, organization, SHOW_WORKSPACE_BY_NAME)

    def _parse_one(
        self,
        document: dict[str, Any],
        organization: str,
        endpoint: str,
        *,
        logged_id: str | None = None,
    ) -> Workspace:
        """A single-workspace document -> Workspace; BadResponseError (of `endpoint`, counted
        as a parse error, and logged for `logged_id` when given) when it cannot be parsed."""
        try:
            return parse_workspace_document(document, organization)
        except (BadResponseError, RecursionError) as exc:
            # RecursionError: a value nested deeper than the interpreter can repr() (JSON is
            # decoded up to 1,024 levels) is as unreadable as any other malformed field.
            bad = exc if isinstance(exc, BadResponseError) else None
            detail = bad.detail if bad is not None else "a value is nested too deeply to read"
            self._metrics.parse_errors.inc()
            if logged_id is not None:
                log.warning("tfc.parse_error", workspace_id=logged_id, error=detail)
            raise BadResponseError(
                endpoint=endpoint, status=bad.status if bad else None, detail=detail
            ) from None

    async def identity(self) -> Holder | None:
        """The user the token belongs to; None for team and organization tokens (404)."""
        try:
            document = await self._client.get("/account/details", endpoint=ACCOUNT_DETAILS)
        except NotFoundError:
            return None
        data = document.get("data")
        attributes = data.get("attributes") if isinstance(data, dict) else None
        user_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(user_id, str) or not user_id or not isinstance(attributes, dict):
            raise BadResponseError(endpoint=ACCOUNT_DETAILS, detail="no user id in the account")
        username = attributes.get("username")
        return Holder(
            type=HolderType.USER,
            id=user_id,
            name=username if isinstance(username, str) and username else None,
        )

    async def pending_state_versions(self, organization: str, workspace: str) -> int:
        """How many of the workspace's state versions are pending; raises SourceError (see
        `neutral_error`) when that cannot be known."""
        try:
            return await self._pending_state_versions(organization, workspace)
        except TfcError as exc:
            raise neutral_error(exc) from exc

    async def _pending_state_versions(self, organization: str, workspace: str) -> int:
        """How many of the workspace's state versions are `pending` (created, upload not
        landed). One GET, `filter[status]=pending` (https://developer.hashicorp.com/terraform/
        cloud-docs/api-docs/state-versions, "List State Versions for a Workspace": both name
        filters are required). Raises TfcError when the answer cannot be trusted: a failed
        request, or a body without a readable status on every version (BadResponseError).

        A server that ignores the status filter answers with versions of any status, newest
        first: those are counted by their own `status`, and such a list is only trusted
        whole (one page), since a pending version could be on a page not read.
        """
        document = await self._client.get(
            "/state-versions",
            endpoint=LIST_STATE_VERSIONS,
            params={
                "filter[workspace][name]": workspace,
                "filter[organization][name]": organization,
                "filter[status]": "pending",
            },
        )
        data = document.get("data")
        if not isinstance(data, list):
            raise BadResponseError(endpoint=LIST_STATE_VERSIONS, detail="`data` is not a list")
        pending = 0
        unfiltered = False
        for item in data:
            attributes = item.get("attributes") if isinstance(item, dict) else None
            status = attributes.get("status") if isinstance(attributes, dict) else None
            if not isinstance(status, str) or not status:
                raise BadResponseError(
                    endpoint=LIST_STATE_VERSIONS, detail="a state version without a status"
                )
            if status == "pending":
                pending += 1
            else:
                unfiltered = True
        if unfiltered and _has_next_page(document):
            raise BadResponseError(
                endpoint=LIST_STATE_VERSIONS,
                detail="the status filter was not applied and the list has more pages",
            )
        return pending

    # --- acting: each exactly one POST (the client never retries one that may have acted) ---
    # Each raises SourceError (see `neutral_error`) when the POST fails.

    async def cancel_run(self, run_id: str, comment: str) -> None:
        await self._run_action(run_id, "cancel", comment)

    async def force_cancel_run(self, run_id: str, comment: str) -> None:
        await self._run_action(run_id, "force-cancel", comment)

    async def discard_run(self, run_id: str, comment: str) -> None:
        await self._run_action(run_id, "discard", comment)

    async def comment_run(self, run_id: str, body: str) -> None:
        """Post a comment on a run (the notice before acting on a run-held lock): one POST,
        201 (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/comments)."""
        document: dict[str, Any] = {"data": {"type": "comments", "attributes": {"body": body}}}
        try:
            await self._client.post(
                f"/runs/{_segment(run_id)}/comments",
                endpoint="POST /runs/:id/comments",
                expect=CREATED,
                json=document,
            )
        except TfcError as exc:
            raise neutral_error(exc) from exc

    async def unlock_workspace(self, workspace_id: str) -> None:
        await self._unlock(workspace_id, "unlock")

    async def force_unlock_workspace(self, workspace_id: str) -> None:
        await self._unlock(workspace_id, "force-unlock")

    async def _run_action(self, run_id: str, action: str, comment: str) -> None:
        # A plain {"comment": ...} body, not a JSON:API envelope (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/run).
        body: dict[str, Any] = {"comment": comment}
        try:
            await self._client.post(
                f"/runs/{_segment(run_id)}/actions/{action}",
                endpoint=f"POST /runs/:id/actions/{action}",
                expect=ACCEPTED,
                json=body,
            )
        except TfcError as exc:
            raise neutral_error(exc) from exc

    async def _unlock(self, workspace_id: str, action: str) -> None:
        endpoint = f"POST /workspaces/:id/actions/{action}"
        try:
            await self._client.post(
                f"/workspaces/{_segment(workspace_id)}/actions/{action}",
                endpoint=endpoint,
                expect=OK,
            )
        except TfcError as exc:
            # 503 for API clients, 400 for Terraform CLI >= 1.10, while an intermediate state
            # version is finalized (https://developer.hashicorp.com/terraform/cloud-docs/
            # api-docs/workspaces): not a failure, try again later.
            if exc.status == 503 or (exc.status == 400 and _PENDING_STATE in exc.detail.lower()):
                pending = StateVersionPendingError(
                    endpoint=endpoint, status=exc.status, detail=exc.detail
                )
                raise neutral_error(pending) from exc
            raise neutral_error(exc) from exc


def neutral_error(exc: TfcError) -> SourceError:
    """The lock sources' error (watchdog.sources.errors) for an API error, so act.py needs
    no HTTP: 409 is a changed world, 404 "not found or not permitted", a pending state
    version a retry next cycle; a request that was sent and got no answer, or a 5xx, may
    have been carried out; anything else (a 429, another 4xx, a connection never made, an
    unreadable answer) was not."""
    reason = exc.reason
    if isinstance(exc, ConflictError):
        return ChangedError(f"conflict (409): {exc}", reason=reason)
    if isinstance(exc, NotFoundError):
        return ForbiddenError(f"not found or not permitted: {exc}", reason=reason)
    if isinstance(exc, StateVersionPendingError):
        return RetryLaterError("state version pending", reason=reason)
    if isinstance(exc, TransportError):
        if exc.request_sent:
            return SourceError(f"sent, no answer: {exc}", reason=reason, may_have_acted=True)
        return SourceError(f"not sent: {exc}", reason=reason, may_have_acted=False)
    if isinstance(exc, ServerError):
        return SourceError(f"server error: {exc}", reason=reason, may_have_acted=True)
    return SourceError(str(exc), reason=reason, may_have_acted=False)


@dataclass(frozen=True, slots=True)
class _Page:
    """One parsed page of a workspace list."""

    # (workspace id, the workspace if worth keeping) in page order.
    entries: list[tuple[str, Workspace | None]]
    # Ids of the entries that could not be parsed.
    unreadable: list[str]
    parse_errors: int
    # The API's `total-count`, when it gave a believable one.
    total_count: int | None


@dataclass(slots=True)
class _Listed:
    """One workspace list read whole: every id read, the kept workspaces, unreadable ids."""

    read: set[str] = field(default_factory=set)
    workspaces: list[Workspace] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)
    total: int | None = None
    # Listed workspaces whose current run is final or missing: in a list filtered on
    # non-final runs, the sign of a server that ignored the filter.
    unfiltered: int = 0

    @property
    def workspace_count(self) -> int:
        """How many workspaces the list holds: the API's `total-count` when it gave one,
        else every id read or unreadable."""
        if self.total is not None:
            return self.total
        return len(self.read) + len(self.unreadable - self.read)

    def merge(self, other: _Listed) -> None:
        for workspace in other.workspaces:
            if workspace.id not in self.read:
                self.workspaces.append(workspace)
        self.read |= other.read
        self.unreadable |= other.unreadable
        self.unfiltered += other.unfiltered


def worth_keeping(workspace: Workspace) -> bool:
    """Whether decide can act or report on this workspace: it is locked, or its current
    run is not final. Anything else yields no lock, finding, action or restraint (decide's
    `_view` has no lock and no run view for it), so the source keeps only its id."""
    if workspace.locked:
        return True
    run = workspace.current_run
    return run is not None and not run.is_final


def _has_next_page(document: dict[str, Any]) -> bool:
    """Whether a list says there is more: a `next-page` or a `links.next` (either, to be safe)."""
    meta = document.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    links = document.get("links")
    next_page = pagination.get("next-page") if isinstance(pagination, dict) else None
    next_link = links.get("next") if isinstance(links, dict) else None
    return next_page is not None or next_link is not None


def _total_count(page: dict[str, Any]) -> int | None:
    meta = page.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    total = pagination.get("total-count") if isinstance(pagination, dict) else None
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    return None
