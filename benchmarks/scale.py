"""Scale and cost of one watchdog cycle, 100 to 50,000 workspaces. Run by hand:

    .venv/bin/python -m benchmarks.scale                      # 100 1000 10000 50000
    .venv/bin/python -m benchmarks.scale --sizes 100 1000 --json out.json

For each size: one simulator process (`python -m watchdog simulator --workspaces N --locked 1%
--rate-limit 30`), then, with no added latency and with 100 ms per request:

1. the watchdog: `benchmarks.daemon_cycle` in a child process (the real config loading,
   runtime, client and cycle; two cycles, CPU and peak RSS measured in that process);
2. the exporter approach: pages of 20 one after another (others.exporter_walk);
3. the per-workspace approach: each workspace's run list, a bounded sample, extrapolated.

Requests and 429s come from the simulator's request log (cross-checked with the daemon's
own metrics). A separate run renders /metrics with 1,000 locked workspaces. Prints a
Markdown report (RESULTS.md is made from it) and optionally writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.others import estimate_per_workspace, exporter_walk, per_workspace
from benchmarks.simproc import ROOT, SimulatorProcess, summarize

SERVER_LIMIT = 30.0
ALLOWED = SERVER_LIMIT * 2 / 3  # the client keeps two thirds of X-RateLimit-Limit
CHILD_TIMEOUT = 1800.0


def machine() -> dict[str, str]:
    model = "unknown"
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "ram": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_config(directory: Path, url: str, organization: str) -> Path:
    """The daemon's settings at their defaults: dry-run, report only, rate limit learned."""
    path = directory / "watchdog.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dry_run": True,
                "listen": "127.0.0.1:9877",  # never bound: the cycle runs without the server
                "log": {"format": "json", "level": "error"},
                "tfc": {"address": url, "organizations": [organization], "timeout": "30s"},
            }
        )
    )
    return path


def run_daemon_cycles(
    sim: SimulatorProcess, config: Path, cycles: int, *, keep_requests: bool = False
) -> dict[str, Any]:
    """The daemon's cycles in a child process; `keep_requests` adds the simulator's request
    log entries (`simulator_entries`) to the counts."""
    sim.clear_requests()
    env = {**os.environ, "TFC_WATCHDOG_TOKEN": sim.token("admin")}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.daemon_cycle", str(config), "--cycles", str(cycles)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"daemon_cycle failed: {done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    entries = sim.requests()
    result["simulator_log"] = summarize(entries)
    if keep_requests:
        result["simulator_entries"] = entries
    return result


def measure_size(
    workspaces: int, latencies: list[float], args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {"workspaces": workspaces, "runs": []}
    started = time.perf_counter()
    with SimulatorProcess(workspaces, locked=args.locked) as sim:
        out["simulator_start_s"] = time.perf_counter() - started
        out["simulator_command"] = " ".join(sim.command[1:])
        # One principal per approach and latency: the run-list bucket (30/minute) must not
        # carry over from one measurement to the next.
        per_workspace_tokens = iter(["user", "org", "read"])
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp), sim.url, sim.organization)
            for latency in latencies:
                sim.settings(latency_ms=latency)
                row: dict[str, Any] = {"latency_ms": latency}
                _log(f"N={workspaces} latency={latency:g}ms: watchdog")
                row["watchdog"] = run_daemon_cycles(sim, config, args.cycles)
                if args.watchdog_only:
                    out["runs"].append(row)
                    continue
                time.sleep(1.5)  # let the per-second bucket refill
                _log(f"N={workspaces} latency={latency:g}ms: exporter (pages of 20)")
                sim.clear_requests()
                walk = exporter_walk(
                    sim.url,
                    sim.token("read"),
                    sim.organization,
                    max_pages=args.exporter_max_pages,
                    deadline_s=args.exporter_deadline,
                )
                row["exporter"] = walk.as_dict()
                row["exporter"]["simulator_log"] = summarize(sim.requests())
                time.sleep(1.5)
                _log(f"N={workspaces} latency={latency:g}ms: per-workspace sample")
                measured = per_workspace(
                    sim.url,
                    sim.token(next(per_workspace_tokens)),
                    sim.organization,
                    sample=min(args.per_workspace_sample, workspaces),
                    deadline_s=args.per_workspace_deadline,
                )
                row["per_workspace"] = measured.as_dict()
                out["runs"].append(row)
    return out


def measure_metrics_render(args: argparse.Namespace) -> dict[str, Any]:
    """/metrics with 1,000 locked workspaces: 1,000 workspaces, all locked."""
    with SimulatorProcess(1000, locked="100%") as sim, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), sim.url, sim.organization)
        result = run_daemon_cycles(sim, config, 1)
        result["simulator_command"] = " ".join(sim.command[1:])
        return result


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the report ----------------------------------------------------------------------------


def derive(size: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The figures of one (size, latency) row, ratios included."""
    n = size["workspaces"]
    pages = math.ceil(n / 100)
    cycles = row["watchdog"]["cycles"]
    steady = cycles[-1]
    floor = pages / ALLOWED
    exporter = row["exporter"]
    exporter_pages = math.ceil(n / 20)
    if exporter["complete"]:
        exporter_wall = exporter["wall_s"]
        exporter_requests = exporter["requests"]
        exporter_429 = exporter["rate_limited"]
    else:
        scale = exporter_pages / max(1, exporter["pages"])
        exporter_wall = exporter["wall_s"] * scale
        exporter_requests = round(exporter["requests"] * scale)
        exporter_429 = round(exporter["rate_limited"] * scale)
    per_ws = estimate_per_workspace(
        _per_workspace(row["per_workspace"]), n, steady["wall_s"] / max(1, pages)
    )
    return {
        "n": n,
        "latency_ms": row["latency_ms"],
        "pages": pages,
        "requests": steady["requests_total"],
        "sim_requests": row["watchdog"]["simulator_log"]["total"],
        "rate_limited": row["watchdog"]["simulator_log"]["rate_limited"],
        "wall_s": steady["wall_s"],
        "wall_first_s": cycles[0]["wall_s"],
        "floor_s": floor,
        "ratio": steady["wall_s"] / floor,
        "cpu_s": steady["cpu_s"],
        "cpu_first_s": cycles[0]["cpu_s"],
        "rss_mb": row["watchdog"]["peak_rss_mb"],
        "metrics_ms": row["watchdog"]["metrics_render_ms"]["median"],
        "locks": steady["locks"],
        "exporter_complete": exporter["complete"],
        "exporter_requests": exporter_requests,
        "exporter_wall_s": exporter_wall,
        "exporter_429": exporter_429,
        "per_ws_requests": per_ws["requests"],
        "per_ws_wall_s": per_ws["wall_s"],
        "per_ws_429": per_ws["rate_limited"],
        "per_ws_sampled": row["per_workspace"]["sampled"],
    }


def _per_workspace(data: dict[str, Any]) -> Any:
    from benchmarks.others import PerWorkspace

    return PerWorkspace(**data)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for size in results["sizes"]:
        n = size["workspaces"]
        lines += [
            f"### {n:,} workspaces ({math.ceil(n / 100)} pages of 100)",
            "",
            "| | no added latency | 100 ms per request |",
            "|---|---|---|",
        ]
        if any("exporter" not in row for row in size["runs"]):
            lines += [f"(watchdog only) {json.dumps(size['runs'])[:2000]}", ""]
            continue
        rows = [derive(size, row) for row in size["runs"]]
        by = {r["latency_ms"]: r for r in rows}
        cols = [by.get(0.0), by.get(100.0)]

        def line(
            label: str, fmt: Any, cols: list[dict[str, Any] | None] = cols, out: list[str] = lines
        ) -> None:
            cells = [fmt(c) if c else "-" for c in cols]
            out.append(f"| {label} | {' | '.join(cells)} |")

        line(
            "watchdog requests per cycle (sim log, 2 cycles)",
            lambda r: f"{r['requests']} ({r['sim_requests']} for 2 cycles)",
        )
        line("429s received", lambda r: str(r["rate_limited"]))
        line(
            "cycle wall time (2nd / 1st)",
            lambda r: f"{r['wall_s']:.2f} s / {r['wall_first_s']:.2f} s",
        )
        line("floor = pages / 20 per s", lambda r: f"{r['floor_s']:.2f} s")
        line("ratio wall / floor", lambda r: f"{r['ratio']:.2f}x")
        line(
            "daemon CPU per cycle (2nd / 1st)",
            lambda r: f"{r['cpu_s']:.2f} s / {r['cpu_first_s']:.2f} s",
        )
        line("daemon peak RSS", lambda r: f"{r['rss_mb']:.0f} MB")
        line(
            f"/metrics render, median ({rows[0]['locks']} locks)",
            lambda r: f"{r['metrics_ms']:.1f} ms",
        )
        line(
            "exporter (pages of 20): requests",
            lambda r: f"{r['exporter_requests']}" + ("" if r["exporter_complete"] else " (est.)"),
        )
        line(
            "exporter: wall time",
            lambda r: (
                _duration(r["exporter_wall_s"]) + ("" if r["exporter_complete"] else " (est.)")
            ),
        )
        line("exporter: 429s", lambda r: str(r["exporter_429"]))
        line(
            "exporter / watchdog: requests",
            lambda r: f"{r['exporter_requests'] / max(1, r['requests']):.1f}x",
        )
        line(
            "exporter / watchdog: wall time", lambda r: f"{r['exporter_wall_s'] / r['wall_s']:.1f}x"
        )
        line("per-workspace: requests (est.)", lambda r: f"{r['per_ws_requests']:,}")
        line("per-workspace: wall time (est.)", lambda r: _duration(r["per_ws_wall_s"]))
        line("per-workspace: 429s (est.)", lambda r: f"{r['per_ws_429']:,}")
        line(
            "per-workspace / watchdog: requests",
            lambda r: f"{r['per_ws_requests'] / max(1, r['requests']):.0f}x",
        )
        line(
            "per-workspace / watchdog: wall time",
            lambda r: f"{r['per_ws_wall_s'] / r['wall_s']:.0f}x",
        )
        lines.append("")
    render = results.get("metrics_render")
    if render:
        m = render["metrics_render_ms"]
        lines += [
            f"/metrics with {render['lock_series']} locked workspaces: median {m['median']:.1f} ms,"
            f" max {m['max']:.1f} ms, first {m['first']:.1f} ms, {m['bytes']:,} bytes.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tfc-watchdog scale benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000, 50000])
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.0, 100.0])
    parser.add_argument("--locked", default="1%")
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--exporter-max-pages", type=int, default=600)
    parser.add_argument("--exporter-deadline", type=float, default=240.0)
    parser.add_argument("--per-workspace-sample", type=int, default=40)
    parser.add_argument("--per-workspace-deadline", type=float, default=60.0)
    parser.add_argument("--no-metrics-render", action="store_true")
    parser.add_argument(
        "--watchdog-only", action="store_true", help="skip the exporter and per-workspace runs"
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["python -m benchmarks.scale", *(argv or sys.argv[1:])]),
        "sizes": [],
    }
    for n in args.sizes:
        results["sizes"].append(measure_size(n, args.latencies, args))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    if not args.no_metrics_render:
        _log("/metrics with 1,000 locked workspaces")
        results["metrics_render"] = measure_metrics_render(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(results["machine"]))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
