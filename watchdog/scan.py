"""`tfc-watchdog scan`: one observe+decide pass, no actions, a report for humans or for CI.

Exit codes: 0 nothing stale or stuck; 3 something is (so CI jobs can gate on it); 2 config
error; 1 a source could not be read (the one-line reason goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys

from pydantic import SecretStr

from watchdog.configload import configure_logs, load_or_report
from watchdog.metrics import Metrics
from watchdog.model import Source
from watchdog.policy import Policy
from watchdog.report import DEFAULT_WIDTH, CycleReport, printable, render_table, source_error
from watchdog.runtime import open_runtime
from watchdog.sources.tfc.source import _HINTS as HINTS

EXIT_OK, EXIT_API_FAILURE, EXIT_CONFIG, EXIT_STALE = 0, 1, 2, 3


async def scan_once(policy: Policy, token: SecretStr | None) -> CycleReport:
    async with open_runtime(policy, token, Metrics(), with_actor=False) as runtime:
        return await runtime.runner.run_cycle(policy, act=False)


def main(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.config, "scan")
    if isinstance(loaded, int):
        return loaded
    policy, token = loaded
    # Logs go to stderr, critical only: the report shows every finding and every source
    # that could not be read (an error log line would say it a second time); stdout carries
    # only the report.
    configure_logs(policy, token, "critical")
    report = asyncio.run(scan_once(policy, token))
    if args.output == "json":
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        # The terminal's width ($COLUMNS first); 120 when stdout is not a terminal.
        width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
        sys.stdout.write(render_table(report, width))
    sys.stdout.flush()
    # Each failed read once, on stderr, in both formats (the table only points here), with
    # the hint the daemon's log line would give (that line is not printed by `scan`).
    for observation in report.observations:
        error = source_error(observation)
        if error is None:
            continue
        hint = HINTS.get(observation.error_reason or "")
        if observation.source is Source.TFC and hint is not None:
            error = f"{error} ({hint})"
        # The error may quote the server's answer: one escaped line, never raw.
        print(printable(f"tfc-watchdog scan: {error}"), file=sys.stderr)
    if not report.complete:
        return EXIT_API_FAILURE
    return EXIT_STALE if report.alarming else EXIT_OK
