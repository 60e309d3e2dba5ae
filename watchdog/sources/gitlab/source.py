"""GitLab-managed Terraform state locks as a source: observe, re-read one state, unlock.

Observe reads every configured project's `terraformStates` (GraphQL, paginated) and reports
each locked state. Clearing one is GitLab's documented unlock, `DELETE .../terraform/state/
<name>/lock` (https://docs.gitlab.com/user/infrastructure/iac/terraform_state/), sent only
after a re-read, immediately before it, shows the very lock that was observed (same state id,
same `lockedAt`, same user).

GitLab's unlock can be made conditional on the lock ID (`?ID=`: a different ID gets 409), but
that ID is readable only through the lock endpoint, which takes the lock when the state is
free: a watcher must not probe with it. So the unlock is unconditional, and the one residual
risk is a new lock taken in the milliseconds between that re-read and the DELETE, which would
need the stale lock to be released and a new one taken inside that window. An upper bound of
the window (from sending the re-read to the DELETE's answer) is logged at debug level
(`reread_to_unlock_ms`) on every unlock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import structlog

from watchdog.metrics import Metrics
from watchdog.model import BackendLock, Observation, Source
from watchdog.sources.errors import ChangedError, SourceError
from watchdog.sources.gitlab.client import GitLabClient
from watchdog.sources.gitlab.parse import (
    MAX_PAGES,
    STATE_QUERY,
    STATES_QUERY,
    AnswerError,
    parse_state,
    parse_states_page,
    state_name,
)

log = structlog.get_logger(__name__)


class GitLabStateSource:
    source = Source.GITLAB

    def __init__(self, client: GitLabClient, projects: Sequence[str], metrics: Metrics) -> None:
        self.projects = tuple(projects)
        self._client = client
        self._metrics = metrics

    @property
    def client(self) -> GitLabClient:
        return self._client

    def now(self) -> datetime:
        return self._client.server_now()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def observe(self) -> list[Observation]:
        """One Observation per project; never raises for GitLab errors."""
        return [await self._observe_project(project) for project in self.projects]

    async def read_lock(self, project: str, path: str) -> BackendLock | None:
        """A fresh read of the one state at `path` (`<project>/<state>`): its lock, or None
        when it is unlocked or gone. Raises SourceError when it cannot be read."""
        name = path.removeprefix(f"{project}/")
        data = await self._client.graphql(STATE_QUERY, {"fullPath": project, "name": name})
        try:
            return parse_state(data, project, name, self._client.server_now())
        except AnswerError as exc:
            raise SourceError(str(exc), reason=exc.reason) from None
        except RecursionError:
            raise SourceError(
                f"state {path}: the answer is nested too deeply", reason="bad_response"
            ) from None

    async def delete_lock(self, lock: BackendLock) -> None:
        """Unlock the state only if a re-read right now still shows `lock`.

        Raises ChangedError if the lock changed or is gone, ForbiddenError when the token
        may not unlock (it needs the Maintainer role), SourceError on any other failure.
        """
        if lock.source is not Source.GITLAB or lock.problem is not None or not lock.token:
            raise SourceError(f"refusing to unlock {lock.path}: not a readable GitLab lock")
        started = time.monotonic()
        try:
            current = await self.read_lock(lock.store, lock.path)
        except SourceError as exc:
            # Only this read was sent, never the DELETE: a timeout or 5xx here is not an
            # unlock that may have happened.
            exc.may_have_acted = False
            raise
        if current is None:
            raise ChangedError(f"lock of {lock.path} was released since it was read")
        if current.token != lock.token or current.info != lock.info:
            raise ChangedError(
                f"lock of {lock.path} changed since it was read: now held by "
                f"{current.info.who or '?'} since {current.info.created.isoformat()}"
            )
        try:
            await self._client.unlock(lock.store, state_name(lock))
        finally:
            # An upper bound of the residual window: GitLab read the lock after `started` and
            # unlocked before the DELETE's answer.
            window_ms = round((time.monotonic() - started) * 1000, 1)
            log.debug("gitlab unlock sent", path=lock.path, reread_to_unlock_ms=window_ms)

    async def _observe_project(self, project: str) -> Observation:
        locks: list[BackendLock] = []
        cursors: set[str] = set()
        after: str | None = None
        problem: tuple[str, str] | None = None
        try:
            for _ in range(MAX_PAGES):
                data = await self._client.graphql(
                    STATES_QUERY, {"fullPath": project, "after": after}
                )
                page = parse_states_page(data, project, self._client.server_now())
                locks.extend(page.locks)
                if page.unreadable:
                    self._metrics.parse_errors.inc(page.unreadable)
                    problem = (
                        f"{page.unreadable} state(s) without a readable name",
                        "bad_response",
                    )
                if not page.has_next:
                    break
                assert page.end_cursor is not None  # parse_states_page guarantees it
                if page.end_cursor in cursors:
                    problem = (f"page cursor {page.end_cursor[:40]!r} came twice", "bad_response")
                    break
                cursors.add(page.end_cursor)
                after = page.end_cursor
            else:
                problem = (f"more than {MAX_PAGES} pages of states: read cut off", "bad_response")
        except AnswerError as exc:
            problem = (str(exc), exc.reason)
        except SourceError as exc:
            problem = (exc.detail, exc.reason)
        except RecursionError:
            problem = ("an answer nested too deeply to read", "bad_response")
        for lock in locks:
            if lock.problem is not None:
                self._metrics.parse_errors.inc()
                log.warning(
                    "unreadable gitlab lock", project=project, path=lock.path, problem=lock.problem
                )
        if problem is None:
            return Observation(
                source=Source.GITLAB,
                organization=project,
                server_now=self._client.server_now(),
                backend_locks=tuple(locks),
            )
        detail, reason = problem
        self._metrics.observe_error(Source.GITLAB.value, reason)
        log.warning("gitlab states read failed", project=project, reason=reason, error=detail)
        # Locks read before the failure are real; the picture is marked partial, so no
        # action is taken in this project this cycle.
        return Observation(
            source=Source.GITLAB,
            organization=project,
            server_now=self._client.server_now(),
            backend_locks=tuple(locks),
            complete=False,
            error=f"GitLab project {project}: {detail}",
            error_reason=reason,
        )
