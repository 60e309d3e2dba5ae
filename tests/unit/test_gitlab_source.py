"""The GitLab source against the simulator's GitLab app in-process (httpx's ASGI transport),
and against hostile answers (httpx.MockTransport): what is read, what is sent, what is refused.

The real daemon and real Terraform against the same app over HTTP:
tests/e2e/test_gitlab_terraform.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from tests.support.gitlab import (
    DEVELOPER_TOKEN,
    PROJECT,
    TERRAFORM_USER,
    WATCHDOG_TOKEN,
    WATCHDOG_USER,
    gitlab_world,
)
from watchdog.act import Actor
from watchdog.checkconfig import summary
from watchdog.cli import main
from watchdog.configload import load_policy
from watchdog.decide import decide
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import BackendLock, Observation, Outcome, Source, TerraformLockInfo
from watchdog.policy import Policy
from watchdog.simulator.gitlab import GitLabWorld, build_gitlab_app
from watchdog.sources.errors import ChangedError, ForbiddenError, SourceError
from watchdog.sources.gitlab.client import GitLabClient
from watchdog.sources.gitlab.parse import MAX_PAGES
from watchdog.sources.gitlab.source import GitLabStateSource

ADDRESS = "http://gitlab.test"
LOCK_URL_PATH = f"/api/v4/projects/{PROJECT}/terraform/state/prod/lock"


def source_on(
    transport: httpx.AsyncBaseTransport, token: str = WATCHDOG_TOKEN, metrics: Metrics | None = None
) -> GitLabStateSource:
    client = GitLabClient(
        address=ADDRESS, token=token, metrics=metrics or Metrics(), transport=transport
    )
    return GitLabStateSource(client, [PROJECT], metrics or Metrics())


def simulated(world: GitLabWorld, token: str = WATCHDOG_TOKEN) -> GitLabStateSource:
    return source_on(httpx.ASGITransport(app=build_gitlab_app(world)), token)


def watchdog_requests(world: GitLabWorld) -> list[str]:
    return [
        f"{r['method']} {r['path']}" for r in world.requests() if r["principal"] == WATCHDOG_USER
    ]


# --- against the simulator ----------------------------------------------------------------


async def test_observe_reports_each_locked_state_with_gitlabs_own_time_and_user() -> None:
    world = gitlab_world()
    world.find_or_create(PROJECT, "unlocked")
    locked = world.put_lock(PROJECT, "prod", TERRAFORM_USER, "3f2a-lock-id")
    source = simulated(world)

    (observation,) = await source.observe()

    assert observation.complete and observation.source is Source.GITLAB
    assert observation.organization == PROJECT
    (lock,) = observation.backend_locks
    assert lock.path == f"{PROJECT}/prod"
    assert lock.store == PROJECT
    assert lock.info.who == TERRAFORM_USER
    # GitLab's GraphQL time is whole seconds; the lock ID is not readable at all.
    assert locked.locked_at is not None
    assert lock.info.created == locked.locked_at.replace(microsecond=0)
    assert lock.last_modified == lock.info.created
    assert lock.info.id == ""
    assert "3f2a-lock-id" not in lock.token
    assert lock.problem is None


async def test_observe_follows_every_page_of_states() -> None:
    world = gitlab_world()
    for n in range(230):
        world.find_or_create(PROJECT, f"state-{n:03d}")
    world.put_lock(PROJECT, "state-007", TERRAFORM_USER, "a")
    world.put_lock(PROJECT, "state-215", TERRAFORM_USER, "b")

    (observation,) = await simulated(world).observe()

    assert observation.complete
    assert sorted(lk.path for lk in observation.backend_locks) == [
        f"{PROJECT}/state-007",
        f"{PROJECT}/state-215",
    ]
    assert watchdog_requests(world) == ["POST /api/graphql"] * 3


async def test_unlock_rereads_then_sends_one_delete_without_a_lock_id() -> None:
    world = gitlab_world()
    world.put_lock(PROJECT, "prod", TERRAFORM_USER, "3f2a-lock-id")
    source = simulated(world)
    (observation,) = await source.observe()
    (lock,) = observation.backend_locks

    await source.delete_lock(lock)

    state = world.state(PROJECT, "prod")
    assert state is not None and state.lock_xid is None and state.locked_at is None
    # The re-read is the request right before the DELETE: nothing in between.
    assert watchdog_requests(world) == [
        "POST /api/graphql",
        "POST /api/graphql",
        f"DELETE {LOCK_URL_PATH}",
    ]
    delete = world.requests()[-1]
    assert (delete["query"], delete["status"]) == ("", 200)


def release(world: GitLabWorld) -> None:
    state = world.state(PROJECT, "prod")
    assert state is not None
    state.lock_xid = state.locked_by = state.locked_at = None


@pytest.mark.parametrize(
    "takeover",
    [
        pytest.param(lambda w: w.put_lock(PROJECT, "prod", "someone-else", "new-id"), id="user"),
        # The same user locking again a second later (a new apply after a force-unlock).
        pytest.param(
            lambda w: (w.advance(1), w.put_lock(PROJECT, "prod", TERRAFORM_USER, "new-id")),
            id="same-user-later",
        ),
        pytest.param(lambda w: release(w), id="released"),
    ],
)
async def test_a_lock_taken_over_or_released_after_the_read_is_never_unlocked(
    takeover: Callable[[GitLabWorld], Any],
) -> None:
    world = gitlab_world()
    world.put_lock(PROJECT, "prod", TERRAFORM_USER, "old-id")
    source = simulated(world)
    (observation,) = await source.observe()
    (lock,) = observation.backend_locks
    world.advance(5)
    takeover(world)
    before = world.state(PROJECT, "prod")
    assert before is not None
    held = (before.lock_xid, before.locked_by, before.locked_at)

    with pytest.raises(ChangedError):
        await source.delete_lock(lock)

    after = world.state(PROJECT, "prod")
    assert after is not None and (after.lock_xid, after.locked_by, after.locked_at) == held
    assert not [r for r in watchdog_requests(world) if r.startswith("DELETE")]


async def test_a_token_without_the_maintainer_role_is_refused_and_the_lock_stays() -> None:
    world = gitlab_world()
    world.put_lock(PROJECT, "prod", TERRAFORM_USER, "old-id")
    source = simulated(world, DEVELOPER_TOKEN)
    (observation,) = await source.observe()
    (lock,) = observation.backend_locks

    with pytest.raises(ForbiddenError, match="403"):
        await source.delete_lock(lock)

    state = world.state(PROJECT, "prod")
    assert state is not None and state.lock_xid == "old-id"


async def test_an_unknown_project_is_an_incomplete_read_named_not_found() -> None:
    world = gitlab_world()
    client = GitLabClient(
        address=ADDRESS,
        token=WATCHDOG_TOKEN,
        metrics=Metrics(),
        transport=httpx.ASGITransport(app=build_gitlab_app(world)),
    )
    (observation,) = await GitLabStateSource(client, ["no/such-project"], Metrics()).observe()
    assert not observation.complete
    assert observation.error_reason == "not_found"
    assert "no/such-project" in (observation.error or "")


# --- hostile and broken answers -----------------------------------------------------------


def answering(*bodies: Any, status: int = 200) -> httpx.MockTransport:
    """Answers each request with the next body (the last one repeats)."""
    queue = list(bodies)

    def handle(request: httpx.Request) -> httpx.Response:
        body = queue.pop(0) if len(queue) > 1 else queue[0]
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(
            status, content=content, headers={"Date": "Mon, 30 Nov 2026 08:00:00 GMT"}
        )

    return httpx.MockTransport(handle)


def node(name: str = "prod", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "gid://gitlab/Terraform::State/1",
        "name": name,
        "lockedAt": "2026-11-30T06:00:00Z",
        "lockedByUser": {"username": "ci-runner"},
        "latestVersion": None,
    }
    base.update(fields)
    return base


def page(*nodes: Any, has_next: bool = False, cursor: str | None = None) -> dict[str, Any]:
    return {
        "data": {
            "project": {
                "terraformStates": {
                    "pageInfo": {"hasNextPage": has_next, "endCursor": cursor},
                    "nodes": list(nodes),
                }
            }
        }
    }


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"lockedAt": "yesterday"}, "lockedAt"),
        ({"lockedAt": 1764482400}, "lockedAt is not a string"),
        ({"lockedAt": "0001-01-01T00:00:00Z"}, "before 2000"),
        ({"lockedAt": "2027-01-01T00:00:00Z"}, "future"),
        ({"lockedByUser": None}, "lockedByUser"),
        ({"lockedByUser": {"username": ["a"]}}, "lockedByUser"),
        ({"id": None}, "no id"),
    ],
)
async def test_a_lock_with_unreadable_fields_is_reported_with_its_problem(
    fields: dict[str, Any], problem: str
) -> None:
    metrics = Metrics()
    source = source_on(answering(page(node(**fields))), metrics=metrics)
    (observation,) = await source.observe()
    (lock,) = observation.backend_locks
    assert lock.problem is not None and problem in lock.problem
    assert lock.token == ""
    assert observation.complete  # the other states were read: only this lock is unreadable
    with pytest.raises(SourceError, match="refusing"):
        await source.delete_lock(lock)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>sign in</html>", "bad_response"),
        ({"data": None, "errors": [{"message": "Internal server error"}]}, "bad_response"),
        ({"data": {"project": None}}, "not_found"),
        ({"data": {"project": {"terraformStates": None}}}, "unauthorized"),
        ({"data": {"project": {"terraformStates": {"nodes": "x"}}}}, "bad_response"),
        (page(node(), has_next=True, cursor=None), "bad_response"),
        # Partial data with errors: a field the token may not read is not an absent lock.
        ({**page(node()), "errors": [{"message": "lockedByUser: forbidden"}]}, "bad_response"),
        (page(node(name=None)), "bad_response"),
        # Nested beyond every decoder's limit: refused, never an exception out of the cycle.
        (b'{"data":' + b"[" * 5000 + b"]" * 5000 + b"}", "bad_response"),
        ({"errors": [{"message": [[[[["deep"]]]]]}]}, "bad_response"),
    ],
)
async def test_a_broken_answer_makes_the_read_incomplete_never_raises(
    body: Any, reason: str
) -> None:
    metrics = Metrics()
    (observation,) = await source_on(answering(body), metrics=metrics).observe()
    assert not observation.complete
    assert observation.error_reason == reason
    assert observation.error and "\n" not in observation.error


async def test_endless_pages_are_cut_off_and_a_repeated_cursor_is_refused() -> None:
    calls: list[int] = []

    def endless(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        cursor = f"c{len(calls)}"
        return httpx.Response(
            200, json=page(node(name=f"s{len(calls)}"), has_next=True, cursor=cursor)
        )

    (observation,) = await source_on(httpx.MockTransport(endless)).observe()
    assert not observation.complete and "pages" in (observation.error or "")
    assert len(calls) == MAX_PAGES
    # What was read is still reported (the picture is marked partial: no action follows).
    assert len(observation.backend_locks) == MAX_PAGES

    repeating = answering(page(node(), has_next=True, cursor="same"))
    (observation,) = await source_on(repeating).observe()
    assert not observation.complete and "twice" in (observation.error or "")


async def test_an_oversized_answer_is_refused() -> None:
    huge = page(*[node(name=f"s{n}", lockedAt=None) for n in range(60_000)])
    (observation,) = await source_on(answering(huge)).observe()
    assert not observation.complete
    assert "larger than" in (observation.error or "")


async def test_the_token_never_appears_in_an_error() -> None:
    echo = answering({"message": f"bad token {WATCHDOG_TOKEN}"}, status=401)
    (observation,) = await source_on(echo).observe()
    assert observation.error_reason == "unauthorized"
    assert WATCHDOG_TOKEN not in (observation.error or "")
    assert "***" in (observation.error or "")
    assert WATCHDOG_TOKEN not in repr(source_on(echo)._client)


@pytest.mark.parametrize(
    ("failure", "message", "reason", "may_have_acted"),
    [
        # Sent, no answer: GitLab may have unlocked (act.py: outcome `unknown`).
        (httpx.ReadTimeout, "no answer", "timeout", True),
        (httpx.ReadError, "connection reset", "transport", True),
        # A TLS failure once the connection was open: the DELETE may have reached GitLab.
        (httpx.ReadError, "[SSL: BAD_RECORD_MAC] bad record mac", "tls", True),
        # The connection never opened: nothing reached GitLab (act.py: `failed`).
        (httpx.ConnectError, "no answer", "transport", False),
        (httpx.ConnectError, "certificate verify failed", "tls", False),
    ],
)
async def test_a_failed_unlock_is_not_retried_and_says_whether_it_may_have_happened(
    failure: type[httpx.TransportError], message: str, reason: str, may_have_acted: bool
) -> None:
    requests: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request.method)
        if request.method == "DELETE":
            raise failure(message, request=request)
        return httpx.Response(200, json={"data": {"project": {"terraformState": node()}}})

    source = source_on(httpx.MockTransport(handle))
    lock = await source.read_lock(PROJECT, f"{PROJECT}/prod")
    assert lock is not None
    with pytest.raises(SourceError) as caught:
        await source.delete_lock(lock)
    assert (caught.value.reason, caught.value.may_have_acted) == (reason, may_have_acted)
    assert requests == ["POST", "POST", "DELETE"]


def test_lockedat_age_is_gitlabs_clock_not_a_client_clock() -> None:
    # A GitLab lock is aged by lockedAt alone: it is not held back as "unconfirmed" the way a
    # DynamoDB lock dated only by its writer's clock is.
    now = datetime(2026, 11, 30, 8, tzinfo=UTC)
    created = now - timedelta(hours=3)
    lock = BackendLock(
        source=Source.GITLAB,
        store=PROJECT,
        path=f"{PROJECT}/prod",
        info=TerraformLockInfo(id="", operation="", who="ci", version="", created=created, path=""),
        token="gid|2026-11-30T05:00:00Z|ci",
        last_modified=created,
    )
    policy = Policy.model_validate(
        {
            "gitlab": {"projects": [PROJECT]},
            "rules": [
                {
                    "id": "gl",
                    "match": {"sources": ["gitlab"], "paths": [f"{PROJECT}/*"]},
                    "lock_stale_after": "1h",
                    "actions": ["delete_lock"],
                }
            ],
        }
    )
    memory = Memory()
    observation = Observation(
        source=Source.GITLAB, organization=PROJECT, server_now=now, backend_locks=(lock,)
    )
    decisions = []
    for _ in range(2):  # two sightings
        memory.update([observation], now)
        decisions.append(decide([observation], policy, memory, now))
    (state,) = decisions[-1].locks
    assert state.age_source == "locked_at" and state.stale
    (action,) = decisions[-1].planned
    assert action.kind.value == "delete_lock" and action.rule == "gl"
    assert "locked at" in action.reason and "lock ID" not in action.reason


def test_scan_without_a_gitlab_token_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gitlab.yaml"
    config.write_text(f"gitlab: {{address: {ADDRESS}, projects: [{PROJECT}]}}\n")
    for variable in [v for v in os.environ if v.startswith("TFC_WATCHDOG_")]:
        monkeypatch.delenv(variable)  # the caller's own token and overrides
    assert main(["scan", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "no GitLab token: set env TFC_WATCHDOG_GITLAB_TOKEN or gitlab.token_file (a mounted Secret)"
    ]


# --- act.py with the real source on the simulator -------------------------------------------


class AfterRequests(httpx.AsyncBaseTransport):
    """The simulator's app, with `hook` run once `count` requests have been answered: a
    takeover placed exactly between two of the watchdog's requests."""

    def __init__(self, world: GitLabWorld, count: int, hook: Callable[[], Any]) -> None:
        self._inner = httpx.ASGITransport(app=build_gitlab_app(world))
        self._count = count
        self._hook = hook
        self.answered = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self.answered += 1
        if self.answered == self._count:
            self._hook()
        return response


def gitlab_policy(*, dry_run: bool) -> Policy:
    return Policy.model_validate(
        {
            "dry_run": dry_run,
            "gitlab": {"address": ADDRESS, "projects": [PROJECT]},
            "defaults": {"lock_stale_after": "1h", "actions": ["delete_lock"]},
        }
    )


async def plan_on(source: GitLabStateSource, policy: Policy) -> tuple[Any, Memory]:
    memory = Memory()
    for _ in range(2):  # two sightings
        observations = await source.observe()
        now = source.now()
        memory.update(observations, now)
        decision = decide(observations, policy, memory, now)
    return decision, memory


def actor_for(source: GitLabStateSource, memory: Memory) -> Actor:
    return Actor(
        source=None,
        memory=memory,
        metrics=Metrics(),
        log=structlog.get_logger("watchdog.act"),
        backend_sources={Source.GITLAB: source},
    )


async def test_dry_run_rereads_and_sends_nothing() -> None:
    world = gitlab_world()
    world.put_lock(PROJECT, "prod", TERRAFORM_USER, "old")
    world.advance(2 * 3600)
    policy = gitlab_policy(dry_run=True)
    source = simulated(world)
    decision, memory = await plan_on(source, policy)
    (result,) = await actor_for(source, memory).carry_out(
        decision.planned, policy, source.now(), None
    )
    assert result.outcome is Outcome.DRY_RUN
    assert not [r for r in watchdog_requests(world) if not r.endswith("/api/graphql")]
    state = world.state(PROJECT, "prod")
    assert state is not None and state.lock_xid == "old"


async def test_a_takeover_after_acts_recheck_is_caught_by_the_reread_before_the_delete() -> None:
    world = gitlab_world()
    world.put_lock(PROJECT, "prod", TERRAFORM_USER, "old")
    world.advance(2 * 3600)
    policy = gitlab_policy(dry_run=False)

    def takeover() -> None:
        release(world)
        world.advance(1)
        world.put_lock(PROJECT, "prod", TERRAFORM_USER, "new")

    # Two observe reads, then act's recheck (3rd); the takeover lands right after it.
    transport = AfterRequests(world, 3, takeover)
    source = source_on(transport)
    decision, memory = await plan_on(source, policy)
    (result,) = await actor_for(source, memory).carry_out(
        decision.planned, policy, source.now(), None
    )
    assert result.outcome is Outcome.SKIPPED_CHANGED
    assert transport.answered == 4  # observe, observe, recheck, the re-read: no DELETE
    state = world.state(PROJECT, "prod")
    assert state is not None and state.lock_xid == "new"


def test_the_readme_gitlab_config_validates(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("```yaml gitlab-example\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "gitlab.yaml"
    config.write_text(block)
    policy = load_policy(str(config), {})
    assert policy.gitlab is not None and policy.gitlab.projects == ("platform/network",)
    assert policy.rules[0].match.sources == ("gitlab",)


def test_check_config_summary_names_the_gitlab_projects() -> None:
    policy = Policy.model_validate({"gitlab": {"projects": [PROJECT, "platform/dns"]}})
    assert f"gitlab projects: {PROJECT}, platform/dns" in summary(policy, [])


async def test_a_failed_reread_before_the_unlock_is_an_unlock_never_sent() -> None:
    answers = iter(
        [
            httpx.Response(200, json={"data": {"project": {"terraformState": node()}}}),
            httpx.Response(502, text="bad gateway"),  # the re-read in delete_lock, 3 attempts
            httpx.Response(502, text="bad gateway"),
            httpx.Response(502, text="bad gateway"),
        ]
    )
    methods: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        return next(answers)

    source = source_on(httpx.MockTransport(handle))
    lock = await source.read_lock(PROJECT, f"{PROJECT}/prod")
    assert lock is not None
    with pytest.raises(SourceError) as caught:
        await source.delete_lock(lock)
    assert (caught.value.reason, caught.value.may_have_acted) == ("server_error", False)
    assert "DELETE" not in methods


async def test_a_rotated_token_is_sent_next_and_both_tokens_stay_redacted() -> None:
    new_token = "glpat-rotatedvalue0000"
    sent: list[str] = []

    def echo_both(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["Authorization"])
        # A proxy echoing both: an answer to a request sent before the swap may quote the old.
        return httpx.Response(401, json={"message": f"old {WATCHDOG_TOKEN} new {new_token}"})

    source = source_on(httpx.MockTransport(echo_both))
    source._client.set_token(new_token)
    source._client.set_token("")  # empty: ignored, the new token stays
    (observation,) = await source.observe()
    assert sent == [f"Bearer {new_token}"]
    for secret in (WATCHDOG_TOKEN, new_token):
        assert secret not in (observation.error or "")
    assert (observation.error or "").count("***") == 2
