"""Decide: what this cycle's observations mean and what the ladder would do about them.

Pure: no I/O, no clock reads, no logging. "Now" is a parameter (the API server's clock), the
memory is read through a read-only view (`MemoryView`), never written (the daemon calls
`Memory.update` before `decide`).

Two ladders, one per kind of lock store, each in its own module:
- `tfc`: workspaces of HCP Terraform / Terraform Enterprise, cancel -> force_cancel ->
  discard -> unlock / force_unlock.
- `backend`: S3-backend locks (DynamoDB items, `.tflock` objects), delete_lock.
`decide` runs both over one cycle's observations and merges what they find and plan; act.py
replans a single action on a fresh read with `plan_for_workspace` / `plan_for_backend_lock`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from watchdog.decide.backend import decide_backend, plan_for_backend_lock
from watchdog.decide.common import MIN_SIGHTINGS, Decision, MemoryView, Restraint
from watchdog.decide.tfc import decide_tfc, plan_for_workspace
from watchdog.model import Holder, Observation
from watchdog.policy import Policy

__all__ = [
    "MIN_SIGHTINGS",
    "Decision",
    "MemoryView",
    "Restraint",
    "decide",
    "plan_for_backend_lock",
    "plan_for_workspace",
]


def decide(
    observations: Sequence[Observation],
    policy: Policy,
    memory: MemoryView,
    now: datetime,
    *,
    identity: Holder | None = None,
) -> Decision:
    """Findings and planned actions for this cycle's observations.

    `now` is the TFC server's clock; S3-backend locks are aged by the `server_now` of their
    own observation.
    """
    tfc = decide_tfc(observations, policy, memory, now, identity=identity)
    backend = decide_backend(observations, policy, memory, now)
    planned = sorted(
        tfc.planned + backend.planned,
        key=lambda a: (-a.age, a.organization, a.workspace, a.workspace_id),
    )
    return Decision(
        tuple(tfc.locks + backend.locks),
        tuple(tfc.findings + backend.findings),
        tuple(planned),
        tuple(tfc.restraints + backend.restraints),
        tuple(tfc.notices + backend.notices),
    )
