"""`tfc-watchdog unlock --source dynamodb|s3` against a real moto server: the gates, the
compare-and-delete, the exit codes and the audit line (the command's own `main`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import write_config
from tests.support.incli import clean_logging, run_main
from tests.support.moto import BUCKET, STATE_KEY, STATE_PATH, TABLE, MotoServer, table_items

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_logging")]
__all__ = ["clean_logging"]  # a fixture, used by name

LOCK_KEY = f"{STATE_KEY}.tflock"


def lock_json(lock_id: str, who: str = "runner@ci-42", info: str = "") -> str:
    created = datetime.now(UTC) - timedelta(hours=3)
    return json.dumps(
        {
            "ID": lock_id,
            "Operation": "OperationTypeApply",
            "Info": info,
            "Who": who,
            "Version": "1.15.5",
            "Created": created.isoformat().replace("+00:00", "Z"),
            "Path": STATE_PATH,
        }
    )


@pytest.fixture
def config(tmp_path: Path, moto_aws: MotoServer) -> Path:
    backend = {
        "region": moto_aws.region,
        "endpoint_url": moto_aws.endpoint_url,
        "dynamodb_tables": [TABLE],
        "lockfile_buckets": [{"bucket": BUCKET, "prefix": "prod/"}],
    }
    return write_config(
        tmp_path / "watchdog.yaml",
        {"s3_backend": backend, "log": {"format": "json", "level": "info"}},
    )


def unlock(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    *args: str,
) -> tuple[int, str, str]:
    monkeypatch.delenv("TFC_WATCHDOG_TOKEN", raising=False)
    return run_main(capsys, monkeypatch, "unlock", "--config", str(config), *args, token="")


def audit_lines(err: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "action"]


def test_a_table_lock_of_the_expected_holder_is_deleted_and_audited(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    dynamodb: Any,
) -> None:
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": lock_json("lock-1")}}
    )
    code, out, err = unlock(
        capsys,
        monkeypatch,
        config,
        "--source",
        "dynamodb",
        f"{TABLE}/{STATE_PATH}",
        "--expect-holder",
        "terraform:runner@ci-42",
        "--yes",
    )
    assert code == 0, err
    assert f"{TABLE}/{STATE_PATH}: locked by runner@ci-42" in out
    assert "Lock Info: ID lock-1, Operation OperationTypeApply" in out
    assert STATE_PATH not in table_items(dynamodb)
    [line] = audit_lines(err)
    assert (line["action"], line["outcome"], line["initiated_by"]) == (
        "delete_lock",
        "done",
        "unlock command",
    )
    assert line["lock_id"] == "lock-1" and line["lock_who"] == "runner@ci-42"


@pytest.mark.parametrize(
    ("info", "flags", "why"),
    [
        ("", ["--expect-holder", "terraform:someone-else"], "not terraform:someone-else"),
        ("maintenance window", [], "is protected: lock reason"),
    ],
    ids=["other-holder", "protected"],
)
def test_a_gate_keeps_the_lock_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    s3: Any,
    info: str,
    flags: list[str],
    why: str,
) -> None:
    s3.put_object(Bucket=BUCKET, Key=LOCK_KEY, Body=lock_json("lock-2", info=info).encode())
    code, _, err = unlock(
        capsys, monkeypatch, config, "--source", "s3", f"{BUCKET}/{STATE_PATH}", *flags, "--yes"
    )
    assert code == 4, err
    assert why in err
    assert s3.get_object(Bucket=BUCKET, Key=LOCK_KEY)["Body"].read()


def test_a_lock_taken_over_after_the_confirmation_survives(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    s3: Any,
) -> None:
    s3.put_object(Bucket=BUCKET, Key=LOCK_KEY, Body=lock_json("lock-3").encode())

    def take_over(question: str) -> bool:
        s3.put_object(Bucket=BUCKET, Key=LOCK_KEY, Body=lock_json("lock-4", "ci@next").encode())
        return True

    monkeypatch.setattr("watchdog.unlock.ask_on_terminal", take_over)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    code, _, err = unlock(capsys, monkeypatch, config, "--source", "s3", f"{BUCKET}/{STATE_PATH}")
    assert code == 4, err
    assert "the lock changed since it was read: now lock lock-4" in err
    body = json.loads(s3.get_object(Bucket=BUCKET, Key=LOCK_KEY)["Body"].read())
    assert body["ID"] == "lock-4"


def test_no_lock_and_no_such_store(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    dynamodb: Any,
) -> None:
    code, _, err = unlock(
        capsys, monkeypatch, config, "--source", "dynamodb", f"{TABLE}/{STATE_PATH}", "--yes"
    )
    assert code == 4 and "is not locked" in err, err
    code, _, err = unlock(
        capsys, monkeypatch, config, "--source", "gcs", f"bucket/{STATE_PATH}", "--yes"
    )
    assert code == 2 and "the config lists no gcs lock store" in err, err


def test_a_store_error_is_one_line_without_the_tfc_advice(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    dynamodb: Any,
) -> None:
    # The hints that say which `tfc.*` setting or token to check are for the TFC API: a
    # store's error (here DynamoDB's answer for a table that does not exist) is said as is.
    code, _, err = unlock(
        capsys, monkeypatch, config, "--source", "dynamodb", f"no-such-table/{STATE_PATH}", "--yes"
    )
    assert code == 1, err
    (line,) = [line for line in err.splitlines() if line.startswith("tfc-watchdog unlock:")]
    assert "no-such-table" in line, line
    assert "workspace" not in line and "tfc." not in line and "TFC_WATCHDOG_TOKEN" not in line, line
