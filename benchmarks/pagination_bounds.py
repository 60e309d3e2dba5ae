"""What a hostile workspace list costs one observation: requests sent and peak memory.

`python -m benchmarks.pagination_bounds` runs, each in a child process of its own, the real
TfcSource + TfcClient (default rate: 2/3 of the documented 30/s) observing one organization
whose list endpoint lies:

- `absurd_total`: page 1 promises `total-pages: 10000000` (and no `total-count`);
- `endless`: no totals, and every (full) page names a `next-page` after it.

The server is an httpx.MockTransport in the child (no network), 100 workspaces a page. Each
case is stopped after `--seconds` (70) of wall time, and its child killed (and reported as
such) if it does not stop itself; the child's address space is capped (`--memory-cap-mb`) so
that a runaway case cannot take the machine. The parent samples the child's RSS every 50 ms;
the child reports its request count every 0.2 s and its outcome at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed

CASES = ("absurd_total", "endless")


def _page(case: str, number: int) -> dict[str, Any]:
    pagination: dict[str, Any] = {"current-page": number, "page-size": 100}
    if case == "absurd_total":
        pagination |= {"total-pages": 10_000_000}
    else:
        pagination |= {"next-page": number + 1}
    # Full pages of 100 (the worst case: a short page naming a next page is refused at once).
    workspaces = [
        {
            "id": f"ws-{number:07d}{n:02d}",
            "type": "workspaces",
            "attributes": {
                "name": f"ws-{number}-{n}",
                "locked": False,
                "created-at": "2026-01-01T00:00:00Z",
                "tag-names": [],
            },
            "relationships": {},
        }
        for n in range(100)
    ]
    return {"data": workspaces, "meta": {"pagination": pagination}}


def child(case: str, seconds: float) -> None:
    import httpx

    from watchdog.metrics import Metrics
    from watchdog.sources.tfc.client import TfcClient
    from watchdog.sources.tfc.source import TfcSource

    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        number = int(request.url.params.get("page[number]", "1"))
        headers = {
            "Content-Type": "application/vnd.api+json",
            "Date": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        }
        return httpx.Response(200, json=_page(case, number), headers=headers)

    def progress() -> None:
        while True:
            print(json.dumps({"requests": requests}), file=sys.stderr, flush=True)
            time.sleep(0.2)

    threading.Thread(target=progress, daemon=True).start()

    async def observe() -> dict[str, Any]:
        metrics = Metrics()
        client = TfcClient(
            address="https://tfc.example",
            token="benchmark",  # noqa: S106 - a mock server, no real token
            metrics=metrics,
            transport=httpx.MockTransport(handler),
            verify=False,
        )
        async with client:
            source = TfcSource(client, ["acme"], metrics)
            started = time.monotonic()
            try:
                [observation] = await asyncio.wait_for(source.observe(), seconds)
            except TimeoutError:
                return {"outcome": "still walking when stopped", "wall_s": seconds}
            return {
                "outcome": "complete" if observation.complete else "incomplete",
                "error": observation.error,
                "wall_s": round(time.monotonic() - started, 2),
            }

    result = asyncio.run(observe())
    result["requests"] = requests
    result["child_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result), flush=True)


def measure(case: str, seconds: float, memory_cap_mb: int) -> dict[str, Any]:
    cap = memory_cap_mb * 1024 * 1024

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.pagination_bounds", "--child", case, str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )
    watched = psutil.Process(process.pid)
    peak = 0
    last_count = 0
    stderr_lines: list[str] = []

    def read_stderr() -> None:
        nonlocal last_count
        assert process.stderr is not None
        for line in process.stderr:
            stderr_lines.append(line)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                last_count = int(json.loads(line)["requests"])

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    deadline = time.monotonic() + seconds + 15
    killed = False
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        if time.monotonic() > deadline:
            process.kill()
            killed = True
            break
        time.sleep(0.05)
    process.wait()
    reader.join(timeout=2)
    assert process.stdout is not None
    out = process.stdout.read().strip().splitlines()
    result: dict[str, Any] = json.loads(out[-1]) if out and out[-1].startswith("{") else {}
    if not result:
        errors = [line for line in stderr_lines if not line.startswith("{")]
        result = {
            "outcome": "killed after the deadline" if killed else f"exit {process.returncode}",
            "requests": last_count,
            "last_error": errors[-1].strip() if errors else None,
        }
    result["case"] = case
    result["peak_rss_mb"] = round(peak / 1024 / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("CASE", "SECONDS"), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=70.0)
    parser.add_argument("--memory-cap-mb", type=int, default=3000)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], float(args.child[1]))
        return
    for case in args.cases:
        print(json.dumps(measure(case, args.seconds, args.memory_cap_mb)), flush=True)


if __name__ == "__main__":
    main()
