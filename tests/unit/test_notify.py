"""Notifications: what is sent when, to a real local receiver through the real apprise
(`json://` and `mmost://` pointed at 127.0.0.1), and what the state file remembers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import NOW, H, backend_lock, cycle_report
from tests.support.receiver import Receiver, receiver
from watchdog.decide import decide
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import (
    ActionResult,
    Holder,
    HolderType,
    Observation,
    Outcome,
    Source,
    Workspace,
)
from watchdog.notify import Notifier
from watchdog.policy import NotificationTarget, Policy
from watchdog.report import CycleReport

POLICY = Policy.model_validate({"tfc": {"organizations": ["acme"]}})


@pytest.fixture
def inbox() -> Iterator[Receiver]:
    with receiver() as server:
        yield server


def bob_lock(name: str = "network-prod", holder: str = "bob") -> Workspace:
    return Workspace(
        organization="acme",
        id=f"ws-{name}",
        name=name,
        locked=True,
        locked_reason="Locked by Terraform",
        holder=Holder(HolderType.USER, f"user-{holder}", holder),
    )


def cycle(
    memory: Memory, now: datetime, *workspaces: Workspace, complete: bool = True
) -> CycleReport:
    """One cycle's report as the daemon makes it: memory.update, then decide."""
    observation = Observation(
        Source.TFC, "acme", now, workspaces=workspaces if complete else (), complete=complete
    )
    memory.update([observation], now)
    decision = decide([observation], POLICY, memory, now)
    return cycle_report(observation, decision, now)


def watch(notifier: Notifier, memory: Memory, minutes: int, *workspaces: Workspace) -> datetime:
    """A cycle every 30 minutes from NOW - 3h for `minutes` (the lock first seen at the
    first; stale past 2h, the default): returns the last cycle's time."""
    when = NOW - 3 * H
    for step in range(0, minutes + 1, 30):
        when = NOW - 3 * H + timedelta(minutes=step)
        asyncio.run(notifier.notify(cycle(memory, when, *workspaces)))
    return when


def target(**fields: Any) -> NotificationTarget:
    return NotificationTarget.model_validate({"id": "oncall", **fields})


def counted(metrics: Metrics, event: str, outcome: str, target_id: str = "oncall") -> float:
    value = metrics.registry.get_sample_value(
        "tfc_watchdog_notifications_total",
        {"target": target_id, "event": event, "outcome": outcome},
    )
    return value or 0.0


def test_one_message_when_a_lock_turns_stale_none_per_cycle_one_when_it_clears(
    inbox: Receiver, tmp_path: Path
) -> None:
    memory = Memory(str(tmp_path / "state.json"))
    metrics = Metrics()
    notifier = Notifier([target(urls=[inbox.json_url()])], memory, metrics)
    # Seen for 3 hours, a cycle every 30 minutes: stale past 2h (the default), so from
    # +2h30m on; then the lock is gone.
    watch(notifier, memory, 180, bob_lock())
    asyncio.run(notifier.notify(cycle(memory, NOW + timedelta(minutes=1))))

    titles = inbox.titles()
    assert len(titles) == 2, titles
    assert titles[0] == "Stale lock on acme/network-prod: user:bob, 2h30m"
    assert titles[1] == "Cleared: stale lock on acme/network-prod (user:bob)"
    first = inbox.bodies()[0]["message"]
    for line in (
        "Workspace: acme/network-prod",
        "Holder: user:bob",
        "Why: lock held by user:bob",
        "The watchdog: not acting: force_unlock not allowed by rule defaults",
        "Manual fix: ask user:bob whether they are done, then `terraform force-unlock",
    ):
        assert line in first, first
    assert counted(metrics, "lock_stale", "sent") == 1
    assert counted(metrics, "cleared", "sent") == 1
    assert memory.notified() == {}


def test_a_restart_does_not_repeat_a_message(inbox: Receiver, tmp_path: Path) -> None:
    state = str(tmp_path / "state.json")
    memory = Memory(state)
    targets = [target(urls=[inbox.json_url()])]
    watch(Notifier(targets, memory, Metrics()), memory, 180, bob_lock())
    assert len(inbox.received) == 1

    restarted = Memory.load(state)
    assert len(restarted.notified()) == 1
    report = cycle(restarted, NOW + timedelta(seconds=60), bob_lock())
    asyncio.run(Notifier(targets, restarted, Metrics()).notify(report))
    assert len(inbox.received) == 1


def test_a_new_holder_is_a_new_message_and_the_old_one_clears(inbox: Receiver) -> None:
    memory = Memory()
    notifier = Notifier([target(urls=[inbox.json_url()])], memory, Metrics())
    watch(notifier, memory, 180, bob_lock())
    alice = bob_lock(holder="alice")
    for step in range(1, 200, 30):
        asyncio.run(notifier.notify(cycle(memory, NOW + timedelta(minutes=step), alice)))
    assert inbox.titles()[1] == "Cleared: stale lock on acme/network-prod (user:bob)"
    assert inbox.titles()[2].startswith("Stale lock on acme/network-prod: user:alice")
    assert len(inbox.titles()) == 3


def test_a_reminder_every_remind_every_while_it_lasts(inbox: Receiver) -> None:
    memory = Memory()
    notifier = Notifier([target(urls=[inbox.json_url()], remind_every="1h")], memory, Metrics())
    watch(notifier, memory, 300, bob_lock())
    # Stale from +2h30m (sent), reminded at +3h30m and +4h30m.
    titles = inbox.titles()
    assert [t.split(" on ")[0] for t in titles] == [
        "Stale lock",
        "Still: Stale lock",
        "Still: Stale lock",
    ], titles


def test_an_incomplete_read_says_nothing_cleared(inbox: Receiver) -> None:
    memory = Memory()
    notifier = Notifier([target(urls=[inbox.json_url()])], memory, Metrics())
    watch(notifier, memory, 180, bob_lock())
    asyncio.run(notifier.notify(cycle(memory, NOW + timedelta(minutes=1), complete=False)))
    assert len(inbox.received) == 1
    assert len(memory.notified()) == 1


def test_match_and_events_select_what_a_target_gets(inbox: Receiver) -> None:
    memory = Memory()
    notifier = Notifier(
        [
            target(id="prod", urls=[inbox.json_url("prod")], match={"workspaces": ["*-prod"]}),
            target(id="quiet", urls=[inbox.json_url("quiet")], events=["run_stuck"]),
        ],
        memory,
        Metrics(),
    )
    dev = bob_lock("network-dev")
    watch(notifier, memory, 180, bob_lock(), dev)
    assert [r.path for r in inbox.received] == ["/prod"]
    assert "network-prod" in inbox.titles()[0]


def test_mattermost_gets_the_same_message(inbox: Receiver) -> None:
    memory = Memory()
    token = "abcdefghijklmnopqrstuvwxyz"
    notifier = Notifier([target(urls=[inbox.mattermost_url(token)])], memory, Metrics())
    watch(notifier, memory, 180, bob_lock())
    [message] = inbox.received
    assert message.path == f"/hooks/{token}"
    assert "Stale lock on acme/network-prod: user:bob" in message.body["text"]


def test_a_failing_receiver_is_counted_and_tried_again_next_cycle(inbox: Receiver) -> None:
    memory = Memory()
    metrics = Metrics()
    notifier = Notifier([target(urls=[inbox.json_url()])], memory, metrics)
    inbox.mode = "error"
    watch(notifier, memory, 180, bob_lock())
    assert counted(metrics, "lock_stale", "failed") == 2  # +2h30m, +3h: each tried
    assert memory.notified() == {}
    inbox.mode = "ok"
    asyncio.run(notifier.notify(cycle(memory, NOW + timedelta(minutes=30), bob_lock())))
    assert counted(metrics, "lock_stale", "sent") == 1
    assert len(memory.notified()) == 1


def test_a_hanging_receiver_does_not_hold_the_cycle(inbox: Receiver) -> None:
    memory = Memory()
    metrics = Metrics()
    notifier = Notifier([target(urls=[inbox.json_url()], timeout="1s")], memory, metrics)
    inbox.mode = "hang"  # holds every request until released (60 s at most)
    watch(notifier, memory, 150, bob_lock())
    # notify() came back while the receiver still held the request: no wait on it.
    assert inbox.in_flight == 1
    assert counted(metrics, "lock_stale", "timeout") == 1
    assert memory.notified() == {}


def test_an_unreadable_urls_file_fails_the_message_not_the_cycle(tmp_path: Path) -> None:
    memory = Memory()
    metrics = Metrics()
    notifier = Notifier([target(urls_file=str(tmp_path / "missing"))], memory, metrics)
    watch(notifier, memory, 150, bob_lock())
    assert counted(metrics, "lock_stale", "failed") == 1


def test_urls_file_is_read_at_send_time(inbox: Receiver, tmp_path: Path) -> None:
    secret = tmp_path / "urls"
    secret.write_text(f"# the on-call channel\n{inbox.json_url('from-file')}\n")
    memory = Memory()
    notifier = Notifier([target(urls_file=str(secret))], memory, Metrics())
    watch(notifier, memory, 150, bob_lock())
    assert [r.path for r in inbox.received] == ["/from-file"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"urls": ["nosuch://secret-part/x"]}, "urls[0] (nosuch://...): not a URL apprise"),
        ({}, "give urls or urls_file"),
        ({"urls": ["json://h/x"], "events": []}, "events is empty"),
        ({"urls": ["json://h/x"], "events": ["lock_gone"]}, "lock_gone"),
        ({"urls": ["json://h/x"], "timeout": "5m"}, "between 0s and 1m"),
        ({"urls": ["json://h/x"], "remind_every": "0s"}, "greater than zero"),
        ({"id": "On Call", "urls": ["json://h/x"]}, "is not a slug"),
    ],
)
def test_bad_targets_are_config_errors_that_never_show_a_url(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    import yaml

    from watchdog.configload import ConfigError, load_policy

    path = tmp_path / "watchdog.yaml"
    entry = {"id": "oncall", **fields}
    path.write_text(yaml.safe_dump({"tfc": {"organizations": ["acme"]}, "notifications": [entry]}))
    with pytest.raises(ConfigError) as caught:
        load_policy(str(path))
    text = "\n".join(caught.value.lines)
    assert message in text, text
    assert "secret-part" not in text
    assert all(line.startswith(f"{path}:") for line in caught.value.lines)


def with_results(report: CycleReport, outcome: Outcome, detail: str = "") -> CycleReport:
    """The report as if the act stage had carried out its planned actions with `outcome`."""
    results = tuple(ActionResult(action, outcome, detail) for action in report.planned)
    return dataclasses.replace(report, dry_run=False, results=results)


def test_a_failing_action_is_said_once_and_a_done_one_each_time(inbox: Receiver) -> None:
    memory = Memory()
    notifier = Notifier(
        [target(urls=[inbox.json_url()], events=["action", "action_failed"])], memory, Metrics()
    )
    policy = Policy.model_validate(
        {"tfc": {"organizations": ["acme"]}, "defaults": {"actions": ["force_unlock"]}}
    )
    reports = []
    for step in range(0, 241, 30):
        when = NOW - 3 * H + timedelta(minutes=step)
        observation = Observation(Source.TFC, "acme", when, workspaces=(bob_lock(),))
        memory.update([observation], when)
        decision = decide([observation], policy, memory, when)
        reports.append(cycle_report(observation, decision, when, dry_run=False))
    planned = [r for r in reports if r.planned]
    assert len(planned) >= 3
    # A pending state upload: the unlock fails every cycle, one message says so.
    for report in planned:
        asyncio.run(notifier.notify(with_results(report, Outcome.FAILED, "state upload pending")))
    assert inbox.titles() == ["force_unlock acme/network-prod: failed"]
    assert "Outcome: failed: state upload pending" in inbox.bodies()[0]["message"]
    asyncio.run(notifier.notify(with_results(planned[-1], Outcome.DONE)))
    assert inbox.titles()[-1] == "force_unlock acme/network-prod: done"


def test_an_s3_backend_lock_names_its_state_path_and_who(inbox: Receiver) -> None:
    path = "tf-state/prod/network.tfstate"
    lock = backend_lock(path, created=NOW - 3 * H)
    policy = Policy.model_validate({"s3_backend": {"lockfile_buckets": [{"bucket": "tf-state"}]}})
    observation = Observation(Source.S3, "tf-state", NOW, backend_locks=(lock,))
    memory = Memory()
    memory.update([observation], NOW)
    decision = decide([observation], policy, memory, NOW)
    report = cycle_report(observation, decision, NOW)
    notifier = Notifier(
        [target(urls=[inbox.json_url()], match={"sources": ["s3"], "paths": ["tf-state/prod/*"]})],
        memory,
        Metrics(),
    )
    asyncio.run(notifier.notify(report))
    [body] = inbox.bodies()
    assert body["title"].startswith(
        f"Stale lock on {path} (s3 tf-state): ci@runner (Who: of lock 4f6a)"
    )
    assert "terraform force-unlock 4f6a" in body["message"]


def test_a_backend_lock_under_a_notice_gets_one_notice_message(inbox: Receiver) -> None:
    path = "tf-state/prod/network.tfstate"
    lock = backend_lock(path, created=NOW - 3 * H)
    policy = Policy.model_validate(
        {
            "s3_backend": {"lockfile_buckets": [{"bucket": "tf-state"}]},
            "defaults": {"actions": ["delete_lock"], "notice": "30m"},
        }
    )
    memory = Memory()
    notifier = Notifier(
        [target(urls=[inbox.json_url()], events=["notice"], match={"sources": ["s3"]})],
        memory,
        Metrics(),
    )
    for when in (NOW - timedelta(minutes=10), NOW):
        observation = Observation(Source.S3, "tf-state", when, backend_locks=(lock,))
        memory.update([observation], when)
        memory.prune_notices([observation])
        decision = decide([observation], policy, memory, when)
        for notice in decision.notices:
            if notice.new:
                memory.note_notice(notice.action.workspace_id, notice.holder_id, "", when)
        report = cycle_report(observation, decision, when, dry_run=False, notices=decision.notices)
        asyncio.run(notifier.notify(report))
    # Sightings enough only at NOW: the notice is given then, once, and said once.
    [body] = inbox.bodies()
    assert body["title"] == (
        f"Notice: delete-lock {path} (s3 tf-state) at 2024-06-01 12:30 UTC unless it is released"
    )
    assert "the lock of terraform:ci@runner" in body["message"]
