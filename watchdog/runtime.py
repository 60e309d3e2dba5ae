"""Builds the live parts from a validated config: API clients, sources, memory, the actor,
and the `Watchdog` cycle that ties them together. Shared by `run` and `scan`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from pydantic import SecretStr

from watchdog.act import Actor
from watchdog.cycle import ObservingSource, Watchdog
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.policy import Policy
from watchdog.sources.tfc.client import TfcClient
from watchdog.sources.tfc.source import TfcSource

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    watchdog: Watchdog
    tfc: TfcSource | None
    actor: Actor | None


def tls_verify(policy: Policy) -> bool | str:
    assert policy.tfc is not None
    if policy.tfc.ca_bundle:
        return policy.tfc.ca_bundle
    return policy.tfc.verify_tls


@contextlib.asynccontextmanager
async def open_runtime(
    policy: Policy, token: SecretStr | None, metrics: Metrics, *, with_actor: bool = True
) -> AsyncIterator[Runtime]:
    """Open the clients the policy needs; close them on exit."""
    async with contextlib.AsyncExitStack() as stack:
        sources: list[ObservingSource] = []
        tfc: TfcSource | None = None
        if policy.tfc is not None:
            if token is None:
                raise ValueError("a TFC token is required when `tfc` is configured")
            client = await stack.enter_async_context(
                TfcClient(
                    address=policy.tfc.address,
                    token=token.get_secret_value(),
                    metrics=metrics,
                    timeout=policy.tfc.timeout.total_seconds(),
                    verify=tls_verify(policy),
                    requests_per_second=policy.tfc.requests_per_second,
                )
            )
            tfc = TfcSource(client, policy.tfc.organizations, metrics)
            sources.append(tfc)
        memory = Memory.load(policy.state_file)
        actor: Actor | None = None
        if with_actor and tfc is not None:
            actor = Actor(source=tfc, policy=policy, memory=memory, metrics=metrics, log=log)
        watchdog = Watchdog(
            policy=policy,
            sources=sources,
            memory=memory,
            metrics=metrics,
            identity_source=tfc,
            actor=actor,
        )
        yield Runtime(watchdog=watchdog, tfc=tfc, actor=actor)
