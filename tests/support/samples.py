"""Reading the watchdog's own Prometheus counters in tests, one place for every store."""

from __future__ import annotations

from watchdog.metrics import Metrics


def requests(metrics: Metrics, endpoint: str, code: int | str) -> float:
    """How many requests to `endpoint` ended with `code` (0 when none did)."""
    value = metrics.registry.get_sample_value(
        "tfc_watchdog_api_requests_total", {"endpoint": endpoint, "code": str(code)}
    )
    return value or 0.0


def parse_errors(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("tfc_watchdog_parse_errors_total") or 0.0
