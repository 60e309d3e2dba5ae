"""`tfc-watchdog simulator`: serve the simulated API until SIGINT/SIGTERM (then exit 0).

World source, in order: `--workspaces N` (generated organization), `--scenario FILE`, else
the built-in demo scenario. Exit 2 for a user error (bad scenario, unsupported option).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import uvicorn

from watchdog.simulator.app import Settings, Simulator, build_app
from watchdog.simulator.scenario import Loaded, ScenarioError, generate, load_builtin, load_text


def _load(args: argparse.Namespace) -> Loaded:
    if args.workspaces:
        return generate(
            args.workspaces,
            args.locked,
            organization=args.organization or "bench",
            seed=args.seed,
            time_scale=args.time_scale,
        )
    if args.scenario:
        return load_text(Path(args.scenario).read_text(), time_scale=args.time_scale)
    return load_builtin("demo", time_scale=args.time_scale)


def server_config(simulator: Simulator, host: str, port: int, log_level: str) -> uvicorn.Config:
    """uvicorn settings shared with the test fixture: no `Date` of its own (the simulated
    clock's goes on every response) and no server banner."""
    return uvicorn.Config(
        build_app(simulator),
        host=host,
        port=port,
        log_level=log_level,
        date_header=False,
        server_header=False,
        lifespan="off",
    )


def main(args: argparse.Namespace) -> int:
    if args.tls:
        print("simulator: --tls is not yet supported", file=sys.stderr)
        return 2
    try:
        loaded = _load(args)
    except (OSError, ScenarioError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    settings = Settings(rate_limit=args.rate_limit, latency_ms=args.latency_ms)
    simulator = Simulator.from_scenario(loaded, settings)
    orgs = ", ".join(sorted(loaded.world.organizations))
    print(
        f"simulator: {len(loaded.world.workspaces)} workspaces in {orgs}; "
        f"http://{args.host}:{args.port}/api/v2 (admin: /_sim/state)",
        flush=True,
    )
    # uvicorn handles SIGINT/SIGTERM (finish in-flight requests, return), then re-raises the
    # signal with the handlers it found; no-op handlers make that a clean exit 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    uvicorn.Server(server_config(simulator, args.host, args.port, "warning")).run()
    return 0
