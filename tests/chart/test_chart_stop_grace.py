"""The pod's termination grace period leaves the daemon time to stop on its own: its stop
grace (the cycle in flight finishes and is recorded) plus the ops server's shutdown, with a
margin, before Kubernetes sends SIGKILL."""

from __future__ import annotations

import pytest

from tests.chart.render import pod_spec, render, values_sets
from watchdog.daemon import STOP_GRACE
from watchdog.server import SHUTDOWN_TIMEOUT_SECONDS

VALUES_SETS = values_sets()
# Kubernetes' default when the pod spec leaves it out.
KUBERNETES_DEFAULT_GRACE = 30
# Process exit, the last log lines, a loaded node.
MARGIN_SECONDS = 5


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_the_termination_grace_period_outlasts_the_daemons_stop(values_name: str) -> None:
    spec = pod_spec(render(VALUES_SETS[values_name]))
    grace = spec.get("terminationGracePeriodSeconds", KUBERNETES_DEFAULT_GRACE)
    needed = STOP_GRACE.total_seconds() + SHUTDOWN_TIMEOUT_SECONDS + MARGIN_SECONDS
    assert grace >= needed, (grace, needed)
