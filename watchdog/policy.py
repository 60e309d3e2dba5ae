"""The config file's model: process settings, the lock sources, limits, protections, rules.

A contract with users (README "Configuration"): keep key names stable. Validated by pydantic;
every field carries a docstring that becomes its description in the JSON Schema
(`tfc-watchdog check-config --schema`). Reading the file, environment overrides and error
messages live in `watchdog.configload`.

Rule resolution: the first rule whose `match` fits a workspace gives its settings; a setting
a rule leaves out falls back to `defaults`; no match means `defaults` (rule id `defaults`).
"""

from __future__ import annotations

import fnmatch
import functools
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

import re2
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError

from watchdog.model import ActionKind, PhaseGroup, Run, Workspace, format_duration

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")
_DURATION_HINT = "use e.g. 90s, 30m, 2h, 1d, 2h30m or plain seconds"
# timedelta's own limit is about 2.7 million years; anything near it is a typo, and past it
# timedelta raises OverflowError, which pydantic would not turn into a config error.
_MAX_DURATION_SECONDS = 100 * 365 * 86400


def parse_duration(value: Any) -> timedelta:
    """`45s`, `30m`, `2h`, `1d`, `2h30m`, or plain seconds (int/float/"90")."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration; {_DURATION_HINT}")
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"{value!r}: a duration must be greater than zero")
        try:
            seconds = float(text)
        except ValueError:
            match = _DURATION.match(text)
            if not text or not match or not any(match.groups()):
                raise ValueError(f"{value!r} is not a duration; {_DURATION_HINT}") from None
            d, h, m, s = (int(g or 0) for g in match.groups())
            seconds = d * 86400 + h * 3600 + m * 60 + s
    if math.isnan(seconds):
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HINT}")
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be greater than zero")
    if seconds > _MAX_DURATION_SECONDS:
        raise ValueError(f"{value!r}: a duration must be at most 100 years")
    return timedelta(seconds=seconds)


def _duration_schema(number_bound: dict[str, Any], examples: list[str]) -> WithJsonSchema:
    """The JSON Schema of a duration: the `2h30m` form parse_duration reads, or a number of
    seconds with `number_bound`."""
    return WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^\s*(\d+d)?\s*(\d+h)?\s*(\d+m)?\s*(\d+s)?\s*$|^\s*\d+(\.\d+)?\s*$",
                },
                {"type": "number", **number_bound},
            ],
            "examples": examples,
        }
    )


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    # pydantic would publish timedelta as an ISO 8601 string, which editors would then
    # enforce against the `2h` form the file actually uses.
    _duration_schema({"exclusiveMinimum": 0}, ["90s", "30m", "2h", "1d", "2h30m"]),
]


def parse_duration_or_zero(value: Any) -> timedelta:
    """A duration, or zero (`0`, `"0"`, `"0s"`) where zero means "every cycle"."""
    if not isinstance(value, bool) and isinstance(value, int | float) and value == 0:
        return timedelta(0)
    if isinstance(value, str) and value.strip() in {"0", "0s", "0m"}:
        return timedelta(0)
    if isinstance(value, timedelta) and not value:
        return value
    negative = (isinstance(value, str) and value.strip().startswith("-")) or (
        not isinstance(value, bool) and isinstance(value, int | float) and value < 0
    )
    if negative:
        raise ValueError(f"{value!r}: give 0 (every cycle) or a duration such as 10m")
    return parse_duration(value)


DurationOrZero = Annotated[
    timedelta,
    BeforeValidator(parse_duration_or_zero),
    PlainSerializer(format_duration, return_type=str),
    _duration_schema({"minimum": 0}, ["0", "5m", "10m", "30m"]),
]


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, validate_default=True
    )


# A factor past this is a typo: the threshold would sit at `max` for any plausible average.
_MAX_FACTOR = 1000.0


class AdaptiveThreshold(StrictModel):
    """A phase threshold from the workspace's own history: `factor` x its average duration
    for the phase (`plan-duration-average` for planning, `apply-duration-average` for
    applying), kept between `min` and `max`. With no average (a new workspace, an older TFE,
    a value that could not be read) `fallback` applies, or `min` if it is not given."""

    factor: Annotated[float, Field(gt=0, le=_MAX_FACTOR)]
    """How many times the workspace's average a run may take, e.g. 4."""
    min: Duration
    """Never shorter than this, however short the average."""
    max: Duration
    """Never longer than this, however long the average."""
    fallback: Duration | None = None
    """The threshold when the workspace has no usable average. Default: `min`."""

    @model_validator(mode="after")
    def _bounds(self) -> AdaptiveThreshold:
        if self.min > self.max:
            raise ValueError(
                f"min {format_duration(self.min)} is longer than max {format_duration(self.max)}"
            )
        if self.fallback is not None and not self.min <= self.fallback <= self.max:
            raise ValueError(
                f"fallback {format_duration(self.fallback)} is outside "
                f"min {format_duration(self.min)} .. max {format_duration(self.max)}"
            )
        return self

    def resolve(self, average: timedelta | None, *, phase: str, unreadable: bool) -> RunThreshold:
        if average is None:
            why = f"{phase} average unreadable" if unreadable else f"no {phase} average"
            if self.fallback is not None:
                return RunThreshold(self.fallback, f"fallback; {why}")
            return RunThreshold(self.min, f"min; {why}")
        # Whole seconds: thresholds are read by people, and milliseconds of an average say
        # nothing about whether a run is stuck.
        raw = timedelta(seconds=round(self.factor * average.total_seconds()))
        derived = f"{self.factor:g} x {phase} average {format_duration(average)}"
        if raw < self.min:
            return RunThreshold(self.min, f"min; {derived} = {format_duration(raw)}")
        if raw > self.max:
            return RunThreshold(self.max, f"max; {derived} = {format_duration(raw)}")
        return RunThreshold(raw, derived)


@dataclass(frozen=True, slots=True)
class RunThreshold:
    """The threshold a run is measured against, and where it came from."""

    value: timedelta
    # Why this value, for findings and `scan`: None for a plain duration from the config.
    basis: str | None = None

    def describe(self) -> str:
        text = f"threshold {format_duration(self.value)}"
        return f"{text} ({self.basis})" if self.basis else text


# Which workspace average an adaptive threshold of a phase group follows. The API keeps
# averages for plans and applies only; the other groups (queue, a human, unknown statuses)
# say nothing about how long a run there should take.
_AVERAGE_OF: dict[str, Literal["plan", "apply"]] = {"planning": "plan", "applying": "apply"}


def _fixed_only(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, dict):
        raise PydanticCustomError(
            "adaptive_not_allowed",
            "the adaptive form (factor, min, max) is for planning and applying only "
            "(workspaces keep no average for {group}); give a duration such as 2h",
            {"group": info.field_name},
        )
    return value


FixedOnly = Annotated[Duration | None, BeforeValidator(_fixed_only)]


def _adaptive_tag(value: Any) -> str:
    return "adaptive" if isinstance(value, dict | AdaptiveThreshold) else "duration"


PhaseSetting = Annotated[
    Annotated[Duration, Tag("duration")] | Annotated[AdaptiveThreshold, Tag("adaptive")],
    Discriminator(_adaptive_tag),
]


class PhaseThresholds(StrictModel):
    """How long a non-final run may stay in a phase group before it counts as stuck."""

    queued: FixedOnly = None
    """pending, plan_queued, apply_queued, queuing, fetching...: waiting for a worker."""
    planning: PhaseSetting | None = None
    """planning, cost_estimating, policy_checking, post_plan_running. A duration, or
    `{factor, min, max, fallback}` to follow the workspace's plan-duration-average."""
    applying: PhaseSetting | None = None
    """applying and the pre/post-apply stages. A live apply: keep this generous. A duration,
    or `{factor, min, max, fallback}` to follow the workspace's apply-duration-average."""
    waiting: FixedOnly = None
    """Paused for a human (planned, cost_estimated, policy_checked, ...): apply or discard."""
    other: FixedOnly = None
    """Any other non-final status, including ones this version does not know."""

    def merged_over(self, base: PhaseThresholds) -> PhaseThresholds:
        return PhaseThresholds(
            **{name: getattr(self, name) or getattr(base, name) for name in type(self).model_fields}
        )

    def for_group(self, group: PhaseGroup, workspace: Workspace | None = None) -> RunThreshold:
        value = getattr(self, group)
        if value is None:  # only possible on a rule's partial override, never after merge
            raise LookupError(f"no threshold for phase group {group}")
        if isinstance(value, AdaptiveThreshold):
            phase = _AVERAGE_OF[group]
            average = None if workspace is None else workspace.duration_average(phase)
            unreadable = workspace is not None and any(
                name == f"{phase}-duration-average" for name, _ in workspace.problems
            )
            return value.resolve(average, phase=phase, unreadable=unreadable)
        return RunThreshold(value)


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
    notice: Duration | None = None
    """Before the first action on a lock (TFC or backend) or a run: send a `notice` and act
    only if the same lock (holder and run; a backend lock: same lock ID) is still there and
    still stale this long after. null = act at once."""

    @field_validator("run_stuck_after", mode="after")
    @classmethod
    def _complete(cls, value: PhaseThresholds) -> PhaseThresholds:
        return value.merged_over(DEFAULT_RUN_STUCK_AFTER)


_TFC_MATCHERS = ("organizations", "projects", "workspaces", "tags")


def _check_glob(pattern: str) -> str:
    if not pattern.strip():
        raise ValueError("a glob must not be empty")
    # fnmatch accepts anything, so an unclosed `[` silently matches a literal bracket:
    # almost certainly not what the author meant.
    depth = 0
    for char in pattern:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    if depth or pattern.count("[") != pattern.count("]"):
        raise ValueError(f"{pattern!r} is not a valid glob: unbalanced [ ]")
    return pattern


def _re2_options() -> Any:
    options = re2.Options()
    # RE2 writes every rejected pattern to stderr itself; the config error says it in one line.
    options.log_errors = False
    return options


@functools.lru_cache(maxsize=1024)
def compile_user_regex(pattern: str) -> Any:
    """A user's regular expression, compiled by RE2 (raises `re2.error` if RE2 cannot take it).

    Lock reasons (and Terraform's `Info`) are written by anyone who can lock a workspace:
    matched with Python's backtracking `re`, `^(a+)+$` against 40 `a` and a `!` runs for
    minutes and pins a core. RE2 matches in time linear in the text, whatever the pattern
    (https://github.com/google/re2/wiki/WhyRE2); the price is no backreferences and no
    lookaround, which `check-config` rejects.
    """
    return re2.compile(pattern, _re2_options())


def _check_regex(pattern: str) -> str:
    if not pattern:
        # An empty pattern matches every reason: it would protect every lock.
        raise ValueError("an empty regular expression would protect every lock")
    try:
        compile_user_regex(pattern)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(
            f"{pattern!r} is not a valid regular expression for RE2, the linear-time engine "
            f"used on lock reasons (no backreferences, no lookaround): {detail}"
        ) from None
    return pattern


def _check_name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Glob = Annotated[str, AfterValidator(_check_glob)]
Regex = Annotated[str, AfterValidator(_check_regex)]
Name = Annotated[str, AfterValidator(_check_name)]


def _check_project_path(value: str) -> str:
    # GitLab's full path: namespaces and the project, separated by `/` (no URL, no id).
    if not re.match(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+$", value):
        raise ValueError(f"{value!r} is not a GitLab project path such as group/project")
    return value


ProjectPath = Annotated[str, AfterValidator(_check_project_path)]


class Match(StrictModel):
    """Which workspaces a rule applies to. Every listed criterion must match (AND); an empty
    list matches everything. Names, projects and paths are shell globs (`sandbox-*`).
    TFC matchers (organizations, projects, workspaces, tags) and S3-backend matchers (paths)
    cannot be mixed in one rule: such a rule could never match anything."""

    organizations: tuple[Glob, ...] = ()
    """Organization names (globs)."""
    projects: tuple[Glob, ...] = ()
    """Project names or ids (globs)."""
    workspaces: tuple[Glob, ...] = ()
    """Workspace names (globs)."""
    tags: tuple[Name, ...] = ()
    """Workspace tags; the workspace must carry all of them."""
    sources: tuple[Literal["tfc", "dynamodb", "s3", "gcs", "gitlab"], ...] = ()
    """Lock sources this rule applies to: tfc, dynamodb, s3, gcs, gitlab. Empty = every
    source."""
    paths: tuple[Glob, ...] = ()
    """S3 and GCS backend state paths: `<bucket>/<key>` globs such as `tf-state/prod/*`;
    GitLab state paths: `<project path>/<state name>` globs such as `infra/network/*`."""

    @model_validator(mode="after")
    def _matchable(self) -> Match:
        tfc_keys = [name for name in _TFC_MATCHERS if getattr(self, name)]
        if tfc_keys and self.paths:
            raise ValueError(
                f"{' and '.join(tfc_keys)} (TFC) and paths (S3 backend) cannot be combined: "
                "the rule could never match; split it into two rules"
            )
        if tfc_keys and self.sources and "tfc" not in self.sources:
            raise ValueError(
                f"{' and '.join(tfc_keys)} only match TFC workspaces, but sources does not list tfc"
            )
        if self.paths and self.sources and set(self.sources) == {"tfc"}:
            raise ValueError("paths only match S3-backend locks, but sources lists only tfc")
        return self

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
        if any(getattr(self, name) for name in _TFC_MATCHERS):
            return False
        if self.sources and source not in self.sources:
            return False
        return _any_glob(self.paths, store_path)


def _any_glob(patterns: tuple[str, ...], value: str) -> bool:
    # Globs stay with fnmatch: since Python 3.11 its translation wraps every `*` segment in an
    # atomic group, so a glob cannot backtrack catastrophically (linear in the name per
    # segment; a test measures it on a hostile name). Only `lock_reasons` take full regexes.
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _non_empty_path(value: str | None) -> str | None:
    """A file path setting (`token_file`, `ca_bundle`): null, or not blank."""
    if value is not None and not value.strip():
        raise ValueError("an empty path: give a file path or null")
    return value


_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# The `id` of a rule or a notification target: a metrics label value, a slug.
SlugId = Annotated[str, Field(json_schema_extra={"pattern": _SLUG.pattern, "maxLength": 63})]


def _check_slug(value: str, *, example: str) -> str:
    if not _SLUG.match(value) or len(value) > 63:
        raise ValueError(
            f"{value!r} is not a slug: use lowercase letters, digits and dashes "
            f"(at most 63), e.g. {example!r}"
        )
    return value


class Rule(StrictModel):
    """Settings for the workspaces (or S3-backend locks) its `match` selects."""

    id: SlugId
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
    notice: Duration | None = None
    """Overrides `defaults.notice`."""

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        return _check_slug(value, example="sandboxes")

    @model_validator(mode="before")
    @classmethod
    def _no_null_match(cls, data: Any) -> Any:
        # `match:` with nothing after it is YAML null; pydantic would say "must be a valid
        # dictionary", which hides that the author probably forgot to indent the block.
        if isinstance(data, dict) and "match" in data and data["match"] is None:
            raise PydanticCustomError(
                "null_match",
                "match is empty (null): give criteria such as {workspaces: ['sandbox-*']}, "
                "or leave match out to match everything",
            )
        return data


NotificationEvent = Literal[
    "lock_stale", "run_stuck", "notice", "action", "action_failed", "cleared"
]
NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = get_args(NotificationEvent)


def url_scheme(url: str) -> str:
    """What may be said of a notification URL in an error: its scheme, never the rest (the
    rest holds tokens and webhook keys)."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://..." if sep and scheme.isalnum() else "a URL"


class NotificationTarget(StrictModel):
    """Where messages about stale locks and stuck runs go, through apprise
    (https://github.com/caronc/apprise/wiki: Slack, Teams, Mattermost, email, JSON webhooks
    and more). The URLs hold secrets: they are masked in logs, errors and /locks."""

    id: SlugId
    """A unique slug: the `target` label of tfc_watchdog_notifications_total."""
    urls: Annotated[
        tuple[str, ...],
        # Secrets: never in a repr or a dump (the daemon logs its settings at debug level).
        PlainSerializer(lambda urls: [url_scheme(url) for url in urls], return_type=list[str]),
    ] = Field((), repr=False)
    """apprise URLs (`slack://...`, `json://host/path`, `mmost://host/token`)."""
    urls_file: str | None = None
    """Or a file with one apprise URL a line (a mounted Secret), read before each send."""
    events: tuple[NotificationEvent, ...] = NOTIFICATION_EVENTS
    """lock_stale, run_stuck, notice, action, action_failed, cleared (default: all)."""
    match: Match = Match()
    """Which workspaces or S3-backend lock paths it is about (as in rules)."""
    remind_every: Duration | None = None
    """Say it again while the finding lasts, this often (default: once)."""
    timeout: Duration = timedelta(seconds=10)
    """The most a cycle waits for this target's messages (a hanging receiver delays nothing
    beyond it; what was not sent is tried again next cycle)."""

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        return _check_slug(value, example="platform-oncall")

    @field_validator("urls")
    @classmethod
    def _apprise_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for index, url in enumerate(urls):
            problem = apprise_url_problem(url)
            if problem is not None:
                raise ValueError(f"urls[{index}] ({url_scheme(url)}): {problem}")
        return urls

    @field_validator("timeout")
    @classmethod
    def _sane_timeout(cls, value: timedelta) -> timedelta:
        # `Duration` has already refused 0 and negatives; only the upper bound is left.
        if value > timedelta(minutes=1):
            raise ValueError("must be between 0s and 1m: a cycle waits this long at most")
        return value

    @model_validator(mode="after")
    def _some_url(self) -> NotificationTarget:
        if not self.urls and not self.urls_file:
            raise ValueError("give urls or urls_file")
        if not self.events:
            raise ValueError("events is empty: nothing would ever be sent")
        return self


def apprise_url_problem(url: str) -> str | None:
    """Why apprise cannot use `url` (the URL itself is never part of the answer), or None."""
    if not url.strip():
        return "an empty URL"
    # Imported here: only a config with notifications pays for apprise's plugin scan.
    import apprise

    if not apprise.Apprise().add(url.strip()):
        return "not a URL apprise understands (see https://github.com/caronc/apprise/wiki)"
    return None


class EffectiveRule(BaseModel):
    """A rule resolved against defaults: what decide uses."""

    model_config = ConfigDict(frozen=True)

    id: str
    lock_stale_after: timedelta
    run_stuck_after: PhaseThresholds
    actions: frozenset[ActionKind]
    notice: timedelta | None = None

    def run_threshold(self, run: Run, workspace: Workspace | None = None) -> RunThreshold | None:
        """The threshold of the run's phase group; an adaptive one follows `workspace`."""
        group = run.phase_group
        return None if group is None else self.run_stuck_after.for_group(group, workspace)


class Protect(StrictModel):
    """Never acted on, whatever the rules say (still reported)."""

    workspaces: tuple[Glob, ...] = ()
    """Workspace name globs."""
    tags: tuple[Name, ...] = ()
    """A workspace with any of these tags is protected."""
    lock_reasons: tuple[Regex, ...] = ("(?i)maintenance", "(?i)do.?not.?unlock")
    """Regular expressions (RE2 syntax: no backreferences, no lookaround) searched in
    `locked-reason` and in Terraform's lock `Info`: a matching lock is never cleared."""

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
            if compile_user_regex(pattern).search(locked_reason):
                return f"lock reason {locked_reason!r} matches protect.lock_reasons {pattern!r}"
        return None


class Limits(StrictModel):
    """Action budgets: the most harm a wrong policy can do per cycle and per hour."""

    max_actions_per_cycle: int = Field(2, ge=0)
    """Mutating calls allowed in one cycle (0 = none)."""
    max_actions_per_hour: int = Field(10, ge=0)
    """Mutating calls sent in any sliding hour, whatever their answer; across restarts when
    `state_file` is set (each is recorded there before it is sent)."""
    backend_lock_min_observed: Duration = timedelta(minutes=10)
    """A DynamoDB lock item's only age is its `Created`, written by the locking client's clock
    (a CI runner's clock can be hours off): such a lock is deleted only after the watchdog has
    also seen it continuously for this long. (`.tflock` objects are aged by the younger of
    `Created` and S3's own LastModified instead.)"""


def _lowercase(value: Any) -> Any:
    # Env vars are conventionally upper case (TFC_WATCHDOG_LOG_LEVEL=INFO).
    return value.strip().lower() if isinstance(value, str) else value


class LogConfig(StrictModel):
    """Log output (to stderr)."""

    format: Annotated[Literal["auto", "json", "console"], BeforeValidator(_lowercase)] = "auto"
    """auto = console on a TTY, JSON otherwise (containers)."""
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lowercase)] = (
        "info"
    )
    """Minimum level logged: debug, info, warning or error."""


def _http_url(value: str, example: str = "https://app.terraform.io") -> str:
    # Checked first, and the value not echoed: it holds a password.
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*@", value):
        raise ValueError("the URL must not carry credentials (user:password@)")
    if not re.match(r"^https?://[^/\s:@]+(:\d{1,5})?(/\S*)?$", value):
        raise ValueError(f"{value!r} is not an http(s) URL such as {example}")
    return value.rstrip("/")


class TfcConfig(StrictModel):
    """HCP Terraform (Terraform Cloud) or Terraform Enterprise."""

    address: str = "https://app.terraform.io"
    """HCP Terraform, or your Terraform Enterprise URL (https://tfe.example.com)."""
    organizations: Annotated[
        tuple[Name, ...], Field(json_schema_extra={"minItems": 1, "uniqueItems": True})
    ]
    """Organizations to watch (at least one, each once)."""
    token_file: str | None = None
    """A file holding the API token (else env TFC_WATCHDOG_TOKEN). Never put the token here."""
    ca_bundle: str | None = None
    """PEM file of a private CA for TFE."""
    verify_tls: bool = True
    """Verify the server's certificate. Turning it off is logged loudly."""
    timeout: Duration = timedelta(seconds=15)
    """The most one request may take: connecting, the headers and the whole body. Keep it
    under the daemon's 20 s stop grace, so a POST in flight at SIGTERM always completes and is
    recorded (a 100-workspace page is a few hundred KB: seconds at worst)."""
    requests_per_second: float | None = Field(None, gt=0)
    """Client-side rate limit. null = two thirds of the server's X-RateLimit-Limit."""
    full_scan_interval: DurationOrZero = timedelta(minutes=10)
    """How often every workspace is read (the full walk). In the cycles between, only the
    workspaces whose current run is not final are listed (one filtered request per
    organization at low activity): stuck runs and run-held locks are still found every
    `interval`, user/team locks only by the full walk, so their first-seen time is precise to
    this interval. 0 = the full walk every cycle."""

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("organizations")
    @classmethod
    def _some_organizations(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if not values:
            raise ValueError("list at least one organization to watch")
        # Organization names are case-insensitive in the API. One listed twice would be read
        # twice a cycle, and each read is taken as the whole organization: two observations of
        # one scope, where a failed read of one is "cleared" by the other's complete read.
        seen: set[str] = set()
        for name in values:
            if name.casefold() in seen:
                raise ValueError(f"organization {name!r} is listed twice")
            seen.add(name.casefold())
        return values

    _non_empty_paths = field_validator("token_file", "ca_bundle")(_non_empty_path)


class LockfileBucket(StrictModel):
    """An S3 bucket holding state with native locking (`use_lockfile = true`)."""

    bucket: Name
    """The bucket name."""
    prefix: str = ""
    """Only `.tflock` objects under this key prefix are watched. Empty = the whole bucket."""


class GcsBucket(StrictModel):
    """A GCS bucket holding Terraform state (the gcs backend's `bucket` and `prefix`)."""

    bucket: Name
    """The bucket name."""
    prefix: str = ""
    """The gcs backend's `prefix` (`prod` or `prod/`): only `.tflock` objects under
    `<prefix>/` are watched. Empty = the whole bucket."""

    @field_validator("prefix")
    @classmethod
    def _as_the_backend_reads_it(cls, value: str) -> str:
        # What Terraform's gcs backend does with its `prefix` (leading `/` dropped, a `/`
        # appended): taken as a bare object-name prefix, `env/prod` would also list (and
        # clear) the locks of another backend's `env/prod-eu/`.
        value = value.lstrip("/")
        return value if not value or value.endswith("/") else f"{value}/"


class GcsBackendConfig(StrictModel):
    """Terraform's gcs backend: its `<prefix>/<workspace>.tflock` objects. Credentials come
    from Application Default Credentials (workload identity on GKE, the metadata server, or
    `gcloud auth application-default login`), never from here."""

    buckets: Annotated[tuple[GcsBucket, ...], Field(json_schema_extra={"minItems": 1})]
    """Buckets whose `.tflock` objects are watched."""
    endpoint_url: str | None = None
    """Another Cloud Storage endpoint: a Private Service Connect endpoint, or an emulator for
    tests (http://127.0.0.1:4443). With it, when Application Default Credentials finds none,
    requests are sent unauthenticated (emulators need none). null = storage.googleapis.com."""
    project: str | None = None
    """The Google Cloud project the client bills requests to. null = the one of the
    credentials (or none: reading a bucket by name needs no project)."""

    @field_validator("endpoint_url")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "http://127.0.0.1:4443")

    @field_validator("buckets")
    @classmethod
    def _some_bucket(cls, value: tuple[GcsBucket, ...]) -> tuple[GcsBucket, ...]:
        if not value:
            raise ValueError("list at least one bucket")
        return value


class S3BackendConfig(StrictModel):
    """Terraform's S3 backend: the DynamoDB lock table and S3 `.tflock` files. Credentials come
    from the standard AWS chain (env, shared config, IRSA web identity), never from here."""

    region: str = "us-east-1"
    """AWS region of the lock tables and buckets."""
    endpoint_url: str | None = None
    """For S3-compatible stores and tests (http://127.0.0.1:5000). null = AWS."""
    dynamodb_tables: tuple[Name, ...] = ()
    """DynamoDB lock tables (the backend's `dynamodb_table`)."""
    lockfile_buckets: tuple[LockfileBucket, ...] = ()
    """Buckets whose `.tflock` objects are watched (S3 native locking)."""

    @field_validator("endpoint_url")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "http://127.0.0.1:5000")

    @field_validator("region")
    @classmethod
    def _valid_region(cls, value: str) -> str:
        if not re.match(r"^[a-z]{2}(-[a-z]+)+-\d+$", value):
            raise ValueError(f"{value!r} is not an AWS region such as us-east-1")
        return value

    @model_validator(mode="after")
    def _something_to_watch(self) -> S3BackendConfig:
        if not self.dynamodb_tables and not self.lockfile_buckets:
            raise ValueError("list at least one of dynamodb_tables or lockfile_buckets")
        return self


class GitLabConfig(StrictModel):
    """GitLab-managed Terraform state (Terraform's `http` backend on GitLab). The token (a
    project access token, role Maintainer to unlock, Developer to only report; scope `api`,
    `read_api` to only report) comes from env TFC_WATCHDOG_GITLAB_TOKEN or `token_file`."""

    address: str = "https://gitlab.com"
    """The GitLab instance (https://gitlab.example.com)."""
    projects: Annotated[tuple[ProjectPath, ...], Field(json_schema_extra={"minItems": 1})]
    """Projects whose Terraform states are watched, by full path (`group/subgroup/project`)."""
    token_file: str | None = None
    """A file holding the GitLab token (else env TFC_WATCHDOG_GITLAB_TOKEN). Never the token."""
    ca_bundle: str | None = None
    """PEM file of a private CA for a self-managed GitLab."""
    timeout: Duration = timedelta(seconds=15)
    """The most one request may take, connecting and the whole answer included."""

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return _http_url(value, "https://gitlab.com")

    @field_validator("projects")
    @classmethod
    def _some_projects(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if not values:
            raise ValueError("list at least one project (group/project) to watch")
        return values

    _non_empty_paths = field_validator("token_file", "ca_bundle")(_non_empty_path)


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9877`) -> (host, port). Raises ValueError.

    Port 0 (any free port, which tests bind) parses; the config refuses it (`Policy`): an
    ops server on a port nobody knows cannot be scraped or probed."""
    hint = "expected host:port such as 0.0.0.0:9877"
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{value!r}: {hint}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 host in brackets, e.g. [::]:9877")
    if not host or not re.match(r"^[A-Za-z0-9.:_-]+$", host):
        raise ValueError(f"{value!r}: {hint}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{value!r}: port must be between 1 and 65535")
    return host, port


class Policy(StrictModel):
    """The whole config file."""

    dry_run: bool = True
    """Report what would be done, change nothing. On by default."""
    interval: Duration = timedelta(seconds=60)
    """Time between cycles. A lock not seen for longer than 2 x interval + 30s restarts its
    observed age (with `run --once` from a scheduler: the schedule's period)."""
    state_file: str | None = None
    """JSON file for lock sightings and the actions sent (the hourly budget). Must be missing,
    empty or a state file tfc-watchdog wrote. null = memory only."""
    listen: str = "0.0.0.0:9877"
    """Ops server address (host:port): /metrics /healthz /readyz /locks."""
    log: LogConfig = LogConfig()
    """Logging."""
    tfc: TfcConfig | None = None
    """HCP Terraform / Terraform Enterprise. At least one of tfc, s3_backend, gcs_backend and
    gitlab is required."""
    s3_backend: S3BackendConfig | None = None
    """Terraform's S3 backend locks (DynamoDB table, `.tflock` objects)."""
    gcs_backend: GcsBackendConfig | None = None
    """Terraform's gcs backend locks (`.tflock` objects in GCS buckets)."""
    gitlab: GitLabConfig | None = None
    """GitLab-managed Terraform state locks (the `http` backend on GitLab)."""
    limits: Limits = Limits()
    """Action budgets."""
    protect: Protect = Protect()
    """Never acted on, whatever the rules say."""
    defaults: Defaults = Defaults()
    """Thresholds and actions where no rule matches."""
    rules: tuple[Rule, ...] = ()
    """First match wins; no match = defaults."""
    notifications: tuple[NotificationTarget, ...] = ()
    """Message targets (apprise): one message per finding and holder, never one per cycle."""

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        _, port = parse_listen(value)
        if port == 0:
            raise ValueError(f"{value!r}: port must be between 1 and 65535")
        return value

    @field_validator("state_file")
    @classmethod
    def _non_empty_state_file(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("an empty path: give a file path or null (memory only)")
        return value

    @field_validator("rules")
    @classmethod
    def _unique_rule_ids(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        first: dict[str, int] = {}
        for index, rule in enumerate(rules):
            if rule.id in first:
                # configload turns `index` into the key path rules[<index>].id
                raise PydanticCustomError(
                    "duplicate_rule_id",
                    "duplicate rule id '{id}': rules[{first}] already uses it",
                    {"id": rule.id, "first": first[rule.id], "index": index},
                )
            first[rule.id] = index
        return rules

    @field_validator("notifications")
    @classmethod
    def _unique_target_ids(
        cls, targets: tuple[NotificationTarget, ...]
    ) -> tuple[NotificationTarget, ...]:
        seen: set[str] = set()
        for target in targets:
            if target.id in seen:
                raise ValueError(f"duplicate notification id {target.id!r}")
            seen.add(target.id)
        return targets

    @model_validator(mode="after")
    def _some_source(self) -> Policy:
        if (
            self.tfc is None
            and self.s3_backend is None
            and self.gcs_backend is None
            and self.gitlab is None
        ):
            raise PydanticCustomError(
                "no_source",
                "no lock source configured: add a `tfc` section (or `s3_backend`, "
                "`gcs_backend`, `gitlab`)",
            )
        return self

    def _effective(self, rule: Rule | None) -> EffectiveRule:
        base = self.defaults
        if rule is None:
            return EffectiveRule(
                id="defaults",
                lock_stale_after=base.lock_stale_after,
                run_stuck_after=base.run_stuck_after,
                actions=frozenset(base.actions),
                notice=base.notice,
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
            notice=rule.notice or base.notice,
        )

    def unchecked(self, workspace: Workspace) -> tuple[str, ...]:
        """What is wrong with the fields of `workspace` this policy depends on (empty = none).

        Tags matter when a protection or a rule names tags, the project when a rule names
        projects, the lock reason when `protect.lock_reasons` is set; permissions and the
        holder always matter (acting reads them), and so does any other field a source flags.
        A field nobody depends on (an older TFE without projects, say) blocks nothing.
        """
        relevant = {
            "tag-names": bool(self.protect.tags) or any(r.match.tags for r in self.rules),
            "project": any(r.match.projects for r in self.rules),
            "locked-reason": bool(self.protect.lock_reasons),
            # An unreadable average only makes an adaptive threshold fall back to its
            # `fallback`/`min`, which the rule's author chose as safe on their own: it is
            # counted as a parse problem but holds nothing back.
            "plan-duration-average": False,
            "apply-duration-average": False,
        }
        return tuple(detail for name, detail in workspace.problems if relevant.get(name, True))

    def rule_for_workspace(self, workspace: Workspace) -> EffectiveRule:
        """The first rule that matches, merged over defaults."""
        for rule in self.rules:
            if rule.match.matches_workspace(workspace):
                return self._effective(rule)
        return self._effective(None)

    def rule_for_path(self, source: str, store_path: str) -> EffectiveRule:
        """The same for an S3-backend lock (`store_path` = the state path `<bucket>/<key>`)."""
        for rule in self.rules:
            if rule.match.matches_path(source, store_path):
                return self._effective(rule)
        return self._effective(None)


class _ConfigJsonSchema(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        # A bare timedelta default would be published as ISO 8601 (`PT1M`), a form the file
        # does not accept; publish it the way the file writes it.
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def json_schema() -> dict[str, Any]:
    """The config file's JSON Schema (descriptions from the attribute docstrings)."""
    schema = Policy.model_json_schema(schema_generator=_ConfigJsonSchema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "tfc-watchdog config",
    }
