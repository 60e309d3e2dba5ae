"""Contract: headers, clock, rate limits, faults, the admin API, the CLI and the generator
(the API's conventions, rate limiting and errors; the simulator's own admin API)."""

from __future__ import annotations

import email.utils
import json
from datetime import datetime, timedelta

import httpx
import pytest

from tests.support.daemon import run_cli
from tests.support.simulator import ADMIN_TOKEN, simulator_process
from watchdog.simulator.scenario import generate


def test_every_response_carries_rate_limit_version_app_name_and_simulated_date(simulator):
    """Reference 5 (X-RateLimit-Limit), 6 (TFP-API-Version, TFP-AppName); Date = sim clock."""
    simulator.advance(86400 * 3)
    now = datetime.fromisoformat(simulator.clock()["now"])
    with simulator.client() as api:
        responses = [
            api.get("ping"),
            api.get("organizations/demo/workspaces"),
            api.get("workspaces/ws-doesnotexist00000"),
        ]
    for response in responses:
        assert response.headers["X-RateLimit-Limit"] == "30"
        assert response.headers["TFP-API-Version"]
        assert response.headers["TFP-AppName"] == "HCP Terraform"
        date = email.utils.parsedate_to_datetime(response.headers["Date"])
        assert abs(date - now) < timedelta(seconds=2)
    assert responses[0].status_code == 204


def test_rate_limit_per_principal_answers_429_with_reset(start_simulator):
    """Reference 5: 429, the documented body, X-RateLimit-Limit and X-RateLimit-Reset."""
    with (
        start_simulator(rate_limit=5) as sim,
        sim.client() as api,
        sim.client("demo-read-token") as other,
    ):
        codes = [api.get("organizations/demo/workspaces").status_code for _ in range(12)]
        limited = api.get("organizations/demo/workspaces")
        assert other.get("organizations/demo/workspaces").status_code == 200
    assert codes[:5] == [200] * 5
    assert 429 in codes
    assert limited.status_code == 429
    assert limited.json() == {
        "errors": [
            {
                "detail": "You have exceeded the API's rate limit.",
                "status": 429,
                "title": "Too many requests",
            }
        ]
    }
    assert limited.headers["X-RateLimit-Limit"] == "5"
    assert 0 < float(limited.headers["X-RateLimit-Reset"]) <= 1


def test_request_log_records_api_calls_but_not_admin_calls(simulator):
    """Admin API: the request log (method, path, query, status, principal)."""
    with simulator.client() as api:
        api.get("organizations/demo/workspaces", params={"page[size]": 5})
    with simulator.client("bad") as api:
        api.get("organizations/demo/workspaces")
    simulator.state()
    log = simulator.requests()
    assert [(e["method"], e["path"], e["status"], e["principal"]) for e in log] == [
        ("GET", "/api/v2/organizations/demo/workspaces", 200, "owners"),
        ("GET", "/api/v2/organizations/demo/workspaces", 401, None),
    ]
    assert log[0]["query"] == "page%5Bsize%5D=5"
    simulator.reset_requests()
    assert simulator.requests() == []


def test_clock_advances_on_request(simulator):
    """Admin API: the simulated clock only moves when told (time_scale 0 in tests)."""
    before = datetime.fromisoformat(simulator.clock()["now"])
    after = datetime.fromisoformat(simulator.advance(7200)["now"])
    assert after - before == timedelta(hours=2)


def test_status_fault_for_n_requests_then_normal(simulator):
    """Fault injection: a status code for N requests on a path pattern."""
    simulator.inject_fault("status", r"/workspaces$", status=503, count=2)
    with simulator.client() as api:
        codes = [api.get("organizations/demo/workspaces").status_code for _ in range(3)]
        untouched = api.get("organizations/demo/workspaces/prod-core").status_code
    assert codes == [503, 503, 200]
    assert untouched == 200


def test_fault_only_for_its_method_until_cleared(simulator):
    simulator.inject_fault("status", "actions/lock", method="POST", status=500)
    ws = simulator.workspace("terraform-local")["id"]
    with simulator.client() as api:
        assert api.get(f"workspaces/{ws}").status_code == 200
        assert api.post(f"workspaces/{ws}/actions/lock").status_code == 500
        assert api.post(f"workspaces/{ws}/actions/lock").status_code == 500
        simulator.clear_faults()
        assert api.post(f"workspaces/{ws}/actions/lock").status_code == 200


def test_malformed_and_wrong_content_type_faults(simulator):
    simulator.inject_fault("malformed", "workspaces", count=1)
    simulator.inject_fault("content_type", "runs", count=1)
    with simulator.client() as api:
        broken = api.get("organizations/demo/workspaces")
        with pytest.raises(json.JSONDecodeError):
            broken.json()
        html = api.get("organizations/demo/runs")
    assert html.status_code == 200
    assert html.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("kind", ["truncated", "drop"])
def test_truncated_and_dropped_responses_break_the_connection(simulator, kind):
    simulator.inject_fault(kind, "workspaces", count=1)
    with simulator.client() as api:
        with pytest.raises(httpx.RemoteProtocolError):
            api.get("organizations/demo/workspaces")
        assert api.get("organizations/demo/workspaces").status_code == 200


def test_latency_fault_delays_but_answers(simulator):
    simulator.inject_fault("latency", "ping", latency_ms=50, count=1)
    with simulator.client() as api:
        assert api.get("ping").status_code == 204
    assert simulator.faults() == []


def test_load_scenario_replaces_the_world(simulator):
    """Admin API: load a YAML scenario, then a built-in one by name."""
    simulator.load_scenario(
        yaml_text="""
organizations:
  acme:
    teams: [{name: t, tokens: [acme-token], access: admin}]
    workspaces: [{name: only, lock: {by: t, reason: x}}]
"""
    )
    assert [w["name"] for w in simulator.state()["organizations"]["acme"]] == ["only"]
    simulator.load_scenario("demo")
    assert "prod-core" in {w["name"] for w in simulator.state()["organizations"]["demo"]}


def test_admin_lock_and_hangs_on_cancel(simulator):
    """Admin API: lock as a principal; mark a run hangs_on_cancel."""
    simulator.lock("terraform-local", "carol", "maintenance")
    summary = simulator.workspace("terraform-local")
    assert summary["holder"]["name"] == "carol"
    assert summary["locked_reason"] == "maintenance"
    simulator.unlock("terraform-local")
    run_id = simulator.start_run("terraform-local", "applying", principal="operator")
    simulator.set_hangs_on_cancel(run_id)
    with simulator.client(ADMIN_TOKEN) as api:
        api.post(f"runs/{run_id}/actions/cancel")
    assert simulator.run(run_id)["attributes"]["status"] == "applying"


def test_demo_scenario_has_the_documented_situations(simulator):
    """The demo world: stuck apply hanging on cancel with a queued run, old and young locks, ..."""
    state = {w["name"]: w for w in simulator.state()["organizations"]["demo"]}
    now = datetime.fromisoformat(simulator.clock()["now"])
    assert state["payments-prod"]["current_run"]["status"] == "applying"
    assert len(state["payments-prod"]["queue"]) == 1
    old = state["legacy-network"]
    assert old["locked_reason"] == "Locked by Terraform"
    assert now - datetime.fromisoformat(old["locked_at"]) == timedelta(hours=5)
    assert now - datetime.fromisoformat(state["web-dev"]["locked_at"]) == timedelta(minutes=10)
    assert state["billing-staging"]["current_run"]["status"] == "planned"
    assert "protected" in state["prod-core"]["tags"]
    assert state["terraform-local"]["locked"] is False
    assert len(state) >= 24


def test_generator_is_deterministic_and_locks_the_asked_share():
    """Generator for large orgs (`--workspaces N --locked 1%`)."""
    first = generate(2000, "1%", seed=7)
    second = generate(2000, "1%", seed=7)
    locked = [ws for ws in first.world.workspaces.values() if ws.locked]
    assert len(locked) == 20
    assert {ws.locked_by[0] for ws in locked} == {"users", "teams", "runs"}
    assert sorted(ws.name for ws in locked) == sorted(
        ws.name for ws in second.world.workspaces.values() if ws.locked
    )


@pytest.mark.e2e
def test_cli_serves_until_sigterm_and_exits_0():
    """`python -m watchdog simulator --port N` (the context manager asserts exit code 0)."""
    with simulator_process("--workspaces", "50", "--organization", "acme") as url:
        response = httpx.get(
            url + "/api/v2/organizations/acme/workspaces",
            headers={"Authorization": "Bearer acme-admin-token"},
        )
        assert response.json()["meta"]["pagination"]["total-count"] == 50


@pytest.mark.e2e
def test_cli_serves_gitlab_managed_state_under_gitlab_for_the_watchdog(tmp_path):
    """`tfc-watchdog simulator` also serves the GitLab app under /gitlab: the watchdog's
    `gitlab` source, pointed at it as the README shows, reads the demo's stale lock."""
    token_file = tmp_path / "gitlab-token"
    token_file.write_text("glpat-demo-watchdog\n")
    with simulator_process() as url:
        config = tmp_path / "gitlab.yaml"
        config.write_text(
            f"gitlab: {{address: '{url}/gitlab', projects: [demo/infra], "
            f"token_file: '{token_file}'}}\n"
        )
        scanned = run_cli("scan", "--config", str(config), "--output", "json")
        # The TFC API on the same port is untouched by the mount.
        tfc = httpx.get(
            url + "/api/v2/organizations/demo/workspaces",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert tfc.status_code == 200
    assert scanned.returncode == 3, scanned.stderr  # a stale lock found
    document = json.loads(scanned.stdout)
    text = json.dumps(document)
    assert "demo/infra/prod" in text
    assert "ci-runner" in text
    assert "lock_stale" in text
