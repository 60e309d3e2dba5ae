"""Every Prometheus metric of the watchdog, in one place (names are a contract: README "Metrics").

One `Metrics` object owns its own registries, so tests get isolated metrics and the process
has exactly one set. Two kinds of metric:

- Counters, histograms and process gauges that move during a cycle (requests, actions,
  reloads) are ordinary prometheus_client metrics in `Metrics.live`.
- The per-lock series (`lock_since`, `lock_stale`, `stuck_runs`, ...) describe the last
  report only: `LockSeries`, a custom collector (the library's idiom for snapshot data), builds
  them from the picture the report stage hands it once per cycle. Series exist only for
  locked or stuck objects, so a cleared lock's series disappears and cardinality stays
  bounded by what is actually locked.

`Metrics.registry` holds both and is what /metrics shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily

from watchdog import __version__
from watchdog.model import ActionKind, LockState, Outcome, Source

PREFIX = "tfc_watchdog"
# Lock ages at clear: minutes (a run's own lock) to days (a forgotten CLI lock), with the
# common `lock_stale_after` values (1h, 2h, 4h, 12h, 24h) as bounds, so an SLO such as
# "99% of locks cleared within 4h" reads straight off a bucket.
LOCK_AGE_BUCKETS = (
    60,
    300,
    900,
    1800,
    3600,
    7200,
    4 * 3600,
    8 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
)

# Fixed values of the `reason` label of observe_errors_total (bounded cardinality).
ERROR_REASONS = (
    "unauthorized",
    "not_found",
    "rate_limited",
    "server_error",
    "bad_response",
    "timeout",
    "transport",
    "tls",
    "other",
)


class Metrics:
    def __init__(self) -> None:
        # The metrics that move during a cycle; /metrics renders them on every scrape.
        self.live = CollectorRegistry()
        r = self.live
        self.workspaces = Gauge(
            f"{PREFIX}_workspaces",
            "Workspaces seen in the last complete read of each organization.",
            ["organization"],
            registry=r,
        )
        self.locked_workspaces = Gauge(
            f"{PREFIX}_locked_workspaces",
            "Workspaces locked in the last read of each organization.",
            ["organization"],
            registry=r,
        )
        self.actions = Counter(
            f"{PREFIX}_actions",
            "Remediation actions by outcome (dry_run: would have acted).",
            ["action", "outcome"],
            registry=r,
        )
        self.actions_budget_remaining = Gauge(
            f"{PREFIX}_actions_budget_remaining",
            "Actions still allowed in the current sliding hour.",
            registry=r,
        )
        self.api_requests = Counter(
            f"{PREFIX}_api_requests",
            "Backend API requests by endpoint template and status code "
            "(code is `error` when no response arrived).",
            ["endpoint", "code"],
            registry=r,
        )
        self.read_requests = Counter(
            f"{PREFIX}_read_requests",
            "TFC workspace reads answered, by kind: `full` (a page of the walk of every "
            "workspace), `fast` (a page of the workspaces whose current run is not final), "
            "`reread` (one workspace, right before acting on it).",
            ["kind"],
            registry=r,
        )
        self.fast_path_disabled = Gauge(
            f"{PREFIX}_fast_path_disabled",
            "1 while an organization is walked in full every cycle because the fast path "
            "missed a run or the server ignored or refused its filter; 0 while it is in use.",
            ["organization"],
            registry=r,
        )
        self.api_rate_limited = Counter(
            f"{PREFIX}_api_rate_limited",
            "Responses with status 429 (rate limited).",
            registry=r,
        )
        self.parse_errors = Counter(
            f"{PREFIX}_parse_errors",
            "API entries that could not be parsed; their workspaces get no action that cycle.",
            registry=r,
        )
        self.observe_errors = Counter(
            f"{PREFIX}_observe_errors",
            "Failed reads of a source (a whole organization, table or bucket), by reason.",
            ["source", "reason"],
            registry=r,
        )
        self.cycle_duration = Histogram(
            f"{PREFIX}_cycle_duration_seconds",
            "Wall time of one observe-decide-act-report cycle.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.lock_age_at_clear = Histogram(
            f"{PREFIX}_lock_age_at_clear_seconds",
            "Observed age of each lock when it went away, observed once per lock; cleared_by "
            "`watchdog` when a POST of ours may have ended it, else `other`.",
            ["source", "cleared_by"],
            buckets=LOCK_AGE_BUCKETS,
            registry=r,
        )
        self.cycles = Counter(f"{PREFIX}_cycles", "Cycles started.", registry=r)
        self.cycle_failures = Counter(
            f"{PREFIX}_cycle_failures",
            "Cycles in which some source could not be read completely, or that raised.",
            registry=r,
        )
        self.last_success = Gauge(
            f"{PREFIX}_last_success_timestamp_seconds",
            "When the last fully successful cycle ended (Unix time).",
            registry=r,
        )
        self.dry_run = Gauge(
            f"{PREFIX}_dry_run", "1 while dry-run is on (no changes are made).", registry=r
        )
        self.config_reload_failures = Counter(
            f"{PREFIX}_config_reload_failures",
            "Config reloads rejected because the new file was invalid.",
            registry=r,
        )
        self.config_last_reload_success = Gauge(
            f"{PREFIX}_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully (Unix time).",
            registry=r,
        )
        # The PrometheusBadConfig pattern (prometheus_config_last_reload_successful): a 0/1
        # state an alert can hold on, where the failures counter only says that one happened.
        self.config_last_reload_successful = Gauge(
            f"{PREFIX}_config_last_reload_successful",
            "1 when the last attempt to load the config file succeeded, 0 while the file "
            "is invalid or unreadable (the previous config keeps running).",
            registry=r,
        )
        self.config_last_reload_successful.set(1)
        self.config_restart_required = Gauge(
            f"{PREFIX}_config_restart_required",
            "1 while the config file differs from the running process in a setting that "
            "needs a restart (listen, state_file, tfc, s3_backend, gcs_backend, gitlab), else 0.",
            registry=r,
        )
        self.build_info = Info(f"{PREFIX}_build", "Build information.", registry=r)
        self.build_info.info({"version": __version__})
        self._initialise_labels()
        # The per-lock series of the last report (replaced by the report stage each cycle).
        self.lock_series = LockSeries()
        # Everything /metrics shows: the live metrics first, then the per-lock families.
        # auto_describe lets the registry learn the live metrics' names (for duplicate
        # checks and for `/metrics?name[]=...`) from the live registry's own collect().
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self.live)
        self.registry.register(self.lock_series)

    def _initialise_labels(self) -> None:
        # Pre-initialise every known label combination so dashboards and `rate()` see zeros
        # instead of absent series.
        for action in ActionKind:
            for outcome in Outcome:
                self.actions.labels(action=action.value, outcome=outcome.value)
        for kind in ("full", "fast", "reread"):
            self.read_requests.labels(kind=kind)
        for source in Source:
            for cleared_by in ("watchdog", "other"):
                self.lock_age_at_clear.labels(source=source.value, cleared_by=cleared_by)

    # --- helpers used by the stages -----------------------------------------------------------

    def api_request(self, endpoint: str, code: int | str) -> None:
        self.api_requests.labels(endpoint=endpoint, code=str(code)).inc()
        if code == 429:
            self.api_rate_limited.inc()

    def observe_error(self, source: str, reason: str) -> None:
        self.observe_errors.labels(
            source=source, reason=reason if reason in ERROR_REASONS else "other"
        ).inc()

    def lock_cleared(self, source: str, *, by_watchdog: bool, age_seconds: float) -> None:
        cleared_by = "watchdog" if by_watchdog else "other"
        self.lock_age_at_clear.labels(source=source, cleared_by=cleared_by).observe(age_seconds)

    def action(self, action: ActionKind, outcome: Outcome) -> None:
        self.actions.labels(action=action.value, outcome=outcome.value).inc()

    def publish_organization(self, organization: str, workspaces: int, locked: int) -> None:
        self.workspaces.labels(organization=organization).set(workspaces)
        self.locked_workspaces.labels(organization=organization).set(locked)

    def cycle_succeeded(self, at: datetime) -> None:
        self.last_success.set(at.timestamp())


# --- The per-lock series: a custom collector over the last report ---------------------------

LOCK_LABELS = ("source", "organization", "workspace", "holder_type")
LOCK_STALE_LABELS = (*LOCK_LABELS, "rule")
RUNS_BLOCKED_LABELS = ("source", "organization", "workspace")
STUCK_RUNS_LABELS = ("organization", "status")

_LOCK_SINCE = (
    f"{PREFIX}_lock_since_timestamp_seconds",
    "When the lock was taken (run locks: the run entered its status; user/team "
    "locks: first seen by this watchdog; S3 backend: the lock's Created).",
)
_LOCK_LAST_ACTIVITY = (
    f"{PREFIX}_lock_last_activity_timestamp_seconds",
    "The last sign of life of a user/team lock's holder: its workspace's "
    "latest-change-at when it moved while the lock was held (Unix time); the series "
    "exists only then.",
)
_LOCK_STALE = (
    f"{PREFIX}_lock_stale",
    "1 while the lock is older than its rule's threshold (or its run is stuck).",
)
_STUCK_RUNS = (
    f"{PREFIX}_stuck_runs",
    "Non-final current runs past their phase's threshold, by status.",
)
_RUNS_BLOCKED = (
    f"{PREFIX}_runs_blocked",
    "1 while a stale lock keeps runs of the workspace from starting (a runs_blocked "
    "finding); the series exists only while that holds.",
)


@dataclass(frozen=True)
class LockPicture:
    """What the per-lock series show: the locks, stuck runs and blocked workspaces of the
    last report (a scope that could not be read keeps its previous cycle's part)."""

    locks: tuple[LockState, ...] = ()
    stuck_runs: tuple[tuple[str, str], ...] = ()  # (organization, status), one per stuck run
    runs_blocked: tuple[tuple[str, str, str], ...] = ()  # (source, organization, workspace)

    @staticmethod
    def combine(parts: Iterable[LockPicture]) -> LockPicture:
        """One picture made of several (one per source and organization), in their order."""
        parts = list(parts)
        return LockPicture(
            locks=tuple(lock for p in parts for lock in p.locks),
            stuck_runs=tuple(item for p in parts for item in p.stuck_runs),
            runs_blocked=tuple(item for p in parts for item in p.runs_blocked),
        )


class LockSeries:
    """A custom collector: the per-lock gauge families, built from one `LockPicture`.

    Built at collect time from an immutable picture, so a scrape never sees a half-updated
    set and nothing has to be cleared. The families keep the names, HELP texts, labels,
    values and order (last on /metrics) they had as plain Gauges; a label set that occurs
    twice keeps its first position and its last value, as `Gauge.labels(...).set()` did.
    """

    def __init__(self) -> None:
        self.picture = LockPicture()

    def show(self, picture: LockPicture) -> None:
        self.picture = picture

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without samples, so the registry knows the names up front."""
        return self._families(LockPicture())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(self.picture)

    @staticmethod
    def _families(picture: LockPicture) -> Iterator[GaugeMetricFamily]:
        since: dict[tuple[str, ...], float] = {}
        activity: dict[tuple[str, ...], float] = {}
        stale: dict[tuple[str, ...], float] = {}
        for lock in picture.locks:
            base = (
                lock.source.value,
                lock.organization,
                lock.workspace,
                lock.holder.type.value,
            )
            since[base] = lock.since.timestamp()
            if lock.last_activity is not None:
                activity[base] = lock.last_activity.timestamp()
            stale[(*base, lock.rule)] = 1.0 if lock.stale else 0.0
        stuck: dict[tuple[str, ...], float] = {}
        for organization, status in picture.stuck_runs:
            stuck[(organization, status)] = stuck.get((organization, status), 0.0) + 1
        blocked: dict[tuple[str, ...], float] = dict.fromkeys(picture.runs_blocked, 1.0)
        yield _family(_LOCK_SINCE, LOCK_LABELS, since)
        yield _family(_LOCK_LAST_ACTIVITY, LOCK_LABELS, activity)
        yield _family(_LOCK_STALE, LOCK_STALE_LABELS, stale)
        yield _family(_STUCK_RUNS, STUCK_RUNS_LABELS, stuck)
        yield _family(_RUNS_BLOCKED, RUNS_BLOCKED_LABELS, blocked)


def _family(
    name_help: tuple[str, str],
    labels: tuple[str, ...],
    samples: dict[tuple[str, ...], float],
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(*name_help, labels=labels)
    for values, value in samples.items():
        family.add_metric(values, value)
    return family
