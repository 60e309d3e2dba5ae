"""Contract: what the Terraform CLI's `cloud` block calls (https://developer.hashicorp.com/terraform/cli/cloud),
and HTTPS with a self-signed certificate (`--tls`)."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import free_port
from tests.support.simulator import (
    ADMIN_TOKEN,
    READ_TOKEN,
    USER_TOKEN,
    SimulatorServer,
)

ENVELOPE = {"data": {"type": "", "attributes": {"reason": "Locked by Terraform"}}}
RAW_STATE = b'{"version": 4, "serial": 1, "lineage": "abc", "resources": []}\n'


def _ws_id(simulator: SimulatorServer, name: str = "terraform-local") -> str:
    return str(simulator.workspace(name)["id"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _state_version_body(serial: int = 1, outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body Terraform 1.15 sends (docs/tfc-api.md, "What the Terraform CLI calls")."""
    return {
        "data": {
            "type": "state-versions",
            "attributes": {
                "serial": serial,
                "md5": hashlib.md5(RAW_STATE).hexdigest(),  # noqa: S324 - the API's checksum
                "lineage": "abc",
                "force": False,
                "json-state-outputs": _b64(json.dumps(outputs or {}).encode()),
            },
        }
    }


def _locked(api: httpx.Client, ws: str) -> None:
    assert api.post(f"workspaces/{ws}/actions/lock", json=ENVELOPE).status_code == 200


def test_discovery_document_is_anonymous_and_points_every_service_at_api_v2(
    simulator: SimulatorServer,
) -> None:
    response = httpx.get(simulator.url + "/.well-known/terraform.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    services = response.json()
    assert services["tfe.v2"] == services["tfe.v2.2"] == services["state.v2"] == "/api/v2/"


def test_entitlement_set_grants_state_storage_to_members_only(simulator: SimulatorServer) -> None:
    with simulator.client(USER_TOKEN) as api:
        ok = api.get("organizations/demo/entitlement-set")
        other = api.get("organizations/elsewhere/entitlement-set")
    with simulator.client(None) as anonymous:
        unauthenticated = anonymous.get("organizations/demo/entitlement-set")
    assert ok.status_code == 200
    assert ok.json()["data"]["type"] == "entitlement-sets"
    assert ok.json()["data"]["attributes"]["state-storage"] is True
    assert (other.status_code, unauthenticated.status_code) == (404, 401)


def test_current_state_version_is_404_before_any_state(simulator: SimulatorServer) -> None:
    """Terraform reads this 404 as "no state yet" (init, first apply)."""
    with simulator.client(USER_TOKEN) as api:
        response = api.get(f"workspaces/{_ws_id(simulator)}/current-state-version")
    assert response.status_code == 404
    assert response.json()["errors"][0]["status"] == "404"


def test_state_version_needs_the_callers_own_lock(simulator: SimulatorServer) -> None:
    ws = _ws_id(simulator)
    with simulator.client(USER_TOKEN) as api:
        unlocked = api.post(f"workspaces/{ws}/state-versions", json=_state_version_body())
        simulator.lock("terraform-local", "owners", "someone else's")
        someone_elses = api.post(f"workspaces/{ws}/state-versions", json=_state_version_body())
    assert (unlocked.status_code, someone_elses.status_code) == (409, 409)
    assert simulator.simulator.world.state_versions == {}


def test_state_version_needs_write_access(simulator: SimulatorServer) -> None:
    ws = _ws_id(simulator)
    simulator.lock("terraform-local", READ_TOKEN)
    with simulator.client(READ_TOKEN) as api:
        response = api.post(f"workspaces/{ws}/state-versions", json=_state_version_body())
    assert response.status_code == 404


def test_apply_sequence_stores_state_that_becomes_current_when_the_blob_is_put(
    simulator: SimulatorServer,
) -> None:
    """lock, POST state-versions (201 + URLs on this server), PUT blobs without auth, GET the
    version, unlock; then current-state-version and the download (with the token) serve it."""
    ws = _ws_id(simulator)
    with simulator.client(USER_TOKEN) as api:
        _locked(api, ws)
        created = api.post(f"workspaces/{ws}/state-versions", json=_state_version_body(7))
        assert created.status_code == 201
        attributes = created.json()["data"]["attributes"]
        assert attributes["status"] == "pending"
        assert api.get(f"workspaces/{ws}/current-state-version").status_code == 404
        for url in (
            attributes["hosted-state-upload-url"],
            attributes["hosted-json-state-upload-url"],
        ):
            assert url.startswith(simulator.url + "/")
        with httpx.Client() as anonymous:
            json_put = anonymous.put(
                attributes["hosted-json-state-upload-url"],
                content=b'{"format_version":"1.0"}',
                headers={"Content-Type": "application/octet-stream"},
            )
            state_put = anonymous.put(attributes["hosted-state-upload-url"], content=RAW_STATE)
            anonymous_download = anonymous.get(attributes["hosted-state-download-url"])
        assert (json_put.status_code, state_put.status_code) == (200, 200)
        version_id = created.json()["data"]["id"]
        shown = api.get(f"state-versions/{version_id}")
        assert api.post(f"workspaces/{ws}/actions/unlock").status_code == 200
        current = api.get(f"workspaces/{ws}/current-state-version")
        download = api.get(current.json()["data"]["attributes"]["hosted-state-download-url"])
    assert shown.json()["data"]["attributes"]["status"] == "finalized"
    assert current.json()["data"]["id"] == version_id
    assert current.json()["data"]["attributes"]["serial"] == 7
    assert download.status_code == 200
    assert download.content == RAW_STATE
    assert anonymous_download.status_code == 401


def test_state_blob_is_put_only_once(simulator: SimulatorServer) -> None:
    ws = _ws_id(simulator)
    with simulator.client(USER_TOKEN) as api:
        _locked(api, ws)
        url = api.post(f"workspaces/{ws}/state-versions", json=_state_version_body()).json()[
            "data"
        ]["attributes"]["hosted-state-upload-url"]
        first = api.put(url, content=RAW_STATE)
        second = api.put(url, content=b"{}")
        download = api.get(url)
    assert (first.status_code, second.status_code) == (200, 409)
    assert download.content == RAW_STATE


def test_state_is_kept_per_workspace(simulator: SimulatorServer) -> None:
    local, other = _ws_id(simulator), _ws_id(simulator, "service-01-dev")
    with simulator.client(USER_TOKEN) as api:
        _locked(api, local)
        url = api.post(f"workspaces/{local}/state-versions", json=_state_version_body()).json()[
            "data"
        ]["attributes"]["hosted-state-upload-url"]
        api.put(url, content=RAW_STATE)
        assert api.get(f"workspaces/{local}/current-state-version").status_code == 200
        assert api.get(f"workspaces/{other}/current-state-version").status_code == 404


def test_legacy_inline_state_is_current_at_once(simulator: SimulatorServer) -> None:
    """TFE <= v202306-1 flow: the state travels base64 in the POST body."""
    ws = _ws_id(simulator)
    body = _state_version_body(3)
    body["data"]["attributes"]["state"] = _b64(RAW_STATE)
    with simulator.client(USER_TOKEN) as api:
        _locked(api, ws)
        created = api.post(f"workspaces/{ws}/state-versions", json=body)
        current = api.get(f"workspaces/{ws}/current-state-version")
    assert created.status_code == 201
    assert created.json()["data"]["attributes"]["status"] == "finalized"
    assert current.json()["data"]["attributes"]["serial"] == 3


def test_current_state_version_outputs_list_values_and_hide_sensitive_ones(
    simulator: SimulatorServer,
) -> None:
    ws = _ws_id(simulator)
    outputs = {
        "endpoint": {"sensitive": False, "value": "https://x", "type": "string"},
        "password": {"sensitive": True, "value": "hunter2", "type": "string"},
        "ports": {"sensitive": False, "value": [80, 443], "type": ["list", "number"]},
    }
    with simulator.client(USER_TOKEN) as api:
        _locked(api, ws)
        created = api.post(f"workspaces/{ws}/state-versions", json=_state_version_body(1, outputs))
        api.put(created.json()["data"]["attributes"]["hosted-state-upload-url"], content=RAW_STATE)
        response = api.get(f"workspaces/{ws}/current-state-version-outputs")
    assert response.status_code == 200
    listed = {o["attributes"]["name"]: o["attributes"] for o in response.json()["data"]}
    assert {o["type"] for o in response.json()["data"]} == {"state-version-outputs"}
    assert listed["endpoint"]["value"] == "https://x"
    assert (listed["password"]["sensitive"], listed["password"]["value"]) == (True, None)
    assert (listed["ports"]["type"], listed["ports"]["detailed-type"]) == (
        "array",
        ["list", "number"],
    )
    assert response.json()["meta"]["pagination"]["total-count"] == 3


def test_unknown_state_version_is_404(simulator: SimulatorServer) -> None:
    with simulator.client(ADMIN_TOKEN) as api:
        assert api.get("state-versions/sv-nope").status_code == 404
        assert api.get(simulator.url + "/_blobs/sv-nope/state").status_code == 404


# --- HTTPS -------------------------------------------------------------------------------------


def test_tls_simulator_is_trusted_with_its_certificate_only() -> None:
    with SimulatorServer(tls=True) as sim:
        assert sim.url.startswith("https://localhost:")
        with sim.client(USER_TOKEN) as api:
            assert api.get("organizations/demo/entitlement-set").status_code == 200
        ip_context = ssl.create_default_context(cafile=str(sim.ca_file))
        by_ip = httpx.get(f"https://127.0.0.1:{sim.port}/api/v2/ping", verify=ip_context)
        assert by_ip.status_code == 204
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(sim.url + "/api/v2/ping")


def _start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "watchdog", "simulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_tls_generates_a_certificate_into_cert_dir_and_names_it(tmp_path: Path) -> None:
    port = free_port()
    proc = _start_cli("--tls", "--port", str(port), "--cert-dir", str(tmp_path / "tls"))
    try:
        assert proc.stdout is not None
        # The banner: the TFC API, the GitLab-managed state beside it, the certificate.
        banner = "".join(proc.stdout.readline() for _ in range(3))
        cert = tmp_path / "tls" / "cert.pem"
        assert f"https://localhost:{port}/api/v2" in banner
        assert f"SSL_CERT_FILE={cert}" in banner
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"https://localhost:{port}/api/v2/ping", verify=context)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        assert response.status_code == 204
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cert", "x.pem"), "need --tls"),
        (("--tls", "--cert", "x.pem"), "--cert and --key go together"),
        (("--tls", "--cert", "missing.pem", "--key", "missing.pem"), "missing.pem: no such file"),
    ],
)
def test_cli_tls_usage_errors_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    proc = _start_cli("--port", str(free_port()), *args)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def _versions(api: httpx.Client, status: str | None = None, **names: str) -> httpx.Response:
    params = {
        "filter[workspace][name]": names.get("workspace", "terraform-local"),
        "filter[organization][name]": names.get("organization", "demo"),
    }
    if status is not None:
        params["filter[status]"] = status
    return api.get("state-versions", params=params)


def test_state_versions_list_by_names_and_status_pending_until_the_upload_lands(
    simulator: SimulatorServer,
) -> None:
    """A version is pending from its POST until its state blob is PUT; while it is, the
    holder's own unlock is refused (503) and a force-unlock is not."""
    ws = _ws_id(simulator)
    with simulator.client(USER_TOKEN) as api:
        _locked(api, ws)
        created = api.post(f"workspaces/{ws}/state-versions", json=_state_version_body(2))
        version_id = created.json()["data"]["id"]
        pending = _versions(api, "pending")
        finalized_before = _versions(api, "finalized")
        refused = api.post(f"workspaces/{ws}/actions/unlock")
        api.put(created.json()["data"]["attributes"]["hosted-state-upload-url"], content=RAW_STATE)
        pending_after = _versions(api, "pending")
        every = _versions(api)
        unlocked = api.post(f"workspaces/{ws}/actions/unlock")
        missing_org = api.get("state-versions", params={"filter[workspace][name]": "x"})
        other_org = _versions(api, organization="elsewhere")
        bad_status = _versions(api, "sideways")
    assert [item["id"] for item in pending.json()["data"]] == [version_id]
    assert pending.json()["data"][0]["attributes"]["status"] == "pending"
    assert finalized_before.json()["data"] == []
    assert refused.status_code == 503
    assert pending_after.json()["data"] == []
    assert [item["attributes"]["status"] for item in every.json()["data"]] == ["finalized"]
    assert every.json()["meta"]["pagination"]["total-count"] == 1
    assert unlocked.status_code == 200
    assert (missing_org.status_code, other_org.status_code, bad_status.status_code) == (
        404,
        404,
        422,
    )


def test_admin_leaves_a_version_pending_and_finalizes_it(simulator: SimulatorServer) -> None:
    simulator.lock("terraform-local", USER_TOKEN)
    created = simulator.add_state_version("terraform-local", USER_TOKEN)
    ws = _ws_id(simulator)
    with simulator.client(USER_TOKEN) as api:
        pending = _versions(api, "pending")
        refused = api.post(f"workspaces/{ws}/actions/unlock")
        simulator.finalize_state_version(created["id"])
        after = _versions(api, "pending")
        current = api.get(f"workspaces/{ws}/current-state-version")
        unlocked = api.post(f"workspaces/{ws}/actions/unlock")
    assert [item["id"] for item in pending.json()["data"]] == [created["id"]]
    assert refused.status_code == 503
    assert after.json()["data"] == []
    assert current.json()["data"]["id"] == created["id"]
    assert unlocked.status_code == 200


def test_snapshot_interval_header_and_latest_change_at_follow_state_versions(
    simulator: SimulatorServer,
) -> None:
    """HCP Terraform asks for intermediate snapshots with `X-Terraform-Snapshot-Interval` on
    the state-version answers; each version created moves the workspace's latest-change-at."""
    ws = _ws_id(simulator)
    with simulator.client(USER_TOKEN) as api:
        quiet = api.get(f"workspaces/{ws}/current-state-version")
        simulator.settings(snapshot_interval=2)
        before = api.get(f"workspaces/{ws}").json()["data"]["attributes"]["latest-change-at"]
        missing = api.get(f"workspaces/{ws}/current-state-version")
        _locked(api, ws)
        simulator.advance(60)
        created = api.post(f"workspaces/{ws}/state-versions", json=_state_version_body())
        after = api.get(f"workspaces/{ws}").json()["data"]["attributes"]["latest-change-at"]
        simulator.settings(snapshot_interval=0)
    assert "X-Terraform-Snapshot-Interval" not in quiet.headers
    assert missing.status_code == 404
    assert missing.headers["X-Terraform-Snapshot-Interval"] == "2"
    assert created.headers["X-Terraform-Snapshot-Interval"] == "2"
    assert after == created.json()["data"]["attributes"]["created-at"]
    assert after > before
