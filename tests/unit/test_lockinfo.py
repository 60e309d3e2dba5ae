import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from watchdog.sources.lockinfo import LockInfoError, parse_go_time, parse_lock_info

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
