"""The config model: durations, rule resolution, protections, the example file, the schema."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tests.properties.profile import PROPERTY
from tests.support.builders import policy
from tests.support.process import run_captured
from watchdog.configload import load_policy
from watchdog.model import ActionKind, Workspace
from watchdog.policy import (
    GcsBackendConfig,
    GcsBucket,
    GitLabConfig,
    LockfileBucket,
    Policy,
    S3BackendConfig,
    TfcConfig,
    json_schema,
    parse_duration,
    parse_listen,
)
from watchdog.sources.tfc.parse import parse_workspace_page

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"


def workspace(name: str = "app", **kwargs: Any) -> Workspace:
    kwargs.setdefault("organization", "acme")
    return Workspace(id="ws-0123456789abcdef", name=name, **kwargs)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("2h30m", 9000),
        ("1d 2h", 93600),
        ("90", 90),
        (" 90 ", 90),
        (90, 90),
        (1.5, 1.5),
        (timedelta(minutes=3), 180),
    ],
)
def test_durations_accept_the_documented_forms(text: Any, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0s", "greater than zero"),
        (0, "greater than zero"),
        ("-5m", "greater than zero"),
        (-1, "greater than zero"),
        ("2 hours", "is not a duration"),
        ("", "is not a duration"),
        ("h", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("nan", "is not a duration"),
        (float("inf"), "at most 100 years"),
        ("99999999999999d", "at most 100 years"),
        (True, "expected a duration"),
        ([1], "expected a duration"),
        (None, "expected a duration"),
    ],
)
def test_bad_durations_are_refused_with_a_reason(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(value)


def test_durations_round_trip_in_the_file_form() -> None:
    dumped = policy(interval="2h30m").model_dump(mode="json")
    assert dumped["interval"] == "2h30m"
    assert dumped["defaults"]["run_stuck_after"]["waiting"] == "1d"


def test_the_first_matching_rule_wins_and_unset_settings_come_from_defaults() -> None:
    p = policy(
        defaults={"lock_stale_after": "3h", "actions": ["cancel"]},
        rules=[
            {"id": "sandboxes", "match": {"workspaces": ["sandbox-*"]}, "lock_stale_after": "30m"},
            {"id": "all-sandboxish", "match": {"workspaces": ["sand*"]}, "actions": []},
        ],
    )
    first = p.rule_for_workspace(workspace("sandbox-1"))
    assert first.id == "sandboxes"
    assert first.lock_stale_after == timedelta(minutes=30)
    assert first.actions == frozenset({ActionKind.CANCEL})
    second = p.rule_for_workspace(workspace("sandy"))
    assert (second.id, second.actions) == ("all-sandboxish", frozenset())
    fallback = p.rule_for_workspace(workspace("prod"))
    assert (fallback.id, fallback.lock_stale_after) == ("defaults", timedelta(hours=3))


def test_a_rule_overrides_only_the_phases_it_names() -> None:
    p = policy(
        defaults={"run_stuck_after": {"planning": "3h"}},
        rules=[{"id": "r", "run_stuck_after": {"applying": "1h"}}],
    )
    thresholds = p.rule_for_workspace(workspace()).run_stuck_after
    assert thresholds.applying == timedelta(hours=1)
    assert thresholds.planning == timedelta(hours=3)
    assert thresholds.waiting == timedelta(hours=24)


def test_match_criteria_are_anded_and_tags_must_all_be_present() -> None:
    p = policy(
        rules=[
            {
                "id": "r",
                "match": {"organizations": ["ac*"], "projects": ["infra"], "tags": ["a", "b"]},
            }
        ]
    )
    hit = workspace(project_name="infra", tags=("a", "b", "c"))
    assert p.rule_for_workspace(hit).id == "r"
    assert p.rule_for_workspace(workspace(project_name="infra", tags=("a",))).id == "defaults"
    assert p.rule_for_workspace(workspace(project_id="infra", tags=("a", "b"))).id == "r"
    other_org = workspace(organization="other", project_name="infra", tags=("a", "b"))
    assert p.rule_for_workspace(other_org).id == "defaults"


def test_path_rules_match_s3_backend_locks_and_never_workspaces() -> None:
    p = policy(
        rules=[
            {"id": "tfc-all", "match": {"workspaces": ["*"]}},
            {"id": "prod-state", "match": {"sources": ["dynamodb"], "paths": ["tf-state/prod/*"]}},
        ]
    )
    assert p.rule_for_path("dynamodb", "tf-state/prod/app.tfstate").id == "prod-state"
    assert p.rule_for_path("s3", "tf-state/prod/app.tfstate").id == "defaults"
    assert p.rule_for_path("dynamodb", "tf-state/dev/app.tfstate").id == "defaults"
    assert p.rule_for_workspace(workspace("anything")).id == "tfc-all"


def test_protections_explain_themselves() -> None:
    protect = policy(protect={"workspaces": ["prod-*"], "tags": ["pci"]}).protect
    assert protect.workspace_protection(workspace("prod-db")) is not None
    assert protect.workspace_protection(workspace("dev", tags=("pci",))) is not None
    assert protect.workspace_protection(workspace("dev")) is None
    assert protect.reason_protection("Planned MAINTENANCE window") is not None
    assert protect.reason_protection("do not unlock: migrating") is not None
    assert protect.reason_protection("Locked by Terraform") is None
    assert protect.reason_protection(None) is None


# Python's backtracking `re` needs about 2**40 steps for this pair: it would never finish.
CATASTROPHIC = """
from watchdog.model import Workspace
from watchdog.policy import Policy
policy = Policy.model_validate({
    "tfc": {"organizations": ["acme"]},
    "protect": {"lock_reasons": ["^(a+)+$"], "workspaces": ["*a*a*a*a*a*a*a*a*a*a*b"]},
    "rules": [{"id": "r", "match": {"workspaces": ["*a*a*a*a*a*a*a*a*a*a*b"]}}],
})
hostile = "a" * 40 + "!"
assert policy.protect.reason_protection(hostile) is None
assert policy.protect.reason_protection("a" * 40) is not None
name = "a" * 5000 + "!"
assert policy.protect.workspace_protection(Workspace("acme", "ws-1", name)) is None
assert policy.rule_for_workspace(Workspace("acme", "ws-1", name)).id == "defaults"
print("done")
"""


def test_a_catastrophic_pattern_against_a_hostile_lock_reason_does_not_hang() -> None:
    # In a child process so that a regression fails this test (timeout) instead of hanging
    # the suite; the limit is generous on purpose: the point is finishing, not speed.
    result = run_captured([sys.executable, "-c", CATASTROPHIC], cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"


def test_duplicate_rule_ids_are_refused_by_the_model_too() -> None:
    with pytest.raises(ValidationError, match="duplicate rule id 'a': rules\\[0\\]"):
        policy(rules=[{"id": "a"}, {"id": "b"}, {"id": "a"}])


def test_a_source_is_required_and_s3_backend_alone_is_enough() -> None:
    with pytest.raises(ValidationError, match="no lock source configured"):
        Policy.model_validate({})
    p = Policy.model_validate(
        {"s3_backend": {"lockfile_buckets": [{"bucket": "tf-state"}], "dynamodb_tables": ["t"]}}
    )
    assert p.tfc is None
    assert p.s3_backend == S3BackendConfig(
        region="us-east-1",
        endpoint_url=None,
        dynamodb_tables=("t",),
        lockfile_buckets=(LockfileBucket(bucket="tf-state", prefix=""),),
    )


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("0.0.0.0:9877", ("0.0.0.0", 9877)),
        ("localhost:1", ("localhost", 1)),
        ("[::]:65535", ("::", 65535)),
        ("[::1]:8080", ("::1", 8080)),
    ],
)
def test_listen_is_host_and_port(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected
    assert policy(listen=listen).listen == listen


@pytest.mark.parametrize("listen", ["9877", ":9877", "host:", "host:65536", "::1:80", "a b:80"])
def test_bad_listen_addresses_are_refused(listen: str) -> None:
    with pytest.raises(ValueError, match=r"host:port|port must be|IPv6"):
        parse_listen(listen)


def test_port_zero_binds_any_port_but_the_config_refuses_it() -> None:
    # Tests bind the ops server to port 0; a config must name a port that can be scraped.
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    with pytest.raises(ValueError, match="port must be between 1 and 65535"):
        policy(listen="127.0.0.1:0")


def test_log_settings_accept_upper_case_as_env_vars_write_them() -> None:
    assert policy(log={"level": "DEBUG", "format": "JSON"}).log.level == "debug"


def test_the_address_loses_its_trailing_slash() -> None:
    p = policy(tfc={"organizations": ["a"], "address": "https://tfe.example.com/"})
    assert p.tfc is not None
    assert p.tfc.address == "https://tfe.example.com"


# --- the example file ------------------------------------------------------------------------


def test_the_example_config_validates_and_is_inert() -> None:
    p = load_policy(str(EXAMPLE), {})
    assert p.dry_run is True
    assert p.defaults.actions == ()
    assert p.rules, "the example should show a rule"
    assert all(rule.actions == () for rule in p.rules)
    assert p.tfc is not None


def _uncommented(text: str, header: str) -> str:
    """`text` with the commented-out block that starts at the line `header` uncommented."""
    lines = text.splitlines()
    start = lines.index(header)
    end = start + 1
    while end < len(lines) and lines[end].startswith("#   "):
        end += 1
    block = [line.removeprefix("# ") for line in lines[start:end]]
    assert len(block) > 4
    return "\n".join([*lines[:start], *block, *lines[end:]]) + "\n"


def _example_with_s3_block() -> str:
    """The example with its commented-out s3_backend block uncommented."""
    return _uncommented(EXAMPLE.read_text(), "# s3_backend:")


def _example_with_backend_blocks() -> str:
    """The example with its commented-out s3_backend, gcs_backend, gitlab and notifications
    blocks uncommented."""
    with_backends = _uncommented(_example_with_s3_block(), "# gcs_backend:")
    return _uncommented(_uncommented(with_backends, "# gitlab:"), "# notifications:")


def test_the_commented_s3_backend_block_of_the_example_validates(tmp_path: Path) -> None:
    path = tmp_path / "example-with-s3.yaml"
    path.write_text(_example_with_s3_block())
    p = load_policy(str(path), {})
    assert p.s3_backend is not None
    assert p.s3_backend.dynamodb_tables == ("terraform-locks",)
    assert p.s3_backend.lockfile_buckets == (LockfileBucket(bucket="tf-state", prefix=""),)


def test_the_commented_gcs_backend_block_of_the_example_validates(tmp_path: Path) -> None:
    path = tmp_path / "example-with-gcs.yaml"
    path.write_text(_uncommented(EXAMPLE.read_text(), "# gcs_backend:"))
    p = load_policy(str(path), {})
    assert p.gcs_backend == GcsBackendConfig(
        buckets=(GcsBucket(bucket="tf-state", prefix="prod/"),), endpoint_url=None, project=None
    )


@pytest.mark.parametrize(
    ("prefix", "read_as"),
    [("env/prod", "env/prod/"), ("env/prod/", "env/prod/"), ("/env/prod", "env/prod/"), ("", "")],
)
def test_a_gcs_prefix_is_read_as_terraforms_gcs_backend_reads_it(prefix: str, read_as: str) -> None:
    """The backend's `prefix = "env/prod"` keeps its locks under `env/prod/`; as a bare
    object-name prefix it would also list (and clear) those of a backend under
    `env/prod-eu/`."""
    p = Policy.model_validate(
        {"gcs_backend": {"buckets": [{"bucket": "tf-state", "prefix": prefix}]}}
    )
    assert p.gcs_backend is not None
    assert p.gcs_backend.buckets[0].prefix == read_as


def test_gcs_backend_alone_is_a_source_and_its_paths_match_only_gcs_rules() -> None:
    p = Policy.model_validate(
        {
            "gcs_backend": {"buckets": [{"bucket": "tf-state"}]},
            "rules": [
                {"id": "s3", "match": {"sources": ["s3"], "paths": ["tf-state/*"]}},
                {"id": "gcs", "match": {"sources": ["gcs"], "paths": ["tf-state/*"]}},
            ],
        }
    )
    assert p.tfc is None
    assert p.rule_for_path("gcs", "tf-state/prod/default.tfstate").id == "gcs"
    assert p.rule_for_path("s3", "tf-state/prod/default.tfstate").id == "s3"


def test_the_commented_gitlab_block_of_the_example_validates(tmp_path: Path) -> None:
    path = tmp_path / "example-with-gitlab.yaml"
    path.write_text(_uncommented(EXAMPLE.read_text(), "# gitlab:"))
    p = load_policy(str(path), {})
    assert p.gitlab is not None
    assert p.gitlab.projects == ("platform/infrastructure",)
    assert p.gitlab.token_file is None


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, `Model.field`) for every field of every model reachable from `model`."""
    out = []
    for name, field in model.model_fields.items():
        out.append((f"{prefix}{name}", f"{model.__name__}.{name}"))
        for inner in _models_in(field.annotation):
            out.extend(_field_paths(inner, f"{prefix}{name}."))
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _present(data: Any, parts: list[str]) -> bool:
    if not parts:
        return True
    if isinstance(data, list):
        return any(_present(item, parts) for item in data)
    return isinstance(data, dict) and parts[0] in data and _present(data[parts[0]], parts[1:])


def test_every_key_of_the_model_is_in_the_example() -> None:
    # Each field of each model must appear at one of the places its model is used
    # (PhaseThresholds in full under defaults is enough; a rule may show only one phase).
    data = yaml.safe_load(_example_with_backend_blocks())
    shown: dict[str, bool] = {}
    for path, field in _field_paths(Policy):
        shown[field] = shown.get(field, False) or _present(data, path.split("."))
    assert len(shown) > 35
    assert [field for field, present in shown.items() if not present] == []


def test_every_key_in_the_example_carries_a_comment() -> None:
    # A key is documented by a comment on its line, or by the comment line right above it.
    lines = _example_with_backend_blocks().splitlines()
    undocumented = [
        line
        for number, line in enumerate(lines)
        if re.match(r"^\s*(- )?[a-z_0-9]+:", line)
        and "#" not in line
        and not lines[number - 1].lstrip().startswith("#")
    ]
    assert undocumented == []


def test_the_example_validates_against_the_published_json_schema() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    jsonschema.validate(data, json_schema())


def test_the_schema_rejects_what_the_model_rejects() -> None:
    schema = json_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tfc": {"organizations": []}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tfc": {"organizations": ["a"], "token": "x"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"interval": "2 hours"}, schema)


def test_every_field_in_the_schema_has_a_description() -> None:
    schema = json_schema()
    undocumented = [
        f"{name}.{field}"
        for name, definition in [("Policy", schema), *schema["$defs"].items()]
        for field, spec in definition.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undocumented == []
    assert schema["properties"]["interval"]["default"] == "1m"


# --- adaptive stuck-run thresholds ----------------------------------------------------------

ADAPTIVE_APPLY = {"applying": {"factor": 4, "min": "30m", "max": "12h"}}


def _applying(p: Policy, ws: Workspace) -> tuple[timedelta, str]:
    limit = p.rule_for_workspace(ws).run_stuck_after.for_group("applying", ws)
    return limit.value, limit.describe()


@pytest.mark.parametrize(
    ("average", "seconds", "text"),
    [
        (timedelta(minutes=30), 2 * 3600, "threshold 2h (4 x apply average 30m)"),
        (timedelta(minutes=5), 30 * 60, "threshold 30m (min; 4 x apply average 5m = 20m)"),
        (timedelta(hours=5), 12 * 3600, "threshold 12h (max; 4 x apply average 5h = 20h)"),
        (timedelta(0), 30 * 60, "threshold 30m (min; 4 x apply average 0s = 0s)"),
        (None, 30 * 60, "threshold 30m (min; no apply average)"),
    ],
)
def test_an_adaptive_threshold_is_factor_times_the_average_within_its_bounds(
    average: timedelta | None, seconds: int, text: str
) -> None:
    p = policy(rules=[{"id": "r", "run_stuck_after": ADAPTIVE_APPLY}])
    value, described = _applying(p, workspace(apply_duration_average=average))
    assert (value, described) == (timedelta(seconds=seconds), text)


def test_an_adaptive_threshold_follows_the_average_of_its_own_phase() -> None:
    p = policy(
        rules=[
            {
                "id": "r",
                "run_stuck_after": {
                    "planning": {"factor": 3, "min": "10m", "max": "2h"},
                    **ADAPTIVE_APPLY,
                },
            }
        ]
    )
    ws = workspace(
        plan_duration_average=timedelta(minutes=10), apply_duration_average=timedelta(hours=1)
    )
    thresholds = p.rule_for_workspace(ws).run_stuck_after
    assert thresholds.for_group("planning", ws).describe() == (
        "threshold 30m (3 x plan average 10m)"
    )
    assert thresholds.for_group("applying", ws).describe() == (
        "threshold 4h (4 x apply average 1h)"
    )


def test_an_unreadable_average_gives_the_fallback_never_less_than_min() -> None:
    adaptive = {"applying": {"factor": 4, "min": "30m", "max": "12h", "fallback": "6h"}}
    p = policy(rules=[{"id": "r", "run_stuck_after": adaptive}])
    unreadable = workspace(
        problems=(("apply-duration-average", "apply-duration-average is a str, not a number"),)
    )
    assert _applying(p, unreadable) == (
        timedelta(hours=6),
        "threshold 6h (fallback; apply average unreadable)",
    )
    assert _applying(p, workspace()) == (
        timedelta(hours=6),
        "threshold 6h (fallback; no apply average)",
    )
    # An unreadable average is counted, but the policy does not depend on it: nothing waits.
    assert p.unchecked(unreadable) == ()


def test_a_rules_adaptive_phase_merges_over_the_defaults_and_the_other_phases_stay_fixed() -> None:
    p = policy(
        defaults={"run_stuck_after": {"applying": {"factor": 2, "min": "1h", "max": "8h"}}},
        rules=[
            {
                "id": "r",
                "match": {"workspaces": ["sandbox-*"]},
                "run_stuck_after": {"planning": "1h"},
            }
        ],
    )
    ws = workspace("sandbox-1", apply_duration_average=timedelta(hours=3))
    rule = p.rule_for_workspace(ws)
    assert rule.run_stuck_after.for_group("applying", ws).describe() == (
        "threshold 6h (2 x apply average 3h)"
    )
    assert rule.run_stuck_after.for_group("planning", ws).describe() == "threshold 1h"
    assert rule.run_stuck_after.for_group("waiting", ws).describe() == "threshold 1d"
    # A rule's own fixed phase replaces an adaptive default, and the other way round.
    fixed = policy(
        defaults={"run_stuck_after": ADAPTIVE_APPLY},
        rules=[{"id": "r", "run_stuck_after": {"applying": "3h"}}],
    )
    assert _applying(fixed, ws) == (timedelta(hours=3), "threshold 3h")


def test_the_plain_duration_form_is_unchanged() -> None:
    p = policy(rules=[{"id": "r", "run_stuck_after": {"applying": "2h"}}])
    ws = workspace(apply_duration_average=timedelta(minutes=1))
    assert _applying(p, ws) == (timedelta(hours=2), "threshold 2h")
    assert p.rules[0].run_stuck_after is not None
    assert p.rules[0].run_stuck_after.applying == timedelta(hours=2)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"waiting": {"factor": 4, "min": "1h", "max": "2h"}}, "for planning and applying only"),
        ({"queued": {"factor": 4, "min": "1h", "max": "2h"}}, "no average for queued"),
        ({"other": {"factor": 4, "min": "1h", "max": "2h"}}, "no average for other"),
        ({"applying": {"factor": 4, "min": "3h", "max": "2h"}}, "min 3h is longer than max 2h"),
        ({"applying": {"factor": 4, "min": "1h", "max": "2h", "fallback": "5m"}}, "outside"),
        ({"applying": {"factor": 0, "min": "1h", "max": "2h"}}, "greater than 0"),
        ({"applying": {"factor": 2000, "min": "1h", "max": "2h"}}, "less than or equal to 1000"),
        ({"applying": {"factor": 4, "min": "1h"}}, "max"),
        ({"applying": {"factor": 4, "max": "1h"}}, "min"),
        ({"applying": {"min": "1h", "max": "2h"}}, "factor"),
        ({"applying": {"factor": 4, "min": "0s", "max": "2h"}}, "greater than zero"),
    ],
)
def test_bad_adaptive_forms_are_refused(setting: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        policy(rules=[{"id": "r", "run_stuck_after": setting}])


def test_the_schema_accepts_the_adaptive_form_only_where_the_model_does() -> None:
    schema = json_schema()
    ok = {
        "tfc": {"organizations": ["a"]},
        "rules": [{"id": "r", "run_stuck_after": ADAPTIVE_APPLY}],
    }
    jsonschema.validate(ok, schema)
    for bad in (
        {"waiting": {"factor": 4, "min": "1h", "max": "2h"}},
        {"applying": {"factor": 4, "min": "1h"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(
                {"tfc": {"organizations": ["a"]}, "rules": [{"id": "r", "run_stuck_after": bad}]},
                schema,
            )


_RAW_AVERAGES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats()
    | st.text(max_size=8)
    | st.lists(st.integers(), max_size=2)
)


@PROPERTY
@given(
    raw=_RAW_AVERAGES,
    factor=st.floats(min_value=0.01, max_value=1000),
    bounds=st.lists(st.integers(min_value=1, max_value=30 * 86400), min_size=2, max_size=3).map(
        sorted
    ),
)
def test_whatever_the_api_sends_an_adaptive_threshold_stays_within_min_and_max(
    raw: Any, factor: float, bounds: list[int]
) -> None:
    low, high = bounds[0], bounds[-1]
    adaptive: dict[str, Any] = {"factor": factor, "min": low, "max": high}
    if len(bounds) == 3:
        adaptive["fallback"] = bounds[1]
    p = policy(rules=[{"id": "r", "run_stuck_after": {"applying": adaptive}}])
    entry = {
        "id": "ws-1",
        "type": "workspaces",
        "attributes": {
            "name": "app",
            "locked": False,
            "tag-names": [],
            "permissions": {},
            "apply-duration-average": raw,
        },
        "relationships": {"project": {"data": None}},
    }
    [ws], _, _ = parse_workspace_page({"data": [entry], "included": []}, "acme")
    value, described = _applying(p, ws)
    assert timedelta(seconds=low) <= value <= timedelta(seconds=high), described
    if ws.apply_duration_average is None:
        assert value == timedelta(seconds=bounds[1] if len(bounds) == 3 else low), described


def test_the_readmes_gcs_backend_config_validates() -> None:
    section = (REPO / "README.md").read_text().split("## GCS backend users", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    p = Policy.model_validate(yaml.safe_load(block))
    assert p.gcs_backend is not None
    assert p.rule_for_path("gcs", "tf-state/prod/default.tfstate").id == "prod-state"


def test_full_scan_interval_defaults_to_ten_minutes_and_takes_zero_for_every_cycle() -> None:
    def tfc(**keys: Any) -> timedelta:
        loaded = Policy.model_validate({"tfc": {"organizations": ["acme"], **keys}})
        assert loaded.tfc is not None
        return loaded.tfc.full_scan_interval

    assert tfc() == timedelta(minutes=10)
    for zero in (0, "0", "0s", 0.0):
        assert tfc(full_scan_interval=zero) == timedelta(0)
    assert tfc(full_scan_interval="30m") == timedelta(minutes=30)
    assert tfc(full_scan_interval=90) == timedelta(seconds=90)
    for bad in ("-5m", "soon", True, -1, None):
        with pytest.raises(ValidationError, match="full_scan_interval"):
            tfc(full_scan_interval=bad)


@pytest.mark.parametrize(
    ("model", "required"),
    [(TfcConfig, {"organizations": ["acme"]}), (GitLabConfig, {"projects": ["group/app"]})],
)
@pytest.mark.parametrize("field", ["token_file", "ca_bundle"])
def test_a_blank_file_path_is_refused_and_null_is_not(
    model: type[BaseModel], required: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match="an empty path: give a file path or null"):
        model.model_validate({**required, field: "  "})
    assert getattr(model.model_validate({**required, field: None}), field) is None
    assert getattr(model.model_validate({**required, field: "/run/x"}), field) == "/run/x"
