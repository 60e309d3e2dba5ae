"""A stand-in for act.Actor in cycle tests: the actor as the cycle sees it (its `carry_out`),
sending nothing anywhere.

It notes each call (what was planned, under which policy) and answers every planned action
`done`. With a memory it records each action write-ahead, as the Actor does before a POST,
and `effect` is what the POST would have done to the test's world (e.g. the lock goes away).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from watchdog.memory import Memory
from watchdog.model import ActionKind, ActionResult, Holder, Notice, Outcome, PlannedAction
from watchdog.policy import Policy


class FakeActor:
    def __init__(
        self,
        memory: Memory | None = None,
        effect: Callable[[PlannedAction], None] | None = None,
    ) -> None:
        self._memory = memory
        self._effect = effect
        # Each call's planned kinds and the policy it was handed.
        self.calls: list[tuple[list[ActionKind], Policy]] = []

    async def carry_out(
        self,
        planned: Sequence[PlannedAction],
        policy: Policy,
        now: datetime,
        identity: Holder | None,
        *,
        notices: Sequence[Notice] = (),
    ) -> list[ActionResult]:
        self.calls.append(([item.kind for item in planned], policy))
        results = []
        for item in planned:
            record = None
            if self._memory is not None:
                record = self._memory.begin_action(item)
                assert record is not None, "the budget refused the write-ahead record"
            if self._effect is not None:
                self._effect(item)
            if self._memory is not None and record is not None:
                self._memory.finish_action(record, Outcome.DONE)
            results.append(ActionResult(item, Outcome.DONE))
        return results
