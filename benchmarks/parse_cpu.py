"""CPU of one observation of a large organization: the typed page path against the tolerant one.

`python -m benchmarks.parse_cpu --workspaces 10000 --repeat 7` generates the simulator's
organization in-process (`scenario.generate`, 1% locked), records every workspaces page once
as the simulator serves it (through its ASGI app), then replays those bodies through an
httpx MockTransport into the real TfcClient and TfcSource: `TfcSource.observe()`, i.e. the
client's request handling, list checks, decoding, parsing and the per-workspace filtering of
a cycle's observe stage, without the network or the simulator in the measured process.

Each repetition observes once by each path, alternating, so both see the same minutes of a
shared machine: `typed` (typedpage.py, what the source uses) and `tolerant` (the source with
the typed path switched off: orjson + parse.py, as before it). CPU is getrusage(RUSAGE_SELF)
user + system around observe(). One JSON line on stdout: per path the CPU seconds of each
repetition and their median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
from typing import Any

import httpx
import structlog

from tests.support.pages import workspace_pages
from watchdog.metrics import Metrics
from watchdog.simulator.app import Simulator
from watchdog.simulator.scenario import generate
from watchdog.sources.tfc import source as source_module
from watchdog.sources.tfc.client import TfcClient
from watchdog.sources.tfc.source import TfcSource

ORG = "bench"
TOKEN = f"{ORG}-admin-token"
ADDRESS = "http://sim"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def record(workspaces: int, locked: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Every workspaces page, by page number, as the simulator answers it (body, headers)."""
    world = generate(workspaces, locked, organization=ORG, time_scale=0.0)
    simulator = Simulator.from_scenario(world)
    simulator.settings.rate_limit = 1e9  # recording, not measuring the limiter
    pages: dict[str, tuple[bytes, dict[str, str]]] = {}
    for number, response in enumerate(await workspace_pages(simulator, ORG), start=1):
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        pages[str(number)] = (response.content, headers)
    return pages


def replay(pages: dict[str, tuple[bytes, dict[str, str]]]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        body, headers = pages[request.url.params.get("page[number]", "1")]
        return httpx.Response(200, content=body, headers=headers)

    return httpx.MockTransport(answer)


async def observe_once(transport: httpx.MockTransport, *, typed: bool) -> float:
    saved = source_module.decode_workspace_page
    if not typed:
        source_module.decode_workspace_page = lambda body, organization: None
    try:
        metrics = Metrics()
        async with TfcClient(
            address=ADDRESS,
            token=TOKEN,
            metrics=metrics,
            transport=transport,
            requests_per_second=1e9,
        ) as client:
            source = TfcSource(client, [ORG], metrics)
            before = _cpu_seconds()
            [observation] = await source.observe()
            spent = _cpu_seconds() - before
        if not observation.complete:
            raise RuntimeError(f"the observation is incomplete: {observation.error}")
        return spent
    finally:
        source_module.decode_workspace_page = saved


async def measure(workspaces: int, locked: str, repeat: int) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    pages = await record(workspaces, locked)
    transport = replay(pages)
    await observe_once(transport, typed=True)  # warm-up: imports, first-call caches
    runs: dict[str, list[float]] = {"tolerant": [], "typed": []}
    for _ in range(repeat):
        runs["tolerant"].append(await observe_once(transport, typed=False))
        runs["typed"].append(await observe_once(transport, typed=True))
    return {
        "workspaces": workspaces,
        "pages": len(pages),
        "bytes": sum(len(body) for body, _ in pages.values()),
        "cpu_s": {path: [round(s, 3) for s in spent] for path, spent in runs.items()},
        "median_cpu_s": {path: round(statistics.median(spent), 3) for path, spent in runs.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=10_000)
    parser.add_argument("--locked", default="1%")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.workspaces, args.locked, max(1, args.repeat)))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
