"""The simulator's GitLab part: the state API with GitLab's lock semantics and status codes (as
`Terraform::RemoteStateHandler` implements them), its auth, and the GraphQL subset it serves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.gitlab import (
    DEVELOPER_TOKEN,
    PROJECT,
    PROJECT_ID,
    TERRAFORM_TOKEN,
    TERRAFORM_USER,
    WATCHDOG_TOKEN,
    gitlab_world,
)
from watchdog.simulator.gitlab import GitLabWorld, build_gitlab_app

STATE = f"/api/v4/projects/{PROJECT_ID}/terraform/state/prod"
ENCODED = "/api/v4/projects/infra%2Fnetwork/terraform/state/prod"


def lock_info(lock_id: str, who: str = "alice@laptop") -> dict[str, str]:
    return {
        "ID": lock_id,
        "Operation": "OperationTypeApply",
        "Info": "",
        "Who": who,
        "Version": "1.15.5",
        "Created": "2026-11-30T08:00:00.123456789Z",
        "Path": "",
    }


@pytest.fixture
def world() -> GitLabWorld:
    return gitlab_world()


def client_of(world: GitLabWorld, **options: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_gitlab_app(world))
    return httpx.AsyncClient(transport=transport, base_url="http://gitlab.test", **options)


@pytest.fixture
async def terraform(world: GitLabWorld) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticating as Terraform's http backend does: basic auth, token as password."""
    async with client_of(world, auth=("anything", TERRAFORM_TOKEN)) as client:
        yield client


def as_bearer(world: GitLabWorld, token: str) -> httpx.AsyncClient:
    return client_of(world, headers={"Authorization": f"Bearer {token}"})


async def test_lock_then_conflicting_lock_answers_409_with_the_holders_id_who_and_created(
    terraform: httpx.AsyncClient, world: GitLabWorld
) -> None:
    first = await terraform.post(f"{STATE}/lock", json=lock_info("id-1"))
    assert first.status_code == 200
    second = await terraform.post(f"{ENCODED}/lock", json=lock_info("id-2", who="bob@ci"))
    assert second.status_code == 409
    body = second.json()
    # ID, Who, Created are the holder's (Who is the GitLab user); the rest echoes the request.
    assert body["ID"] == "id-1"
    assert body["Who"] == TERRAFORM_USER
    assert body["Created"].endswith("Z") and body["Operation"] == "OperationTypeApply"
    state = world.state(PROJECT, "prod")
    assert state is not None and state.lock_xid == "id-1"


async def test_unlock_with_another_id_is_409_with_the_holders_id_200_and_without_any_id_200(
    terraform: httpx.AsyncClient, world: GitLabWorld
) -> None:
    (await terraform.post(f"{STATE}/lock", json=lock_info("id-1"))).raise_for_status()
    assert (
        await terraform.request("DELETE", f"{STATE}/lock", json=lock_info("other"))
    ).status_code == 409
    assert (
        await terraform.request("DELETE", f"{STATE}/lock", json=lock_info("id-1"))
    ).status_code == 200
    (await terraform.post(f"{STATE}/lock", json=lock_info("id-3"))).raise_for_status()
    # `terraform force-unlock` and the watchdog: no ID, whatever lock there is goes.
    assert (await terraform.delete(f"{STATE}/lock")).status_code == 200
    state = world.state(PROJECT, "prod")
    assert state is not None and state.lock_xid is None and state.locked_by is None


async def test_state_writes_must_carry_the_holders_lock_id(terraform: httpx.AsyncClient) -> None:
    body = json.dumps({"version": 4, "serial": 3, "lineage": "l"})
    (await terraform.post(f"{STATE}/lock", json=lock_info("id-1"))).raise_for_status()
    assert (await terraform.post(f"{STATE}?ID=other", content=body)).status_code == 409
    assert (await terraform.post(STATE, content=body)).status_code == 409
    assert (await terraform.post(f"{STATE}?ID=id-1", content=body)).status_code == 200
    got = await terraform.get(STATE)
    assert (got.status_code, got.content) == (200, body.encode())
    assert (await terraform.get(f"{STATE}-missing")).status_code == 404


@pytest.mark.parametrize(
    ("auth", "status"),
    [
        (None, 401),
        (("u", "wrong-token"), 401),
        (("u", DEVELOPER_TOKEN), 403),  # Developers read; locking needs Maintainer
    ],
)
async def test_locking_needs_a_maintainers_token(
    world: GitLabWorld, auth: tuple[str, str] | None, status: int
) -> None:
    async with client_of(world, auth=auth) as client:
        assert (await client.post(f"{STATE}/lock", json=lock_info("id-1"))).status_code == status


async def graphql(client: httpx.AsyncClient, query: str, **variables: Any) -> httpx.Response:
    return await client.post("/api/graphql", json={"query": query, "variables": variables})


async def test_graphql_serves_only_the_watchdogs_queries_and_logs_who_asked(
    world: GitLabWorld,
) -> None:
    from watchdog.sources.gitlab.parse import STATE_QUERY, STATES_QUERY

    world.put_lock(PROJECT, "prod", TERRAFORM_USER, "id-1")
    client = as_bearer(world, WATCHDOG_TOKEN)
    states = (await graphql(client, STATES_QUERY, fullPath=PROJECT, after=None)).json()
    (node,) = states["data"]["project"]["terraformStates"]["nodes"]
    assert node["lockedByUser"] == {"username": TERRAFORM_USER}
    assert node["lockedAt"].endswith("Z") and len(node["lockedAt"]) == 20
    one = (await graphql(client, STATE_QUERY, fullPath=PROJECT, name="prod")).json()
    assert one["data"]["project"]["terraformState"] == node
    other = (await graphql(client, "query Other { currentUser { id } }")).json()
    assert "only tfc-watchdog's queries" in other["errors"][0]["message"]
    reporter = await graphql(as_bearer(world, DEVELOPER_TOKEN), STATES_QUERY, fullPath="no/such")
    assert reporter.json() == {"data": {"project": None}}
    assert [r["principal"] for r in world.requests()] == ["watchdog-bot"] * 3 + ["dev"]
    assert all(r["status"] == 200 for r in world.requests())
