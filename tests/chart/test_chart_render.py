"""The chart renders for every values set, its objects are valid Kubernetes, and lint is clean."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.chart.render import CHART, MINIMAL, render, values_sets

# The oldest version Chart.yaml's kubeVersion admits, and a current one.
KUBERNETES_VERSIONS = ("1.27.0", "1.33.0")
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
VALUES_SETS = values_sets()


def test_ci_values_cover_the_required_scenarios() -> None:
    assert {
        "all-features-values.yaml",
        "existing-secret-values.yaml",
        "persistence-values.yaml",
        "tfe-ca-bundle-values.yaml",
    } <= set(VALUES_SETS)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_every_builtin_object_is_valid_kubernetes(values_name: str, version: str) -> None:
    docs = render(VALUES_SETS[values_name])
    builtin = [doc for doc in docs if doc["kind"] not in CUSTOM_KINDS]
    assert builtin
    for doc in builtin:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message}")


def test_defaults_render_exactly_the_core_objects() -> None:
    assert sorted(doc["kind"] for doc in render(MINIMAL)) == [
        "ConfigMap",
        "Deployment",
        "Secret",
        "Service",
        "ServiceAccount",
    ]


def test_all_features_render_every_optional_object() -> None:
    kinds = sorted(doc["kind"] for doc in render(VALUES_SETS["all-features-values.yaml"]))
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "PrometheusRule",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


# The objects a monitoring stack picks up may live in its namespace (`<value>.namespace`).
MOVABLE = {"ServiceMonitor": "serviceMonitor", "PrometheusRule": "prometheusRule"}


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_every_object_carries_the_standard_labels_and_namespace(values_name: str) -> None:
    values = VALUES_SETS[values_name]
    for doc in render(values):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "tfc-watchdog"
        assert labels["app.kubernetes.io/instance"] == "tfc-watchdog"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        key = MOVABLE.get(doc["kind"])
        if doc["metadata"]["name"].endswith("-dashboard"):
            key = "grafanaDashboard"
        expected = (values.get(key, {}).get("namespace") if key else None) or "ops"
        assert doc["metadata"]["namespace"] == expected


def _check_service_monitor(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    spec = doc["spec"]
    assert set(spec) == {"namespaceSelector", "selector", "endpoints"}
    assert spec["selector"]["matchLabels"]
    # It scrapes the release's namespace wherever it lives itself.
    assert spec["namespaceSelector"] == {"matchNames": ["ops"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint == {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
        "relabelings": [
            {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
        ],
        "metricRelabelings": [
            {"sourceLabels": ["__name__"], "regex": "python_gc_.*", "action": "drop"}
        ],
    }


def _check_prometheus_rule(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = doc["spec"]["groups"]
    assert group["name"] == "tfc-watchdog"
    for rule in group["rules"]:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert isinstance(rule["alert"], str)
        assert isinstance(rule["expr"], str)
        assert rule["expr"].strip()
        assert all(isinstance(v, str) for v in rule.get("labels", {}).values())
        assert all(isinstance(v, str) for v in rule.get("annotations", {}).values())
        assert {"summary", "description"} <= set(rule["annotations"])


def test_custom_resources_have_the_operator_structure() -> None:
    docs = render(VALUES_SETS["all-features-values.yaml"])
    by_kind = {doc["kind"]: doc for doc in docs if doc["kind"] in CUSTOM_KINDS}
    assert set(by_kind) == CUSTOM_KINDS
    _check_service_monitor(by_kind["ServiceMonitor"])
    _check_prometheus_rule(by_kind["PrometheusRule"])
    assert by_kind["ServiceMonitor"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert by_kind["PrometheusRule"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_helm_lint_reports_no_errors_or_warnings(values_name: str) -> None:
    report = helm.lint(str(CHART), VALUES_SETS[values_name], strict=False, namespace="ops")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []
