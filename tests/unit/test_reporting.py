"""The report stage: one Reporter turns each cycle's report into per-lock series (kept for a
scope that could not be read), health, `/locks` and a /metrics text rendered once per
report."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.support.builders import NOW
from watchdog.metrics import Metrics
from watchdog.model import AgeSource, Holder, HolderType, LockState, Observation, Source
from watchdog.report import CycleReport
from watchdog.reporting import Reporter

STALE = "tfc_watchdog_lock_stale"


def lock(organization: str, workspace: str) -> LockState:
    return LockState(
        source=Source.TFC,
        organization=organization,
        workspace=workspace,
        workspace_id=f"ws-{workspace}",
        holder=Holder(HolderType.USER, "user-1", "alice"),
        lock_id=f"{organization}/{workspace}",
        since=NOW - timedelta(hours=3),
        age=timedelta(hours=3),
        age_source=next(iter(AgeSource)),
        stale=True,
        rule="defaults",
        reason=None,
    )


def read(organization: str, *, complete: bool = True, reason: str | None = None) -> Observation:
    return Observation(
        source=Source.TFC,
        organization=organization,
        server_now=NOW,
        complete=complete,
        error=None if complete else "server error",
        error_reason=reason,
    )


def report(observations: list[Observation], locks: list[LockState]) -> CycleReport:
    return CycleReport(
        generated_at=NOW,
        dry_run=True,
        observations=tuple(observations),
        locks=tuple(locks),
        findings=(),
    )


def stale(metrics: Metrics, organization: str, workspace: str) -> float | None:
    labels = {
        "source": "tfc",
        "organization": organization,
        "workspace": workspace,
        "holder_type": "user",
        "rule": "defaults",
    }
    return metrics.registry.get_sample_value(STALE, labels)


def test_a_scope_that_could_not_be_read_keeps_its_last_series() -> None:
    """An API blip in one organization must not resolve its stale-lock alert; a complete
    read of another organization still replaces that one's series."""
    metrics = Metrics()
    reporter = Reporter(metrics)
    reporter.publish(
        report([read("acme"), read("beta")], [lock("acme", "net"), lock("beta", "dns")])
    )
    assert stale(metrics, "acme", "net") == stale(metrics, "beta", "dns") == 1

    reporter.publish(report([read("acme", complete=False), read("beta")], []))
    assert stale(metrics, "acme", "net") == 1  # kept: acme was not read
    assert stale(metrics, "beta", "dns") is None  # beta was read: its lock is gone

    reporter.publish(report([read("acme"), read("beta")], []))
    assert stale(metrics, "acme", "net") is None


def test_health_and_locks_follow_the_published_reports() -> None:
    metrics = Metrics()
    reporter = Reporter(metrics)
    assert reporter.last_report is None and not reporter.health.ready

    first = report([read("acme")], [lock("acme", "net")])
    reporter.cycle_started()
    reporter.publish(first)
    assert reporter.last_report is first
    assert reporter.health.ready and reporter.health.last_error is None
    assert reporter.health.last_cycle_end_monotonic is not None
    assert metrics.registry.get_sample_value("tfc_watchdog_cycle_duration_seconds_count") == 1

    refused = report([read("acme", complete=False, reason="unauthorized")], [])
    reporter.publish(refused)
    assert reporter.last_report is refused
    assert not reporter.health.ready and reporter.health.last_error == "server error"
    assert metrics.registry.get_sample_value("tfc_watchdog_cycle_failures_total") == 1

    reporter.cycle_started()
    reporter.cycle_raised()
    assert reporter.health.last_error == "cycle raised an exception (see the traceback)"
    assert metrics.registry.get_sample_value("tfc_watchdog_cycle_failures_total") == 2
    assert metrics.registry.get_sample_value("tfc_watchdog_cycle_duration_seconds_count") == 2


def test_the_per_lock_text_is_rendered_once_per_report() -> None:
    """Scrapes between two reports reuse one rendering; the next report's publish renders
    the formats scraped so far before any scrape asks."""
    reporter = Reporter(Metrics())
    reporter.publish(report([read("acme")], [lock("acme", "net")]))
    exposition = reporter.exposition
    body, content_type = exposition.render("")
    cached = exposition._cache[content_type]
    assert exposition.render("")[0] == body
    assert exposition._cache[content_type] is cached  # not rendered again

    reporter.publish(report([read("acme")], [replace(lock("acme", "net"), workspace="dns")]))
    prerendered = exposition._cache[content_type]
    assert prerendered is not cached and b'workspace="dns"' in prerendered
    body, _ = exposition.render("")
    assert exposition._cache[content_type] is prerendered
    assert b'workspace="net"' not in body
