"""An async JSON:API client for the HCP Terraform / Terraform Enterprise API v2.

It knows HTTP, the API's conventions and its limits (reference/tfc-api.md sections 0 and 5),
nothing about locks: rate limiting, retries, typed errors, pagination, the server's clock and
the request metrics all live here so the source above stays a thin translation layer.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import math
import random
import reprlib
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, TypeGuard, TypeVar

import httpx
import orjson

from watchdog import __version__
from watchdog.metrics import Metrics

JSONAPI: Final = "application/vnd.api+json"
# The documented default of X-RateLimit-Limit (requests per second, per user).
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

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")
Clock = Callable[[], float]


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
    """404: not found *or not permitted*; the API does not say which."""

    reason = "not_found"


class ConflictError(TfcError):
    """409: the object is not in the state the action needs; the world changed."""


class RateLimitedError(TfcError):
    """429 after the retries ran out."""

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
    """No response: timeout, connection failure or TLS failure (reason timeout|transport|tls)."""

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
    then sleeps until its slot. Burst is 1, so in any window of T seconds at most
    1 + rate x T requests start: strictly under the share of the server's limit we keep.
    """

    def __init__(self, rate: float, *, clock: Clock, sleep: Sleep) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._clock = clock
        self._sleep = sleep

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    def set_rate(self, rate: float) -> None:
        self._interval = 1.0 / rate

    def reserve(self) -> float:
        """Claim the next slot; return how long to wait for it (seconds)."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._interval
        return start - now

    def hold_until(self, moment: float) -> None:
        """After a 429 nobody should start before the server's reset time."""
        self._next = max(self._next, moment)

    async def acquire(self) -> None:
        wait = self.reserve()
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


def _parse_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


class TfcClient:
    """Async client; use as `async with TfcClient(...) as client`.

    GET retries 5xx and transport errors (capped exponential backoff with jitter, bounded
    attempts, a total deadline). Every method retries 429 after the server's reset time.
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
        self._token = token
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

    def server_now(self) -> datetime:
        """The API server's clock: the `Date` header of the latest response, else local UTC."""
        return self._last_date if self._last_date is not None else datetime.now(UTC)

    # --- public calls -----------------------------------------------------------------------

    async def get(
        self, path: str, *, endpoint: str, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        response = await self._send("GET", path, endpoint=endpoint, params=params)
        document = self._json(response, endpoint)
        if not isinstance(document, dict) or "data" not in document:
            raise BadResponseError(
                endpoint=endpoint, status=response.status_code, detail="no JSON:API `data`"
            )
        return document

    async def post(self, path: str, *, endpoint: str, json: Any = None) -> dict[str, Any] | None:
        response = await self._send("POST", path, endpoint=endpoint, json=json)
        # Actions answer 202 with no body; a body is not relied on, and an unreadable one on a
        # 2xx must not turn an accepted action into a reported failure.
        if not response.content.strip():
            return None
        try:
            document = response.json()
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    async def get_all_pages(
        self, path: str, *, endpoint: str, params: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Every page of a list, in page order. Any failed page raises (no partial lists)."""
        return await self.map_pages(path, endpoint=endpoint, params=params, each=_same)

    async def map_pages(
        self,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, str],
        each: Callable[[dict[str, Any]], T],
    ) -> list[T]:
        """`each(page)` for every page of a list, in page order; page 1 first, then the rest
        concurrently. `each` runs as each page arrives, so a large list never holds all its
        raw documents at once (50,000 workspaces are 500 pages of ~1 MB each once decoded),
        and the work overlaps the rate limiter's waits. Any failed page, or `each`, raises.

        The list is read completely or not at all (IncompleteListError): the walk stops at
        what page 1 promised (`total-pages`, and no more pages than `total-count` needs),
        which must itself be within MAX_LIST_ITEMS / MAX_LIST_PAGES; an item id seen twice
        or an item count other than `total-count` means the pages were not one list.
        """
        first = await self.get(path, endpoint=endpoint, params={**params, "page[number]": "1"})
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
                    path, endpoint=endpoint, params={**params, "page[number]": str(number)}
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
                path, endpoint=endpoint, params={**params, "page[number]": str(following)}
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
    ) -> httpx.Response:
        """One logical request, with the retry rules below.

        The POST rule: a POST is retried only when the server certainly did not act on it:
        after a 429 (rejected before it reached the action) and after a failure to *connect*
        (httpx.ConnectError / ConnectTimeout: not a byte of the request left this host).
        Never on a 5xx, a read timeout or a dropped connection: the action may already have
        happened, and a retried cancel or force-unlock could act twice.
        """
        headers: dict[str, str] = {}
        content: bytes | None = None
        if method != "GET":
            # Without this header the API answers 415, even when there is no body.
            headers["Content-Type"] = JSONAPI
            content = b"" if json is None else jsonlib.dumps(json).encode()
        deadline = self._clock() + self._retry_deadline
        attempt = 0
        while True:
            attempt += 1
            await self._limiter.acquire()
            try:
                async with self._in_flight:
                    response = await self._http.request(
                        method, path, params=params, headers=headers, content=content
                    )
            except httpx.TransportError as exc:
                self._metrics.api_request(endpoint, "error")
                error = self._transport_error(exc, endpoint)
                safe_to_retry = error.reason != "tls" and (
                    method == "GET" or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                )
                delay = self._backoff(attempt)
                if safe_to_retry and self._may_retry(attempt, delay, deadline):
                    await self._sleep(delay)
                    continue
                raise error from exc
            self._metrics.api_request(endpoint, response.status_code)
            self._remember(response)
            status = response.status_code
            if status == 429:
                delay = self._rate_limit_wait(response)
                self._limiter.hold_until(self._clock() + delay)
                if self._may_retry(attempt, delay, deadline):
                    await self._sleep(delay)
                    continue
            elif status >= 500 and method == "GET":
                delay = self._backoff(attempt)
                if self._may_retry(attempt, delay, deadline):
                    await self._sleep(delay)
                    continue
            if status >= 400:
                raise self._status_error(response, endpoint)
            return response

    def _may_retry(self, attempt: int, delay: float, deadline: float) -> bool:
        return attempt < self._max_attempts and self._clock() + delay <= deadline

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_cap, self._backoff_base * 2.0 ** (attempt - 1))
        # "Equal jitter": at least half the ceiling, so retries never collapse to zero.
        return ceiling / 2 + ceiling / 2 * self._jitter()

    def _rate_limit_wait(self, response: httpx.Response) -> float:
        wait = _parse_seconds(response.headers.get("X-RateLimit-Reset"))
        if wait is None:
            wait = self._retry_after(response.headers.get("Retry-After"))
        # go-tfe: max(reset, 100 ms) + U(0, 300 ms), so concurrent callers do not stampede.
        return max(wait if wait is not None else 1.0, 0.1) + 0.3 * self._jitter()

    def _retry_after(self, value: str | None) -> float | None:
        seconds = _parse_seconds(value)
        if seconds is not None or value is None:
            return seconds
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - self.server_now()).total_seconds())

    def _remember(self, response: httpx.Response) -> None:
        date = response.headers.get("Date")
        if date:
            try:
                moment = email.utils.parsedate_to_datetime(date)
            except (TypeError, ValueError):
                moment = None
            if moment is not None:
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                self._last_date = moment.astimezone(UTC)
        if self._fixed_rate or self._learned_limit:
            return
        # Learned once, from the first response that carries it: later responses of the
        # run-list endpoints carry their own per-minute limit, which is not this budget.
        limit = _parse_seconds(response.headers.get("X-RateLimit-Limit"))
        if limit is not None and limit > 0:
            self._learned_limit = True
            self._limiter.set_rate(limit * LIMIT_SHARE)

    # --- errors -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

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
            request_sent=not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout),
        )

    def _status_error(self, response: httpx.Response, endpoint: str) -> TfcError:
        status = response.status_code
        detail = self._redact(_error_detail(response))
        kind = _STATUS_ERRORS.get(status)
        if kind is None:
            kind = ServerError if status >= 500 else TfcError
        return kind(endpoint=endpoint, status=status, detail=detail)

    def _json(self, response: httpx.Response, endpoint: str) -> Any:
        try:
            return decode_json(response.content)
        except ValueError:
            raise BadResponseError(
                endpoint=endpoint, status=response.status_code, detail="body is not JSON"
            ) from None


def decode_json(body: bytes) -> Any:
    """A response body -> JSON value; ValueError when it is not JSON.

    orjson first: it decodes a 280 KB workspace page in half the time of the json module
    (issue 7: JSON decoding was a quarter of a 10,000-workspace cycle's CPU). What orjson
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


def _same(document: dict[str, Any]) -> dict[str, Any]:
    return document


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


def _error_detail(response: httpx.Response) -> str:
    """The API's own words: `errors[].detail` (or title), else the start of the body."""
    try:
        document = decode_json(response.content)
    except ValueError:
        return _one_line(response.text, 200)
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return _one_line(response.text, 200)
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        # `status` may be a string or a number (reference 0); the HTTP status is what counts.
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
