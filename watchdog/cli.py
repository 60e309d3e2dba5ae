"""The `tfc-watchdog` command (contract: DESIGN.md "CLI").

Each subcommand's code lives in the module that owns its job and is imported only when that
subcommand runs, so `check-config` does not pay for uvicorn and a broken optional piece
cannot take the other commands down.

Exit codes: 0 ok; 1 runtime failure (API unreachable, cycle failed); 2 usage or config
error; 3 (`scan`) something is stale or stuck.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from watchdog import __version__

DEFAULT_CONFIG_ENV = "TFC_WATCHDOG_CONFIG"

# subcommand -> "module:function" taking the parsed args and returning an exit code.
HANDLERS = {
    "run": "watchdog.daemon:main",
    "scan": "watchdog.scan:main",
    "check-config": "watchdog.checkconfig:main",
    "demo": "watchdog.demo:main",
    "simulator": "watchdog.simulator.cli:main",
}


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=os.environ.get(DEFAULT_CONFIG_ENV),
        help=f"the YAML config file (default: ${DEFAULT_CONFIG_ENV})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfc-watchdog",
        description="Watch Terraform state locks, alert on stale ones, clear them the safe way.",
    )
    parser.add_argument("--version", action="version", version=f"tfc-watchdog {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (dry-run unless the config says otherwise)")
    _add_config_argument(run)
    run.add_argument("--once", action="store_true", help="run one full cycle, then exit")

    scan = sub.add_parser(
        "scan", help="one observe+decide pass, no actions; exit 3 when something is stale"
    )
    _add_config_argument(scan)
    scan.add_argument("--output", "-o", choices=("table", "json"), default="table")

    check = sub.add_parser("check-config", help="validate a config file (exit 0 valid, 2 invalid)")
    check.add_argument("file", nargs="?", metavar="FILE")
    check.add_argument(
        "--schema", action="store_true", help="print the config's JSON Schema and exit"
    )

    demo = sub.add_parser(
        "demo", help="the simulator and the daemon on this machine, with a readable timeline"
    )
    demo.add_argument(
        "--dry-run", action="store_true", help="run the demo without making any change"
    )

    sim = sub.add_parser("simulator", help="a local TFC/TFE API server for demos and tests")
    sim.add_argument("--scenario", metavar="FILE", help="scenario YAML (default: the demo)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument(
        "--rate-limit", type=float, default=30.0, help="requests per second per principal"
    )
    sim.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per real second"
    )
    sim.add_argument(
        "--workspaces", type=int, metavar="N", help="generate an organization of N workspaces"
    )
    sim.add_argument(
        "--locked", default="1%", metavar="PCT", help="share of generated workspaces locked"
    )
    sim.add_argument("--organization", default=None, help="name of the generated organization")
    sim.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    sim.add_argument("--seed", type=int, default=1, help="seed for generated organizations")
    sim.add_argument("--tls", action="store_true", help="serve HTTPS (self-signed by default)")
    sim.add_argument("--cert", metavar="PEM", help="TLS certificate (with --tls)")
    sim.add_argument("--key", metavar="PEM", help="TLS private key (with --tls)")
    sim.add_argument(
        "--cert-dir", metavar="DIR", help="where a generated certificate is written (with --tls)"
    )
    return parser


def _load_handler(command: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, function = HANDLERS[command].partition(":")
    handler: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(module_name), function
    )
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _load_handler(args.command)(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
