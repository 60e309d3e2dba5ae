"""Random worlds for the safety properties, run through the real cycle in-process.

A `Case` is a small simulated world (workspaces with user, team and run locks of random ages
and statuses, including statuses this version does not know), a policy (rules, protections,
budgets, dry-run) and a few cycles. Between cycles the simulated clock moves and the daemon
may "restart" (a new client, source, actor and watchdog over the same state file). Between a
cycle's observe and its act re-read the world changes: the holder changes, the run
finishes, the lock is released, the token loses its permission, a new run starts.

`run_case` drives the REAL code: `cycle.CycleRunner` (memory.update -> decide ->
act.Actor) with the real `TfcSource`/`TfcClient`, talking through `httpx.ASGITransport` to
the real simulator app (so the simulator's contract tests check this double). A recording
transport notes the simulated world as it was at every list read, re-read and POST; the
properties judge each POST against that record with their own, independent arithmetic.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
from hypothesis import strategies as st

from watchdog.act import Actor
from watchdog.cycle import CycleRunner
from watchdog.memory import Clock, Memory
from watchdog.metrics import Metrics
from watchdog.model import ActionResult, Holder, Notice, PlannedAction
from watchdog.policy import Policy
from watchdog.simulator.app import Settings, Simulator, build_app
from watchdog.simulator.clock import SimClock
from watchdog.simulator.runs import FINAL
from watchdog.simulator.state import Workspace as SimWorkspace
from watchdog.simulator.state import World
from watchdog.sources.tfc.client import TfcClient
from watchdog.sources.tfc.source import TfcSource

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ORG = "acme"
TOKENS = {"admin": "tok-admin-team", "operator": "tok-operator-user"}
RUNGS = ("cancel", "force_cancel", "discard", "unlock", "force_unlock")
# Known statuses of every phase group, final ones, and two this version has never heard of.
STATUSES = (
    "pending",
    "plan_queued",
    "planning",
    "cost_estimating",
    "applying",
    "post_apply_running",
    "planned",
    "policy_override",
    "applied",
    "errored",
    "canceled",
    "discarded",
    "planned_and_finished",
    "future_phase_running",
    "quantum_planning",
)
PROTECTED_REASON = "maintenance window"
CHANGES = ("none", "holder", "run_finishes", "released", "revoked", "new_run")


# --- the generated case ---------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    status: str
    age: int  # seconds in its current status
    hangs_on_cancel: bool
    canceled_ago: int | None  # seconds since a cancel was requested (None: never)


@dataclass(frozen=True)
class WorkspaceSpec:
    name: str
    tags: tuple[str, ...]
    # ("alice" | "bob" | "operator" | "devs", reason) or None
    lock: tuple[str, str] | None
    run: RunSpec | None


@dataclass(frozen=True)
class CycleSpec:
    advance: int  # seconds the clock moves before this cycle
    restart: bool  # a new process over the same state file before this cycle
    changes: tuple[str, ...]  # per workspace, applied between observe and act
    corrupt: frozenset[int]  # workspace indexes whose list entry is unparseable
    corrupt_reread: frozenset[int]  # ... whose re-read is unparseable


@dataclass(frozen=True)
class Case:
    workspaces: tuple[WorkspaceSpec, ...]
    token: str  # "admin" (team, admin everywhere) or "operator" (user, write)
    dry_run: bool
    max_per_cycle: int
    max_per_hour: int
    default_actions: tuple[str, ...]
    fast_actions: tuple[str, ...]  # the rule for workspaces tagged "fast"
    lock_stale_after: int
    fast_lock_stale_after: int
    run_stuck_after: int
    waiting_after: int
    protect_glob: bool  # protect.workspaces: ["prod-*"]
    cycles: tuple[CycleSpec, ...]
    # `tfc.full_scan_interval`: "0" reads every workspace every cycle; "10m" (two-tier) reads
    # them all in each process's first cycle only (the cycles run back to back), the others
    # list the workspaces with an active run and carry the rest.
    full_scan_interval: str = "0"

    def policy_document(self, state_file: str) -> dict[str, Any]:
        thresholds = {
            "queued": f"{self.run_stuck_after}s",
            "planning": f"{self.run_stuck_after}s",
            "applying": f"{self.run_stuck_after}s",
            "waiting": f"{self.waiting_after}s",
            "other": f"{self.run_stuck_after}s",
        }
        return {
            "dry_run": self.dry_run,
            "interval": "60s",
            "state_file": state_file,
            "tfc": {
                "address": "http://sim.invalid",
                "organizations": [ORG],
                "full_scan_interval": self.full_scan_interval,
            },
            "limits": {
                "max_actions_per_cycle": self.max_per_cycle,
                "max_actions_per_hour": self.max_per_hour,
            },
            "protect": {
                "workspaces": ["prod-*"] if self.protect_glob else [],
                "tags": ["protected"],
                "lock_reasons": ["(?i)maintenance", "(?i)do.?not.?unlock"],
            },
            "defaults": {
                "lock_stale_after": f"{self.lock_stale_after}s",
                "run_stuck_after": thresholds,
                "actions": list(self.default_actions),
            },
            "rules": [
                {
                    "id": "fast",
                    "match": {"tags": ["fast"]},
                    "lock_stale_after": f"{self.fast_lock_stale_after}s",
                    "actions": list(self.fast_actions),
                }
            ],
        }

    # The independent reading of the policy the properties judge by.
    def rule_of(self, tags: Sequence[str]) -> tuple[tuple[str, ...], int]:
        """(allowed rungs, lock_stale_after seconds) for a workspace with these tags."""
        if "fast" in tags:
            return self.fast_actions, self.fast_lock_stale_after
        return self.default_actions, self.lock_stale_after

    def protected(self, name: str, tags: Sequence[str], reason: str) -> bool:
        if "protected" in tags or (self.protect_glob and fnmatch.fnmatchcase(name, "prod-*")):
            return True
        return bool(re.search(r"(?i)maintenance|(?i:do.?not.?unlock)", reason))


# Strategies are built once, at import: a strategy made inside `@st.composite` is validated
# again on every draw, which cost about a third of the generation time. Most slots are one
# `sampled_from` over a table of whole values (one draw, not several), and each table repeats
# the values under which the watchdog may act, so that most examples reach a POST (a property
# about POSTs says little about a world in which nothing is sent). Every other value stays
# reachable; the first entry of each table is what shrinking moves towards.
ages = st.sampled_from(
    [9 * 3600, 0, 30, 600, 1800, 3600, 7200, 4 * 3600, 9 * 3600, 2 * 86400, 2 * 86400]
)
_holders = ("alice", "bob", "operator", "devs")
_reasons = (
    "Locked by Terraform",
    "",
    "Locked by Terraform",
    PROTECTED_REASON,
    "Locked by Terraform",
    "do not unlock",
)
# A quarter of the workspaces are unlocked.
locks = st.sampled_from([None] * 8 + [(who, reason) for who in _holders for reason in _reasons])
tag_sets = st.sampled_from(
    [(), (), ("fast",), ("fast",), ("web",), ("fast", "web"), ("protected",), ("fast", "protected")]
)
prefixes = st.sampled_from(["dev", "sbx", "dev", "prod"])
statuses = st.sampled_from(STATUSES)
cancel_ages = st.sampled_from([None, None, None, 0, 60, 299, 300, 301, 3600, 3600])
rung_sets = st.one_of(
    st.just(RUNGS), st.just(RUNGS), st.lists(st.sampled_from(RUNGS), unique=True).map(tuple)
)
# Two changes in three are "none": a change between observe and act mostly stops the action.
changes = st.sampled_from(("none",) * 10 + CHANGES[1:])
advances = st.sampled_from([3600, 0, 1, 300, 1800, 3599, 3600, 3 * 3600, 3 * 3600])
tokens = st.sampled_from(["admin", "admin", "admin", "operator"])
dry_runs = st.sampled_from([False] * 5 + [True])
per_cycle = st.sampled_from([3, 1, 2, 3, 3, 2, 1, 0])
per_hour = st.sampled_from([10, 1, 2, 4, 10, 4, 2, 0])
lock_stale = st.sampled_from([60, 1800, 7200])
fast_lock_stale = st.sampled_from([1, 600])
run_stuck = st.sampled_from([60, 3600, 6 * 3600])
waiting = st.sampled_from([60, 86400])
globs = st.sampled_from([False, False, False, True])
full_scan_intervals = st.sampled_from(["0", "10m"])


def _corruptions(count: int) -> st.SearchStrategy[frozenset[int]]:
    """One cycle in five makes one workspace's entry unparseable."""
    return st.sampled_from([frozenset()] * (4 * count) + [frozenset({i}) for i in range(count)])


CORRUPTIONS = {count: _corruptions(count) for count in range(1, 5)}


@st.composite
def run_specs(draw: st.DrawFn) -> RunSpec | None:
    # A quarter of the workspaces have no run beyond their old applied one.
    if draw(st.integers(0, 3)) == 0:
        return None
    return RunSpec(
        status=draw(statuses),
        age=draw(ages),
        hangs_on_cancel=draw(st.booleans()),
        canceled_ago=draw(cancel_ages),
    )


@st.composite
def workspace_specs(draw: st.DrawFn, index: int) -> WorkspaceSpec:
    return WorkspaceSpec(
        name=f"{draw(prefixes)}-{index}",
        tags=draw(tag_sets),
        lock=draw(locks),
        run=draw(run_specs()),
    )


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    dry_run: bool | None = None,
    max_cycles: int = 3,
    restarts: bool = True,
) -> Case:
    count = draw(st.integers(1, 4))
    workspaces = tuple(draw(workspace_specs(i)) for i in range(count))
    corruptions = CORRUPTIONS[count]
    cycles = []
    for _ in range(draw(st.integers(min(2, max_cycles), max_cycles))):
        cycles.append(
            CycleSpec(
                advance=draw(advances),
                restart=restarts and draw(st.booleans()),
                changes=tuple(draw(changes) for _ in range(count)),
                corrupt=draw(corruptions),
                corrupt_reread=draw(corruptions),
            )
        )
    return Case(
        workspaces=workspaces,
        token=draw(tokens),
        dry_run=draw(dry_runs) if dry_run is None else dry_run,
        max_per_cycle=draw(per_cycle),
        max_per_hour=draw(per_hour),
        default_actions=draw(rung_sets),
        fast_actions=draw(rung_sets),
        lock_stale_after=draw(lock_stale),
        fast_lock_stale_after=draw(fast_lock_stale),
        run_stuck_after=draw(run_stuck),
        waiting_after=draw(waiting),
        protect_glob=draw(globs),
        cycles=tuple(cycles),
        full_scan_interval=draw(full_scan_intervals),
    )


def enforcing_case(
    workspaces: tuple[WorkspaceSpec, ...], advances: Sequence[int], **fields: Any
) -> Case:
    """A hand-written case for the checks that the harness is not vacuous: enforcing with the
    admin token, nothing protected, a cycle after each advance with no change in the world;
    `fields` override the rest."""
    case = Case(
        workspaces=workspaces,
        token="admin",
        dry_run=False,
        max_per_cycle=3,
        max_per_hour=10,
        default_actions=("cancel", "force_cancel", "force_unlock"),
        fast_actions=(),
        lock_stale_after=60,
        fast_lock_stale_after=1,
        run_stuck_after=3600,
        waiting_after=86400,
        protect_glob=False,
        cycles=tuple(
            CycleSpec(advance, False, ("none",) * len(workspaces), frozenset(), frozenset())
            for advance in advances
        ),
    )
    return replace(case, **fields)


# --- what the recording transport notes -----------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """One workspace in the simulated world at one moment."""

    at: datetime
    workspace_id: str
    name: str
    tags: tuple[str, ...]
    holder: tuple[str, str] | None  # ("users" | "teams" | "runs", id)
    reason: str
    run_id: str | None
    run_status: str | None
    run_entered: datetime | None
    canceled_at: datetime | None
    force_cancel_available_at: datetime | None


@dataclass
class Post:
    cycle: int
    at: datetime
    kind: str  # cancel, force-cancel, discard, unlock, force-unlock
    workspace_id: str
    before: Snapshot  # the world just before the POST reached it
    status: int = 0


@dataclass
class Trace:
    case: Case
    posts: list[Post] = field(default_factory=list)
    # cycle -> workspace id -> the world when the cycle's list page was read
    observed: dict[int, dict[str, Snapshot]] = field(default_factory=dict)
    # cycle -> list of (workspace id, snapshot) re-reads in order, and their index in `events`
    rereads: list[tuple[int, int, Snapshot]] = field(default_factory=list)
    # cycle -> workspace ids whose list entry was made unparseable
    corrupted: dict[int, set[str]] = field(default_factory=dict)
    # cycle -> workspace ids whose re-read was made unparseable
    corrupted_reread: dict[int, set[str]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    results: list[list[ActionResult]] = field(default_factory=list)
    # (workspace id, holder id) -> first cycle time the lock was in a list read, per cycle
    first_seen: dict[int, dict[tuple[str, str], datetime]] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)

    def post_index(self, post: Post) -> int:
        return self.events.index(f"post:{id(post)}")


_RUN_POST = re.compile(r"/api/v2/runs/([^/]+)/actions/([a-z-]+)$")
_WS_POST = re.compile(r"/api/v2/workspaces/([^/]+)/actions/([a-z-]+)$")
_WS_GET = re.compile(r"/api/v2/workspaces/([^/]+)$")
_LIST = re.compile(r"/api/v2/organizations/[^/]+/workspaces$")


def snapshot(world: World, ws: SimWorkspace) -> Snapshot:
    run = world.runs.get(ws.current_run_id or "")
    entered = None
    if run is not None:
        key = run.status.replace("_", "-") + "-at"
        entered = run.status_timestamps.get(key, run.created_at)
    return Snapshot(
        at=world.now(),
        workspace_id=ws.id,
        name=ws.name,
        tags=tuple(ws.tags),
        holder=(ws.locked_by[0], ws.locked_by[1]) if ws.locked_by else None,
        reason=ws.locked_reason,
        run_id=run.id if run else None,
        run_status=run.status if run else None,
        run_entered=entered,
        canceled_at=run.canceled_at if run else None,
        force_cancel_available_at=run.force_cancel_available_at if run else None,
    )


class Recorder(httpx.AsyncBaseTransport):
    """Forwards to the simulator app in-process, noting the world at each read and POST."""

    def __init__(self, sim: Simulator) -> None:
        self._inner = httpx.ASGITransport(app=build_app(sim))
        self._sim = sim
        self._trace: Trace | None = None
        self.cycle = 0
        self.corrupt: set[str] = set()
        self.corrupt_reread: set[str] = set()

    def begin(self, trace: Trace) -> None:
        """Record into `trace` from now on (one app serves every example of a harness)."""
        self._trace = trace
        self.cycle = 0
        self.corrupt = set()
        self.corrupt_reread = set()

    @property
    def trace(self) -> Trace:
        assert self._trace is not None, "Recorder.begin() was not called"
        return self._trace

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        world, trace, path = self._sim.world, self.trace, request.url.path
        post = None
        reread = None
        if request.method == "POST":
            post = self._post(world, path)
        elif match := _WS_GET.search(path):
            ws = world.workspaces.get(match[1])
            if ws is not None:
                reread = snapshot(world, ws)
                trace.rereads.append((self.cycle, len(trace.events), reread))
                trace.events.append(f"reread:{ws.id}")
        elif _LIST.search(path):
            # The world as this cycle's observe saw it (frozen clock: nothing moves meanwhile).
            trace.observed[self.cycle] = {
                ws.id: snapshot(world, ws) for ws in world.workspaces.values()
            }
            self._note_first_seen(world)
        response = await self._inner.handle_async_request(request)
        if post is not None:
            post.status = response.status_code
        if _LIST.search(path) and self.corrupt and response.status_code == 200:
            response = await self._corrupt(response, self.corrupt, listing=True)
            trace.corrupted.setdefault(self.cycle, set()).update(self.corrupt)
        elif reread is not None and reread.workspace_id in self.corrupt_reread:
            response = await self._corrupt(response, {reread.workspace_id}, listing=False)
            trace.corrupted_reread.setdefault(self.cycle, set()).add(reread.workspace_id)
        return response

    def _post(self, world: World, path: str) -> Post | None:
        trace = self.trace
        ws: SimWorkspace | None = None
        if match := _RUN_POST.search(path):
            run = world.runs.get(match[1])
            ws = world.workspaces.get(run.workspace_id) if run else None
        elif match := _WS_POST.search(path):
            ws = world.workspaces.get(match[1])
        else:
            raise AssertionError(f"unexpected POST {path}")
        assert ws is not None, f"POST {path} names nothing in the world"
        post = Post(self.cycle, world.now(), match[2], ws.id, snapshot(world, ws))
        trace.posts.append(post)
        trace.events.append(f"post:{id(post)}")
        return post

    def _note_first_seen(self, world: World) -> None:
        previous = self.trace.first_seen.get(self.cycle - 1, {})
        current: dict[tuple[str, str], datetime] = {}
        for ws in world.workspaces.values():
            if ws.locked_by is not None:
                key = (ws.id, ws.locked_by[1])
                current[key] = previous.get(key, world.now())
        self.trace.first_seen[self.cycle] = current

    async def _corrupt(
        self, response: httpx.Response, ids: set[str], *, listing: bool
    ) -> httpx.Response:
        body = json.loads(await response.aread())
        entries = body["data"] if listing else [body["data"]]
        for entry in entries:
            if entry.get("id") in ids:
                # A present but unreadable value: the parser must reject the whole entry.
                entry["attributes"]["locked"] = "perhaps"
        return httpx.Response(
            response.status_code,
            headers={k: v for k, v in response.headers.items() if k.lower() != "content-length"},
            content=json.dumps(body).encode(),
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- building and running -------------------------------------------------------------------


def build_world(case: Case) -> tuple[World, list[str]]:
    world = World(SimClock(T0, 0.0), seed=7)
    world.add_principal("team", "owners", ORG, [("*", "admin")], tokens=[TOKENS["admin"]])
    world.add_principal("user", "operator", ORG, [("*", "write")], tokens=[TOKENS["operator"]])
    for name in ("alice", "bob"):
        world.add_principal("user", name, ORG, [("*", "write")])
    world.add_principal("team", "devs", ORG, [("*", "write")])
    ids = []
    for spec in case.workspaces:
        ws = world.add_workspace(ORG, spec.name, tags=list(spec.tags))
        ids.append(ws.id)
        world.add_run(ws, "applied", age=timedelta(days=3))
        if spec.lock is not None:
            who, reason = spec.lock
            world.lock(ws, world.principal_by_name(ORG, who), reason)
        if spec.run is not None:
            run = world.add_run(
                ws,
                spec.run.status,
                age=timedelta(seconds=spec.run.age),
                hangs_on_cancel=spec.run.hangs_on_cancel,
            )
            if spec.run.canceled_ago is not None and run.status not in ("pending",):
                run.canceled_at = world.now() - timedelta(seconds=spec.run.canceled_ago)
                run.force_cancel_available_at = run.canceled_at + world.cooloff
                run.hangs_on_cancel = True
    return world, ids


def apply_change(world: World, ws: SimWorkspace, change: str, token: str) -> None:
    """One change between a cycle's observe and its act re-read."""
    run = world.runs.get(ws.current_run_id or "")
    # The simulator's list of final statuses, not the product's (watchdog.model): an oracle
    # that imported the code under test could not catch a wrong entry there.
    live = run is not None and run.status not in FINAL
    if change == "holder" and ws.locked_by is not None and ws.locked_by[0] != "runs":
        holder = ws.locked_by[1]
        world.release(ws)
        if ws.locked_by is None:
            other = next(
                p
                for p in world.principals.values()
                if p.name in ("alice", "bob") and p.id != holder
            )
            world.lock(ws, other, "Locked by Terraform")
    elif change == "run_finishes" and live and run is not None:
        world.set_run_status(run, "errored")
    elif change == "released" and ws.locked_by is not None:
        if ws.locked_by[0] == "runs" and run is not None and live:
            world.set_run_status(run, "applied")
        else:
            world.release(ws)
    elif change == "revoked":
        principal = world.principals[world.tokens[token]]
        principal.access = [(ws.name, "read"), *principal.access]
        principal._ranks.clear()
    elif change == "new_run":
        world.add_run(ws, "planning", age=timedelta(0))


class _Interposer:
    """The Actor as the cycle sees it, with the world changing just before it acts."""

    def __init__(self, actor: Actor, before: Callable[[], None]) -> None:
        self.actor = actor
        self._before = before
        self.results: list[ActionResult] = []

    async def carry_out(
        self,
        planned: Sequence[PlannedAction],
        policy: Policy,
        now: datetime,
        identity: Holder | None,
        *,
        notices: Sequence[Notice] = (),
    ) -> list[ActionResult]:
        self._before()
        results = await self.actor.carry_out(planned, policy, now, identity, notices=notices)
        self.results.extend(results)
        return results


class Harness:
    """One simulator app, transport and event loop for every example of a test module.

    Building the Starlette app, the transport and an event loop per example cost more than
    most examples' cycles. Between examples only the world is swapped (and the simulator's
    rate limiter and request log reset); everything the watchdog owns (client, source, memory
    loaded from a removed state file, actor, metrics) is still new per example and per restart.
    """

    def __init__(self, state_dir: Path, recorder: type[Recorder] = Recorder) -> None:
        self.state_file = state_dir / "state.json"
        self.sim = Simulator(
            World(SimClock(T0, 0.0), seed=7), Settings(rate_limit=1e9, run_list_per_minute=1e9)
        )
        self.recorder = recorder(self.sim)
        self._runner = asyncio.Runner()

    def run(self, case: Case) -> Trace:
        return self._runner.run(self._run(case))

    def close(self) -> None:
        self._runner.run(self.recorder.aclose())
        self._runner.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self, case: Case) -> tuple[World, Trace]:
        world, ids = build_world(case)
        sim = self.sim
        sim.world = world
        sim.limiter.reset()
        sim.faults.clear()
        sim.request_log.clear()
        trace = Trace(case, ids=ids)
        self.recorder.begin(trace)
        return world, trace

    def _start(self, token: str, policy: Policy) -> tuple[TfcClient, CycleRunner, _Interposer]:
        """A new watchdog process: at the first cycle, and at each restart."""
        assert policy.tfc is not None
        return start_process(
            token, self.recorder, self.state_file, full_scan_interval=policy.tfc.full_scan_interval
        )

    async def _cycle(
        self, runner: CycleRunner, interposer: _Interposer, policy: Policy, trace: Trace
    ) -> bool:
        """One cycle of the process; False when the process died in it."""
        before_count = len(interposer.results)
        await runner.run_cycle(policy)
        trace.results.append(interposer.results[before_count:])
        return True

    async def _run(self, case: Case) -> Trace:
        world, trace = self._load(case)
        ids = trace.ids
        recorder = self.recorder
        self.state_file.unlink(missing_ok=True)
        policy = Policy.model_validate(case.policy_document(str(self.state_file)))
        token = TOKENS[case.token]
        process: tuple[TfcClient, CycleRunner, _Interposer] | None = None
        try:
            for number, cycle in enumerate(case.cycles):
                if cycle.advance:
                    world.clock.advance(cycle.advance)
                if process is None or cycle.restart:
                    if process is not None:
                        await process[0].aclose()
                    process = self._start(token, policy)
                client, runner, interposer = process
                recorder.cycle = number
                recorder.corrupt = {ids[i] for i in cycle.corrupt}
                recorder.corrupt_reread = {ids[i] for i in cycle.corrupt_reread}

                def change_world(changes: tuple[str, ...] = cycle.changes) -> None:
                    for ws_id, change in zip(ids, changes, strict=True):
                        if change != "none":
                            apply_change(world, world.workspaces[ws_id], change, token)
                    trace.events.append("changed")

                interposer._before = change_world
                if not await self._cycle(runner, interposer, policy, trace):
                    await client.aclose()
                    process = None
        finally:
            if process is not None:
                await process[0].aclose()
        return trace


def start_process(
    token: str,
    transport: httpx.AsyncBaseTransport,
    state_file: Path,
    *,
    full_scan_interval: timedelta,
    clock: Clock | None = None,
) -> tuple[TfcClient, CycleRunner, _Interposer]:
    """A new watchdog process: everything it owns is new; only the state file carries over."""
    metrics = Metrics()
    client = TfcClient(
        address="http://sim.invalid",
        token=token,
        metrics=metrics,
        timeout=5,
        requests_per_second=1e9,
        transport=transport,
        max_attempts=1,
    )
    source = TfcSource(client, [ORG], metrics, full_scan_interval=full_scan_interval)
    memory = Memory.load(str(state_file), clock=clock)
    log: Any = structlog.get_logger("properties")
    actor = Actor(source=source, memory=memory, metrics=metrics, log=log)
    interposer = _Interposer(actor, lambda: None)
    runner = CycleRunner(
        sources=[source],
        memory=memory,
        metrics=metrics,
        identity_source=source,
        actor=interposer,
    )
    return client, runner, interposer


def run_case(case: Case, state_dir: Path) -> Trace:
    """One case on a harness of its own (the property tests share one per module)."""
    with Harness(state_dir) as harness:
        return harness.run(case)
