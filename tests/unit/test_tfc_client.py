"""TfcClient against respx: headers, limiter, retries, typed errors, pagination, clock."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import structlog
import trustme

from tests.support.simulator import ADMIN_TOKEN, SimulatorServer
from tests.support.tfcapi import ADDRESS, BASE, DATE, TOKEN
from watchdog.metrics import Metrics
from watchdog.simulator.tls import CertPair
from watchdog.sources.tfc.client import (
    MAX_RESPONSE_BYTES,
    MAX_SERVER_WAIT,
    BadResponseError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RateLimiter,
    ServerError,
    TfcClient,
    TfcError,
    TransportError,
    UnauthorizedError,
)

LIST = "GET /organizations/:org/workspaces"
CANCEL = "/runs/run-1/actions/cancel"
JSONAPI = "application/vnd.api+json"


def whole(page: dict[str, Any]) -> dict[str, Any]:
    """`each` for map_pages that keeps each page as it came (what a test inspects)."""
    return page


class FakeTime:
    """A clock the client's sleeps advance (or not): no test ever really waits."""

    def __init__(self, *, advance: bool = True) -> None:
        self.now = 1000.0
        self.advance = advance
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.advance:
            self.now += seconds
        await asyncio.sleep(0)

    def waits(self) -> list[float]:
        """Sleeps longer than a limiter slot of the test's fast limiter."""
        return [s for s in self.sleeps if s > 0.001]


class Dated(httpx.AsyncBaseTransport):
    """httpx's own transport (which respx answers), adding the `Date` header every API
    response carries to the responses a test did not give one. A GET answered without it is
    refused (the server's clock is unknown), so only the tests about that leave it out, by
    building the client with `dated=False`."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if "Date" not in response.headers:
            response.headers["Date"] = DATE
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def make_client(
    metrics: Metrics, time: FakeTime, *, dated: bool = True, **kwargs: Any
) -> TfcClient:
    options: dict[str, Any] = {
        "transport": Dated() if dated else None,
        # respx answers before any TLS; skipping the CA load keeps each test fast.
        "verify": False,
        "requests_per_second": 10_000.0,
        "jitter": lambda: 0.0,
        "sleep": time.sleep,
        "clock": time.clock,
    }
    options.update(kwargs)
    return TfcClient(address=ADDRESS, token=TOKEN, metrics=metrics, **options)


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


def doc(data: Any = None, **extra: Any) -> dict[str, Any]:
    return {"data": data if data is not None else [], **extra}


def page_doc(number: int, total: int) -> dict[str, Any]:
    # One item per page, and the page size says so: the client walks no more pages than
    # total-count needs at the page size in use.
    pagination = {"current-page": number, "page-size": 1, "total-pages": total}
    return {
        "data": [{"id": f"ws-{number}", "type": "workspaces"}],
        "meta": {"pagination": {**pagination, "total-count": total}},
    }


def errors(status: int | str, detail: str) -> dict[str, Any]:
    return {"errors": [{"status": status, "title": "error", "detail": detail}]}


def requests_count(metrics: Metrics, endpoint: str, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "tfc_watchdog_api_requests_total", {"endpoint": endpoint, "code": code}
    )
    return value or 0.0


# --- headers and bodies ---------------------------------------------------------------------


async def test_get_sends_bearer_accept_and_user_agent(api, metrics, time):
    route = api.get("/ping").respond(200, json=doc())
    async with make_client(metrics, time) as client:
        await client.get("/ping", endpoint="GET /ping")
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/vnd.api+json"
    assert request.headers["User-Agent"].startswith("tfc-watchdog/")
    assert "Content-Type" not in request.headers


async def test_post_without_body_still_sends_jsonapi_content_type(api, metrics, time):
    # The API answers 415 to a POST without this header, even with no body.
    route = api.post("/workspaces/ws-1/actions/unlock").respond(
        200, json=doc({}), headers={"Content-Type": JSONAPI}
    )
    async with make_client(metrics, time) as client:
        await client.post("/workspaces/ws-1/actions/unlock", endpoint="POST unlock", expect=200)
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    assert request.content == b""


async def test_post_sends_plain_json_body_and_returns_none_on_202(api, metrics, time):
    route = api.post("/runs/run-1/actions/cancel").respond(202)
    async with make_client(metrics, time) as client:
        result = await client.post(
            "/runs/run-1/actions/cancel",
            endpoint="POST cancel",
            expect=202,
            json={"comment": "why"},
        )
    assert result is None
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    assert json.loads(request.content) == {"comment": "why"}


async def test_a_ca_bundle_trusts_its_own_ca_and_refuses_a_server_of_another(tmp_path, metrics):
    # A real TLS server (the simulator) whose certificate one CA issued; two bundles, each
    # with one CA. Only the bundle that holds the issuer gets an answer: the client verifies
    # against the bundle, neither against nothing nor against the machine's store.
    issuer, stranger = trustme.CA(), trustme.CA()
    leaf = issuer.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    trusted, untrusted = tmp_path / "issuer.pem", tmp_path / "stranger.pem"
    issuer.cert_pem.write_to_path(str(trusted))
    stranger.cert_pem.write_to_path(str(untrusted))
    path = "/organizations/demo/workspaces"
    with SimulatorServer(cert=CertPair(cert, key)) as sim:
        assert sim.url.startswith("https://")
        options = {"address": sim.url, "token": ADMIN_TOKEN, "metrics": metrics}
        async with TfcClient(**options, verify=str(trusted)) as client:
            document = await client.get(path, endpoint=LIST)
        async with TfcClient(**options, verify=str(untrusted)) as client:
            with pytest.raises(TransportError) as refused:
                await client.get(path, endpoint=LIST)
        reached = [r["path"] for r in sim.requests()]
    assert document["data"], "the organization's workspaces, read over verified TLS"
    assert refused.value.reason == "tls"
    # The refused handshake never became a request.
    assert reached == ["/api/v2" + path]


async def test_missing_ca_bundle_fails_at_construction(tmp_path, metrics):
    with pytest.raises(FileNotFoundError):
        TfcClient(address=ADDRESS, token=TOKEN, metrics=metrics, verify=str(tmp_path / "no"))


# --- rate limiting --------------------------------------------------------------------------


def test_limiter_spaces_simultaneous_reservations_by_its_interval():
    time = FakeTime(advance=False)
    limiter = RateLimiter(4.0, clock=time.clock, sleep=time.sleep)
    assert [limiter.reserve() for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]


def test_limiter_holds_every_caller_until_a_rate_limit_reset():
    time = FakeTime(advance=False)
    limiter = RateLimiter(100.0, clock=time.clock, sleep=time.sleep)
    limiter.hold_until(time.now + 3.0)
    assert limiter.reserve() == pytest.approx(3.0)


def test_limiter_does_not_bank_idle_time_into_a_burst():
    time = FakeTime(advance=False)
    limiter = RateLimiter(2.0, clock=time.clock, sleep=time.sleep)
    limiter.reserve()
    time.now += 100.0
    assert [limiter.reserve(), limiter.reserve()] == [0.0, 0.5]


def test_a_post_borrows_the_next_slot_to_follow_its_read_at_once():
    time = FakeTime(advance=False)
    limiter = RateLimiter(4.0, clock=time.clock, sleep=time.sleep)
    assert limiter.reserve() == 0.0  # the re-read
    time.now += 0.01
    assert limiter.reserve(borrow=True) == 0.0  # its POST, at once: not 0.24 s later
    # The borrowed slot is paid back: the next request waits for the slot after it.
    assert limiter.reserve() == pytest.approx(0.49)


def test_borrowing_is_one_slot_at_most_and_keeps_the_rate():
    time = FakeTime(advance=False)
    limiter = RateLimiter(4.0, clock=time.clock, sleep=time.sleep)
    starts = [limiter.reserve(borrow=True) for _ in range(5)]
    # A burst of two at most (one slot borrowed), then one every interval again.
    assert starts == [0.0, 0.0, 0.25, 0.5, 0.75]


def test_a_borrowed_slot_still_waits_for_the_servers_reset():
    time = FakeTime(advance=False)
    limiter = RateLimiter(4.0, clock=time.clock, sleep=time.sleep)
    limiter.reserve()
    limiter.hold_until(time.now + 3.0)
    assert limiter.reserve(borrow=True) == pytest.approx(3.0)


async def test_limit_learned_from_first_response_keeps_two_thirds(api, metrics):
    time = FakeTime(advance=False)
    api.get("/ping").respond(200, json=doc(), headers={"X-RateLimit-Limit": "60"})
    async with make_client(metrics, time, requests_per_second=None) as client:
        await client.get("/ping", endpoint="GET /ping")
        assert client.rate == pytest.approx(40.0)


async def test_configured_requests_per_second_wins_over_the_header(api, metrics, time):
    api.get("/ping").respond(200, json=doc(), headers={"X-RateLimit-Limit": "60"})
    async with make_client(metrics, time, requests_per_second=5.0) as client:
        await client.get("/ping", endpoint="GET /ping")
        assert client.rate == 5.0


async def test_later_pages_start_no_faster_than_the_learned_rate(api, metrics):
    time = FakeTime(advance=False)  # every request wants to start at the same instant
    total = 8

    def respond(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page[number]"])
        return httpx.Response(
            200, json=page_doc(number, total), headers={"X-RateLimit-Limit": "60"}
        )

    api.get("/organizations/acme/workspaces").mock(side_effect=respond)
    async with make_client(metrics, time, requests_per_second=None) as client:
        await client.map_pages(
            "/organizations/acme/workspaces", endpoint=LIST, params={}, each=whole
        )
    waits = sorted(time.sleeps)
    assert len(waits) == total - 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
    assert gaps == pytest.approx([1 / 40] * (total - 2))


async def test_429_waits_x_ratelimit_reset_then_retries(api, metrics, time):
    route = api.get("/ping").mock(
        side_effect=[
            httpx.Response(
                429,
                json=errors(429, "You have exceeded the API's rate limit."),
                headers={"X-RateLimit-Reset": "2.5"},
            ),
            httpx.Response(200, json=doc()),
        ]
    )
    async with make_client(metrics, time) as client:
        await client.get("/ping", endpoint="GET /ping")
    assert route.call_count == 2
    assert time.waits() == [2.5]
    assert requests_count(metrics, "GET /ping", "429") == 1
    assert requests_count(metrics, "GET /ping", "200") == 1
    assert metrics.registry.get_sample_value("tfc_watchdog_api_rate_limited_total") == 1


async def test_429_adds_jitter_to_the_reset(api, metrics, time):
    api.get("/ping").mock(
        side_effect=[
            httpx.Response(429, headers={"X-RateLimit-Reset": "1.0"}),
            httpx.Response(200, json=doc()),
        ]
    )
    async with make_client(metrics, time, jitter=lambda: 1.0) as client:
        await client.get("/ping", endpoint="GET /ping")
    assert time.waits() == [pytest.approx(1.3)]


async def test_429_falls_back_to_retry_after(api, metrics, time):
    api.get("/ping").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "4"}),
            httpx.Response(200, json=doc()),
        ]
    )
    async with make_client(metrics, time) as client:
        await client.get("/ping", endpoint="GET /ping")
    assert time.waits() == [4.0]


async def test_429_until_attempts_run_out_raises_rate_limited(api, metrics, time):
    route = api.get("/ping").respond(429, headers={"X-RateLimit-Reset": "0.5"})
    async with make_client(metrics, time, max_attempts=3) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    assert route.call_count == 3
    assert caught.value.reason == "rate_limited"
    assert metrics.registry.get_sample_value("tfc_watchdog_api_rate_limited_total") == 3


# --- retries --------------------------------------------------------------------------------


async def test_get_retries_server_errors_with_growing_backoff(api, metrics, time):
    route = api.get("/ping").mock(
        side_effect=[httpx.Response(502), httpx.Response(503), httpx.Response(200, json=doc())]
    )
    async with make_client(metrics, time, backoff_base=1.0, jitter=lambda: 1.0) as client:
        await client.get("/ping", endpoint="GET /ping")
    assert route.call_count == 3
    assert time.waits() == [1.0, 2.0]


async def test_get_gives_up_on_server_errors_after_max_attempts(api, metrics, time):
    route = api.get("/ping").respond(500, json=errors("500", "boom"))
    async with make_client(metrics, time, max_attempts=4) as client:
        with pytest.raises(ServerError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    assert route.call_count == 4
    assert caught.value.status == 500
    assert "boom" in str(caught.value)


async def test_get_retries_transport_errors_until_the_deadline(api, metrics, time):
    route = api.get("/ping").mock(side_effect=httpx.ReadTimeout("read timed out"))
    client = make_client(
        metrics,
        time,
        max_attempts=100,
        retry_deadline=10.0,
        backoff_base=1.0,
        backoff_cap=4.0,
        jitter=lambda: 1.0,
    )
    async with client:
        with pytest.raises(TransportError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    # Waits 1, 2, 4 fit in 10 s; a fourth wait of 4 would end past the deadline.
    assert time.waits() == [1.0, 2.0, 4.0]
    assert route.call_count == 4
    assert caught.value.reason == "timeout"
    assert requests_count(metrics, "GET /ping", "error") == 4


async def test_get_retries_a_connect_error_then_succeeds(api, metrics, time):
    route = api.get("/ping").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=doc())]
    )
    async with make_client(metrics, time) as client:
        assert await client.get("/ping", endpoint="GET /ping") == doc()
    assert route.call_count == 2


async def test_post_is_not_retried_on_server_error(api, metrics, time):
    route = api.post("/runs/run-1/actions/cancel").respond(500)
    async with make_client(metrics, time) as client:
        with pytest.raises(ServerError):
            await client.post(CANCEL, endpoint="POST cancel", expect=202, json={})
    assert route.call_count == 1
    assert time.waits() == []


async def test_post_is_not_retried_on_read_timeout(api, metrics, time):
    route = api.post(CANCEL).mock(side_effect=httpx.ReadTimeout("slow"))
    async with make_client(metrics, time) as client:
        with pytest.raises(TransportError) as caught:
            await client.post(CANCEL, endpoint="POST cancel", expect=202)
    assert route.call_count == 1
    assert caught.value.reason == "timeout"
    assert caught.value.request_sent is True  # it may have been performed


async def test_post_is_not_retried_on_429_and_holds_every_request_until_the_reset(
    api, metrics, time
):
    # The decision to act rests on a re-read just before the POST; a retry seconds later
    # would act on a world that may have changed (a force-unlock has no holder condition).
    route = api.post(CANCEL).mock(
        side_effect=[
            httpx.Response(429, headers={"X-RateLimit-Reset": "3"}),
            httpx.Response(202),
        ]
    )
    ping = api.get("/ping").respond(200, json=doc())
    async with make_client(metrics, time) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.post(CANCEL, endpoint="POST cancel", expect=202)
        assert route.call_count == 1
        assert time.waits() == []  # no wait for a retry that will not come
        # ... but the server's reset holds the next request, whatever it is.
        await client.get("/ping", endpoint="GET /ping")
    assert ping.call_count == 1
    assert time.waits() == [pytest.approx(3.0)]
    assert caught.value.status == 429


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ConnectTimeout("t/o")])
async def test_post_is_not_retried_when_the_connection_never_opened(api, metrics, time, failure):
    route = api.post(CANCEL).mock(side_effect=[failure, httpx.Response(202)])
    async with make_client(metrics, time) as client:
        with pytest.raises(TransportError) as caught:
            await client.post(CANCEL, endpoint="POST cancel", expect=202)
    assert route.call_count == 1
    assert caught.value.request_sent is False  # certainly not performed


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("closed"), httpx.WriteError("x")],
)
async def test_a_failure_after_connecting_may_have_sent_the_request(api, metrics, time, failure):
    api.post(CANCEL).mock(side_effect=failure)
    async with make_client(metrics, time) as client:
        with pytest.raises(TransportError) as caught:
            await client.post(CANCEL, endpoint="POST cancel", expect=202)
    assert caught.value.request_sent is True


# --- typed errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (401, UnauthorizedError, "unauthorized"),
        (404, NotFoundError, "not_found"),
        (409, ConflictError, "other"),
        (400, TfcError, "other"),
        (415, TfcError, "other"),
        (503, ServerError, "server_error"),
    ],
)
@pytest.mark.parametrize("status_type", [str, int])
async def test_status_codes_map_to_typed_errors(
    api, metrics, time, status, kind, reason, status_type
):
    api.get("/workspaces/ws-1").respond(status, json=errors(status_type(status), "the detail"))
    async with make_client(metrics, time, max_attempts=1) as client:
        with pytest.raises(TfcError) as caught:
            await client.get("/workspaces/ws-1", endpoint="GET /workspaces/:id")
    error = caught.value
    assert type(error) is kind
    assert error.status == status
    assert error.reason == reason
    assert error.endpoint == "GET /workspaces/:id"
    assert str(error) == f"GET /workspaces/:id: HTTP {status}: the detail"


async def test_error_without_json_body_keeps_one_line_of_text(api, metrics, time):
    api.get("/ping").respond(404, text="<html>\n<b>Not</b>\nFound</html>")
    async with make_client(metrics, time) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    assert "\n" not in str(caught.value)
    assert "Found" in str(caught.value)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>hello</html>"),
        httpx.Response(200, json={"meta": {}}),
        httpx.Response(200, json=[1, 2]),
    ],
    ids=["not-json", "no-data", "not-an-object"],
)
async def test_non_jsonapi_success_is_a_bad_response(api, metrics, time, response):
    api.get("/ping").mock(return_value=response)
    async with make_client(metrics, time) as client:
        with pytest.raises(BadResponseError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    assert caught.value.reason == "bad_response"


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (httpx.ReadTimeout("timed out"), "timeout"),
        (httpx.ConnectError("connection refused"), "transport"),
    ],
    ids=["read-timeout", "connection-failure"],
)
async def test_a_failed_exchange_is_a_transport_error_with_its_reason(
    api, metrics, time, failure, reason
):
    api.get("/ping").mock(side_effect=failure)
    async with make_client(metrics, time, max_attempts=1) as client:
        with pytest.raises(TransportError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    assert caught.value.reason == reason
    assert caught.value.status is None
    assert str(caught.value).startswith(f"GET /ping: {reason}")


async def test_tls_failure_is_reported_as_tls_and_not_retried(api, metrics, time):
    route = api.get("/ping").mock(
        side_effect=httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    )
    async with make_client(metrics, time) as client:
        with pytest.raises(TransportError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    assert caught.value.reason == "tls"
    assert route.call_count == 1


async def test_token_never_appears_in_errors_or_the_client_repr(api, metrics, time):
    # A server (or proxy) that echoes the Authorization header back in its error body.
    api.get("/ping").respond(401, json=errors("401", f"bad token Bearer {TOKEN}"))
    api.get("/slow").mock(side_effect=httpx.ReadTimeout(f"timeout for {TOKEN}"))
    async with make_client(metrics, time, max_attempts=1) as client:
        assert TOKEN not in repr(client)
        assert TOKEN not in str(client)
        with pytest.raises(UnauthorizedError) as unauthorized:
            await client.get("/ping", endpoint="GET /ping")
        with pytest.raises(TransportError) as timeout:
            await client.get("/slow", endpoint="GET /slow")
    for error in (unauthorized.value, timeout.value):
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error)
        assert TOKEN not in error.detail


# --- clock and metrics ----------------------------------------------------------------------


async def test_server_now_follows_the_latest_date_header(api, metrics, time):
    api.get("/ping").mock(
        side_effect=[
            httpx.Response(200, json=doc(), headers={"Date": "Tue, 03 Mar 2026 10:00:00 GMT"}),
            httpx.Response(404, headers={"Date": "Tue, 03 Mar 2026 10:05:30 GMT"}),
        ]
    )
    async with make_client(metrics, time) as client:
        await client.get("/ping", endpoint="GET /ping")
        assert client.server_now() == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
        with pytest.raises(NotFoundError):
            await client.get("/ping", endpoint="GET /ping")
        assert client.server_now() == datetime(2026, 3, 3, 10, 5, 30, tzinfo=UTC)
        assert client.server_now().utcoffset() is not None


async def test_server_now_is_the_local_utc_clock_before_any_response(metrics, time):
    before = datetime.now(UTC)
    async with make_client(metrics, time) as client:
        now = client.server_now()
    assert now.tzinfo is not None
    assert before <= now <= datetime.now(UTC)


@pytest.mark.parametrize("date", [None, "", "yesterday", "Tue, 99 Foo 2026 10:00:00 GMT"])
async def test_a_read_without_a_readable_date_is_a_bad_response(api, metrics, time, date):
    # Ages are the server's clock minus a timestamp; without `Date` "now" would silently
    # stay at an older response's clock. Nothing read from such a response may be used.
    headers = {"Date": date} if date is not None else {}
    api.get("/ping").mock(
        side_effect=[
            httpx.Response(200, json=doc(), headers={"Date": DATE}),
            httpx.Response(200, json=doc(), headers=headers),
        ]
    )
    async with make_client(metrics, time, dated=False) as client:
        await client.get("/ping", endpoint="GET /ping")
        with pytest.raises(BadResponseError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    assert "Date" in str(caught.value)
    assert requests_count(metrics, "GET /ping", "200") == 2


@pytest.mark.parametrize(
    ("headers", "server_value"),
    [
        ({"X-RateLimit-Reset": "1000000"}, "1000000"),
        ({"Retry-After": "86400"}, "86400"),
        ({"Retry-After": "Wed, 04 Mar 2026 10:00:00 GMT"}, "Wed, 04 Mar 2026 10:00:00 GMT"),
    ],
    ids=["reset", "retry-after-seconds", "retry-after-date"],
)
async def test_a_wait_the_server_asks_for_is_capped_at_a_minute_and_logged(
    api, metrics, time, headers, server_value
):
    api.get("/ping").mock(
        side_effect=[
            httpx.Response(429, headers={"Date": DATE, **headers}),
            httpx.Response(200, json=doc()),
        ]
    )
    with structlog.testing.capture_logs() as logs:
        async with make_client(metrics, time) as client:
            # The date form is relative to the server's clock (`Date`: one day earlier).
            await client.get("/ping", endpoint="GET /ping")
    assert time.waits() == [MAX_SERVER_WAIT] == [60.0]
    [capped] = [entry for entry in logs if entry["event"] == "tfc.server_wait_capped"]
    assert capped["log_level"] == "warning"
    assert capped["server_value"] == server_value
    assert capped["endpoint"] == "GET /ping"


# --- what counts as an answer ---------------------------------------------------------------


WAF_PAGE = "<html><body><h1>Request blocked by WAF</h1></body></html>"


@pytest.mark.parametrize(
    ("expect", "response"),
    [
        (202, httpx.Response(302, headers={"Location": "https://sso.example.com/login"})),
        (202, httpx.Response(301, headers={"Location": "https://other.example.com/"})),
        (202, httpx.Response(200, text=WAF_PAGE, headers={"Content-Type": "text/html"})),
        (200, httpx.Response(200, text=WAF_PAGE, headers={"Content-Type": "text/html"})),
        (202, httpx.Response(202, text=WAF_PAGE, headers={"Content-Type": "text/html"})),
        (200, httpx.Response(200, json=doc({}))),  # application/json is not the API's type
        (202, httpx.Response(204)),
        (202, httpx.Response(201, json=doc({}), headers={"Content-Type": JSONAPI})),
        (200, httpx.Response(202)),
    ],
    ids=[
        "302",
        "301",
        "200-html-for-a-run-action",
        "200-html-for-an-unlock",
        "202-with-html",
        "200-plain-json",
        "204",
        "201",
        "202-for-an-unlock",
    ],
)
async def test_a_post_answered_with_anything_but_its_documented_success_is_a_bad_response(
    api, metrics, time, expect, response
):
    route = api.post(CANCEL).mock(return_value=response)
    async with make_client(metrics, time) as client:
        with pytest.raises(BadResponseError) as caught:
            await client.post(CANCEL, endpoint="POST cancel", expect=expect)
    assert route.call_count == 1  # never followed, never retried
    assert caught.value.status == response.status_code
    assert f"expected HTTP {expect}" in str(caught.value) or "content type" in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_an_unexpected_answer_names_the_redirect_and_never_the_token(api, metrics, time):
    api.post(CANCEL).respond(
        302, headers={"Location": "https://sso.example.com/login"}, text=f"echo: Bearer {TOKEN}"
    )
    async with make_client(metrics, time) as client:
        with pytest.raises(BadResponseError) as caught:
            await client.post(CANCEL, endpoint="POST cancel", expect=202)
    assert "redirected to https://sso.example.com/login (not followed)" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_a_post_with_its_documented_status_and_the_api_content_type_is_done(
    api, metrics, time
):
    api.post(CANCEL).respond(202)
    api.post("/workspaces/ws-1/actions/force-unlock").respond(
        200, json=doc({"id": "ws-1"}), headers={"Content-Type": f"{JSONAPI}; charset=utf-8"}
    )
    async with make_client(metrics, time) as client:
        assert await client.post(CANCEL, endpoint="POST cancel", expect=202) is None
        unlocked = await client.post(
            "/workspaces/ws-1/actions/force-unlock", endpoint="POST force-unlock", expect=200
        )
    assert unlocked == doc({"id": "ws-1"})


async def test_a_get_answered_with_a_redirect_is_a_bad_response_and_not_followed(
    api, metrics, time
):
    route = api.get("/ping").respond(302, headers={"Location": f"{BASE}/elsewhere"})
    async with make_client(metrics, time) as client:
        with pytest.raises(BadResponseError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    assert route.call_count == 1
    assert caught.value.status == 302


# --- size and time of a whole response ------------------------------------------------------


class Endless:
    """A body of 1 MiB chunks that never ends; counts how many were asked for."""

    def __init__(self) -> None:
        self.chunks = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.chunks += 1
            yield b" " * 2**20


async def test_a_body_past_the_size_limit_is_a_bad_response_read_no_further(api, metrics, time):
    body = Endless()
    api.get("/ping").mock(return_value=httpx.Response(200, content=body))
    async with make_client(metrics, time, max_attempts=1) as client:
        with pytest.raises(BadResponseError) as caught:
            await client.get("/ping", endpoint="GET /ping")
    assert "larger than" in str(caught.value)
    # Streaming: the read stopped right past the limit instead of buffering the body.
    assert body.chunks <= MAX_RESPONSE_BYTES // 2**20 + 2


async def test_a_declared_length_past_the_limit_is_refused_before_reading(api, metrics, time):
    body = Endless()
    length = str(MAX_RESPONSE_BYTES + 1)
    api.post(CANCEL).mock(
        return_value=httpx.Response(202, content=body, headers={"Content-Length": length})
    )
    async with make_client(metrics, time) as client:
        with pytest.raises(BadResponseError):
            await client.post(CANCEL, endpoint="POST cancel", expect=202)
    assert body.chunks == 0


class Trickle:
    """A JSON body sent `rate` bytes per second, in chunks of 20 bytes."""

    def __init__(self, size: int, rate: float) -> None:
        self.body = json.dumps(doc([{"id": "x" * size}])).encode()
        self.rate = rate

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), 20):
            await asyncio.sleep(20 / self.rate)
            yield self.body[start : start + 20]


async def test_the_timeout_bounds_the_whole_request_not_each_read(api, metrics, time):
    # Each chunk arrives well within the timeout; the whole body would take 10 s.
    api.get("/ping").mock(return_value=httpx.Response(200, content=Trickle(2000, rate=200)))
    async with make_client(metrics, time, timeout=0.5, max_attempts=1) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TransportError) as caught:
            await client.get("/ping", endpoint="GET /ping")
        took = asyncio.get_running_loop().time() - started
    assert caught.value.reason == "timeout"
    assert "tfc.timeout" in str(caught.value)
    assert 0.45 <= took < 2.0


async def test_every_request_is_counted_under_its_endpoint_template(api, metrics, time):
    api.get("/workspaces/ws-1").respond(200, json=doc({}))
    api.get("/workspaces/ws-2").respond(404)
    async with make_client(metrics, time) as client:
        await client.get("/workspaces/ws-1", endpoint="GET /workspaces/:id")
        with pytest.raises(NotFoundError):
            await client.get("/workspaces/ws-2", endpoint="GET /workspaces/:id")
    assert requests_count(metrics, "GET /workspaces/:id", "200") == 1
    assert requests_count(metrics, "GET /workspaces/:id", "404") == 1


# --- pagination -----------------------------------------------------------------------------


async def test_all_pages_are_fetched_once_and_returned_in_page_order(api, metrics, time):
    total = 5

    def respond(request: httpx.Request) -> httpx.Response:
        assert request.url.params["page[size]"] == "100"
        number = int(request.url.params["page[number]"])
        return httpx.Response(200, json=page_doc(number, total))

    route = api.get("/organizations/acme/workspaces").mock(side_effect=respond)
    async with make_client(metrics, time) as client:
        pages = await client.map_pages(
            "/organizations/acme/workspaces",
            endpoint=LIST,
            params={"page[size]": "100"},
            each=whole,
        )
    assert route.call_count == total
    assert [page["data"][0]["id"] for page in pages] == [f"ws-{n}" for n in range(1, total + 1)]
    assert requests_count(metrics, LIST, "200") == total


async def test_pages_after_the_first_run_concurrently_within_the_cap(api, metrics, time):
    total, cap = 12, 3
    in_flight = 0
    most = 0

    async def respond(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        for _ in range(5):
            await asyncio.sleep(0)
        in_flight -= 1
        return httpx.Response(200, json=page_doc(int(request.url.params["page[number]"]), total))

    api.get("/organizations/acme/workspaces").mock(side_effect=respond)
    async with make_client(metrics, time, max_concurrency=cap) as client:
        pages = await client.map_pages(
            "/organizations/acme/workspaces", endpoint=LIST, params={}, each=whole
        )
    assert len(pages) == total
    assert most == cap


async def test_a_failed_page_fails_the_whole_list_with_its_typed_error(api, metrics, time):
    def respond(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page[number]"])
        if number == 3:
            return httpx.Response(404, json=errors("404", "gone"))
        return httpx.Response(200, json=page_doc(number, 4))

    api.get("/organizations/acme/workspaces").mock(side_effect=respond)
    async with make_client(metrics, time) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.map_pages(
                "/organizations/acme/workspaces", endpoint=LIST, params={}, each=whole
            )
    assert "gone" in str(caught.value)


async def test_lists_without_totals_are_walked_by_next_page(api, metrics, time):
    def respond(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page[number]"])
        following = number + 1 if number < 3 else None
        return httpx.Response(
            200,
            json={
                "data": [{"id": f"run-{number}"}],
                "meta": {"pagination": {"current-page": number, "next-page": following}},
            },
        )

    route = api.get("/organizations/acme/runs").mock(side_effect=respond)
    async with make_client(metrics, time) as client:
        pages = await client.map_pages(
            "/organizations/acme/runs",
            endpoint="GET /organizations/:org/runs",
            params={},
            each=whole,
        )
    assert [page["data"][0]["id"] for page in pages] == ["run-1", "run-2", "run-3"]
    assert route.call_count == 3


async def test_a_nonsense_page_count_is_a_bad_response(api, metrics, time):
    api.get("/organizations/acme/workspaces").respond(
        200, json={"data": [], "meta": {"pagination": {"total-pages": "many"}}}
    )
    async with make_client(metrics, time) as client:
        with pytest.raises(BadResponseError):
            await client.map_pages(
                "/organizations/acme/workspaces", endpoint=LIST, params={}, each=whole
            )
