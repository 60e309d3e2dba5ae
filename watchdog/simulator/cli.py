"""`tfc-watchdog simulator`: serve the simulated API until SIGINT/SIGTERM (then exit 0).

World source, in order: `--workspaces N` (generated organization), `--scenario FILE`, else
the built-in demo scenario. Exit 2 for a user error (bad scenario, unusable certificate).

`--tls` serves HTTPS, as the Terraform CLI requires of a `cloud` block's hostname: with
`--cert/--key`, or with a self-signed certificate for localhost and 127.0.0.1 generated at
start into `--cert-dir` (else a temporary folder, removed on exit). The certificate's path
is printed: point Terraform's SSL_CERT_FILE and the watchdog's `tfc.ca_bundle` at it.

GitLab-managed Terraform state is served too, under `/gitlab` on the same port
(`watchdog.simulator.gitlab`): project `demo/infra` with one stale lock, for trying the
watchdog's `gitlab` source (`gitlab.address: http://127.0.0.1:8080/gitlab`).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from watchdog.simulator.app import build_app
from watchdog.simulator.core import Settings, Simulator
from watchdog.simulator.gitlab import (
    DEMO_GITLAB_TOKENS,
    DEMO_PROJECT,
    GITLAB_PREFIX,
    GitLabWorld,
    build_gitlab_app,
    demo_gitlab_world,
    with_gitlab,
)
from watchdog.simulator.scenario import Loaded, ScenarioError, generate, load_builtin, load_text
from watchdog.simulator.tls import CertPair, TlsError, given
from watchdog.simulator.tls import generate as generate_certificate


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


def server_config(
    simulator: Simulator,
    host: str,
    port: int,
    log_level: str,
    tls: CertPair | None = None,
    *,
    gitlab: GitLabWorld | None = None,
) -> uvicorn.Config:
    """uvicorn settings shared with the test fixture: no `Date` of its own (the simulated
    clock's goes on every response), no server banner, HTTPS when `tls` is given, and the
    GitLab app under /gitlab when a `gitlab` world is given."""
    app = build_app(simulator)
    served = app if gitlab is None else with_gitlab(app, build_gitlab_app(gitlab))
    return uvicorn.Config(
        served,
        host=host,
        port=port,
        log_level=log_level,
        date_header=False,
        server_header=False,
        lifespan="off",
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )


@contextlib.contextmanager
def _certificate(args: argparse.Namespace) -> Iterator[CertPair | None]:
    """The certificate to serve with, if any; a temporary folder is removed on exit."""
    if not args.tls:
        if args.cert or args.key or args.cert_dir:
            raise TlsError("--cert, --key and --cert-dir need --tls")
        yield None
        return
    if args.cert or args.key:
        yield given(args.cert, args.key)
        return
    if args.cert_dir:
        yield generate_certificate(Path(args.cert_dir))
        return
    folder = Path(tempfile.mkdtemp(prefix="tfc-watchdog-simulator-tls-"))
    try:
        yield generate_certificate(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args)
    except (OSError, ScenarioError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    try:
        with _certificate(args) as tls:
            return _serve(args, loaded, tls)
    except TlsError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace, loaded: Loaded, tls: CertPair | None) -> int:
    settings = Settings(rate_limit=args.rate_limit, latency_ms=args.latency_ms)
    simulator = Simulator.from_scenario(loaded, settings)
    orgs = ", ".join(sorted(loaded.world.organizations))
    # The certificate names localhost, not the bind address: print the URL clients can verify.
    scheme, host = ("https", "localhost") if tls else ("http", args.host)
    print(
        f"simulator: {len(loaded.world.workspaces)} workspaces in {orgs}; "
        f"{scheme}://{host}:{args.port}/api/v2 (admin: /_sim/state)",
        flush=True,
    )
    tokens = ", ".join(f"{token} ({who})" for token, (who, _) in DEMO_GITLAB_TOKENS.items())
    print(
        f"simulator: GitLab-managed Terraform state of project {DEMO_PROJECT}; "
        f"gitlab.address: {scheme}://{host}:{args.port}{GITLAB_PREFIX} (tokens: {tokens})",
        flush=True,
    )
    if tls is not None:
        print(
            f"simulator: TLS certificate {tls.cert} (trust it: SSL_CERT_FILE={tls.cert} for "
            f"Terraform, tfc.ca_bundle: {tls.cert} for the watchdog)",
            flush=True,
        )
    # uvicorn handles SIGINT/SIGTERM (finish in-flight requests, return), then re-raises the
    # signal with the handlers it found; no-op handlers make that a clean exit 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    config = server_config(
        simulator, args.host, args.port, "warning", tls, gitlab=demo_gitlab_world()
    )
    try:
        uvicorn.Server(config).run()
    except OSError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    return 0
