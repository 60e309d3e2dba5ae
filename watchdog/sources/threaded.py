"""The async face act.py uses (`act.BackendLockTarget`) of the lock sources whose client
library is synchronous (boto3 for DynamoDB and S3, google-cloud-storage for GCS).

Each call runs the source's blocking method in a worker thread, so the event loop (the ops
server, the other sources' reads) never waits on a store.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from watchdog.model import BackendLock


class ThreadedLockSource(ABC):
    async def read_lock(self, store: str, path: str) -> BackendLock | None:
        """A fresh read of the lock of state path `path` in `store` (act.py re-verifies with
        it).

        None when the lock is gone; raises SourceError (ForbiddenError when access is denied)
        when it cannot be read.
        """
        return await asyncio.to_thread(self._fresh_lock, store, path)

    async def delete_lock(self, lock: BackendLock) -> None:
        """Delete the lock only if it is still the one that was read (each source's
        `_delete_lock` says what it compares).

        Raises ChangedError if the lock changed or is gone, ForbiddenError when access is
        denied, SourceError on any other failure.
        """
        await asyncio.to_thread(self._delete_lock, lock)

    @abstractmethod
    def _fresh_lock(self, store: str, path: str) -> BackendLock | None: ...

    @abstractmethod
    def _delete_lock(self, lock: BackendLock) -> None: ...
