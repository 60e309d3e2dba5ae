"""Scenarios: the simulated world as YAML, and a generator for large organizations.

Format (every key optional unless noted; durations are `45s`, `30m`, `2h`, `1d` or seconds)::

    clock: 2026-01-15T12:00:00Z      # simulated "now" at load; default: the real time
    cooloff: 5m                      # cancel -> force-cancel cool-off (default 5m)
    server: {app_name: HCP Terraform, api_version: "2.6"}   # response headers
    seed: 1                          # makes generated ids reproducible
    organizations:
      demo:                          # organization name (required, at least one)
        organization_token: demo-org-token     # reads everything; no run actions
        users:
          - name: alice                        # `username`
            tokens: [demo-user-token]
            access: write              # a level for every workspace, or an ordered map
                                       # {glob: level}, first match wins; no match = none
        teams:
          - {name: owners, tokens: [demo-admin-token], access: admin}
        workspaces:
          - name: prod-core                    # required
            project: platform                  # default "Default Project"
            tags: [protected]
            execution_mode: remote             # remote | local | agent
            lock: {by: bob, reason: "maintenance", age: 5h}   # by = user or team name
            state_version_pending: 2           # the next 2 unlocks answer 503
            apply_duration_average: 20m        # `apply-duration-average` (default null)
            plan_duration_average: 2m          # `plan-duration-average` (default null)
            runs:                              # oldest first
              - {status: applied, age: 3d}
              - {status: applying, age: 7h, by: alice, hangs_on_cancel: true}
              - {status: pending, age: 1h, duration: 10m}   # queued; applied 10m after it starts
          - generate: {count: 20, name: "svc-{n:02d}", project: services, tags: [svc]}

Levels are `none`, `read`, `plan`, `write`, `admin`. A run's `age` is how long ago it
entered its status; its earlier states get timestamps 30 s apart. A non-final run holds the
workspace's lock; runs after it are queued as `pending`. A lock's `age` is not visible in
the API (it has no lock timestamp, docs/tfc-api.md "Workspaces"); `/_sim/state` shows it for
the demo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import yaml

from watchdog.simulator.access import LEVELS, Level
from watchdog.simulator.clock import SimClock
from watchdog.simulator.state import DEFAULT_COOLOFF, PrincipalKind, World

BUILTIN = ("demo",)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names the key path."""


@dataclass
class ServerInfo:
    app_name: str = "HCP Terraform"
    api_version: str = "2.6"


@dataclass
class Loaded:
    world: World
    server: ServerInfo = field(default_factory=ServerInfo)


def duration(value: Any, where: str) -> timedelta:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    match = _DURATION.match(str(value))
    if match is None:
        raise ScenarioError(f"{where}: {value!r} is not a duration like 45s, 30m, 2h, 1d")
    return timedelta(seconds=float(match[1]) * _UNIT[match[2]])


def builtin_text(name: str) -> str:
    if name not in BUILTIN:
        raise ScenarioError(f"no built-in scenario {name!r}; built-in: {', '.join(BUILTIN)}")
    return (resources.files("watchdog.simulator") / "scenarios" / f"{name}.yaml").read_text()


def load_builtin(name: str = "demo", *, time_scale: float = 1.0) -> Loaded:
    return load_text(builtin_text(name), time_scale=time_scale)


def load_text(text: str, *, time_scale: float = 1.0) -> Loaded:
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise ScenarioError("a scenario is a mapping with an `organizations` key")
    return build(spec, time_scale=time_scale)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: expected a mapping")
    return value


def _access(value: Any, where: str) -> list[tuple[str, Level]]:
    rules = {"*": value} if isinstance(value, str) else _mapping(value, where)
    out: list[tuple[str, Level]] = []
    for glob, level in rules.items():
        if level not in LEVELS:
            raise ScenarioError(f"{where}.{glob}: level {level!r} is not one of {LEVELS}")
        out.append((str(glob), level))
    return out


def build(spec: dict[str, Any], *, time_scale: float = 1.0) -> Loaded:
    start = spec.get("clock")
    if isinstance(start, str):
        start = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if start is not None and not isinstance(start, datetime):
        raise ScenarioError("clock: expected an ISO 8601 time")
    if isinstance(start, datetime) and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    world = World(
        SimClock(start, time_scale),
        seed=int(spec.get("seed", 1)),
        cooloff=duration(spec["cooloff"], "cooloff") if "cooloff" in spec else DEFAULT_COOLOFF,
    )
    server = ServerInfo(**_mapping(spec.get("server"), "server"))
    loaded = Loaded(world, server)
    organizations = _mapping(spec.get("organizations"), "organizations")
    if not organizations:
        raise ScenarioError("organizations: at least one organization is required")
    for org_name, org_spec in organizations.items():
        _build_organization(loaded, str(org_name), _mapping(org_spec, f"organizations.{org_name}"))
    return loaded


def _build_organization(loaded: Loaded, org: str, spec: dict[str, Any]) -> None:
    world = loaded.world
    where = f"organizations.{org}"
    world.add_organization(org)
    if token := spec.get("organization_token"):
        world.add_principal(
            "organization", f"{org} organization token", org, [("*", "admin")], tokens=[str(token)]
        )
    for kind, key in (("user", "users"), ("team", "teams")):
        for index, person in enumerate(spec.get(key) or []):
            at = f"{where}.{key}[{index}]"
            person = _mapping(person, at)
            if "name" not in person:
                raise ScenarioError(f"{at}.name: required")
            principal_kind: PrincipalKind = "user" if kind == "user" else "team"
            world.add_principal(
                principal_kind,
                str(person["name"]),
                org,
                _access(person.get("access", "none"), f"{at}.access"),
                tokens=[str(t) for t in person.get("tokens") or []],
                principal_id=person.get("id"),
            )
    for index, ws_spec in enumerate(spec.get("workspaces") or []):
        at = f"{where}.workspaces[{index}]"
        ws_spec = _mapping(ws_spec, at)
        if "generate" in ws_spec:
            _generate(loaded, org, _mapping(ws_spec["generate"], f"{at}.generate"), at)
        else:
            _build_workspace(loaded, org, ws_spec, at)


def _generate(loaded: Loaded, org: str, spec: dict[str, Any], where: str) -> None:
    template = str(spec.get("name", "workspace-{n:03d}"))
    for n in range(1, int(spec.get("count", 1)) + 1):
        _build_workspace(
            loaded,
            org,
            {
                "name": template.format(n=n),
                "project": spec.get("project", "Default Project"),
                "tags": spec.get("tags") or [],
                "execution_mode": spec.get("execution_mode", "remote"),
            },
            where,
        )


def _build_workspace(loaded: Loaded, org: str, spec: dict[str, Any], where: str) -> None:
    world = loaded.world
    if "name" not in spec:
        raise ScenarioError(f"{where}.name: required")
    try:
        ws = world.add_workspace(
            org,
            str(spec["name"]),
            project=str(spec.get("project", "Default Project")),
            tags=[str(t) for t in spec.get("tags") or []],
            execution_mode=str(spec.get("execution_mode", "remote")),
            workspace_id=spec.get("id"),
        )
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from exc
    lock = spec.get("lock")
    if lock is not None:
        lock = _mapping(lock, f"{where}.lock")
        try:
            holder = world.principal_by_name(org, str(lock.get("by")))
        except KeyError as exc:
            raise ScenarioError(f"{where}.lock.by: {exc.args[0]}") from exc
        world.lock(ws, holder, str(lock.get("reason", "")))
        age = duration(lock.get("age", 0), f"{where}.lock.age")
        ws.locked_at = world.now() - age
    for index, run_spec in enumerate(spec.get("runs") or []):
        at = f"{where}.runs[{index}]"
        run_spec = _mapping(run_spec, at)
        by = run_spec.get("by")
        try:
            creator = world.principal_by_name(org, str(by)).id if by else None
        except KeyError as exc:
            raise ScenarioError(f"{at}.by: {exc.args[0]}") from exc
        world.add_run(
            ws,
            str(run_spec.get("status", "applied")),
            age=duration(run_spec.get("age", 0), f"{at}.age"),
            created_by=creator,
            hangs_on_cancel=bool(run_spec.get("hangs_on_cancel", False)),
            duration=duration(run_spec["duration"], f"{at}.duration")
            if "duration" in run_spec
            else None,
        )
    ws.pending_state_version_unlocks = int(spec.get("state_version_pending", 0))
    for phase in ("plan", "apply"):
        key = f"{phase}_duration_average"
        if key in spec:
            setattr(ws, key, duration(spec[key], f"{where}.{key}"))


# --- large organizations ------------------------------------------------------------------


def parse_share(value: str | float) -> float:
    """`1%` or `0.01` -> 0.01."""
    text = str(value).strip()
    share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= share <= 1:
        raise ScenarioError(f"--locked: {value!r} is not a share between 0% and 100%")
    return share


def generate(
    workspaces: int,
    locked: float | str = "1%",
    *,
    organization: str = "bench",
    seed: int = 1,
    time_scale: float = 1.0,
) -> Loaded:
    """An organization of `workspaces` workspaces, a `locked` share of them locked.

    Deterministic for a seed. Locks mix users (40%), teams (20%) and runs (40%: applying,
    planning or waiting for confirmation, some for many hours, some hanging on cancel).
    Tokens follow the demo's names: `<org>-admin-token` (team, admin everywhere),
    `<org>-org-token`, `<org>-read-token` (user, read), `<org>-user-token` (user, write).
    """
    import random

    rng = random.Random(seed)
    share = parse_share(locked)
    world = World(SimClock(None, time_scale), seed=seed)
    loaded = Loaded(world)
    org = organization
    world.add_principal(
        "organization",
        f"{org} organization token",
        org,
        [("*", "admin")],
        tokens=[f"{org}-org-token"],
    )
    world.add_principal("team", "owners", org, [("*", "admin")], tokens=[f"{org}-admin-token"])
    world.add_principal("user", "reader", org, [("*", "read")], tokens=[f"{org}-read-token"])
    world.add_principal("user", "operator", org, [("*", "write")], tokens=[f"{org}-user-token"])
    users = [world.add_principal("user", f"user{n:02d}", org, [("*", "write")]) for n in range(20)]
    teams = [world.add_principal("team", f"team{n}", org, [("*", "write")]) for n in range(5)]
    envs = ("dev", "staging", "prod")
    groups = ("network", "data", "web", "payments", "identity", "search", "ml", "ops")
    chosen = set(rng.sample(range(workspaces), round(workspaces * share)))
    for n in range(workspaces):
        group, env = groups[n % len(groups)], envs[n % len(envs)]
        ws = world.add_workspace(org, f"{group}-{env}-{n:05d}", project=group, tags=[env, group])
        world.add_run(ws, "applied", age=timedelta(days=rng.randint(1, 60)))
        if n not in chosen:
            continue
        roll = rng.random()
        if roll < 0.4:
            holder = rng.choice(users)
            world.lock(ws, holder, rng.choice(["Locked by Terraform", "", "debugging"]))
        elif roll < 0.6:
            world.lock(ws, rng.choice(teams), "Locked by Terraform")
        else:
            status = rng.choice(["applying", "planning", "planned", "plan_queued"])
            world.add_run(
                ws,
                status,
                age=timedelta(minutes=rng.randint(1, 60 * 30)),
                created_by=rng.choice(users).id,
                hangs_on_cancel=rng.random() < 0.3,
            )
        if ws.locked_by is not None and ws.locked_by[0] != "runs":
            ws.locked_at = world.now() - timedelta(minutes=rng.randint(1, 60 * 48))
    return loaded
