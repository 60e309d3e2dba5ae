"""What a `.tflock` object's body becomes, the same for S3 and GCS (sources.perstore)."""

import json
from datetime import UTC, datetime

import pytest

from watchdog.metrics import Metrics
from watchdog.model import Source
from watchdog.sources.perstore import MAX_LOCKFILE_BODY, lockfile_lock

STORED = datetime(2026, 11, 29, 11, 59, tzinfo=UTC)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BODY = json.dumps({"ID": "in-the-file", "Who": "runner@ci-42", "Created": "2026-11-29T09:00:00Z"})


def _lock(body: bytes | None, metrics: Metrics, lock_id: str | None = None):
    return lockfile_lock(
        body,
        source=Source.GCS,
        store="tf-state",
        path="tf-state/prod/app.tfstate",
        token="17",
        stored_at=STORED,
        now=NOW,
        metrics=metrics,
        lock_id=lock_id,
        bucket="tf-state",
    )


def test_a_readable_body_is_a_lock_with_the_stores_time_and_the_given_lock_id():
    metrics = Metrics()
    lock = _lock(BODY.encode(), metrics, lock_id="17")
    assert lock.problem is None
    assert (lock.info.id, lock.info.who, lock.token) == ("17", "runner@ci-42", "17")
    assert lock.info.created == datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    assert lock.last_modified == STORED
    assert metrics.registry.get_sample_value("tfc_watchdog_parse_errors_total") == 0


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (None, f"lock file is larger than {MAX_LOCKFILE_BODY} bytes"),
        (b" " * (MAX_LOCKFILE_BODY + 1), f"lock file is larger than {MAX_LOCKFILE_BODY} bytes"),
        (b"[]", "lock info is a JSON list, not an object"),
    ],
)
def test_an_oversized_or_unparsable_body_is_an_unreadable_lock_counted_once(body, problem):
    metrics = Metrics()
    lock = _lock(body, metrics)
    assert lock.problem == problem
    # Kept for the report with the store's time for display, never with a server time to
    # age it by: decide never acts on it.
    assert (lock.info.id, lock.info.created, lock.last_modified) == ("", STORED, None)
    assert metrics.registry.get_sample_value("tfc_watchdog_parse_errors_total") == 1
