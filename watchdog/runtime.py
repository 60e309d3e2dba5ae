"""Builds the live parts from a validated config: API clients, sources, memory, the actor,
and the `CycleRunner` that ties them together. Shared by `run` and `scan`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr

from watchdog.act import Actor, BackendLockTarget
from watchdog.configload import load_gitlab_token
from watchdog.cycle import CycleRunner, ObservingSource
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import Source
from watchdog.notify import Notifier
from watchdog.policy import Policy
from watchdog.sources.gitlab.client import GitLabClient
from watchdog.sources.gitlab.source import GitLabStateSource
from watchdog.sources.tfc.client import TfcClient
from watchdog.sources.tfc.source import TfcSource

if TYPE_CHECKING:  # boto3 and google-cloud-storage are extras: imported only when configured
    from watchdog.sources.dynamodb import DynamoDbLockSource
    from watchdog.sources.gcslockfile import GcsLockfileSource
    from watchdog.sources.s3lockfile import S3LockfileSource

    BackendSource = DynamoDbLockSource | S3LockfileSource | GcsLockfileSource | GitLabStateSource

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    runner: CycleRunner
    tfc: TfcSource | None
    actor: Actor | None
    # The backend lock sources (DynamoDB tables, S3 and GCS .tflock buckets, GitLab), by
    # source.
    backend: dict[Source, BackendSource] = field(default_factory=dict)
    # The API clients, for `set_token` when a token file is rotated.
    tfc_client: TfcClient | None = None
    gitlab_client: GitLabClient | None = None


def tls_verify(policy: Policy) -> bool | str:
    assert policy.tfc is not None
    if policy.tfc.ca_bundle:
        return policy.tfc.ca_bundle
    return policy.tfc.verify_tls


def tfc_client(
    policy: Policy, token: SecretStr, metrics: Metrics, *, requests_per_second: float | None = None
) -> TfcClient:
    """The TFC API client the config describes (not yet opened: `async with` it). A lower
    `requests_per_second` than the config's paces a command that reads one workspace."""
    assert policy.tfc is not None
    rate = policy.tfc.requests_per_second
    if requests_per_second is not None:
        rate = requests_per_second if rate is None else min(rate, requests_per_second)
    return TfcClient(
        address=policy.tfc.address,
        token=token.get_secret_value(),
        metrics=metrics,
        timeout=policy.tfc.timeout.total_seconds(),
        verify=tls_verify(policy),
        requests_per_second=rate,
    )


@contextlib.asynccontextmanager
async def open_runtime(
    policy: Policy, token: SecretStr | None, metrics: Metrics, *, with_actor: bool = True
) -> AsyncIterator[Runtime]:
    """Open the clients the policy needs; close them on exit."""
    async with contextlib.AsyncExitStack() as stack:
        sources: list[ObservingSource] = []
        tfc: TfcSource | None = None
        client: TfcClient | None = None
        if policy.tfc is not None:
            if token is None:
                raise ValueError("a TFC token is required when `tfc` is configured")
            client = await stack.enter_async_context(tfc_client(policy, token, metrics))
            tfc = TfcSource(
                client,
                policy.tfc.organizations,
                metrics,
                full_scan_interval=policy.tfc.full_scan_interval,
            )
            sources.append(tfc)
        backend = open_backend_sources(policy, metrics, stack)
        gitlab = await _open_gitlab(policy, metrics, stack)
        if gitlab is not None:
            backend[Source.GITLAB] = gitlab
        gitlab_client = gitlab.client if gitlab is not None else None
        sources.extend(backend.values())
        memory = Memory.load(policy.state_file)
        actor: Actor | None = None
        if with_actor and (tfc is not None or backend):
            targets: dict[Source, BackendLockTarget] = dict(backend)
            actor = Actor(
                source=tfc,
                memory=memory,
                metrics=metrics,
                log=log,
                backend_sources=targets,
            )
        runner = CycleRunner(
            sources=sources,
            memory=memory,
            metrics=metrics,
            identity_source=tfc,
            actor=actor,
            # The daemon's (not `scan`'s): a reload may add targets to a config without any.
            notifier=Notifier(policy.notifications, memory, metrics) if with_actor else None,
        )
        yield Runtime(
            runner=runner,
            tfc=tfc,
            actor=actor,
            backend=backend,
            tfc_client=client,
            gitlab_client=gitlab_client,
        )


def open_backend_sources(
    policy: Policy, metrics: Metrics, stack: contextlib.AsyncExitStack
) -> dict[Source, BackendSource]:
    """Every S3- and GCS-backend lock source the policy lists, by source; closed when
    `stack` unwinds (the daemon, `scan`, and `unlock` of a backend lock)."""
    backend = _open_backend(policy, metrics, stack)
    backend.update(_open_gcs_backend(policy, metrics, stack))
    return backend


def _open_backend(
    policy: Policy, metrics: Metrics, stack: contextlib.AsyncExitStack
) -> dict[Source, BackendSource]:
    """The S3-backend sources the policy lists; closed when `stack` unwinds. Credentials come
    from the standard AWS chain (env, shared config, IRSA web identity)."""
    config = policy.s3_backend
    opened: dict[Source, BackendSource] = {}
    if config is None:
        return opened
    from watchdog.sources.dynamodb import DynamoDbLockSource
    from watchdog.sources.s3lockfile import S3LockfileSource

    if config.dynamodb_tables:
        tables = DynamoDbLockSource(
            config.dynamodb_tables, config.region, config.endpoint_url, metrics
        )
        stack.callback(tables.close)
        opened[Source.DYNAMODB] = tables
    if config.lockfile_buckets:
        buckets = S3LockfileSource(
            [(entry.bucket, entry.prefix) for entry in config.lockfile_buckets],
            config.region,
            config.endpoint_url,
            metrics,
        )
        stack.callback(buckets.close)
        opened[Source.S3] = buckets
    return opened


def _open_gcs_backend(
    policy: Policy, metrics: Metrics, stack: contextlib.AsyncExitStack
) -> dict[Source, BackendSource]:
    """The gcs-backend source the policy lists; closed when `stack` unwinds. Credentials come
    from Application Default Credentials (workload identity on GKE)."""
    config = policy.gcs_backend
    if config is None:
        return {}
    from watchdog.sources.gcslockfile import GcsLockfileSource

    buckets = GcsLockfileSource(
        [(entry.bucket, entry.prefix) for entry in config.buckets],
        metrics,
        endpoint_url=config.endpoint_url,
        project=config.project,
    )
    stack.callback(buckets.close)
    return {Source.GCS: buckets}


async def _open_gitlab(
    policy: Policy, metrics: Metrics, stack: contextlib.AsyncExitStack
) -> GitLabStateSource | None:
    """The GitLab-managed state source, when `gitlab` is configured; closed with `stack`."""
    config = policy.gitlab
    if config is None:
        return None
    client = GitLabClient(
        address=config.address,
        token=load_gitlab_token(policy).get_secret_value(),
        metrics=metrics,
        timeout=config.timeout.total_seconds(),
        verify=config.ca_bundle or True,
    )
    stack.push_async_callback(client.aclose)
    return GitLabStateSource(client, config.projects, metrics)
