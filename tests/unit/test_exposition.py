"""/metrics renders the per-lock series once per publish and still says what the library says."""

from __future__ import annotations

from datetime import timedelta

import httpx
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from starlette.applications import Starlette
from starlette.routing import Route

from tests.support.builders import NOW
from watchdog.exposition import MetricsExposition
from watchdog.metrics import Metrics
from watchdog.model import AgeSource, Holder, HolderType, LockState, Source

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def _locks(count: int) -> list[LockState]:
    return [
        LockState(
            source=Source.TFC,
            organization="acme",
            workspace=f"ws-{n:04d}",
            workspace_id=f"ws-id{n}",
            holder=Holder(HolderType.USER, f"user-{n}", "alice"),
            lock_id=f"lock-{n}",
            since=NOW - timedelta(minutes=n),
            age=timedelta(minutes=n),
            age_source=next(iter(AgeSource)),
            stale=n % 2 == 0,
            rule="defaults",
            reason=None,
        )
        for n in range(count)
    ]


def _lines(body: bytes) -> list[bytes]:
    return sorted(body.splitlines())


def test_text_format_has_the_same_lines_as_prometheus_client() -> None:
    metrics = Metrics()
    metrics.publish_locks(_locks(50), [("acme", "applying")])
    metrics.api_request("GET /workspaces/:id", 200)
    body, content_type = MetricsExposition(metrics).render("")
    assert _lines(body) == _lines(generate_latest(metrics.registry))
    assert content_type.startswith("text/plain")


def test_openmetrics_has_the_same_lines_and_one_eof_at_the_end() -> None:
    metrics = Metrics()
    metrics.publish_locks(_locks(5), [])
    body, content_type = MetricsExposition(metrics).render(OPENMETRICS)
    assert _lines(body) == _lines(openmetrics_latest(metrics.registry))
    assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1
    assert content_type.startswith("application/openmetrics-text")


def test_counters_move_between_scrapes_and_locks_change_on_publish() -> None:
    metrics = Metrics()
    exposition = MetricsExposition(metrics)
    metrics.publish_locks(_locks(3), [])
    exposition.render("")
    metrics.api_request("GET /workspaces/:id", 429)
    metrics.publish_locks(_locks(1), [])
    body, _ = exposition.render("")
    assert _lines(body) == _lines(generate_latest(metrics.registry))
    assert b'workspace="ws-0002"' not in body
    assert b"tfc_watchdog_api_rate_limited_total 1.0" in body


async def test_served_gzipped_and_filtered_like_the_library() -> None:
    metrics = Metrics()
    metrics.publish_locks(_locks(2), [])
    app = Starlette(routes=[Route("/metrics", MetricsExposition(metrics))])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ops"
    ) as client:
        whole = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        only = await client.get("/metrics", params={"name[]": "tfc_watchdog_lock_stale"})
    assert whole.headers["content-encoding"] == "gzip"
    assert _lines(whole.content) == _lines(generate_latest(metrics.registry))
    assert b"tfc_watchdog_lock_stale{" in only.content
    assert b"tfc_watchdog_cycles_total" not in only.content


def test_prerender_prepares_every_scraped_format_after_a_publish() -> None:
    metrics = Metrics()
    exposition = MetricsExposition(metrics)
    metrics.publish_locks(_locks(3), [])
    text_type = exposition.render("")[1]
    openmetrics_type = exposition.render(OPENMETRICS)[1]
    metrics.publish_locks(_locks(2), [])
    assert exposition._cache  # still the old cycle's text until something refreshes it
    exposition.prerender()
    # Both formats are ready before any scrape, and what a scrape then gets is current.
    assert set(exposition._cache) == {text_type, openmetrics_type}
    body, _ = exposition.render("")
    assert _lines(body) == _lines(generate_latest(metrics.registry))
    assert b'workspace="ws-0002"' not in body
