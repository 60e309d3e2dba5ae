import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from watchdog.metrics import Metrics
from watchdog.sources.dynamodb import DynamoDbLockSource
from watchdog.sources.lockinfo import LockInfoError, parse_go_time, parse_lock_info
from watchdog.sources.s3lockfile import S3LockfileSource

TERRAFORM_LOCK = {
    "ID": "c0b9ed5c-01c0-c898-51a6-d0a1cdd183d5",
    "Operation": "OperationTypeApply",
    "Info": "",
    "Who": "runner@ci-42",
    "Version": "1.15.5",
    "Created": "2026-11-29T04:14:57.641020969Z",
    "Path": "tf-state/prod/app.tfstate",
}


def test_terraform_lock_info_is_parsed_with_every_field():
    info = parse_lock_info(json.dumps(TERRAFORM_LOCK))

    assert info.id == "c0b9ed5c-01c0-c898-51a6-d0a1cdd183d5"
    assert info.operation == "OperationTypeApply"
    assert info.who == "runner@ci-42"
    assert info.version == "1.15.5"
    assert info.path == "tf-state/prod/app.tfstate"
    assert info.info == ""
    assert info.created == datetime(2026, 11, 29, 4, 14, 57, 641020, tzinfo=UTC)


def test_bytes_are_accepted_like_an_s3_object_body():
    assert parse_lock_info(json.dumps(TERRAFORM_LOCK).encode()).who == "runner@ci-42"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29T04:14:57Z", datetime(2026, 11, 29, 4, 14, 57, tzinfo=UTC)),
        ("2026-11-29T04:14:57.5Z", datetime(2026, 11, 29, 4, 14, 57, 500000, tzinfo=UTC)),
        ("2026-11-29T04:14:57.123456789Z", datetime(2026, 11, 29, 4, 14, 57, 123456, tzinfo=UTC)),
        ("2026-11-29T06:14:57.1+02:00", datetime(2026, 11, 29, 4, 14, 57, 100000, tzinfo=UTC)),
    ],
)
def test_go_times_become_utc_with_microseconds(text, expected):
    parsed = parse_go_time(text)

    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '"a string"',
        json.dumps({**TERRAFORM_LOCK, "ID": ""}),
        json.dumps({k: v for k, v in TERRAFORM_LOCK.items() if k != "ID"}),
        json.dumps({**TERRAFORM_LOCK, "Created": "yesterday"}),
        json.dumps({**TERRAFORM_LOCK, "Created": "2026-11-29T04:14:57"}),  # no zone
        json.dumps({**TERRAFORM_LOCK, "Created": 1764389697}),
        json.dumps({k: v for k, v in TERRAFORM_LOCK.items() if k != "Created"}),
        json.dumps({**TERRAFORM_LOCK, "Who": 42}),
        b"\xff\xfe",
    ],
)
def test_malformed_lock_info_is_rejected(raw):
    with pytest.raises(LockInfoError):
        parse_lock_info(raw)


def test_missing_created_falls_back_to_the_given_time():
    fallback = datetime(2026, 11, 29, 5, 0, tzinfo=timezone(timedelta(hours=1)))
    raw = json.dumps({k: v for k, v in TERRAFORM_LOCK.items() if k != "Created"})

    assert parse_lock_info(raw, fallback_created=fallback).created == datetime(
        2026, 11, 29, 4, 0, tzinfo=UTC
    )


def test_a_malformed_created_is_rejected_even_with_a_fallback():
    raw = json.dumps({**TERRAFORM_LOCK, "Created": "soon"})

    with pytest.raises(LockInfoError, match="Created"):
        parse_lock_info(raw, fallback_created=datetime(2026, 1, 1, tzinfo=UTC))


def test_null_optional_fields_read_as_empty():
    info = parse_lock_info(json.dumps({**TERRAFORM_LOCK, "Info": None, "Path": None}))

    assert (info.info, info.path) == ("", "")


# --- `Created` is the writer's clock: only plausible times are lock times ----------------------

STORE_NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("created", "message"),
    [
        ("0001-01-01T00:00:00Z", "before 2000"),  # Go's zero time.Time
        ("1999-12-31T23:59:59Z", "before 2000"),
        ("2026-11-29T12:05:01Z", "in the future"),
        ("2027-01-01T00:00:00Z", "in the future"),
    ],
)
def test_an_implausible_created_is_unreadable(created, message):
    raw = json.dumps({**TERRAFORM_LOCK, "Created": created})
    with pytest.raises(LockInfoError, match=message):
        parse_lock_info(raw, now=STORE_NOW)


def test_a_created_within_the_clock_skew_allowance_is_read():
    raw = json.dumps({**TERRAFORM_LOCK, "Created": "2026-11-29T12:04:59Z"})
    assert parse_lock_info(raw, now=STORE_NOW).created == STORE_NOW + timedelta(
        minutes=4, seconds=59
    )


def test_a_zero_time_from_the_fallback_is_unreadable_too():
    raw = json.dumps({k: v for k, v in TERRAFORM_LOCK.items() if k != "Created"})
    with pytest.raises(LockInfoError, match="before 2000"):
        parse_lock_info(raw, fallback_created=datetime(1, 1, 1, tzinfo=UTC))


# --- the sources: each lock carries what its store's own clock says ----------------------------


def _stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.session.Session().client(
        service,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, Stubber(client)


def _info(created: str) -> str:
    return json.dumps({**TERRAFORM_LOCK, "Created": created})


async def test_dynamodb_items_with_implausible_created_are_unreadable_and_counted():
    client, stub = _stubbed("dynamodb")
    now = datetime.now(UTC)
    items = [
        {"LockID": {"S": "tf-state/zero.tfstate"}, "Info": {"S": _info("0001-01-01T00:00:00Z")}},
        {
            "LockID": {"S": "tf-state/ahead.tfstate"},
            "Info": {"S": _info(iso(now + timedelta(hours=3)))},
        },
        {
            "LockID": {"S": "tf-state/ok.tfstate"},
            "Info": {"S": _info(iso(now - timedelta(hours=3)))},
        },
    ]
    stub.add_response("scan", {"Items": items})
    metrics = Metrics()
    source = DynamoDbLockSource(["locks"], "us-east-1", None, metrics, client=client)
    with stub:
        [observation] = await source.observe()
    problems = {lock.path: lock.problem for lock in observation.backend_locks}
    assert "before 2000" in (problems["tf-state/zero.tfstate"] or "")
    assert "in the future" in (problems["tf-state/ahead.tfstate"] or "")
    assert problems["tf-state/ok.tfstate"] is None
    assert metrics.registry.get_sample_value("tfc_watchdog_parse_errors_total") == 2
    # DynamoDB has no server time for a lock: decide must watch it itself.
    assert all(lock.last_modified is None for lock in observation.backend_locks)


async def test_a_lock_file_carries_s3s_last_modified():
    client, stub = _stubbed("s3")
    stored = datetime(2026, 11, 29, 11, 59, tzinfo=UTC)
    stub.add_response("list_objects_v2", {"Contents": [{"Key": "prod/app.tfstate.tflock"}]})
    body = _info("2026-11-29T09:00:00Z").encode()
    stub.add_response(
        "get_object",
        {
            "Body": StreamingBody(io.BytesIO(body), len(body)),
            "ETag": '"e1"',
            "LastModified": stored,
        },
    )
    source = S3LockfileSource([("tf-state", "")], "us-east-1", None, Metrics(), client=client)
    with stub:
        [observation] = await source.observe()
    [lock] = observation.backend_locks
    assert lock.problem is None
    assert lock.info.created == datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    assert lock.last_modified == stored


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _bomb(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "raw",
    [
        _bomb(5000),
        '{"ID": "x", "Info": ' + _bomb(5000) + "}",
        ('{"ID": "x", "Who": ' + _bomb(5000) + "}").encode(),
        '{"a": ' * 5000 + "1" + "}" * 5000,
    ],
    ids=["list", "in-a-field", "bytes", "objects"],
)
def test_lock_info_nested_too_deeply_is_an_unreadable_lock_not_a_recursion_error(raw):
    # Anyone who can write the lock table or the bucket can write this body.
    with pytest.raises(LockInfoError, match="nested too deeply"):
        parse_lock_info(raw, fallback_created=datetime(2026, 1, 1, tzinfo=UTC))
