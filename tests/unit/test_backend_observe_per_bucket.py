"""A bucket watched under several prefixes is one store to the cycle: when one prefix's
listing fails, the locks of that prefix are not declared gone by the other prefix's complete
read (memory would count them cleared and restart their observed age; their stale-lock series
would be dropped and the alert resolve during the outage)."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from tests.support.builders import NOW
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import BackendLock, Observation, Source, TerraformLockInfo
from watchdog.sources.gcslockfile import GcsLockfileSource
from watchdog.sources.s3lockfile import S3LockfileSource

BUCKET = "tf-state"


def _body() -> bytes:
    return json.dumps(
        {
            "ID": "6f1c2f0e-0000-4000-8000-000000000001",
            "Operation": "OperationTypeApply",
            "Who": "runner@ci-42",
            "Version": "1.15.5",
            "Created": "2024-06-01T09:00:00Z",  # NOW - 3h, as Terraform writes it
            "Path": "",
            "Info": "",
        }
    ).encode()


def _s3_cycle(stub: Stubber, *, second_prefix_fails: bool) -> None:
    """Stubbed answers for one read of prefixes `a/` and `b/`, one lock file in each."""
    for prefix in ("a/", "b/"):
        if prefix == "b/" and second_prefix_fails:
            stub.add_client_error(
                "list_objects_v2", service_error_code="AccessDenied", http_status_code=403
            )
            continue
        stub.add_response("list_objects_v2", {"Contents": [{"Key": f"{prefix}app.tfstate.tflock"}]})
        body = _body()
        stub.add_response(
            "get_object",
            {
                "Body": StreamingBody(io.BytesIO(body), len(body)),
                "ETag": f'"{prefix}"',
                "LastModified": NOW - timedelta(hours=3),
            },
        )


async def test_s3_a_failed_prefix_does_not_clear_its_locks_through_another_prefix() -> None:
    client = boto3.session.Session().client(
        "s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    source = S3LockfileSource(
        [(BUCKET, "a/"), (BUCKET, "b/")], "us-east-1", None, Metrics(), client=client
    )
    memory = Memory()
    with stub:
        _s3_cycle(stub, second_prefix_fails=False)
        first = await source.observe()
        _s3_cycle(stub, second_prefix_fails=True)
        second = await source.observe()

    assert memory.update(first, NOW) == []
    assert memory.update(second, NOW + timedelta(minutes=1)) == []
    assert [(o.organization, o.complete) for o in second] == [(BUCKET, False)]
    assert len(memory) == 2


def _gcs_lock(prefix: str) -> BackendLock:
    created = NOW - timedelta(hours=3)
    info = TerraformLockInfo(
        id="17", operation="OperationTypeApply", who="", version="", created=created, path=""
    )
    return BackendLock(
        source=Source.GCS,
        store=BUCKET,
        path=f"{BUCKET}/{prefix}app.tfstate",
        info=info,
        token="17",
        last_modified=created,
    )


async def test_gcs_a_failed_prefix_does_not_clear_its_locks_through_another_prefix(
    monkeypatch: pytest.MonkeyPatch, gcs_env: None
) -> None:
    source = GcsLockfileSource(
        [(BUCKET, "a/"), (BUCKET, "b/")], Metrics(), endpoint_url="http://127.0.0.1:9"
    )
    failing: set[str] = set()

    def read(bucket: str, prefix: str) -> Observation:
        if prefix in failing:
            return Observation(
                source=Source.GCS,
                organization=bucket,
                server_now=NOW,
                complete=False,
                error="listing failed",
                error_reason="server_error",
            )
        return Observation(
            source=Source.GCS,
            organization=bucket,
            server_now=NOW,
            backend_locks=(_gcs_lock(prefix),),
        )

    monkeypatch.setattr(source, "_observe_bucket", read)
    memory = Memory()
    try:
        first = await source.observe()
        failing.add("b/")
        second = await source.observe()
    finally:
        source.close()

    assert memory.update(first, NOW) == []
    assert memory.update(second, NOW + timedelta(minutes=1)) == []
    assert [(o.organization, o.complete) for o in second] == [(BUCKET, False)]
    assert len(memory) == 2


def test_overlapping_prefixes_list_a_lock_once() -> None:
    from watchdog.sources.perstore import one_per_store

    lock: Any = _gcs_lock("a/")
    reads = [
        Observation(source=Source.GCS, organization=BUCKET, server_now=NOW, backend_locks=(lock,))
        for _ in range(2)
    ]
    (merged,) = one_per_store(reads)
    assert merged.backend_locks == (lock,)
    assert merged.complete
