"""A lock file whose download fails its checksum (google-cloud-storage raises its own
DataCorruption, not an API error) is a failed read of that bucket, like any other: the
observation is incomplete and the cycle goes on. It used to escape `observe()` and fail the
whole cycle, every source included, for as long as the corruption lasted.

The store is a minimal Cloud Storage JSON API on 127.0.0.1 that lists one lock file and
serves its body with an `x-goog-hash` that does not match it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from watchdog.metrics import Metrics
from watchdog.sources.gcslockfile import GcsLockfileSource

BODY = b'{"ID":"x","Created":"2026-11-29T09:00:00Z"}'


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/download/"):
            # crc32c of the empty string: any other body fails the client's check.
            self._send(BODY, {"x-goog-hash": "crc32c=AAAAAA==", "x-goog-generation": "5"})
            return
        if path.endswith("/o"):
            item = {
                "kind": "storage#object",
                "name": "prod/default.tflock",
                "bucket": "tf-state",
                "generation": "5",
                "size": str(len(BODY)),
                "timeCreated": "2026-11-29T09:00:00.000Z",
            }
            self._send(json.dumps({"kind": "storage#objects", "items": [item]}).encode(), {})
            return
        self._send(b'{"error": {"code": 404, "message": "no"}}', {}, status=404)

    def _send(self, payload: bytes, headers: dict[str, str], status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def corrupting_store() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_corrupt_lock_file_download_is_a_failed_read_not_a_failed_cycle(
    corrupting_store: str, gcs_env: None
) -> None:
    source = GcsLockfileSource([("tf-state", "prod/")], Metrics(), endpoint_url=corrupting_store)
    try:
        (observation,) = await source.observe()
    finally:
        source.close()

    assert not observation.complete
    assert "DataCorruption" in (observation.error or "")
