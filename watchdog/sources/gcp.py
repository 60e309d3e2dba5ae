"""The Cloud Storage client of the GCS lock source: Application Default Credentials, request
metrics, the store's clock, and one-line error classification.

Credentials come only from Application Default Credentials (GKE workload identity, the
metadata server, `gcloud auth application-default login`,
https://cloud.google.com/docs/authentication/application-default-credentials); nothing here
reads a key file itself or logs a token.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import google.auth
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.cloud.storage import exceptions as storage_exceptions
from google.cloud.storage.retry import DEFAULT_RETRY

from watchdog.metrics import Metrics
from watchdog.model import utcnow
from watchdog.sources.errors import ForbiddenError, SourceError, one_line, reason_of_status
from watchdog.sources.serverwait import http_date

# Reading lock files and deleting stale ones: read_write, not full_control.
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)


# google-cloud-storage's switch for its background bucket-metadata fetches (see GcsClient).
NO_BUCKET_METADATA_ENV = "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"


class GcsClient:
    """A `google.cloud.storage.Client`, created on first use (in a worker thread: ADC may ask
    the metadata server), that counts every request in `api_requests` and remembers the
    `Date` header of the latest response (the store's clock, used as `server_now`)."""

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        project: str | None,
        metrics: Metrics,
        timeout: float = 30.0,
    ) -> None:
        self._endpoint_url = endpoint_url
        self._project = project
        self._metrics = metrics
        self.timeout = timeout
        # Transport errors and 429/5xx are retried by the library, within `timeout` in all.
        self.retry = DEFAULT_RETRY.with_timeout(timeout)
        self._server_date: datetime | None = None
        self._client: storage.Client | None = None
        self._session: _CountingSession | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> storage.Client:
        """The storage client; raises what ADC raises when no credentials can be found."""
        with self._lock:
            if self._client is None:
                # google-cloud-storage (3.x) otherwise fetches each bucket's metadata in a
                # background thread on its first call, for tracing attributes: a request no
                # budget counts, needing `storage.buckets.get`, retried in the background
                # while the store does not answer. This is the library's own switch, read on
                # every call (https://github.com/googleapis/google-cloud-python/commit/a0da993d);
                # an operator who sets it keeps their value.
                os.environ.setdefault(NO_BUCKET_METADATA_ENV, "true")
                credentials = self._credentials()
                session = _CountingSession(credentials, on_response=self._on_response)
                options = ClientOptions(api_endpoint=self._endpoint_url)
                self._client = storage.Client(
                    project=self._project,
                    credentials=credentials,
                    client_options=options if self._endpoint_url else None,
                    _http=session,
                )
                self._session = session
            return self._client

    def _credentials(self) -> Credentials:
        try:
            credentials, _ = google.auth.default(scopes=SCOPES)
        except auth_exceptions.DefaultCredentialsError:
            if self._endpoint_url is None:
                raise
            # An emulator (fake-gcs-server) needs none; a real endpoint answers 401, which
            # is reported as `unauthorized`.
            return AnonymousCredentials()
        result: Credentials = credentials
        return result

    def _on_response(
        self, request: requests.PreparedRequest, response: requests.Response | None
    ) -> None:
        # Once per attempt, retries included; no response means a transport failure.
        code: int | str = "error" if response is None else response.status_code
        self._metrics.api_request(f"gcs {operation(request)}", code)
        date = None if response is None else response.headers.get("Date")
        if date:
            self._server_date = http_date(date) or self._server_date

    def server_now(self) -> datetime:
        """The store's clock: the latest response's Date header; else the local clock."""
        return self._server_date if self._server_date is not None else utcnow()

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()


class _CountingSession(AuthorizedSession):
    """An AuthorizedSession that reports every attempt, answered or not, to `on_response`
    (a response hook would miss the attempts that never got an answer)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        on_response: Callable[[requests.PreparedRequest, requests.Response | None], None],
    ) -> None:
        super().__init__(credentials)
        self._report = on_response

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        try:
            response: requests.Response = super().send(request, **kwargs)
        except requests.RequestException:
            self._report(request, None)
            raise
        self._report(request, response)
        return response


def operation(request: requests.PreparedRequest) -> str:
    """The JSON API method a request calls (objects.list, objects.get, objects.delete), for
    the `endpoint` label: a bounded set, never an object name."""
    path = urlsplit(request.url or "").path
    method = (request.method or "").upper()
    if "/o/" in path:
        return {"GET": "objects.get", "DELETE": "objects.delete"}.get(method, f"objects {method}")
    if path.endswith("/o"):
        return "objects.list" if method == "GET" else f"objects {method}"
    return f"other {method}"


# What a request to Cloud Storage can raise: the API's own errors, transport errors,
# credential errors (no ADC, a token that cannot be refreshed), and a download whose body
# fails its checksum (the library's DataCorruption is none of the above: uncaught, it failed
# the whole cycle).
GCS_ERRORS: tuple[type[Exception], ...] = (
    api_exceptions.GoogleAPIError,
    auth_exceptions.GoogleAuthError,
    requests.RequestException,
    storage_exceptions.DataCorruption,
)


def status_of(exc: Exception) -> int:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else 0


def classify(exc: Exception) -> str:
    """The `reason` label (metrics.ERROR_REASONS) of a Cloud Storage failure."""
    if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None:
        return classify(exc.cause)
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return "unauthorized"
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls"
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.RequestException):
        return "transport"
    reason = reason_of_status(status_of(exc))
    if reason is not None:
        return reason
    if isinstance(exc, api_exceptions.RetryError):
        return "timeout"
    return "other"


def request_error(request: str, exc: Exception) -> SourceError:
    """The error to raise for a failed `request` (e.g. `"objects.get on <bucket>"`):
    ForbiddenError on 403, else SourceError with the metrics reason."""
    if status_of(exc) == 403:
        return ForbiddenError(f"{request}: {one_line(exc)}")
    return SourceError(f"{request}: {one_line(exc)}", reason=classify(exc))
