"""The GCS source's error vocabulary: the `reason` label of each Cloud Storage failure, the
error act.py maps to an outcome, the `endpoint` label of each request, and what happens
without credentials. (The store itself: tests/e2e/test_gcs_backend_sources.py.)"""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth

from tests.support.builders import NOW, H, backend_lock, delete_lock_action
from watchdog.act import BackendLockExecutor
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import Outcome, Source
from watchdog.sources.errors import ForbiddenError, SourceError
from watchdog.sources.gcp import classify, operation, request_error
from watchdog.sources.gcslockfile import GcsLockfileSource, lock_name, state_path


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (api.Unauthorized("no"), "unauthorized"),
        (api.Forbidden("no"), "unauthorized"),
        (api.NotFound("no bucket"), "not_found"),
        (api.TooManyRequests("slow down"), "rate_limited"),
        (api.ServiceUnavailable("later"), "server_error"),
        (api.InternalServerError("oops"), "server_error"),
        (api.BadRequest("bad"), "other"),
        (api.RetryError("gave up", cause=requests.ConnectionError("refused")), "transport"),
        (api.RetryError("gave up", cause=None), "timeout"),
        (requests.ConnectionError("refused"), "transport"),
        (requests.exceptions.SSLError("bad certificate"), "tls"),
        (requests.ReadTimeout("slow"), "timeout"),
        (auth.DefaultCredentialsError("no ADC"), "unauthorized"),
        (auth.RefreshError("token refused"), "unauthorized"),
    ],
)
def test_each_failure_has_its_reason(error: Exception, reason: str) -> None:
    assert classify(error) == reason


def test_a_403_is_forbidden_and_anything_else_a_backend_error_with_its_reason() -> None:
    assert isinstance(
        request_error("objects.delete on tf-state", api.Forbidden("no")), ForbiddenError
    )
    error = request_error("objects.get on tf-state", api.ServiceUnavailable("down\nnow"))
    assert type(error) is SourceError
    assert error.reason == "server_error"
    assert str(error) == "objects.get on tf-state: ServiceUnavailable: 503 down now"


@pytest.mark.parametrize(
    ("method", "url", "label"),
    [
        (
            "GET",
            "https://storage.googleapis.com/storage/v1/b/tf-state/o?prefix=prod%2F",
            "objects.list",
        ),
        (
            "GET",
            "https://storage.googleapis.com/download/storage/v1/b/tf-state/o/prod%2Fdefault.tflock?alt=media",
            "objects.get",
        ),
        (
            "GET",
            "https://storage.googleapis.com/storage/v1/b/tf-state/o/prod%2Fdefault.tflock",
            "objects.get",
        ),
        (
            "DELETE",
            "https://storage.googleapis.com/storage/v1/b/tf-state/o/prod%2Fdefault.tflock?ifGenerationMatch=1",
            "objects.delete",
        ),
        ("GET", "https://storage.googleapis.com/storage/v1/b", "other GET"),
    ],
)
def test_the_endpoint_label_is_the_api_method_never_an_object_name(
    method: str, url: str, label: str
) -> None:
    request = requests.Request(method, url).prepare()
    assert operation(request) == label


def test_state_paths_and_lock_names_map_both_ways() -> None:
    assert state_path("tf-state", "prod/default.tflock") == "tf-state/prod/default.tfstate"
    assert lock_name("tf-state", "tf-state/prod/default.tfstate") == "prod/default.tflock"
    assert lock_name("tf-state", state_path("tf-state", "default.tflock")) == "default.tflock"


async def test_without_credentials_for_google_itself_a_read_fails_as_unauthorized(
    gcs_env: None,
) -> None:
    """No Application Default Credentials and no emulator endpoint: each cycle's read of the
    bucket fails with reason `unauthorized` (counted), nothing is sent unauthenticated."""
    metrics = Metrics()
    source = GcsLockfileSource([("tf-state", "")], metrics)
    try:
        (observation,) = await source.observe()
    finally:
        source.close()

    assert not observation.complete
    assert observation.error_reason == "unauthorized"
    assert "DefaultCredentialsError" in (observation.error or "")
    assert "\n" not in (observation.error or "")
    assert (
        metrics.registry.get_sample_value(
            "tfc_watchdog_observe_errors_total", {"source": "gcs", "reason": "unauthorized"}
        )
        == 1
    )


@pytest.mark.parametrize(
    "error",
    [
        requests.ReadTimeout("slow"),
        requests.ConnectionError("reset"),
        api.ServiceUnavailable("later"),
    ],
    ids=["timeout", "transport", "server_error"],
)
async def test_a_failed_reread_right_before_the_delete_is_a_delete_never_sent(
    gcs_env: None, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """delete_lock re-reads the lock file before its DELETE. When that GET fails (a timeout,
    a reset, a 5xx) the DELETE was never sent: the outcome is `failed`, not `unknown` (which
    says the lock may have been deleted, and attributes its clearing to the watchdog)."""
    source = GcsLockfileSource(
        [("tf-state", "prod/")], Metrics(), endpoint_url="http://127.0.0.1:9"
    )
    stale = backend_lock("tf-state/prod/default.tfstate", created=NOW - 3 * H, source=Source.GCS)

    def reread_fails(bucket: str, name: str) -> None:
        raise error

    monkeypatch.setattr(source, "_current", reread_fails)
    action = delete_lock_action(stale)
    try:
        with pytest.raises(SourceError) as caught:
            await source.delete_lock(stale)
        result = await BackendLockExecutor(source, Memory()).perform(action)
    finally:
        source.close()

    assert caught.value.may_have_acted is False
    assert result.outcome is Outcome.FAILED
