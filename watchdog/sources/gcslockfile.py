"""Terraform's gcs backend as a source of locks: its `.tflock` objects in Cloud Storage.

Terraform locks workspace `<name>` by creating `<prefix>/<name>.tflock` with a does-not-exist
precondition; its body is the lock info JSON and the lock ID is the object's **generation**
(the ID in the JSON is ignored); its unlock deletes the object with a generation-match
precondition (the backend's client:
https://github.com/hashicorp/terraform/blob/main/internal/backend/remote-state/gcs/client.go).
The state path of a lock is `<bucket>/<prefix>/<name>.tfstate`, the state object beside it.

google-cloud-storage is synchronous, so every call runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from google.api_core import exceptions as api_exceptions
from google.cloud.storage import Blob

from watchdog.metrics import Metrics
from watchdog.model import BackendLock, Observation, Source
from watchdog.sources.errors import ChangedError, SourceError
from watchdog.sources.gcp import GCS_ERRORS, GcsClient, classify, request_error
from watchdog.sources.perstore import MAX_LOCKFILE_BODY, lockfile_lock, observe_buckets, read_store
from watchdog.sources.threaded import ThreadedLockSource

log = structlog.get_logger(__name__)

LOCKFILE_SUFFIX = ".tflock"
STATE_SUFFIX = ".tfstate"


@dataclass(frozen=True, slots=True)
class _Read:
    """One generation of a lock file as read: its metadata and its body."""

    generation: int
    time_created: datetime | None
    body: bytes | None  # None when larger than MAX_LOCKFILE_BODY (not downloaded)


def lock_name(bucket: str, path: str) -> str:
    """The `.tflock` object of state path `<bucket>/<prefix>/<name>.tfstate`."""
    return path.removeprefix(f"{bucket}/").removesuffix(STATE_SUFFIX) + LOCKFILE_SUFFIX


def state_path(bucket: str, name: str) -> str:
    return f"{bucket}/{name.removesuffix(LOCKFILE_SUFFIX)}{STATE_SUFFIX}"


class GcsLockfileSource(ThreadedLockSource):
    source = Source.GCS

    def __init__(
        self,
        buckets: Sequence[tuple[str, str]],
        metrics: Metrics,
        *,
        endpoint_url: str | None = None,
        project: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.buckets = tuple(buckets)
        self._metrics = metrics
        self._gcs = GcsClient(
            endpoint_url=endpoint_url, project=project, metrics=metrics, timeout=timeout
        )

    def now(self) -> datetime:
        return self._gcs.server_now()

    def close(self) -> None:
        self._gcs.close()

    async def observe(self) -> list[Observation]:
        """One Observation per bucket, its prefixes' reads merged (sources.perstore); never
        raises for store errors."""
        return await observe_buckets(self.buckets, self._observe_bucket)

    # --- internals (run in a worker thread) ----------------------------------------------------

    def _observe_bucket(self, bucket: str, prefix: str) -> Observation:
        return read_store(
            self._locks(bucket, prefix),
            source=Source.GCS,
            store=bucket,
            label="GCS bucket",
            server_now=self._gcs.server_now,
            metrics=self._metrics,
            errors=GCS_ERRORS,
            classify=classify,
            failed="lock file listing failed",
            bucket=bucket,
            prefix=prefix,
        )

    def _locks(self, bucket: str, prefix: str) -> Iterator[BackendLock | None]:
        for blob in self._lockfiles(bucket, prefix):
            read = self._read(blob)
            yield None if read is None else self._lock(bucket, blob.name or "", read)

    def _lockfiles(self, bucket: str, prefix: str) -> Iterator[Blob]:
        blobs = self._gcs.client.list_blobs(
            bucket, prefix=prefix or None, timeout=self._gcs.timeout, retry=self._gcs.retry
        )
        for blob in blobs:
            if (blob.name or "").endswith(LOCKFILE_SUFFIX):
                yield blob

    def _read(self, blob: Blob) -> _Read | None:
        """The body of exactly the generation `blob` describes; None if it is gone (released,
        or released and taken again: the new lock is read in the next cycle)."""
        generation = blob.generation
        if generation is None:
            return None
        if (blob.size or 0) > MAX_LOCKFILE_BODY:
            return _Read(generation, blob.time_created, None)
        try:
            body = blob.download_as_bytes(
                if_generation_match=generation,
                timeout=self._gcs.timeout,
                retry=self._gcs.retry,
            )
        except (api_exceptions.NotFound, api_exceptions.PreconditionFailed):
            return None
        return _Read(generation, blob.time_created, body)

    def _lock(self, bucket: str, name: str, read: _Read) -> BackendLock:
        # GCS's own time of this generation: without it the store's "now" makes the lock
        # young, never old.
        created_by_store = read.time_created or self._gcs.server_now()
        return lockfile_lock(
            read.body,
            source=Source.GCS,
            store=bucket,
            path=state_path(bucket, name),
            token=str(read.generation),
            stored_at=created_by_store,
            now=self._gcs.server_now(),
            metrics=self._metrics,
            lock_id=str(read.generation),
            bucket=bucket,
            name=name,
        )

    def _current(self, bucket: str, name: str) -> _Read | None:
        blob = self._gcs.client.bucket(bucket).get_blob(
            name, timeout=self._gcs.timeout, retry=self._gcs.retry
        )
        return None if blob is None else self._read(blob)

    def _fresh_lock(self, bucket: str, path: str) -> BackendLock | None:
        name = lock_name(bucket, path)
        try:
            read = self._current(bucket, name)
        except GCS_ERRORS as exc:
            raise request_error(f"objects.get on {bucket}", exc) from exc
        return None if read is None else self._lock(bucket, name, read)

    def _delete_lock(self, lock: BackendLock) -> None:
        """Delete the `.tflock` object only if it is still the generation that was read."""
        if (
            lock.source is not Source.GCS
            or lock.problem is not None
            or not lock.token.isdigit()
            or lock.info.id != lock.token
        ):
            raise SourceError(f"refusing to delete {lock.path}: not a readable GCS lock file")
        name = lock_name(lock.store, lock.path)
        # The generation-match precondition below is what protects a lock taken since the
        # read on Cloud Storage itself. It is re-read first anyway, because stores that speak
        # the API but ignore the precondition exist (fake-gcs-server ignores ifGenerationMatch
        # on DELETE): that narrows the window there to milliseconds, and costs one read (two
        # GETs: the object's metadata, then its body) per delete, which is rare.
        try:
            current = self._current(lock.store, name)
        except GCS_ERRORS as exc:
            error = request_error(f"objects.get on {lock.store}", exc)
            # Only this read was sent, never the DELETE: a timeout or 5xx here is not a delete
            # that may have happened (act would report `unknown` and count the lock as ours).
            error.may_have_acted = False
            raise error from exc
        if current is None:
            raise ChangedError(f"lock {lock.path} was released since it was read")
        if str(current.generation) != lock.token:
            raise ChangedError(f"lock {lock.path} changed since it was read")
        if self._lock(lock.store, name, current).info != lock.info:
            raise ChangedError(f"lock {lock.path} changed since it was read")
        blob = self._gcs.client.bucket(lock.store).blob(name)
        try:
            # No retry: a retried DELETE whose first attempt succeeded would answer 404 and
            # read as "released by someone else"; a transport failure is reported as a
            # delete that may have happened instead.
            blob.delete(if_generation_match=int(lock.token), timeout=self._gcs.timeout, retry=None)
        except (api_exceptions.PreconditionFailed, api_exceptions.NotFound) as exc:
            raise ChangedError(
                f"lock {lock.path} changed or was released since it was read"
            ) from exc
        except GCS_ERRORS as exc:
            raise request_error(f"objects.delete on {lock.store}", exc) from exc
