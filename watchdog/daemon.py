"""`tfc-watchdog run`: the daemon.

One interval job (APScheduler, `max_instances=1, coalesce=True`, first run at start) runs
`CycleRunner.run_cycle()`; the ops server (uvicorn) runs in the same event loop. SIGTERM/SIGINT
stop further actions at once, let the current cycle finish (bounded wait) and exit 0. SIGHUP,
or a changed config file (checked before each cycle), reloads the policy in place: a bad
edit is rejected and the old policy keeps running, so tuning never costs lock ages.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import signal
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import SecretStr

from watchdog import __version__
from watchdog.configload import (
    ConfigError,
    configure_logs,
    gitlab_token_file_in_use,
    load_or_report,
    load_policy,
    read_token_file,
    token_file_in_use,
)
from watchdog.metrics import Metrics
from watchdog.model import Source, format_duration, utcnow
from watchdog.policy import Policy
from watchdog.report import CycleReport
from watchdog.runtime import Runtime, open_runtime
from watchdog.server import bind_listener, build_app, make_server
from watchdog.tokenfiles import RotatingToken, TokenUser
from watchdog.tokenfiles import file_digest as _digest

log = structlog.get_logger(__name__)

# How long SIGTERM waits for a running cycle to finish (no new POST is sent meanwhile). It
# must stay below the pod's terminationGracePeriodSeconds (the chart's default: 45 s), so the
# process exits on its own, with its records written, before Kubernetes sends SIGKILL; the
# difference leaves room for the ops server to close and the process to exit.
STOP_GRACE = timedelta(seconds=20)

# Settings that need a restart to change (the rest reload in place).
RESTART_ONLY = ("listen", "state_file", "tfc", "s3_backend", "gcs_backend", "gitlab")


def main(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.config, "run")
    if isinstance(loaded, int):
        return loaded
    policy, token = loaded
    configure_logs(policy, token)
    daemon = Daemon(policy, token, Path(args.config))
    return asyncio.run(daemon.run(once=args.once))


def rotating_tokens(policy: Policy, token: SecretStr | None) -> list[RotatingToken]:
    """The token files the daemon re-reads: `tfc.token_file` and `gitlab.token_file`, each
    unless its token came from the environment."""
    rotating: list[RotatingToken] = []
    tfc_file = token_file_in_use(policy) if token is not None else None
    if tfc_file is not None:
        assert token is not None
        rotating.append(
            RotatingToken(
                Source.TFC, tfc_file, origin="tfc.token_file", current=token.get_secret_value()
            )
        )
    gitlab_file = gitlab_token_file_in_use(policy)
    if gitlab_file is not None:
        try:
            current: str | None = read_token_file(
                gitlab_file, origin="gitlab.token_file"
            ).get_secret_value()
        except ConfigError:
            current = None  # opening the runtime reports it
        rotating.append(
            RotatingToken(Source.GITLAB, gitlab_file, origin="gitlab.token_file", current=current)
        )
    return rotating


class Daemon:
    def __init__(self, policy: Policy, token: SecretStr | None, config_path: Path) -> None:
        # The one current policy: each cycle is handed it; a reload replaces it here.
        self.policy = policy
        # The TFC token the runtime opens with; a rotated one is kept by its RotatingToken.
        self.token = token
        self.config_path = config_path
        self.config_digest = _digest(config_path)
        self.metrics = Metrics()
        self.metrics.dry_run.set(1 if policy.dry_run else 0)
        self.metrics.config_last_reload_success.set(utcnow().timestamp())
        self._stop = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        self._runtime: Runtime | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        # The tokens that came from files, re-read when those change (see _refresh_token).
        self._tokens = rotating_tokens(policy, token)

    # --- start-up ----------------------------------------------------------------------------

    def _log_startup(self) -> None:
        # One line a person can read: what is watched, how often, by which rules. The whole
        # policy (every default filled in) is a screenful: it goes to the debug level.
        policy = self.policy
        watched: list[str] = []
        if policy.tfc is not None:
            watched.append(f"tfc {policy.tfc.address} {','.join(policy.tfc.organizations)}")
        if policy.s3_backend is not None:
            s3 = policy.s3_backend
            watched.extend(f"dynamodb {table}" for table in s3.dynamodb_tables)
            watched.extend(f"s3 {b.bucket}/{b.prefix}" for b in s3.lockfile_buckets)
        if policy.gcs_backend is not None:
            watched.extend(f"gcs {b.bucket}/{b.prefix}" for b in policy.gcs_backend.buckets)
        if policy.gitlab is not None:
            watched.append(f"gitlab {policy.gitlab.address} {','.join(policy.gitlab.projects)}")
        log.info(
            "starting",
            version=__version__,
            config=str(self.config_path),
            token="set (masked)" if self.token else "none",
            dry_run=policy.dry_run,
            interval=format_duration(policy.interval),
            watching="; ".join(watched) or "nothing",
            rules=",".join(rule.id for rule in policy.rules) or "none",
            state_file=policy.state_file,
            listen=policy.listen,
        )
        log.debug("settings", **policy.model_dump(mode="json"))
        if self.policy.dry_run:
            log.warning("DRY-RUN: no changes will be made", dry_run=True)
        else:
            log.warning(
                "ENFORCING: the watchdog will act where its rules allow",
                dry_run=False,
                max_actions_per_cycle=self.policy.limits.max_actions_per_cycle,
                max_actions_per_hour=self.policy.limits.max_actions_per_hour,
            )
        if self.policy.tfc is not None and not self.policy.tfc.verify_tls:
            log.warning(
                "TLS VERIFICATION IS OFF: the API server's certificate is not checked; "
                "use tfc.ca_bundle for a private CA instead",
                address=self.policy.tfc.address,
            )

    async def run(self, *, once: bool) -> int:
        listener: socket.socket | None = None
        if not once:
            # The port first: when it is taken (another instance, a typo), say so in one line
            # and exit before any cycle runs.
            try:
                listener = bind_listener(self.policy.listen)
            except OSError as exc:
                log.error(
                    "ops_server_failed",
                    listen=self.policy.listen,
                    error=exc.strerror or str(exc),
                )
                return 1
        try:
            self._log_startup()
            async with open_runtime(self.policy, self.token, self.metrics) as runtime:
                self._runtime = runtime
                # Everything built so far (modules, clients, config) lives for the whole
                # process: moving it out of the collector's generations saves ~7% CPU per
                # large cycle (benchmarks/RESULTS.md).
                gc.freeze()
                if listener is None:
                    report = await runtime.runner.run_cycle(self.policy)
                    return 0 if report.complete else 1
                return await self._serve(runtime, listener)
        finally:
            if listener is not None:
                listener.close()

    async def _serve(self, runtime: Runtime, listener: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

        app = build_app(reporter=runtime.runner.reporter, interval=lambda: self.policy.interval)
        server = make_server(app, self.policy.listen)
        server_task = asyncio.create_task(server.serve(sockets=[listener]), name="ops-server")

        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_job(
            self._scheduled_cycle,
            "interval",
            seconds=self.policy.interval.total_seconds(),
            next_run_time=utcnow(),
            max_instances=1,
            coalesce=True,
            id="cycle",
        )
        self._scheduler.start()
        log.info("serving", listen=self.policy.listen)

        stop_wait = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait({stop_wait, server_task}, return_when=asyncio.FIRST_COMPLETED)
        if server_task in done and not self._stop.is_set():
            # The ops server could not start (port taken, bad address): a user error.
            stop_wait.cancel()
            self._scheduler.shutdown(wait=False)
            log.error("ops_server_failed", listen=self.policy.listen)
            return 1

        # Pause, not shut down, while the cycle finishes: AsyncIOScheduler.shutdown() cancels
        # the task of a running coroutine job (AsyncIOExecutor.shutdown in APScheduler 3.x
        # calls Future.cancel() on every pending job, whatever `wait` says), which would abort
        # a POST in flight before its outcome is logged, counted and saved.
        self._scheduler.pause()
        try:
            # Acquiring the lock waits for a cycle in progress; the actor was told to stop, so
            # it sends no further POST while we wait, and the cycle still records the outcome
            # of the request in flight and saves the state file.
            await asyncio.wait_for(self._cycle_lock.acquire(), STOP_GRACE.total_seconds())
        except TimeoutError:
            log.warning(
                "stop_timeout",
                waited_seconds=STOP_GRACE.total_seconds(),
                note="the cycle in progress is cancelled",
            )
        self._scheduler.shutdown(wait=False)
        server.should_exit = True
        await server_task
        log.info("stopped")
        return 0

    def request_stop(self, signame: str) -> None:
        log.info("stopping", signal=signame, note="finishing the current cycle, no new actions")
        if self._runtime is not None and self._runtime.actor is not None:
            self._runtime.actor.stop()
        self._stop.set()

    def _on_sighup(self) -> None:
        log.info("reload_requested", signal="SIGHUP")
        # Not in the middle of a cycle: one cycle plans and acts under one policy.
        task = asyncio.get_running_loop().create_task(self._reload_between_cycles())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_between_cycles(self) -> None:
        async with self._cycle_lock:
            if not self._stop.is_set():
                self._reload(force=True)

    async def _scheduled_cycle(self) -> None:
        if self._stop.is_set():
            return
        async with self._cycle_lock:
            if self._stop.is_set():
                return
            self._reload(force=False)
            self._refresh_token(trigger="file_changed")
            assert self._runtime is not None
            try:
                await self._run_cycle(self._runtime)
            except Exception:  # logged with its traceback and counted by run_cycle
                return

    # --- token rotation ----------------------------------------------------------------------

    async def _run_cycle(self, runtime: Runtime) -> CycleReport:
        """One cycle; when an API refused its token (401) and its token file (`tfc.token_file`,
        `gitlab.token_file`) now holds a new one (the Secret was rotated, the old token
        revoked before the kubelet updated the file), the cycle runs again at once with the
        new token instead of leaving the watchdog blind for a whole interval. Once only, and
        not after a stop request: a refused new token waits for the next cycle."""
        report = await runtime.runner.run_cycle(self.policy)
        rotating = {rotating.source for rotating in self._tokens}
        refused = any(
            o.source in rotating and o.error_reason == "unauthorized" for o in report.observations
        )
        if refused and not self._stop.is_set() and self._refresh_token(trigger="unauthorized"):
            report = await runtime.runner.run_cycle(self.policy)
        return report

    def _refresh_token(self, *, trigger: str) -> bool:
        """Re-read every token file whose content changed and hand each new token to its
        client; True when a new token is in use from the next request on. A token from the
        environment is never re-read; an unreadable or invalid file keeps the current token.
        """
        if self._runtime is None:
            return False
        users: dict[Source, TokenUser | None] = {
            Source.TFC: self._runtime.tfc_client,
            Source.GITLAB: self._runtime.gitlab_client,
        }
        # Every file is looked at (a list, not any()'s short circuit); each RotatingToken
        # keeps the token it handed its client.
        renewed = [r.refresh(users.get(r.source), trigger=trigger) for r in self._tokens]
        return any(renewed)

    # --- config reload -----------------------------------------------------------------------

    def _config_unreadable(self, exc: OSError, *, force: bool) -> None:
        """A deleted or unreadable config file is a failed reload: counted and logged once
        when it goes missing, and again at each SIGHUP while it stays missing; the running
        policy carries on. Forgetting the digest makes the file's return a reload (logged
        and timestamped like any good load), even with the old content."""
        if self.config_digest is None and not force:
            return
        self.config_digest = None
        self.metrics.config_reload_failures.inc()
        self.metrics.config_last_reload_successful.set(0)
        log.error(
            "config_reload_rejected",
            errors=[f"{self.config_path}: cannot read the config file: {exc.strerror or exc}"],
            note="the previous config keeps running",
        )

    def _reload(self, *, force: bool) -> None:
        """Reload the config when its content changed (Kubernetes swaps a ConfigMap's symlink,
        so the content, not the mtime, is compared)."""
        try:
            digest = hashlib.sha256(self.config_path.read_bytes()).hexdigest()
        except OSError as exc:
            self._config_unreadable(exc, force=force)
            return
        if digest == self.config_digest and not force:
            return
        self.config_digest = digest
        try:
            new = load_policy(str(self.config_path))
        except ConfigError as exc:
            self.metrics.config_reload_failures.inc()
            self.metrics.config_last_reload_successful.set(0)
            log.error(
                "config_reload_rejected",
                errors=exc.lines,
                note="the previous config keeps running",
            )
            return
        if new == self.policy:
            self.metrics.config_restart_required.set(0)
            # Still a successful load: after a rejected edit is reverted, the metrics and the
            # log must show that the file is good again.
            self.metrics.config_last_reload_success.set(utcnow().timestamp())
            self.metrics.config_last_reload_successful.set(1)
            log.info("config_reloaded", changed=[], dry_run=new.dry_run)
            return
        old_dump: dict[str, Any] = self.policy.model_dump(mode="json")
        new_dump: dict[str, Any] = new.model_dump(mode="json")
        restart = [key for key in RESTART_ONLY if old_dump.get(key) != new_dump.get(key)]
        # self.policy keeps the restart-only values the process started with, so this
        # compares the file with what actually runs (a reverted edit clears it).
        self.metrics.config_restart_required.set(1 if restart else 0)
        if restart:
            log.warning(
                "config_change_needs_restart",
                keys=restart,
                note="these keys keep their old values until the process restarts",
            )
            new = new.model_copy(update={key: getattr(self.policy, key) for key in restart})
        changed = sorted(k for k in new_dump if old_dump.get(k) != new_dump.get(k))
        interval_changed = new.interval != self.policy.interval
        self.policy = new
        self.metrics.dry_run.set(1 if new.dry_run else 0)
        configure_logs(new)
        if interval_changed and self._scheduler is not None:
            self._scheduler.reschedule_job(
                "cycle", trigger="interval", seconds=new.interval.total_seconds()
            )
        self.metrics.config_last_reload_success.set(utcnow().timestamp())
        self.metrics.config_last_reload_successful.set(1)
        log.info("config_reloaded", changed=changed, dry_run=new.dry_run)
