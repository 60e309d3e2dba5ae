"""Run the real simulator for tests: in-process (a uvicorn thread) or as a subprocess.

Fixtures (registered in tests/conftest.py):

- `simulator`: a started `SimulatorServer` on the built-in demo scenario (function scope).
- `start_simulator(**options)`: a context-manager factory for custom servers::

      def test_x(start_simulator):
          with start_simulator(scenario=YAML_TEXT, rate_limit=5) as sim:
              ...

Options of `SimulatorServer` (all keyword):
- `scenario`: a built-in name ("demo"), a YAML text, or a `pathlib.Path` to a YAML file
- `loaded`: an already built `watchdog.simulator.scenario.Loaded` (e.g. from `generate()`)
- `rate_limit` (30/s per principal, like HCP), `run_list_per_minute` (30), `latency_ms` (0)
- `time_scale`: 0.0 by default: the simulated clock stands still and only `advance()` moves
  it, so ages and cool-offs are exact in assertions. Use 1.0 for real-time behaviour.
- `tls`: serve HTTPS with a fresh self-signed certificate (`ca_file`) for localhost and
  127.0.0.1; `url` is then `https://localhost:PORT` (the name the certificate and Terraform's
  `cloud` block use). `verify()` is what an httpx client should verify with.
- `cert`: serve HTTPS with this certificate and key instead (e.g. one a `trustme` CA issued);
  the admin client does not verify it; the test's own clients say which CA they trust.

Every `/_sim/` admin call has a method (see `SimulatorServer`); `client(token)` gives an
httpx client for `/api/v2` with the token and JSON:API headers set. `simulator_process()`
runs `python -m watchdog simulator` as a real subprocess (SIGTERM on exit, must exit 0).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import free_port
from tests.support.threaded import local_socket, serve_in_thread
from tests.support.tools import require_binary
from watchdog.metrics import Metrics
from watchdog.simulator.app import Settings, Simulator, build_app
from watchdog.simulator.cli import server_config
from watchdog.simulator.scenario import Loaded, load_builtin, load_text
from watchdog.simulator.tls import CertPair
from watchdog.simulator.tls import generate as generate_certificate
from watchdog.sources.tfc.client import TfcClient

JSONAPI = "application/vnd.api+json"
ADMIN_TOKEN = "demo-admin-token"
ORG_TOKEN = "demo-org-token"
READ_TOKEN = "demo-read-token"
USER_TOKEN = "demo-user-token"


def in_process_client(sim: Simulator, metrics: Metrics) -> TfcClient:
    """The real TfcClient, as the admin, on `sim` served in process (no socket): no rate
    limit and no retries, so a test neither waits nor hides a failed request."""
    return TfcClient(
        address="http://sim.invalid",
        token=ADMIN_TOKEN,
        metrics=metrics,
        requests_per_second=1e9,
        transport=httpx.ASGITransport(app=build_app(sim)),
        max_attempts=1,
    )


def _load(scenario: str | Path, time_scale: float) -> Loaded:
    if isinstance(scenario, Path):
        return load_text(scenario.read_text(), time_scale=time_scale)
    if "\n" in scenario or ":" in scenario:
        return load_text(scenario, time_scale=time_scale)
    return load_builtin(scenario, time_scale=time_scale)


class SimulatorServer:
    """The real app under uvicorn on 127.0.0.1:<free port>, in a background thread."""

    def __init__(
        self,
        *,
        scenario: str | Path = "demo",
        loaded: Loaded | None = None,
        rate_limit: float = 30.0,
        run_list_per_minute: float = 30.0,
        latency_ms: float = 0.0,
        time_scale: float = 0.0,
        tls: bool = False,
        cert: CertPair | None = None,
    ) -> None:
        loaded = loaded or _load(scenario, time_scale)
        loaded.world.clock.time_scale = time_scale
        settings = Settings(
            rate_limit=rate_limit, run_list_per_minute=run_list_per_minute, latency_ms=latency_ms
        )
        self.simulator = Simulator.from_scenario(loaded, settings)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._admin: httpx.Client | None = None
        self.url = ""
        self.tls = tls or cert is not None
        self._given_cert = cert
        self._cert_dir: Path | None = None
        self._cert: CertPair | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SimulatorServer:
        import uvicorn

        sock = local_socket()
        self._socket = sock
        port = sock.getsockname()[1]
        if self._given_cert is not None:
            self._cert = self._given_cert
            self.url = f"https://localhost:{port}"
        elif self.tls:
            require_binary("openssl")  # skip locally, fail in CI, when it cannot sign
            self._cert_dir = Path(tempfile.mkdtemp(prefix="sim-tls-"))
            self._cert = generate_certificate(self._cert_dir)
            self.url = f"https://localhost:{port}"
        else:
            self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(
            server_config(self.simulator, "127.0.0.1", port, "error", self._cert)
        )
        try:
            self._thread = serve_in_thread(self._server, sock, "the simulator")
        except RuntimeError:
            self.stop()
            raise
        self._admin = httpx.Client(base_url=self.url + "/_sim", timeout=10, verify=self.verify())
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._cert_dir is not None:
            shutil.rmtree(self._cert_dir, ignore_errors=True)
            self._cert_dir = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- conveniences --------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        """The certificate (its own CA) of a `tls=True` server: SSL_CERT_FILE, ca_bundle."""
        assert self._cert is not None, "a tls=True simulator, started"
        return self._cert.cert

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def verify(self) -> ssl.SSLContext | bool:
        """httpx `verify=`: trusts the self-signed certificate of a `tls=True` server (a
        given `cert` is trusted as a CA only if it is its own, like the generated one)."""
        if self._cert is None:
            return True
        if self._given_cert is not None:
            return False  # the admin client only; the test's own clients verify
        return ssl.create_default_context(cafile=str(self._cert.cert))

    @property
    def api_url(self) -> str:
        """`http://127.0.0.1:PORT/api/v2`."""
        return self.url + "/api/v2"

    def client(self, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.Client:
        """An httpx client on /api/v2 with `Authorization` and JSON:API headers. Close it."""
        headers = {"Accept": JSONAPI, "Content-Type": JSONAPI}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("verify", self.verify())
        return httpx.Client(base_url=self.api_url + "/", headers=headers, timeout=10, **kwargs)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._admin is not None, "start() the simulator first"
        response = self._admin.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"/_sim{path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    # --- admin API (one method per /_sim/ call) ------------------------------------------------

    def load_scenario(self, name: str | None = None, yaml_text: str | None = None) -> Any:
        """Replace the world with a built-in scenario (`name`) or a YAML text."""
        if name is not None:
            return self._call("POST", "/scenario", params={"name": name})
        return self._call("POST", "/scenario", content=yaml_text or "")

    def requests(self) -> list[dict[str, Any]]:
        """The request log: `{method, path, query, status, principal, at, received,
        finished}` per API request (`received`/`finished`: the simulator's monotonic clock)."""
        result: list[dict[str, Any]] = self._call("GET", "/requests")
        return result

    def reset_requests(self) -> None:
        self._call("DELETE", "/requests")

    def clock(self) -> dict[str, Any]:
        """`{"now": ISO 8601, "time_scale": float}`."""
        result: dict[str, Any] = self._call("GET", "/clock")
        return result

    def advance(self, seconds: float) -> dict[str, Any]:
        """Move the simulated clock forward (scheduled run completions happen)."""
        result: dict[str, Any] = self._call("POST", "/clock/advance", json={"seconds": seconds})
        return result

    def inject_fault(
        self,
        kind: str = "status",
        path: str = ".*",
        *,
        method: str | None = None,
        status: int = 500,
        probability: float = 1.0,
        latency_ms: float = 0.0,
        count: int | None = None,
        headers: dict[str, str] | None = None,
        rate_bps: float | None = None,
    ) -> dict[str, Any]:
        """Add a fault (kinds and fields: watchdog/simulator/faults.py)."""
        spec: dict[str, Any] = {
            "kind": kind,
            "path": path,
            "method": method,
            "status": status,
            "probability": probability,
            "latency_ms": latency_ms,
            "count": count,
        }
        if headers is not None:
            spec["headers"] = headers
        if rate_bps is not None:
            spec["rate_bps"] = rate_bps
        result: dict[str, Any] = self._call("POST", "/faults", json=spec)
        return result

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/faults")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def lock(
        self, workspace: str, principal: str, reason: str = "", organization: str | None = None
    ) -> dict[str, Any]:
        """Lock `workspace` (name or id) as `principal` (token, user/team name, or id)."""
        body = {"principal": principal, "reason": reason, "organization": organization}
        result: dict[str, Any] = self._call("POST", f"/workspaces/{workspace}/lock", json=body)
        return result

    def unlock(self, workspace: str, organization: str | None = None) -> dict[str, Any]:
        """Release whatever lock `workspace` has (as the platform would)."""
        result: dict[str, Any] = self._call(
            "POST", f"/workspaces/{workspace}/unlock", json={"organization": organization}
        )
        return result

    def start_run(
        self,
        workspace: str,
        status: str = "planning",
        *,
        principal: str | None = None,
        age: float = 0.0,
        duration: float | None = None,
        hangs_on_cancel: bool = False,
        organization: str | None = None,
    ) -> str:
        """Start a run (queued as `pending` if the workspace is busy); returns its id."""
        body: dict[str, Any] = {
            "status": status,
            "principal": principal,
            "age": age,
            "hangs_on_cancel": hangs_on_cancel,
            "organization": organization,
        }
        if duration is not None:
            body["duration"] = duration
        run_id: str = self._call("POST", f"/workspaces/{workspace}/runs", json=body)["id"]
        return run_id

    def set_run_status(self, run_id: str, status: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/runs/{run_id}/status", json={"status": status}
        )
        return result

    def set_hangs_on_cancel(self, run_id: str, value: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/runs/{run_id}/hangs-on-cancel", json={"value": value}
        )
        return result

    def state_version_pending(
        self, workspace: str, unlocks: int = 1, organization: str | None = None
    ) -> dict[str, Any]:
        """The next `unlocks` unlocks of `workspace` answer 503."""
        result: dict[str, Any] = self._call(
            "POST",
            f"/workspaces/{workspace}/state-version-pending",
            json={"unlocks": unlocks, "organization": organization},
        )
        return result

    def add_state_version(
        self,
        workspace: str,
        principal: str | None = None,
        organization: str | None = None,
        *,
        finalized: bool = False,
    ) -> dict[str, Any]:
        """A state version created and left pending (its upload has not landed), or with
        `finalized` uploaded at once (an intermediate snapshot of a long apply)."""
        body: dict[str, Any] = {"principal": principal} if principal else {}
        body["finalized"] = finalized
        if organization:
            body["organization"] = organization
        result: dict[str, Any] = self._call(
            "POST", f"/workspaces/{workspace}/state-versions", json=body
        )
        return result

    def finalize_state_version(self, state_version_id: str) -> dict[str, Any]:
        """The pending version's upload lands: it is finalized and current."""
        result: dict[str, Any] = self._call(
            "POST", f"/state-versions/{state_version_id}/finalize", json={}
        )
        return result

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's JSON:API resource object as an admin sees it."""
        result: dict[str, Any] = self._call("GET", f"/runs/{run_id}")
        return result

    def settings(self, **values: float | str) -> dict[str, Any]:
        """Change `rate_limit`, `run_list_per_minute`, `latency_ms` (buckets refill) or
        `snapshot_interval` (seconds of `X-Terraform-Snapshot-Interval`; 0: not sent)."""
        result: dict[str, Any] = self._call("POST", "/settings", json=values)
        return result

    def state(self, organization: str | None = None, locked: bool = False) -> dict[str, Any]:
        """`{"now", "organizations": {org: [workspace summary, ...]}}` (see admin.py)."""
        params: dict[str, str] = {"locked": "true"} if locked else {}
        if organization:
            params["organization"] = organization
        result: dict[str, Any] = self._call("GET", "/state", params=params)
        return result

    def workspace(self, name: str, organization: str = "demo") -> dict[str, Any]:
        """One workspace summary: `{id, name, locked, locked_reason, locked_at, holder:
        {type, id, name} | None, current_run: {id, status} | None, queue, tags}`."""
        for summary in self.state(organization)["organizations"][organization]:
            if summary["name"] == name:
                found: dict[str, Any] = summary
                return found
        raise KeyError(name)


@contextlib.contextmanager
def simulator_process(*args: str, timeout: float = 20) -> Iterator[str]:
    """`python -m watchdog simulator --port <free> *args`; yields its base URL.

    On exit it sends SIGTERM and asserts the process exits 0.
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchdog", "simulator", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        # One client for the whole wait: each new one loads the CA bundle (~25 ms of CPU).
        with httpx.Client(timeout=1) as probe:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"simulator exited {proc.returncode}")
                try:
                    probe.get(url + "/_sim/clock")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            assert proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()
        assert code == 0, f"simulator exited {code}"


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """A started simulator on the demo scenario; frozen clock; real rate limits."""
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def start_simulator() -> Callable[..., contextlib.AbstractContextManager[SimulatorServer]]:
    """`with start_simulator(scenario=..., rate_limit=..., ...) as sim:` (see SimulatorServer)."""

    def start(**options: Any) -> contextlib.AbstractContextManager[SimulatorServer]:
        return SimulatorServer(**options)

    return start
