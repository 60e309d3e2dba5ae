"""CycleRunner: each cycle decides and acts under the policy it is handed (the daemon's
current one); neither the runner nor the actor keeps a policy of its own to fall out of step."""

from __future__ import annotations

from tests.support.actors import FakeActor
from tests.support.builders import NOW, M, locked_workspace
from tests.support.clock import FakeClock
from watchdog.cycle import CycleRunner
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import ActionKind, Observation, Source
from watchdog.policy import Policy


def config(*, actions: list[str], dry_run: bool) -> Policy:
    return Policy.model_validate(
        {
            "dry_run": dry_run,
            "tfc": {"organizations": ["acme"]},
            "defaults": {"lock_stale_after": "2m", "actions": actions},
        }
    )


class OneLock:
    """A source whose one workspace stays locked by alice."""

    def __init__(self) -> None:
        self.now = NOW

    async def observe(self) -> list[Observation]:
        return [
            Observation(
                source=Source.TFC,
                organization="acme",
                server_now=self.now,
                workspaces=(locked_workspace(),),
                listed_ids=frozenset({"ws-1"}),
            )
        ]


async def test_each_cycle_decides_and_acts_under_the_policy_it_is_handed() -> None:
    clock = FakeClock()
    source = OneLock()
    actor = FakeActor()
    runner = CycleRunner(
        sources=[source], memory=Memory(clock=clock), metrics=Metrics(), actor=actor
    )
    report_only = config(actions=[], dry_run=True)
    enforcing = config(actions=["force_unlock"], dry_run=False)

    reports = []
    # A stale lock (past 2m, seen in 5 cycles) under report-only, then one cycle under a
    # policy that allows force_unlock, then report-only again: what a reload does.
    for policy in [report_only] * 5 + [enforcing, report_only]:
        reports.append(await runner.run_cycle(policy))
        clock.advance(M)
        source.now += M

    assert [len(r.planned) for r in reports] == [0, 0, 0, 0, 0, 1, 0]
    assert [r.dry_run for r in reports] == [True] * 5 + [False, True]
    # The actor was asked once, with the very policy that cycle was handed.
    assert len(actor.calls) == 1
    kinds, policy = actor.calls[0]
    assert kinds == [ActionKind.FORCE_UNLOCK]
    assert policy is enforcing
