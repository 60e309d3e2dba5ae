"""The GCS lock-file source against a real fake-gcs-server: what it reads, what it deletes,
and the generation-match precondition it sends (read back from the server's request log)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.backend_locks import (
    TakenOverAfterTheReread,
    assert_missing_store,
    assert_unreachable,
    backend_actor,
    lock_info_json,
    only_lock,
    only_reported_lock,
)
from tests.support.daemon import free_port
from tests.support.gcs import (
    BUCKET,
    LOCK_NAME,
    STATE_NAME,
    STATE_PATH,
    FakeGcsServer,
    PreconditionProxy,
)
from tests.support.samples import parse_errors, requests
from watchdog.decide import decide
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import ActionKind, Outcome, PlannedAction, Source
from watchdog.policy import Policy
from watchdog.sources.errors import ChangedError, SourceError
from watchdog.sources.gcslockfile import GcsLockfileSource

pytestmark = pytest.mark.e2e


def lock_json(**overrides: str) -> bytes:
    # Terraform writes a UUID as its ID and reports the object's generation as the lock ID.
    return lock_info_json(f"gs://{BUCKET}/{LOCK_NAME}", **overrides).encode()


@pytest.fixture
def source(fake_gcs: FakeGcsServer, metrics: Metrics) -> Iterator[GcsLockfileSource]:
    lockfiles = GcsLockfileSource([(BUCKET, "")], metrics, endpoint_url=fake_gcs.url)
    yield lockfiles
    lockfiles.close()


async def test_a_lock_file_is_reported_with_its_state_path_and_its_generation_as_lock_id(
    fake_gcs, source
):
    stored = fake_gcs.upload(LOCK_NAME, lock_json())
    fake_gcs.upload(STATE_NAME, b"{}")  # the state itself is no lock

    observation, lock = await only_reported_lock(source, Source.GCS, BUCKET, STATE_PATH)

    # What `terraform force-unlock` takes for the gcs backend: the generation, not the UUID.
    assert lock.info.id == lock.token == stored["generation"]
    assert (lock.info.who, lock.info.operation) == ("runner@ci-42", "OperationTypeApply")
    assert lock.info.created == datetime(2026, 11, 29, 4, 14, 57, 641020, tzinfo=UTC)
    assert lock.last_modified == datetime.fromisoformat(stored["timeCreated"])
    assert abs(observation.server_now - datetime.now(UTC)) < timedelta(minutes=1)


async def test_lock_files_outside_the_prefix_are_not_read(fake_gcs, metrics):
    fake_gcs.upload("prod/a.tflock", lock_json())
    fake_gcs.upload("dev/b.tflock", lock_json())
    source = GcsLockfileSource([(BUCKET, "dev/")], metrics, endpoint_url=fake_gcs.url)
    try:
        (observation,) = await source.observe()
    finally:
        source.close()

    assert [lock.path for lock in observation.backend_locks] == [f"{BUCKET}/dev/b.tfstate"]


async def test_a_lock_file_without_created_takes_its_age_from_time_created(fake_gcs, source):
    body = {k: v for k, v in json.loads(lock_json()).items() if k != "Created"}
    stored = fake_gcs.upload(LOCK_NAME, json.dumps(body).encode())

    lock = await only_lock(source)

    assert lock.problem is None
    assert lock.info.created == datetime.fromisoformat(stored["timeCreated"])


async def test_a_lock_file_is_deleted_with_a_generation_match_precondition(
    fake_gcs, source, metrics
):
    stored = fake_gcs.upload(LOCK_NAME, lock_json())
    lock = await only_lock(source)

    await source.delete_lock(lock)

    assert fake_gcs.metadata(LOCK_NAME) is None
    deletes = [r for r in fake_gcs.requests() if r.is_delete_of(LOCK_NAME)]
    # (fake-gcs-server answers 200 where Cloud Storage answers 204.)
    assert [(r.query.get("ifGenerationMatch"), r.status) for r in deletes] == [
        ([stored["generation"]], 200)
    ]
    assert requests(metrics, "gcs objects.delete", 200) == 1


async def test_only_the_object_requests_it_counts_reach_the_store_none_in_the_background(
    fake_gcs, source, metrics
):
    # google-cloud-storage (3.17 here) fetches each bucket's metadata in a background thread
    # on its first call, for tracing attributes: a request no budget counts, needing
    # `storage.buckets.get` (not a documented permission), retried in the background for as
    # long as the store does not answer. The source turns it off.
    fake_gcs.upload(LOCK_NAME, lock_json())
    fake_gcs.mark()

    await source.delete_lock(await only_lock(source))
    await asyncio.sleep(0.5)  # a background fetch starts at once; give it time to arrive

    sent = fake_gcs.requests()
    assert sent and all("/o" in r.path for r in sent), [(r.method, r.path) for r in sent]
    assert [t.name for t in threading.enumerate() if "_fetch_background" in t.name] == []
    assert requests(metrics, "gcs other GET", 200) == 0


async def test_a_lock_file_taken_again_after_the_listing_survives_and_no_delete_is_sent(
    fake_gcs, source
):
    fake_gcs.upload(LOCK_NAME, lock_json())
    lock = await only_lock(source)
    # Released and taken by another run: same name, a new generation.
    fake_gcs.delete(LOCK_NAME)
    newer = lock_json(Who="other@ci-43")
    fake_gcs.upload(LOCK_NAME, newer)
    fake_gcs.mark()

    with pytest.raises(ChangedError):
        await source.delete_lock(lock)

    assert fake_gcs.body(LOCK_NAME) == newer
    assert [r for r in fake_gcs.requests() if r.method == "DELETE"] == []


async def test_a_lock_file_released_after_the_listing_is_reported_as_changed(fake_gcs, source):
    fake_gcs.upload(LOCK_NAME, lock_json())
    lock = await only_lock(source)
    fake_gcs.delete(LOCK_NAME)

    with pytest.raises(ChangedError):
        await source.delete_lock(lock)


async def test_a_takeover_between_the_reread_and_the_delete_is_refused_by_the_precondition(
    fake_gcs, metrics
):
    """The window no re-read can close: Cloud Storage's generation match closes it."""
    fake_gcs.upload(LOCK_NAME, lock_json())
    newer = lock_json(Who="other@ci-43")

    def take_over() -> None:
        fake_gcs.delete(LOCK_NAME)
        fake_gcs.upload(LOCK_NAME, newer)

    with PreconditionProxy(fake_gcs.url) as proxy:
        source = GcsLockfileSource([(BUCKET, "")], metrics, endpoint_url=proxy.url)
        try:
            lock = await only_lock(source)
            proxy.before_delete = take_over
            with pytest.raises(ChangedError):
                await source.delete_lock(lock)
        finally:
            source.close()

    assert fake_gcs.body(LOCK_NAME) == newer
    assert proxy.deletes == [(f"ifGenerationMatch={lock.token}&prettyPrint=false", 412)]
    assert requests(metrics, "gcs objects.delete", 412) == 1


async def test_a_malformed_lock_file_is_reported_with_a_problem_and_never_deleted(
    fake_gcs, source, metrics
):
    fake_gcs.upload(LOCK_NAME, b"garbage")

    lock = await only_lock(source)

    assert lock.problem
    assert parse_errors(metrics) == 1
    with pytest.raises(SourceError, match="refusing"):
        await source.delete_lock(lock)
    assert fake_gcs.metadata(LOCK_NAME) is not None


async def test_a_lock_file_nested_deeper_than_the_recursion_limit_is_a_problem(fake_gcs, source):
    # 40 KB: under the size cap, far deeper than the interpreter's recursion limit.
    fake_gcs.upload(LOCK_NAME, b"[" * 20_000 + b"]" * 20_000)

    lock = await only_lock(source)

    assert lock.problem == "lock info is not JSON: nested too deeply"


async def test_a_lock_file_created_in_the_future_by_the_writers_clock_is_a_problem(
    fake_gcs, source
):
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    fake_gcs.upload(LOCK_NAME, lock_json(Created=future))

    lock = await only_lock(source)

    assert lock.problem is not None
    assert "future" in lock.problem


async def test_a_missing_bucket_gives_an_incomplete_observation(fake_gcs, metrics):
    source = GcsLockfileSource([("no-such-bucket", "")], metrics, endpoint_url=fake_gcs.url)
    try:
        (observation,) = await source.observe()
    finally:
        source.close()

    assert_missing_store(observation, "no-such-bucket")


async def test_an_unreachable_endpoint_gives_an_incomplete_observation(gcs_env, metrics):
    endpoint = f"http://127.0.0.1:{free_port()}"
    source = GcsLockfileSource([(BUCKET, "")], metrics, endpoint_url=endpoint, timeout=1.0)
    try:
        (observation,) = await source.observe()
    finally:
        source.close()

    assert_unreachable(observation, metrics, Source.GCS)
    # Each attempt that got no answer is counted too (the library retries within `timeout`).
    assert requests(metrics, "gcs objects.list", "error") >= 1


# --- the whole act stage: a takeover right after the watchdog's re-read --------------------


async def planned_delete(
    fake_gcs: FakeGcsServer, source: GcsLockfileSource, *, dry_run: bool
) -> tuple[Policy, Memory, list[PlannedAction]]:
    """A lock file written an hour ago by its writer's clock, seen in three cycles and past a
    1s threshold by GCS's clock too: decide plans its delete."""
    old_created = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    fake_gcs.upload(LOCK_NAME, lock_json(Created=old_created))
    policy = Policy.model_validate(
        {
            "dry_run": dry_run,
            "gcs_backend": {"endpoint_url": fake_gcs.url, "buckets": [{"bucket": BUCKET}]},
            "defaults": {"lock_stale_after": "1s", "actions": ["delete_lock"]},
        }
    )
    memory = Memory()
    for _ in range(2):  # two sightings before any delete
        observations = await source.observe()
        memory.update(observations, source.now())
    # Past the 1s threshold by timeCreated too (whole seconds in the store's Date header).
    await asyncio.sleep(2.1)
    observations = await source.observe()
    memory.update(observations, source.now())
    decision = decide(observations, policy, memory, source.now())
    assert [a.kind for a in decision.planned] == [ActionKind.DELETE_LOCK]
    return policy, memory, list(decision.planned)


async def test_dry_run_sends_no_delete(fake_gcs, source, metrics):
    policy, memory, planned = await planned_delete(fake_gcs, source, dry_run=True)
    actor = backend_actor(memory, metrics, Source.GCS, source)
    fake_gcs.mark()

    results = await actor.carry_out(planned, policy, source.now(), None)

    assert [r.outcome for r in results] == [Outcome.DRY_RUN]
    assert [r for r in fake_gcs.requests() if r.method == "DELETE"] == []
    assert fake_gcs.metadata(LOCK_NAME) is not None


async def test_a_lock_taken_over_after_acts_reread_survives_as_skipped_changed(
    fake_gcs, source, metrics
):
    """On a store that ignores ifGenerationMatch on DELETE (fake-gcs-server), the source's own
    re-read right before the delete is what keeps the new lock."""
    policy, memory, planned = await planned_delete(fake_gcs, source, dry_run=False)
    newer = lock_json(Who="other@ci-43")

    def take_over() -> None:
        fake_gcs.delete(LOCK_NAME)
        fake_gcs.upload(LOCK_NAME, newer)

    actor = backend_actor(memory, metrics, Source.GCS, TakenOverAfterTheReread(source, take_over))
    fake_gcs.mark()

    results = await actor.carry_out(planned, policy, source.now(), None)

    assert [r.outcome for r in results] == [Outcome.SKIPPED_CHANGED]
    assert fake_gcs.body(LOCK_NAME) == newer
    # The only DELETE is the test's own takeover (no precondition): the watchdog sent none.
    watchdog_deletes = [r for r in fake_gcs.requests() if "ifGenerationMatch" in r.query]
    assert [r for r in watchdog_deletes if r.method == "DELETE"] == []
