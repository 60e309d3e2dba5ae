"""An async JSON:API client for the HCP Terraform / Terraform Enterprise API v2.

It knows HTTP, the API's conventions and its limits (docs/tfc-api.md; the public docs at
https://developer.hashicorp.com/terraform/cloud-docs/api-docs#rate-limiting), nothing about
locks: rate limiting, retries, typed errors, pagination, the server's clock and the request
metrics all live here so the source above stays a thin translation layer.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import math
import random
import reprlib
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, TypeGuard, TypeVar

import httpx
import orjson
import structlog

from watchdog import __version__
from watchdog.metrics import Metrics
from watchdog.sources import serverwait
from watchdog.sources.bearer import BearerToken
from watchdog.sources.serverwait import http_date as _http_date
from watchdog.sources.serverwait import parse_seconds as _parse_seconds

JSONAPI: Final = "application/vnd.api+json"
# The documented default of X-RateLimit-Limit (requests per second, per user; docs/tfc-api.md,
# "Rate limits").
DEFAULT_SERVER_LIMIT: Final = 30.0
# Keep this share of the server's limit: the limit is per *user*, and other tools (the
# Terraform CLI, the UI, CI jobs) spend from the same allowance. go-tfe uses 0.66.
LIMIT_SHARE: Final = 2.0 / 3.0
# The most items one list may promise. The API documents no limit on the workspaces of an
# organization; this watchdog is built and measured for 50,000 (benchmarks/RESULTS.md), and
# twice that leaves room. A promise beyond it is a broken or hostile answer, not a list: a
# walk of 10,000,000 pages would hold the cycle (and memory) for hours.
MAX_LIST_ITEMS: Final = 100_000
# The API's largest page size, which the source asks for (`page[size]=100`).
MAX_PAGE_SIZE: Final = 100
# So no list needs more pages than this; a walk beyond it is never complete.
MAX_LIST_PAGES: Final = MAX_LIST_ITEMS // MAX_PAGE_SIZE
# The API's page size when none is asked for.
DEFAULT_PAGE_SIZE: Final = 20

# The largest body one response may have. The largest legitimate answer is a page of 100
# workspaces with their included runs and projects, about 1 MB; 32 MiB is far above it and
# still cheap to hold. A bigger body is a broken or hostile server, and reading it streaming
# (`read_body`) makes this a bound on memory, not a check after the damage.
MAX_RESPONSE_BYTES: Final = 32 * 2**20
# The longest wait taken from the server (`X-RateLimit-Reset`, `Retry-After`): the API's
# documented resets are about a second; one absurd value must not stall every later request
# of the daemon (the limiter holds everyone until the reset). Shared with the GitLab client.
MAX_SERVER_WAIT: Final = serverwait.MAX_SERVER_WAIT
# What each mutating call answers when it worked, by the public API docs: run actions are
# queued, "202 Accepted" with no body
# (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/run); workspace
# lock, unlock and force-unlock answer "200" with the workspace document
# (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/workspaces); a run comment
# is "201 Created" (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/comments).
ACCEPTED: Final = 202
CREATED: Final = 201
OK: Final = 200

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")
Clock = Callable[[], float]
# A reader of one expected body shape: the document, or None for any other body.
Decoder = Callable[[bytes], "dict[str, Any] | None"]


# --- errors ---------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TfcError(Exception):
    """A failed API call. `str()` is one line and never contains the token."""

    reason: str = "other"

    def __init__(self, *, endpoint: str, status: int | None = None, detail: str = "") -> None:
        self.endpoint = endpoint
        self.status = status
        self.detail = _one_line(detail)
        super().__init__(self._message())

    def _message(self) -> str:
        what = f"HTTP {self.status}" if self.status is not None else self.reason
        return (
            f"{self.endpoint}: {what}: {self.detail}" if self.detail else f"{self.endpoint}: {what}"
        )

    def __str__(self) -> str:
        return self._message()


class UnauthorizedError(TfcError):
    """401: the token is bad or expired (permission problems are 404s, not 401s)."""

    reason = "unauthorized"


class NotFoundError(TfcError):
    """404: not found *or not permitted*; the API does not say which (docs/tfc-api.md,
    "Conventions")."""

    reason = "not_found"


class ConflictError(TfcError):
    """409: the object is not in the state the action needs; the world changed."""


class RateLimitedError(TfcError):
    """429: for a POST at once (never retried), for a GET after the retries ran out."""

    reason = "rate_limited"


class ServerError(TfcError):
    """5xx (after the retries, for GETs)."""

    reason = "server_error"


class StateVersionPendingError(TfcError):
    """Unlock refused while an intermediate state version is finalized: retry later."""


class BadResponseError(TfcError):
    """The response is not the JSON:API document expected (not JSON, no `data`, wrong types)."""

    reason = "bad_response"


class IncompleteListError(BadResponseError):
    """The pages of a list do not add up to the list page 1 promised, or promise more than
    any list can hold: nothing of that list may be relied on (no partial lists)."""


class TransportError(TfcError):
    """No response: timeout, connection failure or TLS failure (reason timeout|transport|tls).

    `request_sent` is False only when not a byte of the request left this host (the
    connection never opened): then the server certainly did not act on it. Otherwise a
    mutating request may have been performed although no answer came.
    """

    reason = "transport"

    def __init__(
        self, *, endpoint: str, reason: str, detail: str = "", request_sent: bool = True
    ) -> None:
        self.reason = reason
        self.request_sent = request_sent
        super().__init__(endpoint=endpoint, status=None, detail=detail)


_STATUS_ERRORS: dict[int, type[TfcError]] = {
    401: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
}


# --- rate limiting --------------------------------------------------------------------------


class RateLimiter:
    """A minimum-interval limiter shared by every concurrent request of one client.

    No async token-bucket library is in our dependency stack (aiolimiter and friends are not
    installed), and this needs a dozen lines: each caller reserves the next free slot
    synchronously (no await between reading and writing the state, so no lock is needed),
    then sleeps until its slot. A POST may borrow the next slot (`reserve(borrow=True)`) so
    that it follows its re-read at once; the request after it waits that much longer. So in
    any window of T seconds at most 2 + rate x T requests start: under the share of the
    server's limit we keep, for any window.
    """

    def __init__(self, rate: float, *, clock: Clock, sleep: Sleep) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        # The server's reset after a 429: no request starts before it, borrowed or not.
        self._held = 0.0
        self._clock = clock
        self._sleep = sleep

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    def set_rate(self, rate: float) -> None:
        self._interval = 1.0 / rate

    def reserve(self, *, borrow: bool = False) -> float:
        """Claim the next slot; return how long to wait for it (seconds).

        `borrow`: start up to one interval early (never before a server hold), for a POST
        right after its re-read: the time between the two is the window in which the world
        can change unseen, and a force-unlock has no condition on the holder to catch it.
        One slot at most: a second borrower waits as usual.
        """
        now = self._clock()
        earliest = self._next - self._interval if borrow else self._next
        start = max(now, earliest, self._held)
        self._next = max(start, self._next) + self._interval
        return start - now

    def hold_until(self, moment: float) -> None:
        """After a 429 nobody should start before the server's reset time."""
        self._next = max(self._next, moment)
        self._held = max(self._held, moment)

    async def acquire(self, *, borrow: bool = False) -> None:
        wait = self.reserve(borrow=borrow)
        if wait > 0:
            await self._sleep(wait)


# --- the client -----------------------------------------------------------------------------


def _ssl_context(verify: bool | str) -> ssl.SSLContext | bool:
    # httpx 0.28 deprecates `verify=<path>`; an SSLContext is the supported way to a CA file.
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "SSL" in text or "CERTIFICATE" in text.upper()


class TfcClient:
    """Async client; use as `async with TfcClient(...) as client`.

    GET retries 5xx, 429 (after the server's reset time) and transport errors (capped
    exponential backoff with jitter, bounded attempts, a total deadline). A POST is sent
    once and never retried (see `_send`). `timeout` bounds each whole request: connecting,
    the headers and the whole body.
    """

    def __init__(
        self,
        *,
        address: str,
        token: str,
        metrics: Metrics,
        timeout: float = 30.0,
        verify: bool | str = True,
        requests_per_second: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_concurrency: int = 8,
        max_attempts: int = 6,
        retry_deadline: float = 120.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._address = address.rstrip("/")
        self._token = BearerToken(token)
        self._timeout = timeout
        self._metrics = metrics
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._max_attempts = max(1, max_attempts)
        self._retry_deadline = retry_deadline
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._fixed_rate = requests_per_second is not None
        self._learned_limit = False
        self._limiter = RateLimiter(
            requests_per_second or DEFAULT_SERVER_LIMIT * LIMIT_SHARE, clock=clock, sleep=sleep
        )
        self._in_flight = asyncio.Semaphore(max(1, max_concurrency))
        self._last_date: datetime | None = None
        self._http = httpx.AsyncClient(
            base_url=f"{self._address}/api/v2",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": JSONAPI,
                "User-Agent": f"tfc-watchdog/{__version__}",
            },
            # Each phase gets the whole budget (so a slow connect is still told apart as a
            # ConnectTimeout); `_exchange` bounds the sum.
            timeout=httpx.Timeout(timeout),
            verify=_ssl_context(verify),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"TfcClient(address={self._address!r}, rate={self._limiter.rate:.2f}/s)"

    async def __aenter__(self) -> TfcClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def rate(self) -> float:
        """Requests per second the limiter currently allows."""
        return self._limiter.rate

    def set_token(self, token: str) -> None:
        """Use `token` from the next request on (a rotated Secret): the Authorization header
        and the redaction change together. A request already sent keeps the old header, and
        the old token stays redacted, since an error text of that request may quote it."""
        if self._token.rotate(token):
            # httpx builds each request's headers from the client's at send time.
            self._http.headers["Authorization"] = f"Bearer {token}"

    def server_now(self) -> datetime:
        """The API server's clock: the `Date` header of the latest response, else local UTC
        (docs/tfc-api.md, "The `Date` header")."""
        return self._last_date if self._last_date is not None else datetime.now(UTC)

    # --- public calls -----------------------------------------------------------------------

    async def get(
        self,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, str] | None = None,
        decode: Decoder | None = None,
    ) -> dict[str, Any]:
        """A read's JSON:API document. `decode`: a faster reader for the body's expected
        shape; it answers None for any other body, which is then decoded as any other."""
        reply = await self._send("GET", path, endpoint=endpoint, params=params)
        if reply.status != OK:
            # A 3xx (redirects are never followed: the token must not travel) or another 2xx.
            raise BadResponseError(
                endpoint=endpoint, status=reply.status, detail=f"expected HTTP {OK}"
            )
        if not reply.dated:
            # Ages are the server's `Date` minus a timestamp: without it "now" would silently
            # stay at an older response's clock, so nothing read here may be acted on.
            raise BadResponseError(
                endpoint=endpoint, status=reply.status, detail="no readable `Date` header"
            )
        document = decode(reply.body) if decode is not None else None
        if document is None:
            document = self._json(reply, endpoint)
        if not isinstance(document, dict) or "data" not in document:
            raise BadResponseError(
                endpoint=endpoint, status=reply.status, detail="no JSON:API `data`"
            )
        return document

    async def post(
        self, path: str, *, endpoint: str, expect: int, json: Any = None
    ) -> dict[str, Any] | None:
        """Send one mutating request, once; `expect` is the action's documented success status.

        It counts as done only with exactly that status and, when there is a body, the
        JSON:API content type. Anything else (a 3xx, a 200 "blocked" page from a proxy, any
        other 2xx) is a BadResponseError: the action is not known to have happened as the
        API would have done it.
        """
        reply = await self._send("POST", path, endpoint=endpoint, json=json)
        # Not a read: nothing is aged from this answer, so a missing `Date` does not fail it.
        if reply.status != expect:
            raise self._unexpected(reply, endpoint, f"expected HTTP {expect}")
        if not reply.body.strip():
            return None
        if reply.media_type != JSONAPI:
            what = f"content type {reply.media_type or 'none'!r}, not {JSONAPI}"
            raise self._unexpected(reply, endpoint, what)
        # The body of an accepted action is not relied on; an unreadable one with the right
        # status and content type does not turn it into a failure.
        try:
            document = decode_json(reply.body)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    async def map_pages(
        self,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, str],
        each: Callable[[dict[str, Any]], T],
        decode: Decoder | None = None,
    ) -> list[T]:
        """`each(page)` for every page of a list, in page order (`decode` as for `get`);
        page 1 first, then the rest concurrently. `each` runs as each page arrives, so a
        large list never holds all its raw documents at once (50,000 workspaces are 500
        pages of ~1 MB each once decoded), and the work overlaps the rate limiter's waits.
        Any failed page, or `each`, raises.

        The list is read completely or not at all (IncompleteListError): the walk stops at
        what page 1 promised (`total-pages`, and no more pages than `total-count` needs),
        which must itself be within MAX_LIST_ITEMS / MAX_LIST_PAGES; an item id seen twice
        or an item count other than `total-count` means the pages were not one list.
        """
        first = await self.get(
            path, endpoint=endpoint, params={**params, "page[number]": "1"}, decode=decode
        )
        pagination = _pagination(first, endpoint)
        tally = _ListTally(endpoint, _promised_count(pagination, endpoint))
        page_limit = _page_limit(pagination, tally.promised, params)
        total = pagination.get("total-pages")
        if total is None:
            return await self._follow_next_pages(
                path,
                first,
                endpoint=endpoint,
                params=params,
                each=tally.wrap(each),
                page_limit=page_limit,
                tally=tally,
                decode=decode,
            )
        if not _is_count(total):
            raise BadResponseError(endpoint=endpoint, detail=f"total-pages is {_brief(total)}")
        if total > page_limit:
            raise IncompleteListError(
                endpoint=endpoint,
                detail=f"page 1 promises {total} pages, more than the {page_limit} "
                "this list can need; nothing was read beyond page 1",
            )
        counted = tally.wrap(each)
        head = counted(first)

        async def page(number: int) -> T:
            return counted(
                await self.get(
                    path,
                    endpoint=endpoint,
                    params={**params, "page[number]": str(number)},
                    decode=decode,
                )
            )

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(page(n)) for n in range(2, total + 1)]
        except BaseExceptionGroup as failures:
            raise _first_tfc_error(failures) from None
        tally.check_complete()
        return [head, *(task.result() for task in tasks)]

    async def _follow_next_pages(
        self,
        path: str,
        first: dict[str, Any],
        *,
        endpoint: str,
        params: Mapping[str, str],
        each: Callable[[dict[str, Any]], T],
        page_limit: int,
        tally: _ListTally,
        decode: Decoder | None,
    ) -> list[T]:
        # Lists without totals (the organization runs list) can only be walked one by one,
        # and only as far as `page_limit`: a server naming one more page forever is a list
        # that is never read completely, not a reason to walk for ever.
        pages = [each(first)]
        seen = {1}
        document = first
        while True:
            pagination = _pagination(document, endpoint)
            following = pagination.get("next-page")
            if following is None:
                tally.check_complete()
                return pages
            if not _is_count(following) or following in seen:
                raise BadResponseError(
                    endpoint=endpoint, detail=f"next-page is {_brief(following)}"
                )
            data, size = document.get("data"), pagination.get("page-size")
            if isinstance(data, list) and _is_count(size) and len(data) < size:
                # Only the last page of a list is short: one that names a next page anyway
                # is a list without an end (an empty page after the real last one, say).
                raise IncompleteListError(
                    endpoint=endpoint,
                    detail=f"a page of {len(data)} items (page size {size}) names a next page",
                )
            if len(seen) >= page_limit:
                raise IncompleteListError(
                    endpoint=endpoint,
                    detail=f"still a next page after {len(seen)} pages, the most this list "
                    "can need",
                )
            seen.add(following)
            document = await self.get(
                path,
                endpoint=endpoint,
                params={**params, "page[number]": str(following)},
                decode=decode,
            )
            pages.append(each(document))

    # --- the request loop -------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> _Reply:
        """One logical request: a GET with the retry rules below, a POST exactly once.

        A POST is never retried, whatever happens: not after a 429, not after a failure to
        connect, not after a timeout. Its decision rests on a re-read made just before it;
        a retry seconds later would act on a world that may have changed (a force-unlock has
        no condition on the holder: it would remove whoever holds the lock by then). The
        action fails for this cycle, and the next cycle re-reads and decides again.
        """
        headers: dict[str, str] = {}
        content: bytes | None = None
        if method != "GET":
            # Without this header the API answers 415, even when there is no body.
            headers["Content-Type"] = JSONAPI
            content = b"" if json is None else jsonlib.dumps(json).encode()
        retries = method == "GET"
        deadline = self._clock() + self._retry_deadline
        attempt = 0
        while True:
            attempt += 1
            # A POST follows its re-read at once (see RateLimiter.reserve).
            await self._limiter.acquire(borrow=not retries)
            try:
                async with self._in_flight:
                    reply = await self._exchange(
                        method,
                        path,
                        endpoint=endpoint,
                        params=params,
                        headers=headers,
                        content=content,
                    )
            except httpx.TransportError as exc:
                self._metrics.api_request(endpoint, "error")
                error = self._transport_error(exc, endpoint)
                delay = self._backoff(attempt)
                if retries and error.reason != "tls" and self._may_retry(attempt, delay, deadline):
                    await self._sleep(delay)
                    continue
                raise error from exc
            self._metrics.api_request(endpoint, reply.status)
            status = reply.status
            if reply.too_large:
                raise BadResponseError(
                    endpoint=endpoint,
                    status=status,
                    detail=f"the body is larger than {MAX_RESPONSE_BYTES} bytes",
                )
            if status == 429:
                delay = self._rate_limit_wait(reply, endpoint)
                # Nobody starts before the server's reset, a POST that is not retried included.
                self._limiter.hold_until(self._clock() + delay)
                if retries and self._may_retry(attempt, delay, deadline):
                    await self._sleep(delay)
                    continue
            elif status >= 500 and retries:
                delay = self._backoff(attempt)
                if self._may_retry(attempt, delay, deadline):
                    await self._sleep(delay)
                    continue
            if status >= 400:
                raise self._status_error(reply, endpoint)
            return reply

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        content: bytes | None,
    ) -> _Reply:
        """One HTTP exchange within `timeout` in all, connect to last byte.

        httpx's timeouts bound each network operation, so a body trickled a few bytes at a
        time never trips them; `asyncio.timeout` bounds the whole. Its expiry is reported as
        an httpx timeout, and since the request may have been sent, as one that may have
        acted.
        """
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._http.stream(
                    method, path, params=params, headers=headers, content=content
                ) as response,
            ):
                body = await read_body(response, MAX_RESPONSE_BYTES)
        except TimeoutError:
            raise httpx.TimeoutException(
                f"no whole answer within {self._timeout:g} s (tfc.timeout)"
            ) from None
        dated = self._remember(response)
        return _Reply(
            status=response.status_code,
            headers=response.headers,
            body=body or b"",
            dated=dated,
            too_large=body is None,
        )

    def _may_retry(self, attempt: int, delay: float, deadline: float) -> bool:
        return attempt < self._max_attempts and self._clock() + delay <= deadline

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_cap, self._backoff_base * 2.0 ** (attempt - 1))
        # "Equal jitter": at least half the ceiling, so retries never collapse to zero.
        return ceiling / 2 + ceiling / 2 * self._jitter()

    def _rate_limit_wait(self, reply: _Reply, endpoint: str) -> float:
        header = "X-RateLimit-Reset"
        raw = reply.headers.get(header)
        wait = _parse_seconds(raw)
        if wait is None:
            header = "Retry-After"
            raw = reply.headers.get(header)
            wait = self._retry_after(raw)
        if wait is None:
            wait = 1.0
        else:
            wait = serverwait.capped(
                wait, event="tfc.server_wait_capped", endpoint=endpoint, header=header, raw=raw
            )
        # go-tfe: max(reset, 100 ms) + U(0, 300 ms), so concurrent callers do not stampede.
        return max(wait, 0.1) + 0.3 * self._jitter()

    def _retry_after(self, value: str | None) -> float | None:
        return serverwait.retry_after(value, self.server_now())

    def _remember(self, response: httpx.Response) -> bool:
        """Note the server's clock and rate limit; whether the `Date` header was readable."""
        moment = _http_date(response.headers.get("Date"))
        if moment is not None:
            self._last_date = moment
        if not (self._fixed_rate or self._learned_limit):
            # Learned once, from the first response that carries it: later responses of the
            # run-list endpoints carry their own per-minute limit, which is not this budget.
            limit = _parse_seconds(response.headers.get("X-RateLimit-Limit"))
            if limit is not None and limit > 0:
                self._learned_limit = True
                self._limiter.set_rate(limit * LIMIT_SHARE)
        return moment is not None

    # --- errors -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return self._token.redact(text)

    def _transport_error(self, exc: httpx.TransportError, endpoint: str) -> TransportError:
        if isinstance(exc, httpx.TimeoutException):
            reason = "timeout"
        elif _is_tls_failure(exc):
            reason = "tls"
        else:
            reason = "transport"
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return TransportError(
            endpoint=endpoint,
            reason=reason,
            detail=self._redact(detail),
            # The connection never opened: not a byte of the request left this host.
            request_sent=not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout),
        )

    def _unexpected(self, reply: _Reply, endpoint: str, what: str) -> BadResponseError:
        """A success that is not the one expected: what it was, where it pointed, its text."""
        parts = [what]
        location = reply.headers.get("Location")
        if location:
            parts.append(f"redirected to {location} (not followed)")
        text = _one_line(_body_text(reply.body), 200)
        if text:
            parts.append(text)
        detail = self._redact("; ".join(parts))
        return BadResponseError(endpoint=endpoint, status=reply.status, detail=detail)

    def _status_error(self, reply: _Reply, endpoint: str) -> TfcError:
        status = reply.status
        detail = self._redact(_error_detail(reply.body))
        kind = _STATUS_ERRORS.get(status)
        if kind is None:
            kind = ServerError if status >= 500 else TfcError
        return kind(endpoint=endpoint, status=status, detail=detail)

    def _json(self, reply: _Reply, endpoint: str) -> Any:
        try:
            return decode_json(reply.body)
        except ValueError:
            raise BadResponseError(
                endpoint=endpoint, status=reply.status, detail="body is not JSON"
            ) from None


@dataclass(frozen=True, slots=True)
class _Reply:
    """A response read to its end (the stream is closed): what the request loop needs."""

    status: int
    headers: httpx.Headers
    body: bytes
    # Whether the `Date` header was present and readable.
    dated: bool
    # The body was larger than MAX_RESPONSE_BYTES (and `body` is empty).
    too_large: bool = False

    @property
    def media_type(self) -> str:
        value: str = self.headers.get("Content-Type", "")
        return value.split(";", 1)[0].strip().lower()


async def read_body(response: httpx.Response, limit: int) -> bytes | None:
    """The decoded body; None, read no further, once it is larger than `limit` bytes (also
    the GitLab client's bound).

    By hand because httpx has no size limit; the chunks come from `aiter_bytes`, decoded, so
    a small compressed body that inflates past the limit is stopped too.
    """
    declared = _parse_seconds(response.headers.get("Content-Length"))
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _body_text(body: bytes) -> str:
    return body[:400].decode("utf-8", errors="replace")


def decode_json(body: bytes) -> Any:
    """A response body -> JSON value; ValueError when it is not JSON.

    orjson first: it decodes a 280 KB workspace page in half the time of the json module
    (JSON decoding was a quarter of a 10,000-workspace cycle's CPU). What orjson
    refuses but json accepts (NaN/Infinity, integers beyond 64 bits, UTF-16/32 bodies, lone
    surrogates) goes on to json, so exactly the bodies httpx's `response.json()` accepted
    are accepted, with the same values.

    A body nested deeper than orjson's limit (1,024 levels) is refused by orjson and then
    by json with RecursionError, which is not a ValueError: it is turned into one, so a
    hostile or broken body is a bad response, never an exception that escapes the cycle.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return jsonlib.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _brief(value: Any) -> str:
    # reprlib stops at a few levels and characters: a value from a hostile body may be a
    # list nested a thousand deep, whose plain repr() raises RecursionError.
    return reprlib.repr(value)


def _promised_count(pagination: dict[str, Any], endpoint: str) -> int | None:
    """Page 1's `total-count`, if it has one and it is believable."""
    count = pagination.get("total-count")
    if count is None:
        return None
    if not _is_count(count):
        raise BadResponseError(endpoint=endpoint, detail=f"total-count is {_brief(count)}")
    if count > MAX_LIST_ITEMS:
        raise IncompleteListError(
            endpoint=endpoint,
            detail=f"page 1 promises {count} items, more than the {MAX_LIST_ITEMS} a list is "
            "read for; nothing was read beyond page 1",
        )
    return count


def _page_limit(pagination: dict[str, Any], promised: int | None, params: Mapping[str, str]) -> int:
    """The most pages this list can need: what `total-count` needs at the page size in use,
    and never more than MAX_LIST_PAGES."""
    if promised is None:
        return MAX_LIST_PAGES
    answered = pagination.get("page-size")
    asked = params.get("page[size]", "")
    if _is_count(answered) and answered > 0:
        size = answered
    elif asked.isdigit() and int(asked) > 0:
        size = int(asked)
    else:
        size = DEFAULT_PAGE_SIZE
    return min(MAX_LIST_PAGES, max(1, math.ceil(promised / size)))


class _ListTally:
    """What the pages of one list held so far, to tell a whole list from pages that are not
    one (a page answered twice, a list that changed while it was walked, a lying count)."""

    def __init__(self, endpoint: str, promised: int | None) -> None:
        self.endpoint = endpoint
        self.promised = promised
        self.items = 0
        # Item ids only, not (type, id): a list holds one type, and the same id twice under
        # two types would be no more believable. 50,000 ids are a few MB for one walk.
        self.ids: set[str] = set()

    def wrap(self, each: Callable[[dict[str, Any]], T]) -> Callable[[dict[str, Any]], T]:
        def counted(document: dict[str, Any]) -> T:
            self.add(document)
            try:
                return each(document)
            except RecursionError:
                # Decoding allows 1,024 levels, more than the interpreter can repr() or walk
                # recursively: what `each` cannot read of such a page is a bad response.
                raise BadResponseError(
                    endpoint=self.endpoint, detail="a page is nested too deeply to read"
                ) from None

        return counted

    def add(self, document: dict[str, Any]) -> None:
        data = document.get("data")
        if not isinstance(data, list):
            return  # not a list page at all: for `each` to refuse
        for item in data:
            ident = item.get("id") if isinstance(item, dict) else None
            if not isinstance(ident, str):
                continue  # an entry without an id is for `each` to report
            if ident in self.ids:
                raise IncompleteListError(
                    endpoint=self.endpoint,
                    detail=f"item {_brief(ident)} is on two pages: the pages are not one list",
                )
            self.ids.add(ident)
        self.items += len(data)
        if self.promised is not None and self.items > self.promised:
            raise IncompleteListError(
                endpoint=self.endpoint,
                detail=f"the pages hold more items than the total-count of {self.promised}",
            )

    def check_complete(self) -> None:
        if self.promised is not None and self.items != self.promised:
            raise IncompleteListError(
                endpoint=self.endpoint,
                detail=f"the pages hold {self.items} items, not the total-count of {self.promised}",
            )


def _pagination(document: dict[str, Any], endpoint: str) -> dict[str, Any]:
    meta = document.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    if pagination is None:
        return {}
    if not isinstance(pagination, dict):
        raise BadResponseError(endpoint=endpoint, detail="meta.pagination is not an object")
    return pagination


def _error_detail(body: bytes) -> str:
    """The API's own words: `errors[].detail` (or title), else the start of the body."""
    try:
        document = decode_json(body)
    except ValueError:
        return _one_line(_body_text(body), 200)
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return _one_line(_body_text(body), 200)
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        # `status` may be a string or a number (docs/tfc-api.md, "Conventions"); the HTTP
        # status is what counts.
        text = error.get("detail") or error.get("title")
        if isinstance(text, str) and text:
            parts.append(text)
    return "; ".join(parts)


def _first_tfc_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first API error of a failed page fetch; the whole group if a bug is among them."""
    found = group.subgroup(lambda exc: isinstance(exc, TfcError))
    if (
        found is None
        or len(found.exceptions) == 0
        or group.subgroup(lambda exc: not isinstance(exc, TfcError | BaseExceptionGroup))
    ):
        return group
    leaf: BaseException = found
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


__all__ = [
    "BadResponseError",
    "ConflictError",
    "IncompleteListError",
    "NotFoundError",
    "RateLimitedError",
    "RateLimiter",
    "ServerError",
    "StateVersionPendingError",
    "TfcClient",
    "TfcError",
    "TransportError",
    "UnauthorizedError",
]
