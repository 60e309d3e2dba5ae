"""The real daemon and the real simulator: lock ages across an observation gap, the hourly
budget under SIGKILL, and a state file path the watchdog must not overwrite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Harness, StartSimulator, audit, posts, scenario
from tests.support.clock import shift_watchdog_clock
from tests.support.daemon import DaemonProcess, base_config, run_cli, write_config
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

HOUR = 3600


@pytest.mark.parametrize(
    ("gap", "interval"),
    [("watchdog-down-3h", None), ("server-clock-3h", None), ("within-2-intervals", "2h")],
)
def test_a_lock_taken_again_after_a_gap_is_not_aged_across_it(
    start_simulator: StartSimulator, harness: Harness, gap: str, interval: str | None
) -> None:
    config: dict[str, Any] = {
        "dry_run": False,
        "state_file": harness.state_file,
        "defaults": {"lock_stale_after": "1h", "actions": ["force_unlock"]},
    }
    if interval is not None:
        config["interval"] = interval
    with start_simulator(scenario=scenario([{"name": "network", "lock": {"by": "bob"}}])) as sim:
        first = harness.once(sim, **config)  # bob's lock, first sighting
        assert first.process.returncode == 0, "\n".join(first.lines[-20:])
        # Bob releases it; three hours later he locks it again, and locks it this very second.
        sim.unlock("network")
        sim.advance(3 * HOUR)
        sim.lock("network", "bob")
        if gap == "watchdog-down-3h":
            # The three hours on the watchdog's own clock too, as after a real night.
            shift_watchdog_clock(Path(harness.state_file), -timedelta(hours=3))
        second = harness.once(sim, **config)
        assert second.process.returncode == 0, "\n".join(second.lines[-20:])
        sent = posts(sim)
    if interval is None:
        # Either clock showing a gap is enough: between two processes nobody watched.
        assert sent == [], "a lock taken seconds ago was force-unlocked as 3 hours old"
        assert audit(second) == []
        assert second.events("lock not watched continuously; its observed age restarts")
    else:
        # Control: with `interval: 2h` (a cron every two hours) three hours between two runs is
        # within the allowed gap, so the same two sightings do act: the test can tell.
        assert [p["path"].rsplit("/", 1)[1] for p in sent] == ["force-unlock"]


def _stuck(name: str) -> dict[str, Any]:
    """A run `applying` for 7h (past the default 6h) that ignores a cancel: one cancel each."""
    return {
        "name": name,
        "runs": [
            {"status": "applied", "age": "3d", "by": "alice"},
            {"status": "applying", "age": "7h", "by": "alice", "hangs_on_cancel": True},
        ],
    }


_REREAD = re.compile(r"^/api/v2/workspaces/[^/]+$")


def _rereads(sim: SimulatorServer) -> int:
    """Re-reads answered so far: act.py's last request before each POST."""
    return sum(1 for r in sim.requests() if r["method"] == "GET" and _REREAD.match(r["path"]))


def _kill_while_posting(config: Path, sim: SimulatorServer) -> int:
    """Start the daemon; SIGKILL it while a POST is in flight (a re-read was answered and the
    POST that follows it is held by the server), or after three cycles when it sends none."""
    before = _rereads(sim)
    daemon = DaemonProcess(config, ADMIN_TOKEN)
    try:
        daemon.wait_for(
            lambda: _rereads(sim) > before or daemon.cycles_completed() >= 3,
            20,
            "a re-read before a POST, or three cycles",
        )
        time.sleep(0.3)  # the POST is on its way and held for a second
        daemon.process.send_signal(signal.SIGKILL)
        daemon.wait_exit(10)
    finally:
        daemon.stop()
    return 1


def test_sigkill_while_posts_are_in_flight_never_exceeds_the_hourly_budget(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.json"
    workspaces = [_stuck(f"app-{n}") for n in range(5)]
    with start_simulator(scenario=scenario(workspaces)) as sim:
        # Every POST is held by the server for 1 s before it is answered (and performed).
        sim.inject_fault("latency", r"/actions/", method="POST", latency_ms=1000)
        settings = {
            "dry_run": False,
            "interval": 0.2,
            "state_file": str(state_file),
            "limits": {"max_actions_per_cycle": 5, "max_actions_per_hour": 2},
            "defaults": {"actions": ["cancel"]},
        }
        config = write_config(tmp_path / "config.yaml", base_config(sim.url, **settings))
        kills = sum(_kill_while_posting(config, sim) for _ in range(3))
        last = DaemonProcess(config, ADMIN_TOKEN)
        try:
            last.wait_cycles(3)
        finally:
            last.stop()
        time.sleep(1.2)  # requests held by the latency fault reach the log when answered
        sent = posts(sim)
    assert kills == 3
    assert len(sent) == 2, f"{len(sent)} POSTs against max_actions_per_hour: 2"
    assert {a["outcome"] for a in audit(last)} == {"skipped_budget"}
    # Both were killed in flight: recorded before they were sent, their outcome unknown.
    recorded = json.loads(state_file.read_text())["actions"]
    assert [a.get("outcome") for a in recorded if isinstance(a, dict)] == ["unknown", "unknown"]


@pytest.mark.parametrize("what", ["the-config-file", "a-copy-of-a-hostname-file", "a-fifo"])
@pytest.mark.parametrize("command", ["run", "scan"])
def test_a_state_file_path_this_program_did_not_write_is_refused_at_start_up(
    tmp_path: Path, what: str, command: str
) -> None:
    # A FIFO stands for every special file: never /dev/null itself, which a regression would
    # replace with a regular file for the whole machine when the tests run as root.
    config_path = tmp_path / "config.yaml"
    target = {
        "the-config-file": config_path,
        "a-copy-of-a-hostname-file": tmp_path / "hostname",
        "a-fifo": tmp_path / "fifo",
    }[what]
    if what == "a-copy-of-a-hostname-file":
        target.write_text("build-host-7\n")
    if what == "a-fifo":
        os.mkfifo(target)
    config = base_config("http://127.0.0.1:9", dry_run=True, state_file=str(target))
    write_config(config_path, config)
    before = b"" if what == "a-fifo" else target.read_bytes()
    args = ["run", "--once"] if command == "run" else ["scan"]

    result = run_cli(*args, "--config", str(config_path), token="t0ken", timeout=30)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(target) in lines[0]
    assert "refusing" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    if what == "a-fifo":
        assert stat.S_ISFIFO(target.lstat().st_mode)
    else:
        assert target.read_bytes() == before
