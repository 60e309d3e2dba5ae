"""The GitLab client under GitLab's rate limits: a 429's `Retry-After` / `RateLimit-Reset` /
`RateLimit-ResetTime` is waited out (on GitLab's clock, capped) before the read is retried,
every attempt is counted, and the unlock is never sent twice.

Header semantics: https://docs.gitlab.com/administration/settings/user_and_ip_rate_limits/
("Response headers": `RateLimit-Reset` is a Unix time, `Retry-After` seconds).
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import structlog

from tests.support.gitlab import PROJECT, WATCHDOG_TOKEN
from watchdog.metrics import Metrics
from watchdog.sources.errors import SourceError
from watchdog.sources.gitlab.client import (
    GRAPHQL_ENDPOINT,
    MAX_ATTEMPTS,
    UNLOCK_ENDPOINT,
    GitLabClient,
)
from watchdog.sources.gitlab.source import GitLabStateSource
from watchdog.sources.serverwait import MAX_SERVER_WAIT

DATE = "Mon, 30 Nov 2026 08:00:00 GMT"
GITLAB_NOW = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)
JITTER = 0.3  # the most the client adds past the server's reset

STATE = {
    "id": "gid://gitlab/Terraform::State/1",
    "name": "prod",
    "lockedAt": "2026-11-30T06:00:00Z",
    "lockedByUser": {"username": "ci-runner"},
    "latestVersion": None,
}
STATES = {
    "data": {
        "project": {
            "terraformStates": {
                "pageInfo": {"hasNextPage": False, "endCursor": None},
                "nodes": [STATE],
            }
        }
    }
}
ONE_STATE = {"data": {"project": {"terraformState": STATE}}}


class Server:
    """Answers each request with the next (status, headers) in `script` (the last repeats),
    with a GraphQL body that fits the query; records what was sent."""

    def __init__(self, *script: tuple[int, dict[str, str]]) -> None:
        self.script = list(script)
        self.sent: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        status, headers = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        self.sent.append(request.method)
        body = STATES if b"terraformStates" in request.content else ONE_STATE
        if status != 200:
            body = {"message": "429 Too Many Requests"}  # type: ignore[assignment]
        return httpx.Response(status, json=body, headers={"Date": DATE, **headers})


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def source_on(server: Server, sleeps: Sleeps, metrics: Metrics) -> GitLabStateSource:
    client = GitLabClient(
        address="http://gitlab.test",
        token=WATCHDOG_TOKEN,
        metrics=metrics,
        transport=httpx.MockTransport(server),
        sleep=sleeps,
        # A stopped clock: only the sleeps the client asks for "pass".
        clock=lambda: 1000.0,
    )
    return GitLabStateSource(client, [PROJECT], metrics)


def count(metrics: Metrics, endpoint: str, code: int | str) -> float:
    return metrics.api_requests.labels(endpoint=endpoint, code=str(code))._value.get()


def about(wait: float, expected: float) -> bool:
    return expected <= wait <= expected + JITTER


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        # A Unix time, measured from GitLab's `Date`, not from this host's clock.
        ({"RateLimit-Reset": str(int(GITLAB_NOW.timestamp()) + 12)}, 12.0),
        ({"RateLimit-ResetTime": "Mon, 30 Nov 2026 08:00:20 GMT"}, 20.0),
        # Retry-After wins when both are given.
        ({"Retry-After": "3", "RateLimit-Reset": str(int(GITLAB_NOW.timestamp()) + 50)}, 3.0),
        # Nothing named: a short default, not a hammering retry.
        ({}, 1.0),
    ],
)
async def test_a_429_on_a_read_is_waited_out_then_retried(
    headers: dict[str, str], expected: float
) -> None:
    server = Server((429, headers), (200, {}))
    sleeps, metrics = Sleeps(), Metrics()
    (observation,) = await source_on(server, sleeps, metrics).observe()
    assert observation.complete, observation.error
    assert len(observation.backend_locks) == 1
    (wait,) = sleeps.waits
    assert about(wait, expected), wait
    assert server.sent == ["POST", "POST"]
    assert count(metrics, GRAPHQL_ENDPOINT, 429) == 1
    assert count(metrics, GRAPHQL_ENDPOINT, 200) == 1
    assert metrics.api_rate_limited._value.get() == 1


async def test_an_absurd_server_wait_is_capped_and_said() -> None:
    server = Server((429, {"Retry-After": "86400"}), (200, {}))
    sleeps = Sleeps()
    with structlog.testing.capture_logs() as logs:
        (observation,) = await source_on(server, sleeps, Metrics()).observe()
    assert observation.complete
    (wait,) = sleeps.waits
    assert about(wait, MAX_SERVER_WAIT), wait
    (line,) = [entry for entry in logs if entry["event"] == "gitlab.server_wait_capped"]
    assert line["server_value"] == "86400"
    assert line["header"] == "Retry-After"


async def test_a_read_that_stays_rate_limited_counts_every_attempt_and_is_incomplete() -> None:
    server = Server((429, {"Retry-After": "2"}))
    sleeps, metrics = Sleeps(), Metrics()
    source = source_on(server, sleeps, metrics)
    (observation,) = await source.observe()
    assert not observation.complete
    assert observation.error_reason == "rate_limited"
    assert server.sent == ["POST"] * MAX_ATTEMPTS
    assert count(metrics, GRAPHQL_ENDPOINT, 429) == MAX_ATTEMPTS
    # A wait before each retry, and the last 429's wait is still owed by the next read.
    assert len(sleeps.waits) == MAX_ATTEMPTS - 1
    server.script = [(200, {})]
    (later,) = await source.observe()
    assert later.complete
    assert len(sleeps.waits) == MAX_ATTEMPTS
    assert all(about(wait, 2.0) for wait in sleeps.waits)


async def test_a_rate_limited_unlock_is_sent_once_and_not_delayed_after_its_reread() -> None:
    # The observe, the re-read before the unlock, then the DELETE answered 429.
    server = Server((200, {}), (200, {}), (429, {"Retry-After": "5"}))
    sleeps, metrics = Sleeps(), Metrics()
    source = source_on(server, sleeps, metrics)
    (observation,) = await source.observe()
    (lock,) = observation.backend_locks
    with pytest.raises(SourceError) as caught:
        await source.delete_lock(lock)
    assert caught.value.reason == "rate_limited"
    assert server.sent == ["POST", "POST", "DELETE"]
    assert count(metrics, UNLOCK_ENDPOINT, 429) == 1
    assert sleeps.waits == []
    # The reads after it wait for GitLab's reset.
    server.script = [(200, {})]
    await source.observe()
    (wait,) = sleeps.waits
    assert about(wait, 5.0)
