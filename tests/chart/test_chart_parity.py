"""The values users of the exporter charts expect: each reaches the object it names, and a
default leaves the object as it was."""

from __future__ import annotations

from typing import Any

import yaml

from tests.chart.render import (
    CHART,
    MINIMAL,
    container,
    merged,
    only,
    pod_spec,
    render,
    values_sets,
)
from watchdog.daemon import STOP_GRACE

ALL = values_sets()["all-features-values.yaml"]
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_pod_values_reach_the_pod() -> None:
    docs = render(ALL)
    pod = only(docs, "Deployment")["spec"]["template"]
    spec = pod_spec(docs)
    main = container(docs)
    assert pod["metadata"]["labels"]["example.com/cost-center"] == "ops"
    # Extra pod labels never change the selector (that would orphan the old ReplicaSet).
    assert (
        "example.com/cost-center" not in only(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert spec["priorityClassName"] == "platform-critical"
    assert spec["hostAliases"] == [{"ip": "10.0.0.10", "hostnames": ["tfe.internal.example.com"]}]
    assert main["envFrom"] == [{"configMapRef": {"name": "egress-proxy"}}]
    assert _by_name(spec["volumes"])["proxy-ca"] == {
        "name": "proxy-ca",
        "configMap": {"name": "proxy-ca"},
    }
    assert _by_name(main["volumeMounts"])["proxy-ca"]["mountPath"] == "/etc/ssl/proxy"
    # The chart's own volumes stay.
    assert {"config", "token", "state"} <= set(_by_name(spec["volumes"]))


def test_defaults_add_nothing_to_the_pod() -> None:
    docs = render(MINIMAL)
    spec = pod_spec(docs)
    for key in ("priorityClassName", "hostAliases"):
        assert key not in spec
    assert "envFrom" not in container(docs)
    assert set(_by_name(spec["volumes"])) == {"config", "token", "state"}


def test_service_annotations_and_labels() -> None:
    service = only(render(ALL), "Service")["metadata"]
    assert service["annotations"] == {"example.com/owner": "platform"}
    assert service["labels"]["example.com/scrape"] == "true"
    assert "annotations" not in only(render(MINIMAL), "Service")["metadata"]


def test_service_monitor_endpoint_settings() -> None:
    values = merged(
        MINIMAL,
        {
            "serviceMonitor": {
                "enabled": True,
                "honorLabels": True,
                "scheme": "https",
                "tlsConfig": {"insecureSkipVerify": False, "serverName": "w"},
            }
        },
    )
    (endpoint,) = only(render(values), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": False, "serverName": "w"}


def test_persistence_keeps_its_claim_and_takes_an_existing_one() -> None:
    claim = only(render(ALL), "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"] == {
        "helm.sh/resource-policy": "keep",
        "example.com/backup": "false",
    }
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # CSI drivers such as EBS refuse or round up claims under 1Gi.
    assert VALUES["persistence"]["size"] == "1Gi"
    existing = merged(MINIMAL, {"persistence": {"enabled": True, "existingClaim": "kept"}})
    docs = render(existing)
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    state = _by_name(pod_spec(docs)["volumes"])["state"]
    assert state["persistentVolumeClaim"] == {"claimName": "kept"}


def test_the_dashboard_can_live_in_grafanas_namespace_and_folder() -> None:
    (dashboard,) = [d for d in render(ALL) if d["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Terraform"}


def test_the_grace_period_outlasts_the_daemons_stop_grace() -> None:
    assert VALUES["terminationGracePeriodSeconds"] > STOP_GRACE.total_seconds()


def test_the_memory_request_covers_the_measured_peak() -> None:
    # benchmarks/RESULTS.md: peak RSS 60-81 MB (81 MB at 50,000 workspaces).
    request = VALUES["resources"]["requests"]["memory"]
    assert request.endswith("Mi")
    assert int(request.removesuffix("Mi")) * 2**20 >= 81 * 10**6


def test_a_singleton_renders_no_disruption_budget_and_says_why() -> None:
    assert {d["kind"] for d in render(ALL)}.isdisjoint(
        {"PodDisruptionBudget", "HorizontalPodAutoscaler"}
    )
    assert "No PodDisruptionBudget and no topology spread" in (CHART / "values.yaml").read_text()
