"""/metrics renders the per-lock series once per report and still says what the library says;
the per-lock families (a custom collector) say exactly what the plain Gauges they replace
said."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

import httpx
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from starlette.applications import Starlette
from starlette.routing import Route

from tests.support.builders import NOW
from watchdog.exposition import MetricsExposition
from watchdog.metrics import LockPicture, Metrics
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


def _show(
    metrics: Metrics,
    locks: Iterable[LockState],
    stuck_runs: Iterable[tuple[str, str]] = (),
    runs_blocked: Iterable[tuple[str, str, str]] = (),
) -> None:
    metrics.lock_series.show(LockPicture(tuple(locks), tuple(stuck_runs), tuple(runs_blocked)))


def _lines(body: bytes) -> list[bytes]:
    return sorted(body.splitlines())


def test_text_format_has_the_same_lines_as_prometheus_client() -> None:
    metrics = Metrics()
    _show(metrics, _locks(50), [("acme", "applying")])
    metrics.api_request("GET /workspaces/:id", 200)
    body, content_type = MetricsExposition(metrics).render("")
    assert _lines(body) == _lines(generate_latest(metrics.registry))
    assert content_type.startswith("text/plain")


def test_openmetrics_has_the_same_lines_and_one_eof_at_the_end() -> None:
    metrics = Metrics()
    _show(metrics, _locks(5))
    body, content_type = MetricsExposition(metrics).render(OPENMETRICS)
    assert _lines(body) == _lines(openmetrics_latest(metrics.registry))
    assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1
    assert content_type.startswith("application/openmetrics-text")


def test_counters_move_between_scrapes_and_locks_change_with_the_report() -> None:
    metrics = Metrics()
    exposition = MetricsExposition(metrics)
    _show(metrics, _locks(3))
    exposition.render("")
    metrics.api_request("GET /workspaces/:id", 429)
    _show(metrics, _locks(1))
    body, _ = exposition.render("")
    assert _lines(body) == _lines(generate_latest(metrics.registry))
    assert b'workspace="ws-0002"' not in body
    assert b"tfc_watchdog_api_rate_limited_total 1.0" in body


async def test_served_gzipped_and_filtered_like_the_library() -> None:
    metrics = Metrics()
    _show(metrics, _locks(2))
    app = Starlette(routes=[Route("/metrics", MetricsExposition(metrics))])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ops"
    ) as client:
        whole = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        only = await client.get("/metrics", params={"name[]": "tfc_watchdog_lock_stale"})
        live = await client.get("/metrics", params={"name[]": "tfc_watchdog_cycles_total"})
    assert whole.headers["content-encoding"] == "gzip"
    assert _lines(whole.content) == _lines(generate_latest(metrics.registry))
    assert b"tfc_watchdog_lock_stale{" in only.content
    assert b"tfc_watchdog_cycles_total" not in only.content
    assert b"tfc_watchdog_cycles_total 0.0" in live.content
    assert b"tfc_watchdog_lock_stale" not in live.content


def test_prerender_prepares_every_scraped_format_after_a_report() -> None:
    metrics = Metrics()
    exposition = MetricsExposition(metrics)
    _show(metrics, _locks(3))
    text_type = exposition.render("")[1]
    openmetrics_type = exposition.render(OPENMETRICS)[1]
    _show(metrics, _locks(2))
    assert exposition._cache  # still the old cycle's text until something refreshes it
    exposition.prerender()
    # Both formats are ready before any scrape, and what a scrape then gets is current.
    assert set(exposition._cache) == {text_type, openmetrics_type}
    body, _ = exposition.render("")
    assert _lines(body) == _lines(generate_latest(metrics.registry))
    assert b'workspace="ws-0002"' not in body


def _mixed() -> tuple[list[LockState], list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Locks of every kind the per-lock families show: a user lock with a last activity, a
    run lock, an S3-backend lock, and one label set twice (the later value wins, in the
    first one's place); stuck runs counted by status; a blocked workspace listed twice."""
    user = _locks(3)
    active = replace(user[1], last_activity=NOW - timedelta(seconds=30))
    run = replace(
        user[2],
        workspace="deploy",
        holder=Holder(HolderType.RUN, "run-1", None),
        stale=True,
        rule="runs",
    )
    backend = replace(
        user[0],
        source=Source.DYNAMODB,
        organization="locks-table",
        workspace="bucket/env/prod.tfstate",
        holder=Holder(HolderType.USER, "ci@runner", "ci@runner"),
        since=NOW - timedelta(hours=5, microseconds=250),
    )
    again = replace(user[0], since=NOW - timedelta(hours=1), stale=True)
    locks = [user[0], active, run, backend, again]
    stuck = [("acme", "applying"), ("acme", "planning"), ("acme", "applying"), ("other", "queued")]
    blocked = [("tfc", "acme", "deploy"), ("tfc", "acme", "ws-0001"), ("tfc", "acme", "deploy")]
    return locks, stuck, blocked


def _as_gauges(
    locks: Iterable[LockState],
    stuck_runs: Iterable[tuple[str, str]],
    runs_blocked: Iterable[tuple[str, str, str]],
) -> CollectorRegistry:
    """The per-lock families as the plain prometheus_client Gauges that made them before
    the custom collector: the contract (names, HELP texts, labels, values) written out."""
    registry = CollectorRegistry()
    lock_labels = ["source", "organization", "workspace", "holder_type"]
    since = Gauge(
        "tfc_watchdog_lock_since_timestamp_seconds",
        "When the lock was taken (run locks: the run entered its status; user/team "
        "locks: first seen by this watchdog; S3 backend: the lock's Created).",
        lock_labels,
        registry=registry,
    )
    activity = Gauge(
        "tfc_watchdog_lock_last_activity_timestamp_seconds",
        "The last sign of life of a user/team lock's holder: its workspace's "
        "latest-change-at when it moved while the lock was held (Unix time); the series "
        "exists only then.",
        lock_labels,
        registry=registry,
    )
    stale = Gauge(
        "tfc_watchdog_lock_stale",
        "1 while the lock is older than its rule's threshold (or its run is stuck).",
        [*lock_labels, "rule"],
        registry=registry,
    )
    stuck = Gauge(
        "tfc_watchdog_stuck_runs",
        "Non-final current runs past their phase's threshold, by status.",
        ["organization", "status"],
        registry=registry,
    )
    blocked = Gauge(
        "tfc_watchdog_runs_blocked",
        "1 while a stale lock keeps runs of the workspace from starting (a runs_blocked "
        "finding); the series exists only while that holds.",
        ["source", "organization", "workspace"],
        registry=registry,
    )
    for lock in locks:
        base = (lock.source.value, lock.organization, lock.workspace, lock.holder.type.value)
        since.labels(*base).set(lock.since.timestamp())
        if lock.last_activity is not None:
            activity.labels(*base).set(lock.last_activity.timestamp())
        stale.labels(*base, lock.rule).set(1 if lock.stale else 0)
    for organization, status in stuck_runs:
        stuck.labels(organization, status).inc()
    for source, organization, workspace in runs_blocked:
        blocked.labels(source, organization, workspace).set(1)
    return registry


def test_the_lock_series_say_what_the_plain_gauges_said_byte_for_byte() -> None:
    locks, stuck, blocked = _mixed()
    expected = _as_gauges(locks, stuck, blocked)
    metrics = Metrics()
    _show(metrics, locks, stuck, blocked)
    exposition = MetricsExposition(metrics)
    for accept, encode in (("", generate_latest), (OPENMETRICS, openmetrics_latest)):
        body, _ = exposition.render(accept)
        # The per-lock families come last, in the order of the Gauges above.
        tail = body[body.index(b"# HELP tfc_watchdog_lock_since_timestamp_seconds") :]
        assert tail == encode(expected)


def test_without_locks_the_families_are_still_described() -> None:
    """Before the first report and with nothing locked, /metrics still names every per-lock
    family (HELP and TYPE, no sample), as labelled Gauges without children did."""
    body, _ = MetricsExposition(Metrics()).render("")
    tail = body[body.index(b"# HELP tfc_watchdog_lock_since_timestamp_seconds") :]
    assert tail == generate_latest(_as_gauges([], [], []))
