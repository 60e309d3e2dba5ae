"""Contract: runs, their actions and the run lists (the runs API)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from tests.support.simulator import ADMIN_TOKEN, ORG_TOKEN, READ_TOKEN, USER_TOKEN

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
CREATED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _current(simulator, name: str) -> str:
    run_id: str = simulator.workspace(name)["current_run"]["id"]
    return run_id


def _get_run(simulator, run_id: str, token: str = ADMIN_TOKEN) -> dict:
    with simulator.client(token) as api:
        return api.get(f"runs/{run_id}").json()["data"]


def test_run_document_shape_and_timestamp_formats(simulator):
    """Reference 3.3/3.4: ids, created-at with ms + Z, status-timestamps only reached states."""
    run = _get_run(simulator, _current(simulator, "payments-prod"))
    assert re.fullmatch(r"run-[0-9A-Za-z]{16}", run["id"])
    attributes = run["attributes"]
    assert attributes["status"] == "applying"
    assert CREATED.fullmatch(attributes["created-at"])
    stamps = attributes["status-timestamps"]
    assert set(stamps) == {
        "plan-queueable-at",
        "plan-queued-at",
        "planning-at",
        "planned-at",
        "confirmed-at",
        "apply-queued-at",
        "applying-at",
    }
    assert all(STAMP.fullmatch(value) for value in stamps.values())
    applying = datetime.fromisoformat(stamps["applying-at"])
    now = datetime.fromisoformat(simulator.clock()["now"])
    assert timedelta(hours=6, minutes=59) < now - applying <= timedelta(hours=7, seconds=1)
    assert attributes["canceled-at"] is None
    assert "force-cancel-available-at" not in attributes
    assert attributes["actions"] == {
        "is-cancelable": True,
        "is-confirmable": False,
        "is-discardable": False,
        "is-force-cancelable": False,
    }
    assert run["relationships"]["workspace"]["data"]["type"] == "workspaces"


def test_run_permissions_follow_the_token(simulator):
    """Reference 3.3 permissions; 6: organization tokens cannot act on runs."""
    run_id = _current(simulator, "payments-prod")
    admin = _get_run(simulator, run_id, ADMIN_TOKEN)["attributes"]["permissions"]
    writer = _get_run(simulator, run_id, USER_TOKEN)["attributes"]["permissions"]
    reader = _get_run(simulator, run_id, READ_TOKEN)["attributes"]["permissions"]
    org = _get_run(simulator, run_id, ORG_TOKEN)["attributes"]["permissions"]
    assert admin["can-force-cancel"]
    assert admin["can-cancel"]
    assert writer["can-cancel"]
    assert not writer["can-force-cancel"]
    assert not reader["can-cancel"]
    assert not reader["can-discard"]
    assert not any(org.values())


def test_waiting_run_is_confirmable_and_discardable_not_cancelable(simulator):
    """Reference 3.2: `planned` waits for a human (apply or discard)."""
    run = _get_run(simulator, _current(simulator, "billing-staging"))
    assert run["attributes"]["actions"] == {
        "is-cancelable": False,
        "is-confirmable": True,
        "is-discardable": True,
        "is-force-cancelable": False,
    }


def test_cancel_then_force_cancel_after_the_cooloff(simulator):
    """Reference 4: cancel first; force-cancel only after the cool-off; then unlocked at once."""
    run_id = _current(simulator, "payments-prod")
    with simulator.client(ADMIN_TOKEN) as api:
        early = api.post(f"runs/{run_id}/actions/force-cancel")
        assert early.status_code == 409
        assert early.json()["errors"][0]["detail"] == (
            "Run was not planning or applying, has not been canceled non-forcefully, "
            "or the cool-off period has not yet passed."
        )
        cancel = api.post(f"runs/{run_id}/actions/cancel", json={"comment": "stuck"})
        assert (cancel.status_code, cancel.content) == (202, b"")
        # hangs_on_cancel: the status stays; canceled-at and force-cancel-available-at are set
        attributes = api.get(f"runs/{run_id}").json()["data"]["attributes"]
        assert attributes["status"] == "applying"
        canceled = datetime.fromisoformat(attributes["canceled-at"].replace("Z", "+00:00"))
        available = datetime.fromisoformat(
            attributes["force-cancel-available-at"].replace("Z", "+00:00")
        )
        assert available - canceled == timedelta(minutes=5)
        assert attributes["actions"]["is-force-cancelable"] is False
        assert api.post(f"runs/{run_id}/actions/force-cancel").status_code == 409
        simulator.advance(300)
        assert (
            api.get(f"runs/{run_id}").json()["data"]["attributes"]["actions"]["is-force-cancelable"]
            is True
        )
        assert api.post(f"runs/{run_id}/actions/force-cancel").status_code == 202
    summary = simulator.workspace("payments-prod")
    assert simulator.run(run_id)["attributes"]["status"] == "force_canceled"
    assert "force-canceled-at" in simulator.run(run_id)["attributes"]["status-timestamps"]
    # The lock passes to the pending run queued behind it, which becomes current.
    assert summary["current_run"]["id"] != run_id
    assert summary["current_run"]["status"] == "plan_queued"
    assert summary["holder"] == {"type": "runs", "id": summary["current_run"]["id"], "name": None}


def test_pending_run_with_duration_reaches_applied_and_releases_the_lock(simulator):
    """Reference 3.2: a run lock ends when the run finishes."""
    run_id = _current(simulator, "payments-prod")
    simulator.set_run_status(run_id, "errored")
    successor = simulator.workspace("payments-prod")["current_run"]["id"]
    simulator.advance(10 * 60)
    summary = simulator.workspace("payments-prod")
    assert summary["current_run"] == {"id": successor, "status": "applied"}
    assert summary["locked"] is False


def test_plain_cancel_ends_the_run_and_unlocks(simulator):
    """Reference 4: cancel of a planning/applying run (no hang) ends it as canceled."""
    run_id = simulator.start_run("terraform-local", "planning", principal="operator")
    assert simulator.workspace("terraform-local")["holder"]["id"] == run_id
    with simulator.client(USER_TOKEN) as api:
        assert api.post(f"runs/{run_id}/actions/cancel").status_code == 202
    assert simulator.run(run_id)["attributes"]["status"] == "canceled"
    assert simulator.workspace("terraform-local")["locked"] is False


def test_cancel_of_a_waiting_run_is_409(simulator):
    """Reference 4: "Run was not planning or applying; cancel not allowed."."""
    with simulator.client(ADMIN_TOKEN) as api:
        response = api.post(f"runs/{_current(simulator, 'billing-staging')}/actions/cancel")
    assert response.status_code == 409
    assert response.json()["errors"][0]["detail"] == (
        "Run was not planning or applying; cancel not allowed."
    )


def test_discard_of_a_waiting_run_releases_the_lock(simulator):
    """Reference 4: discard when paused for confirmation -> 202, run discarded."""
    run_id = _current(simulator, "billing-staging")
    with simulator.client(USER_TOKEN) as api:
        assert api.post(f"runs/{run_id}/actions/discard").status_code == 202
        again = api.post(f"runs/{run_id}/actions/discard")
    assert again.status_code == 409
    assert "discard not allowed" in again.json()["errors"][0]["detail"]
    assert simulator.run(run_id)["attributes"]["status"] == "discarded"
    assert simulator.workspace("billing-staging")["locked"] is False


def test_apply_confirms_a_waiting_run(simulator):
    """Reference 4: apply when paused for confirmation; 409 otherwise."""
    run_id = _current(simulator, "billing-staging")
    with simulator.client(USER_TOKEN) as api:
        assert api.post(f"runs/{run_id}/actions/apply").status_code == 202
        assert api.post(f"runs/{run_id}/actions/apply").status_code == 409
    assert simulator.run(run_id)["attributes"]["status"] == "applying"
    simulator.advance(60)
    assert simulator.run(run_id)["attributes"]["status"] == "applied"


def test_run_actions_refuse_organization_tokens_and_readers_with_404(simulator):
    """Reference 4: org tokens cannot use run actions; 0: forbidden is 404."""
    run_id = _current(simulator, "payments-prod")
    with simulator.client(ORG_TOKEN) as org, simulator.client(READ_TOKEN) as reader:
        assert org.post(f"runs/{run_id}/actions/cancel").status_code == 404
        assert reader.post(f"runs/{run_id}/actions/cancel").status_code == 404
    with simulator.client(USER_TOKEN) as writer:
        writer.post(f"runs/{run_id}/actions/cancel")
        simulator.advance(600)
        # force-cancel needs workspace admin
        assert writer.post(f"runs/{run_id}/actions/force-cancel").status_code == 404


def test_workspace_runs_list_newest_first_with_filters(simulator):
    """Reference 3.1: filter[status], filter[status_group]; unknown values give nothing."""
    ws = simulator.workspace("payments-prod")["id"]
    with simulator.client() as api:

        def statuses(**params: str) -> list[str]:
            body = api.get(f"workspaces/{ws}/runs", params=params).json()
            return [run["attributes"]["status"] for run in body["data"]]

        assert statuses() == ["pending", "applying", "applied"]
        assert statuses(**{"filter[status]": "applying,applied"}) == ["applying", "applied"]
        assert statuses(**{"filter[status_group]": "non_final"}) == ["pending", "applying"]
        assert statuses(**{"filter[status_group]": "final"}) == ["applied"]
        assert statuses(**{"filter[status]": "aplied"}) == []
        body = api.get(f"workspaces/{ws}/runs").json()
    assert body["meta"]["pagination"]["total-count"] == 3


def test_organization_runs_list_has_no_totals(simulator):
    """Reference 0, 3.1: pagination-without-totals."""
    with simulator.client() as api:
        body = api.get(
            "organizations/demo/runs", params={"filter[status_group]": "discardable"}
        ).json()
    assert [run["attributes"]["status"] for run in body["data"]] == ["planned"]
    assert set(body["meta"]["pagination"]) == {
        "current-page",
        "page-size",
        "prev-page",
        "next-page",
    }


def test_run_lists_are_limited_to_30_per_minute(start_simulator):
    """Reference 3.1: 30 requests per minute, shown in X-RateLimit-Limit."""
    with start_simulator(rate_limit=1000) as sim, sim.client() as api:
        codes = [api.get("organizations/demo/runs").status_code for _ in range(40)]
        limited = api.get("organizations/demo/runs")
        other = api.get("organizations/demo/workspaces")
    assert codes[:30] == [200] * 30
    assert 429 in codes[30:]
    assert limited.headers["X-RateLimit-Limit"] == "30"
    assert other.status_code == 200


def test_a_comment_on_a_run_is_created_and_a_blank_one_refused(simulator):
    run_id = _current(simulator, "payments-prod")
    body = {"data": {"type": "comments", "attributes": {"body": "tfc-watchdog notice"}}}
    with simulator.client(ADMIN_TOKEN) as client:
        created = client.post(f"runs/{run_id}/comments", json=body)
        blank = client.post(f"runs/{run_id}/comments", json={"data": {"attributes": {"body": " "}}})
    assert created.status_code == 201
    assert created.headers["content-type"].startswith("application/vnd.api+json")
    assert created.json()["data"]["attributes"]["body"] == "tfc-watchdog notice"
    assert blank.status_code == 422
    assert simulator.run(run_id)["comments"] == ["tfc-watchdog notice"]
    with simulator.client(READ_TOKEN) as client:
        assert client.post(f"runs/{run_id}/comments", json=body).status_code in (403, 404)
