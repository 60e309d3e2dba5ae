"""What the DynamoDB and S3 lock sources share: one boto3 client per source, with request
metrics, the server's clock, and one-line error classification.

Credentials come only from the standard AWS chain (environment, shared config, IRSA web
identity); nothing here reads or logs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from watchdog.metrics import Metrics
from watchdog.model import utcnow
from watchdog.sources.errors import ForbiddenError, SourceError, one_line
from watchdog.sources.serverwait import http_date
from watchdog.sources.threaded import ThreadedLockSource

_UNAUTHORIZED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
# A store a lock source watches: a table name (DynamoDB), a (bucket, prefix) pair (S3).
StoreT = TypeVar("StoreT")

_FORBIDDEN_CODES = frozenset({"AccessDenied", "AccessDeniedException"})
_NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "404"})
_RATE_LIMITED_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)


class AwsClient:
    """A boto3 client that counts every attempt in `api_requests` and remembers the `Date`
    header of the latest response (the store's clock, used as `server_now`)."""

    def __init__(
        self,
        service: str,
        *,
        region: str,
        endpoint_url: str | None,
        metrics: Metrics,
        max_attempts: int = 3,
        timeout: float = 30.0,
        client: Any = None,
    ) -> None:
        self.service = service
        self._metrics = metrics
        self._server_date: datetime | None = None
        if client is None:
            config = Config(
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=timeout,
                read_timeout=timeout,
            )
            # A Session of its own: boto3's default session is not thread-safe to create.
            session = boto3.session.Session()
            client = session.client(
                service, region_name=region, endpoint_url=endpoint_url, config=config
            )
        self.client: Any = client
        self.client.meta.events.register(f"response-received.{service}.*", self._on_response)

    def _on_response(
        self,
        event_name: str,
        response_dict: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        # Fired once per attempt, retries included; no response means a transport failure.
        operation = event_name.rsplit(".", 1)[-1]
        code: int | str = "error"
        if response_dict is not None:
            code = int(response_dict.get("status_code", 0))
            date = response_dict.get("headers", {}).get("Date")
            if date:
                self._server_date = http_date(date) or self._server_date
        self._metrics.api_request(f"{self.service} {operation}", code)

    def server_now(self) -> datetime:
        """The store's clock: the latest response's Date header (advanced by the local time
        elapsed since is not worth it at one-second resolution); else the local clock."""
        return self._server_date if self._server_date is not None else utcnow()

    def close(self) -> None:
        self.client.close()


class AwsLockSource(ThreadedLockSource, Generic[StoreT]):
    """What the DynamoDB and S3 lock sources share: their constructor (the stores to watch,
    one client), the store's clock, and act's calls run in a worker thread (ThreadedLockSource)."""

    service: ClassVar[str]  # the boto3 service name, also the `endpoint` label's first word

    def __init__(
        self,
        stores: Sequence[StoreT],
        region: str,
        endpoint_url: str | None,
        metrics: Metrics,
        client: Any = None,
        *,
        max_attempts: int = 3,
        timeout: float = 30.0,
    ) -> None:
        self.stores: tuple[StoreT, ...] = tuple(stores)
        self._metrics = metrics
        self._aws = AwsClient(
            self.service,
            region=region,
            endpoint_url=endpoint_url,
            metrics=metrics,
            max_attempts=max_attempts,
            timeout=timeout,
            client=client,
        )

    def now(self) -> datetime:
        """The store's clock (AwsClient.server_now)."""
        return self._aws.server_now()

    def close(self) -> None:
        self._aws.close()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def classify(exc: Exception) -> str:
    """The `reason` label (metrics.ERROR_REASONS) of a boto3 failure."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "unauthorized"
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return "timeout"
    if isinstance(exc, SSLError):
        return "tls"
    if isinstance(exc, EndpointConnectionError):
        return "transport"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _UNAUTHORIZED_CODES or status in (401, 403):
            return "unauthorized"
        if code in _NOT_FOUND_CODES or status == 404:
            return "not_found"
        if code in _RATE_LIMITED_CODES or status == 429:
            return "rate_limited"
        if status >= 500:
            return "server_error"
        return "other"
    if isinstance(exc, NoRegionError):
        return "other"
    if isinstance(exc, BotoCoreError):
        return "transport"
    return "other"


def is_forbidden(exc: ClientError) -> bool:
    return error_code(exc) in _FORBIDDEN_CODES


def request_error(request: str, exc: BotoCoreError | ClientError) -> SourceError:
    """The error to raise for a failed `request` (e.g. `"GetItem on <table>"`):
    ForbiddenError on AccessDenied, else SourceError with the metrics reason."""
    if isinstance(exc, ClientError) and is_forbidden(exc):
        return ForbiddenError(f"{request}: {one_line(exc)}")
    return SourceError(f"{request}: {one_line(exc)}", reason=classify(exc))
