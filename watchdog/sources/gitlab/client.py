"""The HTTP side of the GitLab source: GraphQL reads and the REST unlock of one state.

Auth is a project (or group, or personal) access token sent as `Authorization: Bearer`, which
GitLab accepts on both the GraphQL and the REST API
(https://docs.gitlab.com/api/rest/authentication/). The token never appears in an error or log
line: every message passes `_redact`, and configload registered it with the log redaction.

Reads (GraphQL POSTs that only query) are retried on transport errors, 429 and 5xx; the unlock
is sent exactly once, whatever happens (see `unlock`). A 429 is retried after the wait GitLab
asks for (`Retry-After`, else `RateLimit-Reset`/`RateLimit-ResetTime`; see
`watchdog.sources.serverwait`), capped like the TFC client's, and the next read waits for it
too. Every attempt is counted in `tfc_watchdog_api_requests_total`.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import httpx
import structlog

from watchdog.metrics import Metrics
from watchdog.model import utcnow
from watchdog.sources import serverwait
from watchdog.sources.bearer import BearerToken
from watchdog.sources.errors import ChangedError, ForbiddenError, SourceError, reason_of_status
from watchdog.sources.serverwait import http_date
from watchdog.sources.tfc.client import decode_json, read_body

log = structlog.get_logger(__name__)

# A page of 100 states is a few tens of KB; anything far larger is not GitLab's answer.
MAX_RESPONSE_BYTES: Final = 4 * 2**20
MAX_ATTEMPTS: Final = 3

GRAPHQL_ENDPOINT: Final = "gitlab graphql"
# Backoff of a read after a transport error or a 5xx, doubled each attempt, with jitter.
BACKOFF_BASE: Final = 0.5
# The wait after a 429 that names none (GitLab.com has been seen to send no header).
DEFAULT_RATE_LIMIT_WAIT: Final = 1.0
UNLOCK_ENDPOINT: Final = "gitlab unlock"


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


def state_lock_path(project: str, state: str) -> str:
    """`/api/v4/projects/<url-encoded path>/terraform/state/<name>/lock`: the address
    Terraform's http backend uses as `lock_address` and `unlock_address` on GitLab
    (https://docs.gitlab.com/user/infrastructure/iac/terraform_state/)."""
    return (
        f"/api/v4/projects/{quote(project, safe='')}/terraform/state/{quote(state, safe='')}/lock"
    )


class GitLabClient:
    """One GitLab instance. `transport` is for tests (httpx.MockTransport, ASGITransport)."""

    def __init__(
        self,
        *,
        address: str,
        token: str,
        metrics: Metrics,
        timeout: float = 15.0,
        verify: bool | str = True,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address.rstrip("/")
        self._sleep = sleep
        self._clock = clock
        # After a 429: no read starts before this `clock` time (GitLab's reset).
        self._not_before = 0.0
        self._token = BearerToken(token)
        self._metrics = metrics
        self._timeout = timeout
        self._last_date: datetime | None = None
        context: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._http = httpx.AsyncClient(
            base_url=self.address,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            verify=context,
            transport=transport,
            # A redirect (to a sign-in page) is an answer to report, not to follow with the token.
            follow_redirects=False,
        )

    def __repr__(self) -> str:  # never the token
        return f"GitLabClient({self.address!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    def set_token(self, token: str) -> None:
        """Use `token` from the next request on (a rotated Secret); the old one stays
        redacted."""
        if self._token.rotate(token):
            # httpx builds each request's headers from the client's at send time.
            self._http.headers["Authorization"] = f"Bearer {token}"

    def server_now(self) -> datetime:
        """GitLab's clock: the `Date` of the latest answer; the local clock before any."""
        return self._last_date if self._last_date is not None else utcnow()

    # --- GraphQL ------------------------------------------------------------------------------

    async def graphql(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The `data` of a GraphQL query (never a mutation: reads are retried).

        Raises SourceError (reason `bad_response` for an answer that is not GraphQL's,
        `unauthorized` for 401/403, ...) when there is no usable `data`; GraphQL `errors`
        beside a null `data` are one of those too.
        """
        body = {"query": query, "variables": dict(variables)}
        delay = BACKOFF_BASE
        for attempt in range(1, MAX_ATTEMPTS + 1):
            await self._wait_for_reset()
            try:
                status, headers, content = await self._exchange("POST", "/api/graphql", json=body)
            except SourceError as exc:
                self._metrics.api_request(GRAPHQL_ENDPOINT, "error")
                if attempt < MAX_ATTEMPTS and exc.reason in ("transport", "timeout"):
                    await self._sleep(delay * (1 + random.random()))
                    delay *= 2
                    continue
                raise
            self._metrics.api_request(GRAPHQL_ENDPOINT, status)
            if status == 429:
                # The wait is taken before the next read, this query's retry or not.
                self._hold(headers, GRAPHQL_ENDPOINT)
                if attempt < MAX_ATTEMPTS:
                    continue
            elif status >= 500 and attempt < MAX_ATTEMPTS:
                await self._sleep(delay * (1 + random.random()))
                delay *= 2
                continue
            return self._graphql_data(status, content)
        raise AssertionError("unreachable")  # pragma: no cover

    def _graphql_data(self, status: int, content: bytes) -> dict[str, Any]:
        if status >= 400:
            raise self._status_error("GraphQL query", status, content)
        try:
            document = decode_json(content)
        except ValueError as exc:
            raise SourceError(
                f"GraphQL query: the answer is not JSON ({_one_line(str(exc), 100)})",
                reason="bad_response",
            ) from None
        if not isinstance(document, dict):
            raise SourceError(
                "GraphQL query: the answer is not a JSON object", reason="bad_response"
            )
        data = document.get("data")
        errors = document.get("errors")
        if not isinstance(data, dict):
            raise SourceError(
                f"GraphQL query: no data ({self._graphql_errors(errors) or 'no errors given'})",
                reason="bad_response",
            )
        if errors:
            # Partial data with errors (a field the token may not read): the caller must not
            # take a missing field for an absent lock, so this is refused whole.
            raise SourceError(
                f"GraphQL query: {self._graphql_errors(errors)}", reason="bad_response"
            )
        return data

    def _graphql_errors(self, errors: Any) -> str:
        if not isinstance(errors, list):
            return ""
        # Only string messages: str() of a value nested a thousand deep raises RecursionError.
        messages = [
            error["message"][:200]
            for error in errors[:3]
            if isinstance(error, dict) and isinstance(error.get("message"), str)
        ]
        return self._redact(_one_line("; ".join(m for m in messages if m)))

    # --- the unlock ---------------------------------------------------------------------------

    async def unlock(self, project: str, state: str) -> None:
        """`DELETE .../terraform/state/<name>/lock` without a lock ID, which GitLab answers by
        clearing whatever lock the state has (its force-unlock). Sent once, never retried: it
        has no condition on the holder, so a retry seconds later could remove a lock taken
        since the re-read that justified it.

        Raises ChangedError when the state is gone (404), ForbiddenError on 401/403 (the
        token lacks the Maintainer role or the `api` scope), SourceError otherwise.
        """
        what = f"unlock of {project}/{state}"
        # No `_wait_for_reset` here: the re-read that justifies this DELETE went just before
        # it and already waited, and a wait in between would widen the window it guards.
        try:
            status, headers, content = await self._exchange(
                "DELETE", state_lock_path(project, state)
            )
        except SourceError as exc:
            self._metrics.api_request(UNLOCK_ENDPOINT, "error")
            raise SourceError(
                f"{what}: {exc.detail}", reason=exc.reason, may_have_acted=exc.may_have_acted
            ) from None
        self._metrics.api_request(UNLOCK_ENDPOINT, status)
        if status in (200, 204):
            return
        if status == 429:
            self._hold(
                headers, UNLOCK_ENDPOINT
            )  # for the reads that follow; the DELETE is not sent again
        if status == 404:
            raise ChangedError(f"{what}: the state is gone (404)")
        if status in (401, 403):
            raise ForbiddenError(
                self._redact(f"{what}: refused ({status}: {_one_line(_text(content), 200)})")
            )
        raise self._status_error(what, status, content)

    # --- rate limits -------------------------------------------------------------------------

    def _hold(self, headers: httpx.Headers, endpoint: str) -> None:
        """After a 429: the next read waits for the reset GitLab names (`Retry-After`, else
        `RateLimit-Reset` as a Unix time, else `RateLimit-ResetTime`), measured on GitLab's
        own clock (the 429's `Date`) and capped at `serverwait.MAX_SERVER_WAIT`."""
        now = self.server_now()
        wait: float | None = None
        for header in ("Retry-After", "RateLimit-Reset", "RateLimit-ResetTime"):
            raw = headers.get(header)
            if header == "RateLimit-Reset":
                wait = serverwait.until_unix_time(raw, now)
            else:
                wait = serverwait.retry_after(raw, now)
            if wait is not None:
                wait = serverwait.capped(
                    wait,
                    event="gitlab.server_wait_capped",
                    endpoint=endpoint,
                    header=header,
                    raw=raw,
                )
                break
        if wait is None:
            wait = DEFAULT_RATE_LIMIT_WAIT
        # A little jitter past the reset, so several watchdogs do not all return at once.
        self._not_before = max(self._not_before, self._clock() + wait + 0.3 * random.random())

    async def _wait_for_reset(self) -> None:
        remaining = self._not_before - self._clock()
        # Taken once: the wait is over when the sleep returns.
        self._not_before = 0.0
        if remaining > 0:
            await self._sleep(remaining)

    # --- one exchange -------------------------------------------------------------------------

    async def _exchange(
        self, method: str, path: str, *, json: Any = None
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request within `timeout` in all, body bounded; transport failures become
        SourceError with reason transport, timeout or tls."""
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._http.stream(method, path, json=json) as response,
            ):
                content = await read_body(response, MAX_RESPONSE_BYTES)
                if content is None:
                    raise SourceError(
                        f"{method} {path}: the answer is larger than {MAX_RESPONSE_BYTES} bytes",
                        reason="bad_response",
                    )
        except TimeoutError:
            raise SourceError(
                f"{method} {path}: no whole answer within {self._timeout:g} s",
                reason="timeout",
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # The connection never opened: not a byte of the request left this host.
            text = f"{type(exc).__name__}: {exc}"
            raise SourceError(
                self._redact(f"{method} {path}: {_one_line(text)}"),
                reason="timeout" if isinstance(exc, httpx.ConnectTimeout) else _failure(text),
                may_have_acted=False,
            ) from None
        except httpx.TimeoutException as exc:
            raise SourceError(self._redact(f"{method} {path}: {exc!r}"), reason="timeout") from None
        except httpx.TransportError as exc:
            text = f"{type(exc).__name__}: {exc}"
            raise SourceError(
                self._redact(f"{method} {path}: {_one_line(text)}"),
                reason=_failure(text),
                # The connection was open, so the request may have reached GitLab, a TLS
                # failure included (the reason alone would say `tls` was never sent).
                may_have_acted=True,
            ) from None
        moment = http_date(response.headers.get("Date"))
        if moment is not None:
            self._last_date = moment
        return response.status_code, response.headers, content

    def _status_error(self, what: str, status: int, content: bytes) -> SourceError:
        detail = self._redact(f"{what}: HTTP {status}: {_one_line(_text(content), 200)}")
        if status == 403:
            return ForbiddenError(detail)
        return SourceError(detail, reason=reason_of_status(status) or "bad_response")

    def _redact(self, text: str) -> str:
        return self._token.redact(text)


def _failure(text: str) -> str:
    """The metrics reason of a transport failure, by its text: `tls` or `transport`."""
    upper = text.upper()
    return "tls" if "CERTIFICATE" in upper or "SSL" in upper else "transport"


def _text(content: bytes) -> str:
    return content[:400].decode("utf-8", errors="replace")
