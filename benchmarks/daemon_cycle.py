"""The measured side: the daemon's real runtime and cycle, in a process of its own.

`python -m benchmarks.daemon_cycle CONFIG --cycles 2` loads CONFIG exactly as the daemon does
(`load_policy`, `load_token`: the token comes from TFC_WATCHDOG_TOKEN), opens the real
runtime (`open_runtime`: TfcClient, TfcSource, Memory, Actor, CycleRunner) and runs the cycles
one after another. Then it renders `/metrics` through the ops server's own ASGI app. It prints
ONE JSON line on stdout: per cycle the wall time, the CPU seconds of this process and the
requests it sent (from the daemon's own metrics), then the peak RSS and the render times.

Measured here rather than from outside so that the CPU is that of the cycle alone (start-up
imports are excluded), while the peak RSS (ru_maxrss) is that of the whole daemon process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

import httpx
import structlog

from watchdog.configload import load_policy, load_token
from watchdog.metrics import Metrics
from watchdog.runtime import open_runtime
from watchdog.server import build_app

RENDERS = 20


def _counter_totals(metrics: Metrics) -> dict[str, float]:
    """Requests sent so far by endpoint and code, from tfc_watchdog_api_requests_total."""
    totals: dict[str, float] = {}
    for family in metrics.api_requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = f"{sample.labels['endpoint']} {sample.labels['code']}"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {
        key: int(value - before.get(key, 0.0))
        for key, value in after.items()
        if value - before.get(key, 0.0) > 0
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(config: str, cycles: int) -> dict[str, Any]:
    # Quiet logs: a benchmark measures the cycle, not the terminal.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    policy = load_policy(config)
    token = load_token(policy)
    metrics = Metrics()
    out: dict[str, Any] = {"cycles": []}
    async with open_runtime(policy, token, metrics) as runtime:
        for _ in range(cycles):
            before = _counter_totals(metrics)
            cpu0, wall0 = _cpu_seconds(), time.perf_counter()
            report = await runtime.runner.run_cycle(policy)
            wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
            requests = _delta(_counter_totals(metrics), before)
            out["cycles"].append(
                {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "complete": report.complete,
                    "workspaces": sum(len(o.ids_read) for o in report.observations),
                    "locks": len(report.locks),
                    "planned": len(report.planned),
                    "requests": requests,
                    "requests_total": sum(requests.values()),
                    "rate_limited": sum(n for k, n in requests.items() if k.endswith(" 429")),
                }
            )
        out["metrics_render_ms"] = await _render_times(runtime)
        last = runtime.runner.reporter.last_report
        out["lock_series"] = len(last.locks) if last is not None else 0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


async def _render_times(runtime: Any) -> dict[str, float]:
    """GET /metrics through the ops server's ASGI app (routing + prometheus exposition)."""
    app = build_app(reporter=runtime.runner.reporter, interval=lambda: timedelta(seconds=60))
    times: list[float] = []
    size = 0
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ops"
    ) as client:
        for _ in range(RENDERS):
            start = time.perf_counter()
            response = await client.get("/metrics")
            times.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
            size = len(response.content)
    return {
        "median": statistics.median(times),
        "max": max(times),
        "first": times[0],
        "bytes": size,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--cycles", type=int, default=2)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.config, max(1, min(args.cycles, 10))))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
