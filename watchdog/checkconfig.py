"""`tfc-watchdog check-config FILE` and `check-config --schema`.

Exit 0 and `FILE: ok` plus a one-line summary, or the problems on stderr (one per line) and
exit 2. The environment's overrides apply, exactly as for `run`, so a check passes only if
the daemon would start with this file here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from watchdog.configload import ENV_OVERRIDES, ConfigError, load_policy, missing_extras
from watchdog.model import ActionKind
from watchdog.policy import Policy, json_schema


def main(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(json_schema(), indent=2))
        return 0
    if not args.file:
        print("usage: tfc-watchdog check-config [--schema] FILE", file=sys.stderr)
        print("tfc-watchdog check-config: error: FILE is required (or --schema)", file=sys.stderr)
        return 2
    try:
        policy = load_policy(args.file, os.environ)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 2
    print(f"{args.file}: ok")
    print(summary(policy, sorted(v for v in ENV_OVERRIDES if os.environ.get(v, "").strip())))
    for section, package, extra in missing_extras(policy):
        # Valid as a file (it may be meant for the container image, which has the extras),
        # but `run` and `scan` here would refuse it: say so.
        print(
            f"{args.file}: warning: {section} needs {package}, which is not installed here "
            f"(`run` and `scan` would exit 2): pip install 'tfc-watchdog[{extra}]'",
            file=sys.stderr,
        )
    return 0


def summary(policy: Policy, env_overrides: list[str]) -> str:
    """One line: what the file watches and whether it may act."""
    parts = []
    if policy.tfc is not None:
        parts.append(f"organizations: {', '.join(policy.tfc.organizations)}")
    if policy.s3_backend is not None:
        stores = [*policy.s3_backend.dynamodb_tables]
        stores += [b.bucket for b in policy.s3_backend.lockfile_buckets]
        parts.append(f"s3 backend: {', '.join(stores)}")
    if policy.gcs_backend is not None:
        buckets = [b.bucket for b in policy.gcs_backend.buckets]
        parts.append(f"gcs backend: {', '.join(buckets)}")
    if policy.gitlab is not None:
        parts.append(f"gitlab projects: {', '.join(policy.gitlab.projects)}")
    parts.append(f"rules: {len(policy.rules)}")
    allowed = set(policy.defaults.actions)
    for rule in policy.rules:
        allowed.update(rule.actions or ())
    if not allowed:
        parts.append("actions allowed: none (report only)")
        parts.append(f"dry-run: {'on' if policy.dry_run else 'OFF'}")
    else:
        rungs = ", ".join(kind.value for kind in ActionKind if kind in allowed)
        parts.append(f"actions allowed: {rungs}")
        parts.append(
            "dry-run: on, nothing will be sent"
            if policy.dry_run
            else "dry-run: OFF, these actions will be sent where a rule allows"
        )
    if env_overrides:
        parts.append(f"env overrides: {', '.join(env_overrides)}")
    return "; ".join(parts)
