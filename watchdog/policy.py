"""The config file's model: process settings, the TFC connection, limits, protections, rules.

A contract with users (DESIGN.md "Config"): keep key names stable. Validated by pydantic;
every field carries a docstring that becomes its description in the JSON Schema
(`tfc-watchdog check-config --schema`).

Rule resolution: the first rule whose `match` fits a workspace gives its settings; a setting
a rule leaves out falls back to `defaults`; no match means `defaults` (rule id `defaults`).
"""

from __future__ import annotations

import fnmatch
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from watchdog.model import ActionKind, PhaseGroup, Run, Workspace, format_duration

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(value: Any) -> timedelta:
    """`45s`, `30m`, `2h`, `1d`, `2h30m`, or plain seconds (int/float/"90")."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 30m, 2h or 1d")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            match = _DURATION.match(text)
            if not text or not match or not any(match.groups()):
                raise ValueError(
                    f"{value!r} is not a duration; use e.g. 90s, 30m, 2h or 1d"
                ) from None
            d, h, m, s = (int(g or 0) for g in match.groups())
            seconds = d * 86400 + h * 3600 + m * 60 + s
    else:
        raise ValueError("expected a duration such as 90s, 30m, 2h or 1d")
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be greater than zero")
    return timedelta(seconds=seconds)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, validate_default=True
    )


class PhaseThresholds(StrictModel):
    """How long a non-final run may stay in a phase group before it counts as stuck."""

    queued: Duration | None = None
    """pending, plan_queued, apply_queued, queuing, fetching...: waiting for a worker."""
    planning: Duration | None = None
    """planning, cost_estimating, policy_checking, post_plan_running."""
    applying: Duration | None = None
    """applying and the pre/post-apply stages. A live apply: keep this generous."""
    waiting: Duration | None = None
    """Paused for a human (planned, cost_estimated, policy_checked, ...): apply or discard."""
    other: Duration | None = None
    """Any other non-final status, including ones this version does not know."""

    def merged_over(self, base: PhaseThresholds) -> PhaseThresholds:
        return PhaseThresholds(
            **{name: getattr(self, name) or getattr(base, name) for name in type(self).model_fields}
        )

    def for_group(self, group: PhaseGroup) -> timedelta:
        value = getattr(self, group)
        if value is None:  # only possible on a rule's partial override, never after merge
            raise LookupError(f"no threshold for phase group {group}")
        return value  # type: ignore[no-any-return]


DEFAULT_RUN_STUCK_AFTER = PhaseThresholds(
    queued=timedelta(hours=2),
    planning=timedelta(hours=2),
    applying=timedelta(hours=6),
    waiting=timedelta(hours=24),
    other=timedelta(hours=2),
)


class Defaults(StrictModel):
    """Thresholds and actions for workspaces that no rule matches, and fallbacks for rules."""

    lock_stale_after: Duration = timedelta(hours=2)
    """A user/team lock older than this (as observed) is stale."""
    run_stuck_after: PhaseThresholds = DEFAULT_RUN_STUCK_AFTER
    """Per phase group of a non-final run: how long before it counts as stuck."""
    actions: tuple[ActionKind, ...] = ()
    """Rungs of the ladder allowed where no rule matches. Empty = report only."""

    @field_validator("run_stuck_after", mode="after")
    @classmethod
    def _complete(cls, value: PhaseThresholds) -> PhaseThresholds:
        return value.merged_over(DEFAULT_RUN_STUCK_AFTER)


class Match(StrictModel):
    """Which workspaces a rule applies to. Every listed criterion must match (AND); an empty
    list matches everything. Names, projects and paths are shell globs (`sandbox-*`)."""

    organizations: tuple[str, ...] = ()
    """Organization names (globs)."""
    projects: tuple[str, ...] = ()
    """Project names or ids (globs)."""
    workspaces: tuple[str, ...] = ()
    """Workspace names (globs)."""
    tags: tuple[str, ...] = ()
    """Workspace tags; the workspace must carry all of them."""
    sources: tuple[Literal["tfc", "dynamodb", "s3"], ...] = ()
    """Lock sources this rule applies to. Empty = every source."""
    paths: tuple[str, ...] = ()
    """S3 backend state paths (`bucket/key` globs, e.g. `tf-state/prod/*`)."""

    @field_validator("organizations", "projects", "workspaces", "paths")
    @classmethod
    def _valid_globs(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            _check_glob(value)
        return values

    def matches_workspace(self, workspace: Workspace) -> bool:
        if self.sources and "tfc" not in self.sources:
            return False
        if self.paths:
            return False
        return (
            _any_glob(self.organizations, workspace.organization)
            and _any_glob(self.workspaces, workspace.name)
            and (
                not self.projects
                or _any_glob(self.projects, workspace.project_name or "")
                or _any_glob(self.projects, workspace.project_id or "")
            )
            and all(tag in workspace.tags for tag in self.tags)
        )

    def matches_path(self, source: str, store_path: str) -> bool:
        """For S3-backend locks: TFC matchers never apply to them."""
        if self.organizations or self.projects or self.workspaces or self.tags:
            return False
        if self.sources and source not in self.sources:
            return False
        return _any_glob(self.paths, store_path)


def _check_glob(pattern: str) -> None:
    if not pattern:
        raise ValueError("a glob must not be empty")
    if pattern.count("[") != pattern.count("]"):
        raise ValueError(f"{pattern!r} is not a valid glob: unbalanced brackets")


def _any_glob(patterns: tuple[str, ...], value: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


class Rule(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=63)
    """A unique slug naming the rule in metrics (`rule` label), logs and errors."""
    match: Match = Match()
    """Which workspaces (or S3-backend lock paths) the rule applies to."""
    lock_stale_after: Duration | None = None
    """Overrides `defaults.lock_stale_after`."""
    run_stuck_after: PhaseThresholds | None = None
    """Overrides `defaults.run_stuck_after`, per phase group."""
    actions: tuple[ActionKind, ...] | None = None
    """Rungs allowed here (cancel, force_cancel, discard, unlock, force_unlock, delete_lock).
    Omitted = `defaults.actions`; `[]` = report only."""


class EffectiveRule(BaseModel):
    """A rule resolved against defaults: what decide.py uses."""

    model_config = ConfigDict(frozen=True)

    id: str
    lock_stale_after: timedelta
    run_stuck_after: PhaseThresholds
    actions: frozenset[ActionKind]

    def run_threshold(self, run: Run) -> timedelta | None:
        group = run.phase_group
        return None if group is None else self.run_stuck_after.for_group(group)


class Protect(StrictModel):
    """Never acted on, whatever the rules say (still reported)."""

    workspaces: tuple[str, ...] = ()
    """Workspace name globs."""
    tags: tuple[str, ...] = ()
    """A workspace with any of these tags is protected."""
    lock_reasons: tuple[str, ...] = ("(?i)maintenance", "(?i)do.?not.?unlock")
    """Regular expressions searched in `locked-reason`: a matching lock is never cleared."""

    @field_validator("workspaces")
    @classmethod
    def _valid_globs(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            _check_glob(value)
        return values

    @field_validator("lock_reasons")
    @classmethod
    def _valid_regexes(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return values

    def workspace_protection(self, workspace: Workspace) -> str | None:
        """Why a workspace is protected (a human phrase), or None."""
        for pattern in self.workspaces:
            if fnmatch.fnmatchcase(workspace.name, pattern):
                return f"workspace matches protect.workspaces {pattern!r}"
        for tag in self.tags:
            if tag in workspace.tags:
                return f"workspace has protected tag {tag!r}"
        return None

    def reason_protection(self, locked_reason: str | None) -> str | None:
        if not locked_reason:
            return None
        for pattern in self.lock_reasons:
            if re.search(pattern, locked_reason):
                return f"lock reason {locked_reason!r} matches protect.lock_reasons {pattern!r}"
        return None


class Limits(StrictModel):
    max_actions_per_cycle: int = Field(2, ge=0)
    """Mutating calls allowed in one cycle (0 = none)."""
    max_actions_per_hour: int = Field(10, ge=0)
    """Mutating calls allowed in any sliding hour, across restarts when `state_file` is set."""


class LogConfig(StrictModel):
    format: Literal["auto", "json", "console"] = "auto"
    """auto = console on a TTY, JSON otherwise (containers)."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Minimum level logged."""


class TfcConfig(StrictModel):
    address: str = "https://app.terraform.io"
    """HCP Terraform, or your Terraform Enterprise URL (https://tfe.example.com)."""
    organizations: tuple[str, ...] = Field(min_length=1)
    """Organizations to watch (at least one)."""
    token_file: str | None = None
    """A file holding the API token (else env TFC_WATCHDOG_TOKEN). Never put the token here."""
    ca_bundle: str | None = None
    """PEM file of a private CA for TFE."""
    verify_tls: bool = True
    """Verify the server's certificate. Turning it off is logged loudly."""
    timeout: Duration = timedelta(seconds=30)
    """Connect and read timeout of one request."""
    requests_per_second: float | None = Field(None, gt=0)
    """Client-side rate limit. null = two thirds of the server's X-RateLimit-Limit."""

    @field_validator("address")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL such as https://app.terraform.io")
        return value.rstrip("/")


class Policy(StrictModel):
    """The whole config file."""

    dry_run: bool = True
    """Report what would be done, change nothing. On by default."""
    interval: Duration = timedelta(seconds=60)
    """Time between cycles."""
    state_file: str | None = None
    """JSON file for first-seen lock times and the action budget. null = memory only."""
    listen: str = "0.0.0.0:9877"
    """Ops server address: /metrics /healthz /readyz /locks."""
    log: LogConfig = LogConfig()
    """Logging."""
    tfc: TfcConfig | None = None
    """HCP Terraform / Terraform Enterprise."""
    limits: Limits = Limits()
    """Action budgets."""
    protect: Protect = Protect()
    """Never acted on, whatever the rules say."""
    defaults: Defaults = Defaults()
    """Thresholds and actions where no rule matches."""
    rules: tuple[Rule, ...] = ()
    """First match wins; no match = defaults."""

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
        return self

    def _effective(self, rule: Rule | None) -> EffectiveRule:
        base = self.defaults
        if rule is None:
            return EffectiveRule(
                id="defaults",
                lock_stale_after=base.lock_stale_after,
                run_stuck_after=base.run_stuck_after,
                actions=frozenset(base.actions),
            )
        return EffectiveRule(
            id=rule.id,
            lock_stale_after=rule.lock_stale_after or base.lock_stale_after,
            run_stuck_after=(
                rule.run_stuck_after.merged_over(base.run_stuck_after)
                if rule.run_stuck_after
                else base.run_stuck_after
            ),
            actions=frozenset(base.actions if rule.actions is None else rule.actions),
        )

    def rule_for_workspace(self, workspace: Workspace) -> EffectiveRule:
        """The first rule that matches, merged over defaults."""
        for rule in self.rules:
            if rule.match.matches_workspace(workspace):
                return self._effective(rule)
        return self._effective(None)

    def rule_for_path(self, source: str, store_path: str) -> EffectiveRule:
        """The same for an S3-backend lock (`store_path` = `<table or bucket>/<state path>`)."""
        for rule in self.rules:
            if rule.match.matches_path(source, store_path):
                return self._effective(rule)
        return self._effective(None)
