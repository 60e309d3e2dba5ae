"""The `tfc-watchdog` command (contract: README "Commands").

Each subcommand's code lives in the module that owns its job and is imported only when that
subcommand runs, so `check-config` does not pay for uvicorn and a broken optional piece
cannot take the other commands down.

Exit codes: 0 ok; 1 runtime failure (API unreachable, cycle failed); 2 usage or config
error; 3 (`scan`) something is stale or stuck.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
import textwrap
from collections.abc import Callable, Sequence

# Nothing from the `watchdog` package is imported at module level: when the PyPI package
# `watchdog` was installed over this one, its `watchdog/__init__.py` replaced ours, and
# `main` must still get to say so (`foreign_watchdog`) instead of failing on an import.

# The PyPI distribution that installs into the same `watchdog/` folder.
FOREIGN_DISTRIBUTION = "watchdog"

# subcommand -> "module:function" taking the parsed args and returning an exit code.
HANDLERS = {
    "run": "watchdog.daemon:main",
    "scan": "watchdog.scan:main",
    "check-config": "watchdog.checkconfig:main",
    "demo": "watchdog.demo:main",
    "simulator": "watchdog.simulator.cli:main",
}


# Descriptions and epilogs are wrapped here: the raw formatter (which keeps the exit-code
# tables as written) does not wrap them.
_WIDTH = 79
# Kept in step with watchdog/simulator/scenarios/demo.yaml (a test checks it).
DEMO_TOKENS = {
    "demo-admin-token": "team owners, admin on every workspace",
    "demo-org-token": "the organization token",
    "demo-read-token": "user reader, read only",
    "demo-user-token": "user operator, write (what the Terraform CLI uses)",
}

_SCAN_EXIT_CODES = """exit codes:
  0  nothing stale or stuck
  1  a source could not be read (the reason is printed once, on stderr)
  2  usage or config error
  3  something is stale or stuck (CI jobs can gate on it)"""


def foreign_watchdog() -> str | None:
    """One line saying what to do when the PyPI package `watchdog` (filesystem events, often
    pulled in by mkdocs) is installed in this environment, else None. Both install into the
    folder `watchdog/`, so whichever was installed last has overwritten files of the other."""
    try:
        found = importlib.metadata.distribution(FOREIGN_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    return (
        f"tfc-watchdog: the package `watchdog` {found.version} (filesystem events) is "
        "installed in this environment and shares the import name `watchdog`: install "
        "tfc-watchdog on its own (`pipx install tfc-watchdog`, a separate venv, or the "
        "container image)"
    )


def _token_help() -> str:
    from watchdog import TOKEN_ENV

    return textwrap.fill(
        f"The API token is read from ${TOKEN_ENV} (or the file named by tfc.token_file); "
        "it is never read from the config file or the command line.",
        _WIDTH,
    )


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    from watchdog import CONFIG_ENV

    current = os.environ.get(CONFIG_ENV)
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=current,
        help=f"the YAML config file (default: ${CONFIG_ENV}, "
        + (f"now {current})" if current else "unset now)"),
    )


def _subparser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    # Raw text keeps the epilog's exit-code and token tables as written.
    return sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, _WIDTH),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    from watchdog import __version__

    token_help = _token_help()
    parser = argparse.ArgumentParser(
        prog="tfc-watchdog",
        description="Watch Terraform state locks, alert on stale ones, clear them the safe way.",
    )
    parser.add_argument("--version", action="version", version=f"tfc-watchdog {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _subparser(
        sub,
        "run",
        "run the daemon (dry-run unless the config says otherwise)",
        "Watch the configured organizations, S3 and GCS backend stores and GitLab projects "
        "every `interval`, serve /metrics, /livez, /readyz and /locks on `listen`, and act "
        "where the policy allows (dry-run by default). The config file is re-read before each "
        "cycle and on SIGHUP.",
        f"{token_help}\n\nexit codes:\n  0  stopped by SIGTERM or SIGINT (with --once: the "
        "cycle succeeded)\n  1  `listen` cannot be bound (with --once: a source could not be "
        "read)\n  2  usage or config error",
    )
    _add_config_argument(run)
    run.add_argument("--once", action="store_true", help="run one full cycle, then exit")

    scan = _subparser(
        sub,
        "scan",
        "one observe+decide pass, no actions; exit 3 when something is stale",
        "Read every lock once, decide as the daemon would, and print who holds each lock "
        "since when, the manual fix, and what the watchdog would do. Nothing is sent. The "
        "daemon's state_file (read, never written) tells how long a lock has been seen.",
        f"{token_help}\n\n{_SCAN_EXIT_CODES}",
    )
    _add_config_argument(scan)
    scan.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default="table",
        help="table: for people (control characters escaped); json: the /locks document, "
        "values exact (default: table)",
    )

    check = _subparser(
        sub,
        "check-config",
        "validate a config file (exit 0 valid, 2 invalid)",
        "Validate a config file as `run` would load it here (TFC_WATCHDOG_* overrides "
        "included): FILE: ok and a one-line summary on stdout, or one line per problem on "
        "stderr.",
        "exit codes:\n  0  valid\n  2  invalid, or no FILE",
    )
    check.add_argument("file", nargs="?", metavar="FILE", help="the YAML config file to check")
    check.add_argument(
        "--schema", action="store_true", help="print the config's JSON Schema and exit"
    )

    demo = _subparser(
        sub,
        "demo",
        "the simulator and the daemon on this machine, with a readable timeline",
        "Start the simulator with the demo organization and the daemon against it, and tell "
        "what happens to each stuck run and stale lock (about 15 seconds).",
    )
    demo.add_argument(
        "--dry-run", action="store_true", help="run the demo without making any change"
    )

    tokens = "\n".join(f"  {token:<18} {who}" for token, who in DEMO_TOKENS.items())
    sim = _subparser(
        sub,
        "simulator",
        "a local TFC/TFE API server for demos and tests",
        "A local HCP Terraform / Terraform Enterprise API server with a simulated clock, "
        "fault injection and a request log (admin API under /_sim/). It serves the demo "
        "organization `demo` unless --scenario or --workspaces says otherwise.",
        f"demo tokens (organization demo):\n{tokens}",
    )
    sim.add_argument("--scenario", metavar="FILE", help="scenario YAML (default: the demo)")
    sim.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    sim.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default: %(default)s)"
    )
    sim.add_argument(
        "--rate-limit",
        type=float,
        default=30.0,
        help="requests per second per principal (default: %(default)s)",
    )
    sim.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="simulated seconds per real second (default: %(default)s)",
    )
    sim.add_argument(
        "--workspaces", type=int, metavar="N", help="generate an organization of N workspaces"
    )
    sim.add_argument(
        "--locked",
        default="1%",
        metavar="PCT",
        help="share of generated workspaces locked (default: %(default)s)",
    )
    sim.add_argument(
        "--organization",
        default=None,
        help="name of the generated organization (default: generated)",
    )
    sim.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="added latency per request (default: %(default)s)",
    )
    sim.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed for generated organizations (default: %(default)s)",
    )
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
    foreign = foreign_watchdog()
    if foreign is not None:
        print(foreign, file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        return _load_handler(args.command)(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
