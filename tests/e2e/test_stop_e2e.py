"""SIGTERM while a POST is in flight: the real daemon against the real simulator.

The simulator holds the first action POST (a latency fault, fired when the request arrives);
SIGTERM lands while it is held. The request must complete and be recorded (audit line, metric,
state file), no further POST may start, and the process exits 0 within its stop grace.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess, base_config, write_config
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

ACTION_PATH = r"^/api/v2/(runs/[^/]+/actions/|workspaces/[^/]+/actions/)"
HOLD_MS = 1500


def _config(simulator: SimulatorServer, tmp_path: Path) -> Path:
    config: dict[str, Any] = base_config(
        simulator.url,
        dry_run=False,
        # One cycle: the held POST is in the first one, and no second cycle may start.
        interval=60,
        state_file=str(tmp_path / "state.json"),
        limits={"max_actions_per_cycle": 5, "max_actions_per_hour": 100},
        defaults={"actions": ["cancel", "force_cancel", "discard", "force_unlock"]},
    )
    config["log"] = {"format": "json", "level": "info"}
    return write_config(tmp_path / "config.yaml", config)


def _posts(simulator: SimulatorServer) -> list[dict[str, Any]]:
    return [r for r in simulator.requests() if r["method"] == "POST"]


def test_sigterm_while_a_post_is_held_completes_records_it_and_starts_no_other(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    # Without the hold this cycle sends several POSTs (the per-cycle limit allows 5): stopping
    # after the first is the daemon's doing, not the world's.
    fault = simulator.inject_fault(
        "latency", ACTION_PATH, method="POST", latency_ms=HOLD_MS, count=1
    )
    daemon = DaemonProcess(_config(simulator, tmp_path), ADMIN_TOKEN)
    try:
        # A fault of count 1 leaves the list when it fires, i.e. when the POST arrives.
        daemon.wait_for(
            lambda: all(f["id"] != fault["id"] for f in simulator.faults()),
            30,
            "the first action POST to reach the simulator",
        )
        signalled = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.wait_exit(30)
        stopped_after = time.monotonic() - signalled
    finally:
        daemon.stop()

    assert code == 0, "\n".join(daemon.lines[-30:])
    posts = _posts(simulator)
    assert len(posts) == 1, f"expected exactly the held POST, got {posts}"
    # The simulator logs a request once its answer is sent: the held POST completed.
    assert posts[0]["status"] is not None and posts[0]["status"] < 300, posts[0]

    audits = [e for e in daemon.events("action") if "outcome" in e]
    assert len(audits) == 1, audits
    assert audits[0]["outcome"] == "done", audits[0]
    assert audits[0]["action"] in posts[0]["path"], (audits[0], posts[0])

    state = json.loads((tmp_path / "state.json").read_text())
    assert len(state["actions"]) == 1, state["actions"]
    assert daemon.events("stopping")
    assert not daemon.events("stop_timeout")
    # The held request, the rest of the cycle and the ops server's close, well inside the grace.
    assert stopped_after < 10, stopped_after
    print(f"stop: exit {stopped_after:.2f} s after SIGTERM (POST held {HOLD_MS} ms)")
