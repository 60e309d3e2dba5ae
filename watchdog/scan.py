"""`tfc-watchdog scan`: one observe+decide pass, no actions, a report for humans or for CI.

Exit codes: 0 nothing stale or stuck; 3 something is (so CI jobs can gate on it); 2 config
error; 1 a source could not be read (the one-line reason goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pydantic import SecretStr

from watchdog.daemon import load_or_report
from watchdog.logs import configure_logging
from watchdog.metrics import Metrics
from watchdog.policy import Policy
from watchdog.report import CycleReport, printable, render_table
from watchdog.runtime import open_runtime

EXIT_OK, EXIT_API_FAILURE, EXIT_CONFIG, EXIT_STALE = 0, 1, 2, 3


async def scan_once(policy: Policy, token: SecretStr | None) -> CycleReport:
    async with open_runtime(policy, token, Metrics(), with_actor=False) as runtime:
        return await runtime.watchdog.run_cycle(act=False)


def main(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.config, "scan")
    if isinstance(loaded, int):
        return loaded
    policy, token = loaded
    # Logs go to stderr, errors only (the report already shows every finding); stdout
    # carries only the report.
    configure_logging(
        policy.log.format,
        "error",
        secrets=[token.get_secret_value()] if token else [],
    )
    report = asyncio.run(scan_once(policy, token))
    if args.output == "json":
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_table(report))
    if not report.complete:
        for observation in report.observations:
            if not observation.complete:
                # The error may quote the server's answer: one escaped line, never raw.
                print(
                    printable(
                        f"tfc-watchdog scan: could not read {observation.source.value} "
                        f"{observation.organization}: {observation.error}"
                    ),
                    file=sys.stderr,
                )
        return EXIT_API_FAILURE
    return EXIT_STALE if report.alarming else EXIT_OK
