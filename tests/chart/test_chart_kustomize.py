"""deploy/kubernetes: the kustomize base for users without Helm matches the chart."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.chart.render import (
    MINIMAL,
    REPO,
    container,
    merged,
    only,
    pod_spec,
    render,
    rendered_config,
)
from watchdog.policy import Policy

BASE = REPO / "deploy" / "kubernetes"
KUSTOMIZATION = yaml.safe_load((BASE / "kustomization.yaml").read_text())


def _resources() -> list[dict[str, Any]]:
    docs = []
    for name in KUSTOMIZATION["resources"]:
        docs.extend(d for d in yaml.safe_load_all((BASE / name).read_text()) if d)
    return docs


def _kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in _resources() if d["kind"] == kind]
    return doc


def test_the_base_lists_every_manifest_and_the_config() -> None:
    assert sorted(d["kind"] for d in _resources()) == [
        "Deployment",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    (generator,) = KUSTOMIZATION["configMapGenerator"]
    assert generator["files"] == ["config.yaml"]
    # A hashed name would restart the pod on every policy edit.
    assert KUSTOMIZATION["generatorOptions"]["disableNameSuffixHash"] is True


def test_the_base_is_namespace_agnostic() -> None:
    assert "namespace" not in KUSTOMIZATION
    assert all("namespace" not in d["metadata"] for d in _resources())


@pytest.mark.parametrize("version", ["1.27.0", "1.33.0"])
def test_every_manifest_is_valid_kubernetes(version: str) -> None:
    labels = KUSTOMIZATION["labels"][0]["pairs"]
    for doc in _resources():
        if doc["kind"] == "Deployment":
            # kustomize adds the selector and pod labels (includeSelectors).
            doc["spec"]["selector"] = {"matchLabels": labels}
            doc["spec"]["template"]["metadata"]["labels"] = labels
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_pod_has_the_charts_security_posture() -> None:
    chart_docs = render(MINIMAL)
    chart_pod, chart_container = pod_spec(chart_docs), container(chart_docs)
    pod = _kind("Deployment")["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert pod["securityContext"] == chart_pod["securityContext"]
    assert main["securityContext"] == chart_container["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert _kind("ServiceAccount")["automountServiceAccountToken"] is False
    for key in (
        "args",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "resources",
        "volumeMounts",
    ):
        assert main[key] == chart_container[key], key
    assert pod["terminationGracePeriodSeconds"] == chart_pod["terminationGracePeriodSeconds"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    chart_volumes = {v["name"]: v for v in chart_pod["volumes"]}
    assert volumes["token"]["secret"]["defaultMode"] == 0o440
    assert (
        volumes["token"]["secret"]["defaultMode"] == chart_volumes["token"]["secret"]["defaultMode"]
    )
    chart_service = only(chart_docs, "Service")["spec"]
    assert (
        _kind("Service")["spec"]["publishNotReadyAddresses"]
        is chart_service["publishNotReadyAddresses"]
    )
    assert _kind("Deployment")["spec"]["replicas"] == 1
    assert _kind("Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_restart_only_settings_have_a_documented_way_to_roll_the_pod() -> None:
    """kustomize hashes whole files only: the restart-only settings get an annotation to bump
    (or a rollout restart), said where a user edits them, and the alert catches a miss."""
    template = _kind("Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"]["tfc-watchdog/restart-config-revision"]
    text = (BASE / "deployment.yaml").read_text() + (BASE / "kustomization.yaml").read_text()
    for needed in ("listen", "state_file", "tfc", "s3_backend", "kubectl rollout restart"):
        assert needed in text, needed
    assert "TfcWatchdogConfigRestartRequired" in (BASE / "deployment.yaml").read_text()


def test_the_secret_is_an_obvious_placeholder() -> None:
    assert _kind("Secret")["stringData"]["token"].startswith("REPLACE-")


def test_the_config_is_the_example_with_the_mounted_paths() -> None:
    config = yaml.safe_load((BASE / "config.yaml").read_text())
    Policy.model_validate(config)
    assert config == _example_with_paths()


def test_the_config_matches_what_the_chart_renders_by_default() -> None:
    # Helm drops null values; the watchdog reads a missing key as null. The chart has no
    # placeholder organizations (its render fails without them): give it the example's.
    config = yaml.safe_load((BASE / "config.yaml").read_text())
    example_orgs = {"config": {"rules": config["rules"]}}
    assert _without_nulls(config) == rendered_config(render(merged(MINIMAL, example_orgs)))


def _without_nulls(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _without_nulls(v) for k, v in tree.items() if v is not None}
    return tree


def _example_with_paths() -> dict[str, Any]:
    example = yaml.safe_load((REPO / "config.example.yaml").read_text())
    example["state_file"] = "/var/lib/tfc-watchdog/state.json"
    example["tfc"]["token_file"] = "/var/run/secrets/tfc-watchdog/token"
    return dict(example)
