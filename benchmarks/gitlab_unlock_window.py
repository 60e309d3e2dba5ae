"""The residual window of a GitLab-managed state unlock, measured at the server.

`python -m benchmarks.gitlab_unlock_window --unlocks 40` serves the simulator's GitLab app
over HTTP on 127.0.0.1, then repeats: a lock taken as Terraform would, the real
`GitLabStateSource` observing it and unlocking it (its re-read of the one state, then the
DELETE). For each unlock it takes, from the app's request log, the time between the arrival
of the re-read and the arrival of the DELETE: the window in which a lock released and taken
again would be removed (GitLab's unlock cannot be made conditional without the lock ID, which
its read API does not show). Prints one JSON line: count, p50, p90 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics

import structlog

from tests.support.gitlab import (
    PROJECT,
    TERRAFORM_USER,
    WATCHDOG_TOKEN,
    WATCHDOG_USER,
    GitLabServer,
)
from watchdog.metrics import Metrics
from watchdog.sources.gitlab.client import GitLabClient
from watchdog.sources.gitlab.source import GitLabStateSource


async def measure(server: GitLabServer, unlocks: int) -> list[float]:
    client = GitLabClient(address=server.url, token=WATCHDOG_TOKEN, metrics=Metrics())
    source = GitLabStateSource(client, [PROJECT], Metrics())
    windows: list[float] = []
    try:
        for n in range(unlocks):
            server.world.put_lock(PROJECT, "prod", TERRAFORM_USER, f"lock-{n}")
            server.world.advance(2)  # each lock its own lockedAt
            (observation,) = await source.observe()
            (lock,) = observation.backend_locks
            await source.delete_lock(lock)
            log = [r for r in server.world.requests() if r["principal"] == WATCHDOG_USER]
            reread, delete = log[-2], log[-1]
            assert (reread["path"], delete["method"]) == ("/api/graphql", "DELETE")
            windows.append((delete["monotonic"] - reread["monotonic"]) * 1000)
    finally:
        await client.aclose()
    return sorted(windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unlocks", type=int, default=40)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with GitLabServer() as server:
        windows = asyncio.run(measure(server, args.unlocks))
    print(
        json.dumps(
            {
                "unlocks": len(windows),
                "p50_ms": round(statistics.median(windows), 1),
                "p90_ms": round(windows[int(0.9 * len(windows)) - 1], 1),
                "max_ms": round(windows[-1], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
