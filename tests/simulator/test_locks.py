"""Contract: lock, unlock, force-unlock (the workspaces API: lock, unlock, force-unlock)."""

from __future__ import annotations

import pytest

from tests.support.simulator import ADMIN_TOKEN, ORG_TOKEN, READ_TOKEN, USER_TOKEN


def _ws_id(simulator, name: str) -> str:
    return simulator.workspace(name)["id"]


def test_lock_with_bare_reason_body_returns_200_and_the_locked_workspace(simulator):
    """Reference 2: lock -> 200 + workspace document; body {"reason": ...}."""
    ws = _ws_id(simulator, "terraform-local")
    with simulator.client(USER_TOKEN) as api:
        response = api.post(f"workspaces/{ws}/actions/lock", json={"reason": "deploying"})
    assert response.status_code == 200
    attributes = response.json()["data"]["attributes"]
    assert (attributes["locked"], attributes["locked-reason"]) == (True, "deploying")
    assert response.json()["data"]["relationships"]["locked-by"]["data"]["type"] == "users"


def test_lock_with_jsonapi_envelope_stores_the_reason(simulator):
    """Reference 2 "Body-format caveat": go-tfe v1 (Terraform CLI) sends an envelope."""
    ws = _ws_id(simulator, "terraform-local")
    body = {"data": {"type": "", "attributes": {"reason": "Locked by Terraform"}}}
    with simulator.client(USER_TOKEN) as api:
        response = api.post(f"workspaces/{ws}/actions/lock", json=body)
    assert response.json()["data"]["attributes"]["locked-reason"] == "Locked by Terraform"


def test_lock_without_body_has_empty_reason(simulator):
    """Reference 2: `reason` defaults to ""."""
    ws = _ws_id(simulator, "terraform-local")
    with simulator.client(USER_TOKEN) as api:
        response = api.post(f"workspaces/{ws}/actions/lock")
    assert response.json()["data"]["attributes"]["locked-reason"] == ""


def test_lock_of_a_locked_workspace_is_409(simulator):
    """Reference 2: 409 "Workspace already locked"."""
    with simulator.client(USER_TOKEN) as api:
        response = api.post(f"workspaces/{_ws_id(simulator, 'web-dev')}/actions/lock")
    assert response.status_code == 409
    assert response.json() == {
        "errors": [
            {
                "status": "409",
                "title": "conflict",
                "detail": "Unable to lock workspace. The workspace is already locked.",
            }
        ]
    }


def test_holder_unlocks_own_lock(simulator):
    """Reference 2: unlock (no body) -> 200 + workspace document."""
    ws = _ws_id(simulator, "terraform-local")
    with simulator.client(USER_TOKEN) as api:
        api.post(f"workspaces/{ws}/actions/lock")
        response = api.post(f"workspaces/{ws}/actions/unlock")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["attributes"]["locked"] is False
    assert data["relationships"]["locked-by"] == {"data": None}


@pytest.mark.parametrize(
    ("workspace", "word"),
    [("legacy-network", "User"), ("analytics-dev", "Team"), ("payments-prod", "Run")],
)
def test_unlock_of_someone_elses_lock_is_409_naming_the_holder(simulator, workspace, word):
    """Reference 2: the real 409 text (go-tfe #971) that go-tfe classifies by holder type."""
    holder = simulator.workspace(workspace)["holder"]["id"]
    with simulator.client(ADMIN_TOKEN) as api:
        response = api.post(f"workspaces/{_ws_id(simulator, workspace)}/actions/unlock")
    assert response.status_code == 409
    assert response.json()["errors"][0]["detail"] == (
        f"Unable to unlock workspace. The workspace is locked by {word} {holder} "
        "and may not be unlocked except by them."
    )
    assert simulator.workspace(workspace)["locked"] is True


def test_unlock_of_an_unlocked_workspace_is_409(simulator):
    """Reference 2: 409 "Workspace already unlocked"."""
    with simulator.client(USER_TOKEN) as api:
        response = api.post(f"workspaces/{_ws_id(simulator, 'terraform-local')}/actions/unlock")
    assert response.status_code == 409
    assert "is locked by" not in response.json()["errors"][0]["detail"]


def test_force_unlock_needs_admin_and_is_404_without_it(simulator):
    """Reference 2: force-unlock needs workspace admin; authorization failures are 404."""
    ws = _ws_id(simulator, "legacy-network")
    with simulator.client(USER_TOKEN) as writer, simulator.client(READ_TOKEN) as reader:
        assert writer.post(f"workspaces/{ws}/actions/force-unlock").status_code == 404
        assert reader.post(f"workspaces/{ws}/actions/force-unlock").status_code == 404
    assert simulator.workspace("legacy-network")["locked"] is True
    with simulator.client(ADMIN_TOKEN) as admin:
        response = admin.post(f"workspaces/{ws}/actions/force-unlock")
    assert response.status_code == 200
    assert response.json()["data"]["attributes"]["locked"] is False


def test_force_unlock_of_an_unlocked_workspace_is_409(simulator):
    """Reference 2: 409 "Workspace already unlocked"."""
    with simulator.client(ADMIN_TOKEN) as api:
        response = api.post(
            f"workspaces/{_ws_id(simulator, 'terraform-local')}/actions/force-unlock"
        )
    assert response.status_code == 409


def test_read_only_token_cannot_lock_and_gets_404(simulator):
    """Reference 0 + 2: lock needs write; the answer is 404."""
    with simulator.client(READ_TOKEN) as api:
        response = api.post(f"workspaces/{_ws_id(simulator, 'terraform-local')}/actions/lock")
    assert response.status_code == 404
    assert simulator.workspace("terraform-local")["locked"] is False


def test_organization_token_may_lock_and_force_unlock(simulator):
    """Reference 2 leaves org tokens undocumented; the simulator's choice (access.py)."""
    ws = _ws_id(simulator, "terraform-local")
    with simulator.client(ORG_TOKEN) as api:
        locked = api.post(f"workspaces/{ws}/actions/lock", json={"reason": "org"})
        assert locked.status_code == 200
        assert locked.json()["data"]["relationships"]["locked-by"] == {"data": None}
        assert api.post(f"workspaces/{ws}/actions/unlock").status_code == 200
        forced = api.post(f"workspaces/{_ws_id(simulator, 'web-dev')}/actions/force-unlock")
    assert forced.status_code == 200


def test_unlock_answers_503_while_a_state_version_is_pending(simulator):
    """Reference 2 "Unlock and intermediate state": 503, retry later."""
    ws = _ws_id(simulator, "terraform-local")
    simulator.lock("terraform-local", USER_TOKEN, "Locked by Terraform")
    simulator.state_version_pending("terraform-local", unlocks=2)
    with simulator.client(USER_TOKEN) as api:
        first = api.post(f"workspaces/{ws}/actions/unlock")
        second = api.post(f"workspaces/{ws}/actions/unlock")
        third = api.post(f"workspaces/{ws}/actions/unlock")
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert "latest state version is still pending" in first.json()["errors"][0]["detail"]


def test_post_without_jsonapi_content_type_is_415(simulator):
    """Reference 0: a POST without Content-Type application/vnd.api+json, even empty, is 415."""
    ws = _ws_id(simulator, "terraform-local")
    with simulator.client(USER_TOKEN) as api:
        response = api.post(
            f"workspaces/{ws}/actions/lock", headers={"Content-Type": "application/json"}
        )
        bare = api.post(f"workspaces/{ws}/actions/lock", headers={"Content-Type": ""})
    assert (response.status_code, bare.status_code) == (415, 415)
    assert simulator.workspace("terraform-local")["locked"] is False


def test_unlocking_a_user_lock_starts_the_pending_run(simulator):
    """Reference 2: "New runs remain in the Pending state until the workspace unlocks"."""
    run_id = simulator.start_run("legacy-network", "planning", principal="alice")
    assert simulator.run(run_id)["attributes"]["status"] == "pending"
    with simulator.client(ADMIN_TOKEN) as api:
        api.post(f"workspaces/{_ws_id(simulator, 'legacy-network')}/actions/force-unlock")
    summary = simulator.workspace("legacy-network")
    assert summary["current_run"] == {"id": run_id, "status": "plan_queued"}
    assert summary["holder"]["type"] == "runs"
