"""Two-tier polling against walking every workspace every cycle, side by side in one run:

    .venv/bin/python -m benchmarks.two_tier                  # 10,000 workspaces, 1% locked
    .venv/bin/python -m benchmarks.two_tier --workspaces 1000 --json out.json

One simulator process (`python -m watchdog simulator --workspaces N --locked 1%
--rate-limit 30`); for each mode (`tfc.full_scan_interval` 0, today's behaviour, then the
default 10m) a fresh watchdog runtime (the daemon's own `load_policy`, `open_runtime`,
`CycleRunner.run_cycle`, in a child process: `python -m benchmarks.two_tier --child`) runs ten
minutes of cycles at `interval: 60s`, on simulated time: before each cycle the simulator's
clock and the watchdog's (its TfcSource schedule) move 60 s, so the cycles run back to back
with the interval's semantics. Between the cycles at 2 and 3 minutes, a new run that is
already past its stuck threshold and a new user lock are put on idle workspaces; the
latency is the simulated time from then to the first cycle that reports each. Requests per
minute come from the simulator's request log (cross-checked with the daemon's
`tfc_watchdog_read_requests_total` by kind). One more cycle at 10 minutes shows the next
full walk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import structlog
import yaml

from benchmarks.simproc import ROOT, SimulatorProcess, summarize
from watchdog.model import is_final_status

INTERVAL = 60.0
MINUTES = 10
INJECT_AFTER_CYCLE = 2  # the probes go in after the cycle at 2 min, before the one at 3 min
LIST = "GET /api/v2/organizations/:org/workspaces"


def write_config(directory: Path, url: str, organization: str, full_scan_interval: str) -> Path:
    path = directory / f"watchdog-{full_scan_interval}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dry_run": True,
                "interval": "60s",
                "listen": "127.0.0.1:9877",  # never bound: the cycles run without the server
                "log": {"format": "json", "level": "error"},
                "tfc": {
                    "address": url,
                    "organizations": [organization],
                    "timeout": "30s",
                    "full_scan_interval": full_scan_interval,
                },
            }
        )
    )
    return path


# --- the child: the watchdog's runtime, cycles on simulated time -----------------------------


async def child(config: str, admin_url: str, probes: dict[str, str]) -> dict[str, Any]:
    from watchdog.configload import load_policy, load_token
    from watchdog.metrics import Metrics
    from watchdog.model import FindingKind
    from watchdog.runtime import open_runtime

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    policy = load_policy(config)
    metrics = Metrics()
    now = [0.0]
    out: dict[str, Any] = {"cycles": []}
    async with (
        open_runtime(policy, load_token(policy), metrics) as runtime,
        httpx.AsyncClient(base_url=admin_url, timeout=60) as admin,
    ):
        source = runtime.tfc
        assert source is not None
        # The schedule's clock is the simulated one (a benchmark seam: the source takes it).
        source._clock = lambda: now[0]
        injected_at: float | None = None
        for number in range(MINUTES + 1):
            if number:
                now[0] += INTERVAL
                (await admin.post("/clock/advance", json={"seconds": INTERVAL})).raise_for_status()
            if number == INJECT_AFTER_CYCLE + 1:
                await _inject(admin, probes)
                injected_at = now[0] - INTERVAL / 2  # put in between the two cycles
            (await admin.delete("/requests")).raise_for_status()
            before = _reads(metrics)
            report = await runtime.runner.run_cycle(policy)
            log = (await admin.get("/requests")).json()
            entries = log["requests"] if isinstance(log, dict) else log
            after = _reads(metrics)
            stuck = any(
                f.kind is FindingKind.RUN_STUCK and f.workspace == probes["run"]
                for f in report.findings
            )
            locked = any(lock.workspace == probes["lock"] for lock in report.locks)
            out["cycles"].append(
                {
                    "t": now[0],
                    "complete": report.complete,
                    "fast": any(o.fast for o in report.observations),
                    "requests": summarize(entries),
                    "reads": {k: after[k] - before.get(k, 0.0) for k in after},
                    "stuck_probe_seen": stuck,
                    "lock_probe_seen": locked,
                }
            )
        out["injected_at"] = injected_at
    return out


async def _inject(admin: httpx.AsyncClient, probes: dict[str, str]) -> None:
    # A run applying for 7 h (the default `applying` threshold is 6 h): stuck from the start.
    run = await admin.post(
        f"/workspaces/{probes['run']}/runs", json={"status": "applying", "age": 7 * 3600}
    )
    run.raise_for_status()
    lock = await admin.post(f"/workspaces/{probes['lock']}/lock", json={"principal": "user00"})
    lock.raise_for_status()


def _reads(metrics: Any) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in metrics.read_requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[sample.labels["kind"]] = sample.value
    return totals


# --- the parent: one simulator, both modes ------------------------------------------------


def _idle(sim: SimulatorProcess) -> list[str]:
    state = sim._call("GET", "/state", params={"organization": sim.organization})
    return [
        ws["name"]
        for ws in state["organizations"][sim.organization]
        if not ws["locked"]
        and (not ws["current_run"] or is_final_status(ws["current_run"]["status"]))
    ]


def run_mode(sim: SimulatorProcess, config: Path, probes: dict[str, str]) -> dict[str, Any]:
    env = {**os.environ, "TFC_WATCHDOG_TOKEN": sim.token("admin")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.two_tier",
            "--child",
            str(config),
            sim.url + "/_sim",
            json.dumps(probes),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"two_tier child failed: {done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    # Undo the probes so that the next mode starts from the same world.
    state = sim._call("GET", "/state", params={"organization": sim.organization})
    for ws in state["organizations"][sim.organization]:
        if ws["name"] == probes["run"] and ws["current_run"]:
            run = ws["current_run"]["id"]
            sim._call("POST", f"/runs/{run}/status", json={"status": "errored"})
    for name in probes.values():
        sim._call("POST", f"/workspaces/{name}/unlock", json={})
    return result


def derive(result: dict[str, Any]) -> dict[str, Any]:
    cycles = result["cycles"]
    window = cycles[:MINUTES]  # the cycles at 0..9 min: ten minutes
    requests = sum(c["requests"]["total"] for c in window)
    injected = result["injected_at"]

    def latency(key: str) -> float | None:
        seen = [c["t"] for c in cycles if c[key]]
        return seen[0] - injected if seen else None

    return {
        "requests_10min": requests,
        "requests_per_minute": requests / MINUTES,
        "per_cycle": [c["requests"]["total"] for c in cycles],
        "fast_cycles": sum(1 for c in window if c["fast"]),
        "rate_limited": sum(c["requests"]["rate_limited"] for c in cycles),
        "reads": {
            kind: sum(c["reads"].get(kind, 0.0) for c in window)
            for kind in ("full", "fast", "reread")
        },
        "stuck_latency_s": latency("stuck_probe_seen"),
        "lock_latency_s": latency("lock_probe_seen"),
        "complete": all(c["complete"] for c in cycles),
    }


def markdown(workspaces: int, modes: dict[str, dict[str, Any]]) -> str:
    today, two = modes["0"], modes["10m"]

    def seconds(value: float | None) -> str:
        return "not seen" if value is None else f"{value:.0f} s"

    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("requests in 10 minutes (sim log)", lambda m: str(m["requests_10min"])),
        ("average requests per minute", lambda m: f"{m['requests_per_minute']:.1f}"),
        ("requests per cycle, 0..10 min", lambda m: " ".join(map(str, m["per_cycle"]))),
        (
            "by kind (full / fast / re-read pages, daemon metric)",
            lambda m: "{full:.0f} / {fast:.0f} / {reread:.0f}".format(**m["reads"]),
        ),
        ("stuck run: injected -> reported", lambda m: seconds(m["stuck_latency_s"])),
        ("user lock: injected -> reported", lambda m: seconds(m["lock_latency_s"])),
        ("429s received", lambda m: str(m["rate_limited"])),
    ]
    lines = [
        f"{workspaces:,} workspaces, 1% locked, `interval: 60s`, cycles at 0, 1, ..., 10 min "
        "(probes put in at 2.5 min)",
        "",
        "| | `full_scan_interval: 0` (every cycle, as before) | `full_scan_interval: 10m` "
        "(default) |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {fmt(today)} | {fmt(two)} |" for label, fmt in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="two-tier polling benchmark")
    parser.add_argument("--workspaces", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "ADMIN_URL", "PROBES"))
    args = parser.parse_args(argv)
    if args.child:
        config, admin_url, probes = args.child
        result = asyncio.run(child(config, admin_url, json.loads(probes)))
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    started = time.perf_counter()
    modes: dict[str, dict[str, Any]] = {}
    raw: dict[str, Any] = {}
    with (
        SimulatorProcess(args.workspaces, locked="1%") as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        idle = _idle(sim)
        probes = {"run": idle[0], "lock": idle[1]}
        for mode in ("0", "10m"):
            print(f"[{time.strftime('%H:%M:%S')}] full_scan_interval={mode}", file=sys.stderr)
            raw[mode] = run_mode(
                sim, write_config(Path(tmp), sim.url, sim.organization, mode), probes
            )
            modes[mode] = derive(raw[mode])
            time.sleep(1.5)  # let the per-second bucket refill between the modes
    if args.json:
        args.json.write_text(json.dumps({"modes": modes, "raw": raw}, indent=1))
    print(markdown(args.workspaces, modes))
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
