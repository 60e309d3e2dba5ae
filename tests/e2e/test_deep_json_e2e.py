"""`scan` (the real CLI) against the simulator, a real moto_server and a real fake-gcs-server
when lock bodies are JSON nested 5,000 deep: each is an unreadable lock, reported; everything
else is read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import free_port, run_cli, write_config
from tests.support.gcs import FakeGcsServer
from tests.support.moto import BUCKET, TABLE, MotoServer
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

BOMB = "[" * 5000 + "]" * 5000


def test_deep_json_lock_bodies_are_unreadable_locks_and_tfc_is_still_read(
    tmp_path: Path,
    moto_aws: MotoServer,
    dynamodb: Any,
    s3: Any,
    fake_gcs: FakeGcsServer,
    simulator: SimulatorServer,
) -> None:
    dynamodb.put_item(
        TableName=TABLE,
        Item={"LockID": {"S": f"{BUCKET}/prod/table.tfstate"}, "Info": {"S": BOMB}},
    )
    s3.put_object(Bucket=BUCKET, Key="prod/file.tfstate.tflock", Body=BOMB.encode())
    fake_gcs.upload("prod/gcs.tflock", BOMB.encode())
    config: dict[str, Any] = {
        "dry_run": True,
        "listen": f"127.0.0.1:{free_port()}",
        "tfc": {
            "address": simulator.url,
            "organizations": ["demo"],
            "timeout": "5s",
            "full_scan_interval": 0,
        },
        "s3_backend": {
            "region": moto_aws.region,
            "endpoint_url": moto_aws.endpoint_url,
            "dynamodb_tables": [TABLE],
            "lockfile_buckets": [{"bucket": BUCKET, "prefix": "prod/"}],
        },
        "gcs_backend": {
            "endpoint_url": fake_gcs.url,
            "buckets": [{"bucket": BUCKET, "prefix": "prod/"}],
        },
    }
    config_path = write_config(tmp_path / "watchdog.yaml", config)

    result = run_cli("scan", "--config", str(config_path), "--output", "json", token=ADMIN_TOKEN)

    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 3), result.stderr
    report = json.loads(result.stdout)
    assert {(s["source"], s["organization"], s["complete"]) for s in report["sources"]} == {
        ("tfc", "demo", True),
        ("dynamodb", TABLE, True),
        ("s3", BUCKET, True),
        ("gcs", BUCKET, True),
    }
    reasons = {lock["workspace"]: lock["reason"] for lock in report["locks"]}
    paths = ("table.tfstate", "file.tfstate", "gcs.tfstate")
    for path in (f"{BUCKET}/prod/{name}" for name in paths):
        assert reasons[path] == "unreadable lock info: lock info is not JSON: nested too deeply"
    # The demo's lock left behind by a killed Terraform CLI, read from the simulator.
    assert "legacy-network" in reasons
