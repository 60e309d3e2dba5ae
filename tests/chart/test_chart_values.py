"""values.yaml: every value is read, every value is documented, the schema guards the rest,
and the default `config` is config.example.yaml, rendered into a config the watchdog accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from pydantic import BaseModel

from tests.chart.render import (
    CHART,
    MINIMAL,
    REPO,
    merged,
    render,
    render_files,
    rendered_config,
    values_sets,
)
from watchdog.cli import main
from watchdog.policy import Policy

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
TEMPLATES = "\n".join(p.read_text() for p in sorted((CHART / "templates").iterdir()))
VALUES_SETS = values_sets()


def _unread_values(tree: dict[str, Any], prefix: str) -> list[str]:
    """Paths under `prefix` that no template reads. A map a template reads whole
    (`toYaml .Values.resources`, `range ... .Values.prometheusRule.rules`) counts as read."""
    unread = []
    for key, value in tree.items():
        path = f"{prefix}.{key}"
        whole = re.search(re.escape(f".Values{path}") + r"(?![\w.])", TEMPLATES)
        if whole:
            continue
        if isinstance(value, dict) and value:
            unread.extend(_unread_values(value, path))
        else:
            unread.append(path.lstrip("."))
    return unread


def test_every_value_is_read_by_a_template() -> None:
    assert _unread_values(VALUES, "") == []


def test_the_unread_value_check_catches_an_unused_value() -> None:
    assert _unread_values({"image": {"platform": ""}, "nobodyReadsThis": 1}, "") == [
        "image.platform",
        "nobodyReadsThis",
    ]


def test_every_setting_in_values_yaml_has_a_comment() -> None:
    # Top-level keys and the settings one level down; the insides of `config`, the alert
    # rules and Kubernetes objects passed through whole are documented where they come from.
    undocumented = []
    lines = VALUES_TEXT.splitlines()
    skip_under = None
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        if skip_under is not None and indent > skip_under:
            continue
        skip_under = None
        if indent > 2:
            continue
        previous = lines[index - 1].strip() if index else ""
        has_children = line.rstrip().endswith(":")
        if not previous.startswith("#") and not has_children:
            undocumented.append(line.strip())
        if match.group(2) in {
            "config",
            "rules",
            "resources",
            "podSecurityContext",
            "securityContext",
            "labels",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
        }:
            skip_under = indent
    assert undocumented == []


# --- the schema -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_values", "complaint"),
    [
        ({"config": {"defaults": {"actions": ["nuke"]}}}, "/config/defaults/actions/0"),
        ({"config": {"rules": [{"id": "r", "actions": ["delete_everything"]}]}}, "actions"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"config": {"dry_rn": False}}, "dry_rn"),
        ({"replicaCount": 2}, "replicaCount"),
        ({"config": {"interval": "soon"}}, "/config/interval"),
        ({"persistence": {"enabled": "yes"}}, "/persistence/enabled"),
        ({"prometheusRule": {"rules": {"Mine": {"expr": "up == 0"}}}}, "enabled"),
        # Shorter than the daemon's stop grace: the request in flight could be cut off.
        ({"terminationGracePeriodSeconds": 20}, "/terminationGracePeriodSeconds"),
        ({"livenessProbe": {"periodSeconds": 0}}, "/livenessProbe/periodSeconds"),
        ({"startupProbe": "yes"}, "/startupProbe"),
        # The PrometheusRule CRD's duration: units largest first, no fractions.
        ({"prometheusRule": {"rules": {"TfcWatchdogDown": {"for": "5m1h"}}}}, "/for"),
        ({"prometheusRule": {"rules": {"TfcWatchdogDown": {"for": "1.5m"}}}}, "/for"),
        ({"serviceMonitor": {"interval": "30s1m"}}, "/serviceMonitor/interval"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"networkPolicy": {"extraEgress": {"to": []}}}, "/networkPolicy/extraEgress"),
    ],
)
def test_schema_rejects_bad_values(bad_values: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError) as error:
        chart.render(merged(MINIMAL, bad_values), name="w", namespace="ops")
    assert complaint in str(error.value)


def test_schema_accepts_every_ci_values_file() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        for values in VALUES_SETS.values():
            chart.validate_schema(values)


def test_a_missing_token_fails_the_render_with_a_clear_message() -> None:
    with pytest.raises(helm.HelmRenderError) as error:
        render_files({})
    assert "set token.existingSecret" in str(error.value)


def _schema_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """property name -> nested property tree, for the object schemas of the config."""
    tree = {}
    for name, prop in schema.get("properties", {}).items():
        if prop.get("type") == "array":
            prop = prop.get("items", {})
        tree[name] = _schema_fields(prop) if "properties" in prop else {}
    return tree


def _model_fields(model: type[BaseModel]) -> dict[str, Any]:
    tree = {}
    for name, field in model.model_fields.items():
        inner = _nested_model(field.annotation)
        tree[name] = _model_fields(inner) if inner else {}
    return tree


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _nested_model(arg)
        if found:
            return found
    return None


def test_schema_config_keys_follow_the_policy_model() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _schema_fields(schema["properties"]["config"]) == _model_fields(Policy)


# --- the config ---------------------------------------------------------------------------


def test_default_config_equals_config_example_yaml_without_its_organizations() -> None:
    """The example's `acme` is a placeholder a first install would silently keep: the chart
    has none, and fails the render until it is given its organizations."""
    example_path = REPO / "config.example.yaml"
    assert example_path.exists(), "config.example.yaml is missing at the repository root"
    example = yaml.safe_load(example_path.read_text())
    assert VALUES["config"]["tfc"]["organizations"] == []
    example["tfc"]["organizations"] = []
    for rule in example["rules"]:
        if "organizations" in rule["match"]:
            assert (
                VALUES["config"]["rules"][example["rules"].index(rule)]["match"]["organizations"]
                == []
            )
            rule["match"]["organizations"] = []
    assert VALUES["config"] == example


def test_default_config_is_inert() -> None:
    assert VALUES["config"]["dry_run"] is True
    assert VALUES["config"]["defaults"]["actions"] == []
    assert all(rule.get("actions") in (None, []) for rule in VALUES["config"]["rules"])


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_rendered_config_points_at_the_mounted_files(values_name: str) -> None:
    values = VALUES_SETS[values_name]
    config = rendered_config(render(values))
    assert config["tfc"]["token_file"] == "/var/run/secrets/tfc-watchdog/token"
    assert config["state_file"] == "/var/lib/tfc-watchdog/state.json"
    ca = values.get("caBundle", {})
    if ca.get("existingConfigMap"):
        assert config["tfc"]["ca_bundle"] == f"/etc/ssl/tfc-watchdog/{ca['key']}"
    else:
        assert config["tfc"].get("ca_bundle") is None


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_rendered_config_is_a_valid_policy(values_name: str) -> None:
    Policy.model_validate(rendered_config(render(VALUES_SETS[values_name])))


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_rendered_config_passes_check_config(
    values_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(rendered_config(render(VALUES_SETS[values_name]))))
    code = main(["check-config", str(path)])
    assert code == 0, capsys.readouterr()


def test_config_values_reach_the_rendered_config() -> None:
    config = rendered_config(render(VALUES_SETS["all-features-values.yaml"]))
    assert config["dry_run"] is False
    assert config["tfc"]["organizations"] == ["acme", "acme-labs"]
    assert config["rules"][0]["id"] == "sandboxes"
    # Values merge over the defaults: untouched keys keep them.
    assert config["limits"] == {
        "max_actions_per_cycle": 2,
        "max_actions_per_hour": 10,
        "backend_lock_min_observed": "10m",
    }


@pytest.mark.parametrize("duration", ["0", "5m", "1h30m", "1d12h", "500ms", "1y2w3d4h5m6s7ms"])
def test_schema_takes_every_duration_the_crd_takes(duration: str) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(
            merged(MINIMAL, {"prometheusRule": {"rules": {"TfcWatchdogDown": {"for": duration}}}})
        )


def test_schema_uses_no_keyword_whose_error_says_nothing() -> None:
    """Helm reports a failed `not` (or oneOf/anyOf) as a bare "'not' failed": such checks
    live in the templates, whose `fail` names the value and what to do."""
    text = (CHART / "values.schema.json").read_text()
    for keyword in ('"not"', '"oneOf"', '"anyOf"', '"allOf"'):
        assert keyword not in text, keyword
