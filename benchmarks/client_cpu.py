"""CPU of the HTTP part of a walk: TfcClient against plain httpx on the same pages.

`python -m benchmarks.client_cpu --repeat 6` starts the simulator (10,000 workspaces, 1%
locked, 30 requests/s) in its own process (or uses `--url`), then, per repetition and
alternating so every variant sees the same minutes of a shared machine, fetches the 100
workspaces pages of a walk three ways, each paced at the client's learned 20 requests/s with
at most 8 in flight, as a cycle sends them:

- `tfcclient`: `TfcClient.get` (limiter, whole-request timeout, streamed body with its size
  limit, `Date` and rate-limit headers, metrics), the body not decoded: what the client
  costs on top of httpx;
- `httpx`: a plain `httpx.AsyncClient` streaming the same pages: the library's own floor;
- `httpx_small`: the same requests with `page[size]=1` (~3 KB bodies): what a request costs
  whatever its body, so `httpx` minus this is the cost of reading ~290 KB bodies.

CPU is getrusage(RUSAGE_SELF) user + system around each walk. One JSON line on stdout: per
variant the CPU seconds of each repetition and their median, and the body chunks per page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog

from benchmarks.simproc import SimulatorProcess
from watchdog.metrics import Metrics
from watchdog.sources.tfc.client import TfcClient
from watchdog.sources.tfc.source import INCLUDE

PAGES = 100
RATE = 20.0  # the share of the simulator's 30/s the client keeps (LIMIT_SHARE)
IN_FLIGHT = 8  # TfcClient's default max_concurrency


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _skip(body: bytes) -> dict[str, Any]:
    # The client's decoder hook, answering without decoding: only the HTTP part is measured.
    return {"data": []}


async def _paced(fetch: Callable[[int], Awaitable[None]]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(number: int) -> None:
        await asyncio.sleep(max(0.0, start + number / RATE - loop.time()))
        async with gate:
            await fetch(number)

    async with asyncio.TaskGroup() as group:
        for number in range(1, PAGES + 1):
            group.create_task(one(number))


async def measure(url: str, token: str, organization: str, repeat: int) -> dict[str, Any]:
    path = f"/organizations/{organization}/workspaces"
    chunks: dict[str, list[int]] = {"httpx": [], "httpx_small": []}

    def params(size: str, number: int) -> dict[str, str]:
        return {"page[size]": size, "include": INCLUDE, "page[number]": str(number)}

    async with (
        httpx.AsyncClient(
            base_url=f"{url}/api/v2",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.api+json"},
            timeout=httpx.Timeout(30.0),
        ) as plain,
        TfcClient(address=url, token=token, metrics=Metrics()) as client,
    ):

        def plain_walk(size: str, name: str) -> Callable[[int], Awaitable[None]]:
            async def fetch(number: int) -> None:
                async with (
                    asyncio.timeout(30.0),
                    plain.stream("GET", path, params=params(size, number)) as response,
                ):
                    parts = [chunk async for chunk in response.aiter_bytes()]
                    body = b"".join(parts)
                    if response.status_code != 200 or not body:
                        raise RuntimeError(f"HTTP {response.status_code}")
                    chunks[name].append(len(parts))

            return fetch

        async def ours(number: int) -> None:
            await client.get(path, endpoint="bench", params=params("100", number), decode=_skip)

        variants: dict[str, Callable[[int], Awaitable[None]]] = {
            "tfcclient": ours,
            "httpx": plain_walk("100", "httpx"),
            "httpx_small": plain_walk("1", "httpx_small"),
        }
        for fetch in variants.values():  # warm up connections and caches once
            await _paced(fetch)
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeat):
            for name, fetch in variants.items():
                before = _cpu_seconds()
                await _paced(fetch)
                cpu[name].append(round(_cpu_seconds() - before, 4))
    return {
        "pages_per_walk": PAGES,
        "cpu_s": cpu,
        "median_s": {name: round(statistics.median(values), 4) for name, values in cpu.items()},
        "chunks_per_page": {
            name: round(sum(counts) / len(counts), 1) for name, counts in chunks.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--url", help="a running simulator (default: start one)")
    parser.add_argument("--organization", default="bench")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    if args.url:
        token = f"{args.organization}-admin-token"
        result = asyncio.run(measure(args.url, token, args.organization, args.repeat))
    else:
        with SimulatorProcess(10_000, organization=args.organization) as sim:
            token = sim.token("admin")
            result = asyncio.run(measure(sim.url, token, args.organization, args.repeat))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
