"""The S3 backend's DynamoDB lock table as a source of locks.

Terraform writes one item per held lock: `LockID = "<bucket>/<key>"` and `Info` = the lock
info JSON. The same table holds digest items (`LockID = "<bucket>/<key>-md5"`, `Digest`)
that guard the state's integrity: they are skipped here and never touched.

boto3 is synchronous, so every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from watchdog.model import BackendLock, Observation, Source
from watchdog.sources.aws import AwsLockSource, classify, error_code, request_error
from watchdog.sources.errors import ChangedError, SourceError
from watchdog.sources.lockinfo import LockInfoError, parse_lock_info
from watchdog.sources.perstore import read_store, unreadable_lock

log = structlog.get_logger(__name__)

DIGEST_SUFFIX = "-md5"

# Reads fetch only the two attributes a lock item has (digest items have `Digest` instead).
_LOCK_ATTRIBUTES: dict[str, Any] = {
    "ProjectionExpression": "#id, #info",
    "ExpressionAttributeNames": {"#id": "LockID", "#info": "Info"},
}


class DynamoDbLockSource(AwsLockSource[str]):
    """Watches the lock items of each table in `stores`."""

    source = Source.DYNAMODB
    service = "dynamodb"

    async def observe(self) -> list[Observation]:
        """One Observation per table; never raises for store errors."""
        return [await asyncio.to_thread(self._observe_table, table) for table in self.stores]

    # --- internals (run in a worker thread) ----------------------------------------------------

    def _observe_table(self, table: str) -> Observation:
        return read_store(
            (self._lock_from_item(table, item) for item in self._scan(table)),
            source=Source.DYNAMODB,
            store=table,
            label="DynamoDB table",
            server_now=self._aws.server_now,
            metrics=self._metrics,
            errors=(BotoCoreError, ClientError),
            classify=classify,
            failed="lock table read failed",
            table=table,
        )

    def _fresh_lock(self, table: str, path: str) -> BackendLock | None:
        # A strongly consistent read of the one item.
        if path.endswith(DIGEST_SUFFIX):
            return None
        try:
            response = self._aws.client.get_item(
                TableName=table,
                Key={"LockID": {"S": path}},
                ConsistentRead=True,
                **_LOCK_ATTRIBUTES,
            )
        except (BotoCoreError, ClientError) as exc:
            raise request_error(f"GetItem on {table}", exc) from exc
        item = response.get("Item")
        if not item:
            return None
        return self._lock_from_item(table, item)

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        paginator = self._aws.client.get_paginator("scan")
        pages = paginator.paginate(TableName=table, ConsistentRead=True, **_LOCK_ATTRIBUTES)
        for page in pages:
            yield from page.get("Items", [])

    def _lock_from_item(self, table: str, item: dict[str, Any]) -> BackendLock | None:
        lock_id = item.get("LockID", {}).get("S")
        if not isinstance(lock_id, str) or lock_id.endswith(DIGEST_SUFFIX):
            return None
        raw = item.get("Info", {}).get("S")
        if not isinstance(raw, str):
            return self._problem(table, lock_id, "", "the item has no string Info attribute")
        try:
            # The store's clock bounds `Created`: a client clock far ahead is no lock time.
            info = parse_lock_info(raw, now=self._aws.server_now())
        except LockInfoError as exc:
            return self._problem(table, lock_id, raw, str(exc))
        return BackendLock(source=Source.DYNAMODB, store=table, path=lock_id, info=info, token=raw)

    def _problem(self, table: str, lock_id: str, raw: str, problem: str) -> BackendLock:
        return unreadable_lock(
            source=Source.DYNAMODB,
            store=table,
            path=lock_id,
            token=raw,
            created=self._aws.server_now(),
            problem=problem,
            metrics=self._metrics,
            event="unreadable lock item",
            table=table,
            lock_id=lock_id,
        )

    def _delete_lock(self, lock: BackendLock) -> None:
        """Delete the item only if its `Info` is still exactly what was read."""
        if lock.source is not Source.DYNAMODB or lock.problem is not None:
            raise SourceError(f"refusing to delete {lock.path}: not a readable DynamoDB lock")
        if lock.path.endswith(DIGEST_SUFFIX):
            raise SourceError(f"refusing to delete {lock.path}: a state digest item")
        try:
            self._aws.client.delete_item(
                TableName=lock.store,
                Key={"LockID": {"S": lock.path}},
                # Terraform's own unlock has no condition; ours must not delete a lock that
                # another run took after we read it.
                ConditionExpression="#info = :info",
                ExpressionAttributeNames={"#info": "Info"},
                ExpressionAttributeValues={":info": {"S": lock.token}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ChangedError(
                    f"lock {lock.store}/{lock.path} changed or was released since it was read"
                ) from exc
            raise request_error(f"DeleteItem on {lock.store}", exc) from exc
        except BotoCoreError as exc:
            raise request_error(f"DeleteItem on {lock.store}", exc) from exc
