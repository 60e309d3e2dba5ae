"""Fault kinds that stand for what sits between the watchdog and the API: an SSO or proxy
redirect, a WAF page, a slow link, a response without `Date`, a server asking for a wait;
and the request log's real-time stamps that measure the gap between two requests."""

from __future__ import annotations

import time

import pytest

from tests.support.simulator import SimulatorServer


def test_redirect_and_waf_page_faults_answer_instead_of_the_api(simulator: SimulatorServer):
    ws = simulator.workspace("terraform-local")["id"]
    with simulator.client() as api:
        simulator.inject_fault("redirect", "actions/lock", method="POST", count=1)
        redirected = api.post(f"workspaces/{ws}/actions/lock")
        simulator.inject_fault("html", "actions/lock", method="POST", count=1)
        blocked = api.post(f"workspaces/{ws}/actions/lock")
    assert redirected.status_code == 302
    assert redirected.headers["Location"] == "https://login.example.invalid/"
    assert blocked.status_code == 200
    assert blocked.headers["Content-Type"].startswith("text/html")
    assert "blocked by WAF" in blocked.text
    # Neither reached the API: the workspace is still unlocked.
    assert simulator.workspace("terraform-local")["locked"] is False


def test_no_date_fault_drops_only_the_date_header(simulator: SimulatorServer):
    simulator.inject_fault("no_date", "workspaces$", count=1)
    with simulator.client() as api:
        undated = api.get("organizations/demo/workspaces")
        dated = api.get("organizations/demo/workspaces")
    assert undated.status_code == 200
    assert "Date" not in undated.headers
    assert undated.json()["data"]
    assert "Date" in dated.headers


def test_fault_headers_add_or_replace_response_headers(simulator: SimulatorServer):
    simulator.inject_fault(
        "status", "ping", status=429, count=1, headers={"X-RateLimit-Reset": "3"}
    )
    with simulator.client() as api:
        limited = api.get("ping")
    assert limited.status_code == 429
    assert limited.headers.get_list("X-RateLimit-Reset") == ["3"]
    [fault] = [f for f in simulator.requests() if f["path"].endswith("/ping")]
    assert fault["status"] == 429


def test_trickle_fault_delays_a_body_by_its_length_over_the_rate(simulator: SimulatorServer):
    simulator.inject_fault("trickle", r"/workspaces/prod-core$", rate_bps=2000, count=1)
    with simulator.client() as api:
        started = time.monotonic()
        slow = api.get("organizations/demo/workspaces/prod-core")
        took = time.monotonic() - started
    size = len(slow.content)
    assert slow.status_code == 200
    assert slow.json()["data"]["attributes"]["name"] == "prod-core"
    assert took >= 0.8 * size / 2000, (size, took)


def test_a_fault_with_unknown_fields_or_bad_values_is_refused(simulator: SimulatorServer):
    for spec in (
        {"kind": "trickle", "rate_bps": 0},
        {"kind": "status", "headers": {"X-A": 1}},
        {"kind": "status", "speed": 1},
    ):
        with pytest.raises(AssertionError, match="400"):
            simulator._call("POST", "/faults", json=spec)


def test_the_request_log_stamps_arrival_and_answer_in_real_time(simulator: SimulatorServer):
    simulator.inject_fault("latency", "ping", latency_ms=100, count=1)
    with simulator.client() as api:
        api.get("ping")
        api.get("ping")
    first, second = simulator.requests()
    assert first["finished"] - first["received"] >= 0.09
    assert second["received"] >= first["finished"]
