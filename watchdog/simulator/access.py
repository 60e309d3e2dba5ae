"""Access levels and the `permissions` blocks computed for the calling token.

Levels are the fixed workspace access levels (docs/tfc-api.md, "Lock, unlock and
force-unlock" and "Run actions"): read < plan < write < admin. Lock and unlock need write
("Lock/unlock" is part of fixed write access), force-unlock needs admin; cancel, discard and
apply need write ("apply runs"), force-cancel needs admin.

Organization tokens: they may read every workspace and run of their organization. The run
actions are documented as off-limits to them (docs/tfc-api.md, "Run actions"), so their run
permissions are all false and the actions answer 404. Whether they may lock, unlock or
force-unlock is not documented; the simulator lets them, as a workspace admin could, so that a
watchdog that relies on an organization token sees its lock actions work here and its run
actions refused (the conservative reading for the run side, which is the destructive one).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

Level = Literal["none", "read", "plan", "write", "admin"]
LEVELS: tuple[Level, ...] = ("none", "read", "plan", "write", "admin")
RANK = {level: rank for rank, level in enumerate(LEVELS)}

READ, PLAN, WRITE, ADMIN = RANK["read"], RANK["plan"], RANK["write"], RANK["admin"]

# Workspace permission key -> minimum level (the workspaces API docs list the full key set,
# docs/tfc-api.md, "Workspaces").
_WORKSPACE_NEEDS = {
    "can-update": ADMIN,
    "can-destroy": ADMIN,
    "can-queue-run": PLAN,
    "can-read-run": READ,
    "can-read-variable": READ,
    "can-update-variable": WRITE,
    "can-read-state-versions": READ,
    "can-read-state-outputs": READ,
    "can-create-state-versions": WRITE,
    "can-queue-apply": WRITE,
    "can-lock": WRITE,
    "can-unlock": WRITE,
    "can-force-unlock": ADMIN,
    "can-read-settings": READ,
    "can-manage-tags": ADMIN,
    "can-manage-run-tasks": ADMIN,
    "can-force-delete": ADMIN,
    "can-manage-assessments": ADMIN,
    "can-manage-ephemeral-workspaces": ADMIN,
    "can-read-assessment-results": READ,
    "can-queue-destroy": ADMIN,
}
# Organization tokens cannot start runs
# (https://developer.hashicorp.com/terraform/cloud-docs/users-teams-organizations/api-tokens).
_RUN_STARTING = {"can-queue-run", "can-queue-apply", "can-queue-destroy"}

_RUN_NEEDS = {
    "can-apply": WRITE,
    "can-cancel": WRITE,
    "can-comment": READ,
    "can-discard": WRITE,
    "can-force-execute": WRITE,
    "can-force-cancel": ADMIN,
    "can-override-policy-check": ADMIN,
}


@cache
# Cached: pure functions of (level, token kind), built once and shared by every document
# (the list endpoint renders 100 of them per page). Callers must not mutate the result.
def workspace_permissions(rank: int, organization_token: bool) -> dict[str, bool]:
    return {
        key: rank >= need and not (organization_token and key in _RUN_STARTING)
        for key, need in _WORKSPACE_NEEDS.items()
    }


@cache
def run_permissions(rank: int, organization_token: bool) -> dict[str, bool]:
    if organization_token:
        return dict.fromkeys(_RUN_NEEDS, False)
    return {key: rank >= need for key, need in _RUN_NEEDS.items()}
