"""S3 native locking (`use_lockfile = true`) as a source of locks.

Terraform takes the lock by creating `<key>.tflock` with `If-None-Match: *`; its body is the
lock info JSON. The state path of a lock is `<bucket>/<key without .tflock>`.

boto3 is synchronous, so every call runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from watchdog.model import BackendLock, Observation, Source
from watchdog.sources.aws import AwsLockSource, classify, error_code, request_error
from watchdog.sources.errors import ChangedError, SourceError, one_line
from watchdog.sources.lockinfo import LockInfoError, parse_lock_info
from watchdog.sources.perstore import MAX_LOCKFILE_BODY, lockfile_lock, observe_buckets, read_store

log = structlog.get_logger(__name__)

LOCKFILE_SUFFIX = ".tflock"

# Error codes with which S3-compatible stores refuse a conditional DeleteObject.
_UNSUPPORTED_CODES = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest"})


class S3LockfileSource(AwsLockSource[tuple[str, str]]):
    """Watches the `.tflock` objects under each (bucket, prefix) of `stores`."""

    source = Source.S3
    service = "s3"

    async def observe(self) -> list[Observation]:
        """One Observation per bucket, its prefixes' reads merged (sources.perstore); never
        raises for store errors."""
        return await observe_buckets(self.stores, self._observe_bucket)

    # --- internals (run in a worker thread) ----------------------------------------------------

    def _observe_bucket(self, bucket: str, prefix: str) -> Observation:
        return read_store(
            (self._read_lock(bucket, key) for key in self._lockfile_keys(bucket, prefix)),
            source=Source.S3,
            store=bucket,
            label="S3 bucket",
            server_now=self._aws.server_now,
            metrics=self._metrics,
            errors=(BotoCoreError, ClientError),
            classify=classify,
            failed="lock file listing failed",
            bucket=bucket,
            prefix=prefix,
        )

    def _lockfile_keys(self, bucket: str, prefix: str) -> Iterator[str]:
        paginator = self._aws.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                key = entry.get("Key", "")
                if key.endswith(LOCKFILE_SUFFIX):
                    yield key

    def _read_lock(self, bucket: str, key: str) -> BackendLock | None:
        path = f"{bucket}/{key.removesuffix(LOCKFILE_SUFFIX)}"
        try:
            response = self._aws.client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None  # released between the listing and the read
            raise
        # S3's own time of the write: without it the store's "now" makes the lock young,
        # never old.
        last_modified: datetime = response.get("LastModified") or self._aws.server_now()
        with response["Body"] as body:
            raw: bytes = body.read(MAX_LOCKFILE_BODY + 1)
        return lockfile_lock(
            raw,
            source=Source.S3,
            store=bucket,
            path=path,
            token=str(response.get("ETag", "")),
            stored_at=last_modified,
            now=self._aws.server_now(),
            metrics=self._metrics,
            bucket=bucket,
            key=key,
        )

    def _fresh_lock(self, bucket: str, path: str) -> BackendLock | None:
        # The `.tflock` object of state path `path` (`<bucket>/<key>`).
        key = path.removeprefix(f"{bucket}/") + LOCKFILE_SUFFIX
        try:
            return self._read_lock(bucket, key)
        except (BotoCoreError, ClientError) as exc:
            raise request_error(f"GetObject on {bucket}", exc) from exc

    def _key_of(self, lock: BackendLock) -> str:
        return lock.path.removeprefix(f"{lock.store}/") + LOCKFILE_SUFFIX

    def _delete_lock(self, lock: BackendLock) -> None:
        """Delete the `.tflock` object only if its ETag is still the one that was read."""
        if lock.source is not Source.S3 or lock.problem is not None or not lock.token:
            raise SourceError(f"refusing to delete {lock.path}: not a readable S3 lock file")
        key = self._key_of(lock)
        try:
            self._aws.client.delete_object(Bucket=lock.store, Key=key, IfMatch=lock.token)
            return
        except ClientError as exc:
            if error_code(exc) not in _UNSUPPORTED_CODES:
                raise self._delete_error(lock, exc) from exc
            log.info(
                "store refused a conditional delete; re-reading before deleting",
                bucket=lock.store,
                key=key,
                error=one_line(exc),
            )
        except BotoCoreError as exc:
            raise self._delete_error(lock, exc) from exc
        self._delete_after_reread(lock, key)

    def _delete_after_reread(self, lock: BackendLock, key: str) -> None:
        # Fallback for stores without conditional deletes: re-read the object and delete only
        # if it is byte-for-byte the lock that was observed. A narrow window remains between
        # this read and the DeleteObject (milliseconds): a new lock written exactly then
        # would be removed. Terraform creates lock files with If-None-Match, so that would
        # need the old lock to be released and a new one taken inside that window.
        try:
            current = self._aws.client.get_object(Bucket=lock.store, Key=key)
            with current["Body"] as body:
                raw: bytes = body.read(MAX_LOCKFILE_BODY + 1)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                raise ChangedError(f"lock {lock.path} was released since it was read") from exc
            raise self._delete_error(lock, exc) from exc
        except BotoCoreError as exc:
            raise self._delete_error(lock, exc) from exc
        if str(current.get("ETag", "")) != lock.token:
            raise ChangedError(f"lock {lock.path} changed since it was read")
        try:
            info = parse_lock_info(raw, fallback_created=lock.info.created)
        except LockInfoError as exc:
            raise ChangedError(f"lock {lock.path} changed since it was read") from exc
        if info != lock.info:
            raise ChangedError(f"lock {lock.path} changed since it was read")
        try:
            self._aws.client.delete_object(Bucket=lock.store, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise self._delete_error(lock, exc) from exc

    def _delete_error(self, lock: BackendLock, exc: BotoCoreError | ClientError) -> SourceError:
        if isinstance(exc, ClientError):
            code = error_code(exc)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            # 412: the ETag no longer matches; NoSuchKey: the lock is gone.
            if code in ("PreconditionFailed", "NoSuchKey", "404") or status == 412:
                return ChangedError(f"lock {lock.path} changed or was released since it was read")
        return request_error(f"DeleteObject on {lock.store}", exc)
