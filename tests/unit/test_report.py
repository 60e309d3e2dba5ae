"""The `scan` table: API text never reaches the terminal raw, and the manual fix it prints
for a stale lock is the rung the ladder would take.

Lock reasons, user and team names, and S3-backend lock info are written by whoever takes a
lock; the table escapes their control characters, the JSON document keeps them exact.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.support.builders import EVERY_RUNG, NOW, H, backend_lock, cycle_report, policy, run
from watchdog.decide import decide
from watchdog.memory import Memory
from watchdog.model import (
    ActionKind,
    BackendLock,
    Holder,
    HolderType,
    Observation,
    Run,
    RunActions,
    Source,
    TerraformLockInfo,
    Workspace,
    phase_group,
)
from watchdog.policy import Policy
from watchdog.report import CycleReport, printable, render_table

ESC = "\x1b"
# Wide enough that no cell wraps: a test of escaping sees each row on one line.
ONE_LINE = 10_000
# A reason that, printed raw, clears the screen and forges a second table row.
FORGED = "deploy\n" + "acme/other  user:root  2024-06-01T00:00:00Z  0m  ok  held  default" + ESC
FORGED += "[2J" + ESC + "]0;title\x07 \u202eevil\r"


def _policy() -> Policy:
    return policy(defaults={"actions": EVERY_RUNG})


def _report(*workspaces: Workspace, seen: timedelta = 3 * H) -> CycleReport:
    """decide() over one complete observation, every lock first seen `seen` ago (3 cycles)."""
    observation = Observation(Source.TFC, "acme", NOW, workspaces=workspaces)
    memory = Memory()
    memory.update([observation], NOW - seen)
    memory.update([observation], NOW)
    memory.update([observation], NOW)
    decision = decide([observation], _policy(), memory, NOW, identity=None)
    return cycle_report(observation, decision, NOW)


def _user_lock(reason: str, name: str = "alice") -> Workspace:
    return Workspace(
        organization="acme",
        id="ws-app",
        name="app",
        locked=True,
        locked_reason=reason,
        holder=Holder(HolderType.USER, "user-1", name),
    )


def _run(status: str, *, canceled: bool = False) -> Run:
    """In `status` for 30 hours, every action available; `canceled` two hours ago, its
    cool-off over an hour ago."""
    return run(
        status,
        30 * H,
        cancelable=True,
        force_cancelable=True,
        discardable=True,
        canceled_ago=2 * H if canceled else None,
        force_cancel_in=-H if canceled else None,
    )


def _run_lock(run: Run, *, workspace_id: str = "ws-app", name: str = "app") -> Workspace:
    """The workspace `run` holds the lock of (its current run)."""
    return Workspace(
        organization="acme",
        id=workspace_id,
        name=name,
        locked=True,
        holder=Holder(HolderType.RUN, run.id, run.status),
        current_run=run,
    )


def _assert_terminal_safe(text: str) -> None:
    for char in text:
        assert char == "\n" or char.isprintable(), f"raw {char!r} in:\n{text}"


def test_printable_escapes_controls_and_keeps_ordinary_text() -> None:
    assert printable("plain, ünïcödé, 日本") == "plain, ünïcödé, 日本"
    assert printable("a\nb") == "a\\nb"
    assert printable(ESC + "[31m") == "\\x1b[31m"
    assert printable("\u202e\u200b\u2028") == "\\u202e\\u200b\\u2028"
    assert printable(printable("a\nb")) == "a\\nb"  # escaping twice changes nothing


def test_a_lock_reason_with_newlines_and_ansi_escapes_cannot_forge_rows() -> None:
    report = _report(_user_lock(FORGED))
    text = render_table(report, ONE_LINE)
    _assert_terminal_safe(text)
    lock_rows = [line for line in text.splitlines() if line.startswith("acme/")]
    assert len(lock_rows) == 1, text
    assert "deploy\\nacme/other" in lock_rows[0]
    assert "\\x1b[2J" in lock_rows[0]
    assert "\\u202eevil\\r" in lock_rows[0]


def test_the_json_document_keeps_the_lock_reason_exact() -> None:
    document = _report(_user_lock(FORGED)).to_json()
    assert document["locks"][0]["reason"] == FORGED
    assert json.loads(json.dumps(document))["locks"][0]["reason"] == FORGED


def test_a_holder_name_with_controls_is_escaped_in_table_and_manual_fix() -> None:
    text = render_table(_report(_user_lock("x", name="eve\n\x1b[1mroot")))
    _assert_terminal_safe(text)
    assert "user:eve\\n\\x1b[1mroot" in text
    assert "terraform force-unlock acme/app" in text


def test_an_observation_error_with_controls_never_reaches_the_table() -> None:
    # The table points to stderr, where `scan` prints the error once, escaped.
    observation = Observation(
        Source.TFC, "acme", NOW, complete=False, error="bad page\n" + ESC + "[2Jfake ok"
    )
    report = CycleReport(NOW, True, (observation,), (), ())
    text = render_table(report)
    _assert_terminal_safe(text)
    assert "bad page" not in text
    assert "tfc acme: NOT READ (the reason is on stderr)" in text


def test_a_failed_read_says_nothing_could_be_read_and_json_errors_agree() -> None:
    error = "GET /organizations/:org/workspaces: 401 unauthorized"
    observation = Observation(Source.TFC, "acme", NOW, complete=False, error=error)
    report = CycleReport(NOW, True, (observation,), (), ())
    text = render_table(report)
    assert "No locked workspaces" not in text
    assert "Nothing could be read" in text
    document = report.to_json()
    assert document["sources"][0]["error"] == error
    assert document["errors"] == [f"could not read tfc acme: {error}"]


def test_one_source_unread_does_not_claim_no_locks_anywhere() -> None:
    read = Observation(Source.TFC, "acme", NOW)
    unread = Observation(Source.TFC, "beta", NOW, complete=False, error="timeout")
    text = render_table(CycleReport(NOW, True, (read, unread), (), ()))
    assert "tfc acme: 0 workspaces read, ok" in text
    assert "No locked workspaces in what could be read." in text


def test_counts_are_singular_for_one_and_s3_sources_have_no_workspace_count() -> None:
    lock = _backend_lock(Source.DYNAMODB, "terraform-locks")
    observation = Observation(Source.DYNAMODB, "terraform-locks", NOW, backend_locks=(lock,))
    text = render_table(CycleReport(NOW, True, (observation,), (), ()))
    assert "dynamodb terraform-locks: 1 lock read, ok" in text
    [source] = CycleReport(NOW, True, (observation,), (), ()).to_json()["sources"]
    assert (source["workspaces"], source["locks"]) == (None, 1)


def test_s3_backend_lock_info_is_escaped_and_the_manual_fix_quoted() -> None:
    info = TerraformLockInfo(
        id="id-1; rm -rf ~\n",
        operation="OperationTypeApply\x1b[8m",
        who="ci@runner\nforged row",
        version="1.9.0",
        created=NOW - 5 * H,
        path="bucket/env/prod.tfstate",
    )
    lock = BackendLock(Source.DYNAMODB, "locks", "env/prod.tfstate", info, token="t")
    observation = Observation(Source.DYNAMODB, "locks", NOW, backend_locks=(lock,))
    policy = Policy.model_validate(
        {
            "s3_backend": {"dynamodb_tables": ["locks"], "region": "eu-west-1"},
            "defaults": {"actions": ["delete_lock"]},
        }
    )
    memory = Memory()
    memory.update([observation], NOW - 5 * H)
    memory.update([observation], NOW)
    decision = decide([observation], policy, memory, NOW, identity=None)
    text = render_table(
        CycleReport(NOW, True, (observation,), decision.locks, decision.findings), ONE_LINE
    )
    _assert_terminal_safe(text)
    assert "ci@runner\\nforged row" in text
    assert "OperationTypeApply\\x1b[8m" in text
    # One argument for the shell, with the newline shown, not executed.
    assert "terraform force-unlock 'id-1; rm -rf ~\\n'" in text


# Each non-final status of a run holding a lock, and one whose cancel was already requested.
LADDER_CASES = [
    ("applying", False),
    ("planning", False),
    ("plan_queued", False),
    ("planned", False),
    ("cost_estimated", False),
    ("policy_checked", False),
    ("policy_override", False),
    ("post_plan_completed", False),
    ("applying", True),
]
VERB = {
    ActionKind.CANCEL: "cancel run",
    ActionKind.FORCE_CANCEL: "force-cancel run",
    ActionKind.DISCARD: "discard run",
}


@pytest.mark.parametrize(("status", "canceled"), LADDER_CASES)
def test_the_manual_fix_for_a_run_lock_names_the_rung_the_ladder_takes(
    status: str, canceled: bool
) -> None:
    report = _report(_run_lock(_run(status, canceled=canceled)))
    (planned,) = report.planned
    fix = [line.strip() for line in render_table(report).splitlines() if "run run-1" in line]
    fix = [line for line in fix if line.startswith("acme/app:")]
    assert len(fix) == 1, render_table(report)
    assert fix[0].startswith(f"acme/app: {VERB[planned.kind]} run-1"), (planned.kind, fix)
    if phase_group(status) == "waiting":
        assert planned.kind is ActionKind.DISCARD
        assert "cancel" not in fix[0]


STATE_PATH = "tf-state/prod/dns.tfstate"


def _backend_lock(source: Source, store: str, info_text: str = "") -> BackendLock:
    return backend_lock(
        STATE_PATH, created=NOW - 3 * H, source=source, store=store, info_text=info_text
    )


def _backend_report(cycles: int, state_file: str | None, info_text: str = "") -> CycleReport:
    """decide() over a stale `.tflock` object of bucket tf-state, seen in `cycles` cycles."""
    policy = Policy.model_validate(
        {
            "state_file": state_file,
            "s3_backend": {"lockfile_buckets": [{"bucket": "tf-state", "prefix": "prod/"}]},
            "rules": [
                {
                    "id": "prod-state",
                    "match": {"sources": ["s3"], "paths": ["tf-state/prod/*"]},
                    "lock_stale_after": "2h",
                    "actions": ["delete_lock"],
                }
            ],
        }
    )
    observation = Observation(
        Source.S3,
        "tf-state",
        NOW,
        backend_locks=(_backend_lock(Source.S3, "tf-state", info_text),),
    )
    memory = Memory()
    for _ in range(cycles):
        memory.update([observation], NOW)
    decision = decide([observation], policy, memory, NOW, identity=None)
    return cycle_report(observation, decision, NOW, state_file=state_file)


def test_the_manual_fix_for_a_protected_lock_names_the_protection_not_force_unlock() -> None:
    text = render_table(_report(_user_lock("maintenance: do not unlock", name="carol")), ONE_LINE)
    assert "terraform force-unlock acme/app" not in text
    assert (
        "  acme/app: protected: lock reason 'maintenance: do not unlock' matches "
        "protect.lock_reasons '(?i)maintenance'; ask user:carol, do not unlock it"
    ) in text


def test_a_planned_delete_lock_names_the_state_path_once() -> None:
    text = render_table(_backend_report(2, "state.json"))
    assert f"delete_lock s3:{STATE_PATH}:" in text
    assert "tf-state/tf-state" not in text


@pytest.mark.parametrize(
    ("state_file", "advice"),
    [
        (None, "No state_file is configured"),
        ("state.json", "state.json is written by the daemon"),
    ],
)
def test_a_stale_lock_seen_once_says_it_waits_for_a_second_sighting(
    state_file: str | None, advice: str
) -> None:
    text = render_table(_backend_report(1, state_file))
    assert "The watchdog would not act:" in text
    assert "lock seen with this ID in 1 cycle(s), 2 needed" in text
    assert "`scan` alone never provides the second sighting" in text
    assert advice in text


# --- width ------------------------------------------------------------------------------------


def _wide_report() -> CycleReport:
    """Long cells everywhere: a run holder, a long lock reason, several findings, a planned
    action and restraints with long reasons."""
    run = Run(
        id="run-IzZ8G3g28aa6tEew",
        status="planned",
        created_at=NOW - 50 * H,
        status_timestamps={"planned-at": NOW - 50 * H},
        actions=RunActions(is_cancelable=False, is_force_cancelable=False, is_discardable=True),
    )
    locks = [
        _run_lock(run, workspace_id="ws-billing", name="billing-staging"),
        Workspace(
            organization="acme",
            id="ws-net",
            name="legacy-network-eu-west",
            locked=True,
            locked_reason="Locked by Terraform while the network team migrates the core "
            "routers, expected back on Monday",
            holder=Holder(HolderType.USER, "user-9", "bob"),
        ),
        Workspace(
            organization="acme",
            id="ws-core",
            name="prod-core",
            locked=True,
            locked_reason="maintenance: do not unlock",
            holder=Holder(HolderType.USER, "user-7", "carol"),
        ),
    ]
    return _report(*locks)


@pytest.mark.parametrize("width", [120, 140])
def test_the_table_fits_the_width_and_keeps_every_value(width: int) -> None:
    report = _wide_report()
    text = render_table(report, width)
    for line in text.splitlines():
        # The one exception: a command meant to be pasted stays whole.
        if not line.startswith("  terraform force-unlock"):
            assert len(line) <= width, f"{len(line)} > {width}: {line!r}\n{text}"
    wide = render_table(report, ONE_LINE)
    assert max(len(line) for line in wide.splitlines()) > 120  # the case is a real one
    for word in ("run:run-IzZ8G3g28aa6tEew", "(planned)", "runs_blocked", "Monday"):
        assert word in text, text
    # A wrapped row continues on lines that start blank, never with a workspace name.
    table = text.split("\n\n")[1].splitlines()
    assert len([line for line in table if line.startswith("acme/")]) == 3, text


def test_the_lock_id_column_is_dropped_when_it_repeats_the_workspace() -> None:
    text = render_table(_report(_user_lock("Locked by Terraform")))
    header = next(line for line in text.splitlines() if line.startswith("WORKSPACE"))
    assert "LOCK ID" not in header
    assert header.split()[-2:] == ["LOCK", "REASON"]
    row = next(line for line in text.splitlines() if line.startswith("acme/app "))
    assert row.endswith("  Locked by Terraform")


def test_a_reason_with_too_little_room_gets_a_line_under_its_row() -> None:
    lines = render_table(_wide_report()).splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("acme/legacy-network-eu-west"))
    assert lines[at + 2] == (
        "  lock reason: Locked by Terraform while the network team migrates the core "
        "routers, expected back on Monday"
    )


def test_the_manual_fix_for_a_protected_backend_lock_names_the_protection() -> None:
    text = render_table(_backend_report(2, "state.json", "maintenance window"), ONE_LINE)
    assert "terraform force-unlock" not in text
    assert f"  {STATE_PATH}: protected: " in text
    assert "; ask ci@runner, do not unlock it" in text
