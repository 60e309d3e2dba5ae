"""The run state machine as the API shows it (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/run).

Only what the watchdog can observe is modelled: which statuses are final, which ones wait
for a human, which `actions` flags a status implies, and the `status-timestamps` key of each
status. A run moves only when something moves it (an action, the admin API, or a scheduled
completion), so tests stay deterministic.
"""

from __future__ import annotations

# The statuses in which a run has ended, from the run states of the runs API docs
# (https://developer.hashicorp.com/terraform/cloud-docs/api-docs/run#run-states; see
# docs/tfc-api.md, "Runs"). The simulator keeps its own list instead of importing the
# watchdog's: a test peer that agreed with the product by construction could not show the
# product wrong. tests/unit/test_final_statuses.py compares the two, so a divergence fails.
FINAL = frozenset(
    {
        "applied",
        "planned_and_finished",
        "planned_and_saved",
        "policy_soft_failed",
        "discarded",
        "errored",
        "canceled",
        "force_canceled",
    }
)

# Paused for a human: apply or discard (docs/tfc-api.md, "Runs"). policy_override needs an override
# before it can be confirmed, so it is discardable but not confirmable.
WAITING = frozenset(
    {"planned", "cost_estimated", "policy_checked", "policy_override", "post_plan_completed"}
)
CONFIRMABLE = WAITING - {"policy_override"}
# "Paused waiting for confirmation or priority" (docs/tfc-api.md, "Run actions"): waiting
# statuses and pending.
DISCARDABLE = WAITING | {"pending"}

# `filter[status_group]` values (docs/tfc-api.md, "Runs"). `discardable` is the documented list.
STATUS_GROUPS: dict[str, frozenset[str] | None] = {
    "final": FINAL,
    "non_final": None,  # anything not final, including statuses this simulator never uses
    "discardable": frozenset(
        {
            "planned",
            "planned_and_saved",
            "cost_estimated",
            "policy_checked",
            "policy_override",
            "post_plan_running",
            "post_plan_completed",
        }
    ),
}

# The path a plain plan-and-apply run takes; statuses off this path are reached from
# `planning` (e.g. cost_estimated, errored).
PATH = (
    "pending",
    "plan_queued",
    "planning",
    "planned",
    "confirmed",
    "apply_queued",
    "applying",
    "applied",
)


def is_final(status: str) -> bool:
    return status in FINAL


def is_cancelable(status: str) -> bool:
    """Active or queued, not paused for a human. `pending` is cancelable (docs/tfc-api.md,
    "Run actions")."""
    return not is_final(status) and status not in WAITING


def timestamp_key(status: str) -> str:
    """`applying` -> `applying-at`; `pending` -> `plan-queueable-at` (the documented key)."""
    if status == "pending":
        return "plan-queueable-at"
    return status.replace("_", "-") + "-at"


def path_to(status: str) -> tuple[str, ...]:
    """The statuses a run passed through to reach `status`, in order, ending with it."""
    if status in PATH:
        return PATH[: PATH.index(status) + 1]
    return (*PATH[:3], status)
