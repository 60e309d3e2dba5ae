"""The pod the chart runs: one replica, restricted, token as a file, restarts only on purpose,
and the Service, ServiceMonitor and NetworkPolicy really select it."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.chart.render import (
    CHART,
    MINIMAL,
    container,
    merged,
    notes,
    only,
    pod_annotations,
    pod_spec,
    render,
    values_sets,
)
from watchdog.daemon import RESTART_ONLY, STOP_GRACE

VALUES_SETS = values_sets()
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _pod_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_one_replica_replaced_by_recreate(values_name: str) -> None:
    spec = only(render(VALUES_SETS[values_name]), "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_pod_runs_restricted(values_name: str) -> None:
    docs = render(VALUES_SETS[values_name])
    pod = pod_spec(docs)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(docs)["securityContext"]
    assert {k: security[k] for k in RESTRICTED_CONTAINER} == RESTRICTED_CONTAINER


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_no_service_links_reach_the_tfc_watchdog_env_prefix(values_name: str) -> None:
    # A Service named tfc-watchdog would otherwise inject TFC_WATCHDOG_PORT and the like.
    assert pod_spec(render(VALUES_SETS[values_name]))["enableServiceLinks"] is False


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_the_only_writable_volume_holds_the_state_file(values_name: str) -> None:
    docs = render(VALUES_SETS[values_name])
    writable = [m for m in container(docs)["volumeMounts"] if not m.get("readOnly")]
    assert writable == [{"name": "state", "mountPath": "/var/lib/tfc-watchdog"}]
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    if VALUES_SETS[values_name].get("persistence", {}).get("enabled"):
        claim = only(docs, "PersistentVolumeClaim")
        assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    else:
        assert "emptyDir" in volumes["state"]
        assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]


def test_persistence_values_reach_the_claim() -> None:
    claim = only(render(VALUES_SETS["persistence-values.yaml"]), "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "standard-rwo"
    assert claim["spec"]["resources"]["requests"]["storage"] == "128Mi"


def test_liveness_follows_the_scheduler_and_readiness_the_api_on_the_named_port() -> None:
    main = container(render(MINIMAL))
    assert main["ports"] == [{"name": "http", "containerPort": 9877, "protocol": "TCP"}]
    # /livez fails only when the scheduler stopped ending cycles; an API outage is /readyz's
    # (tests/e2e/test_liveness_e2e.py).
    assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}


def test_probes_are_values_that_can_be_tuned_or_turned_off() -> None:
    values = merged(
        MINIMAL,
        {
            "livenessProbe": {"periodSeconds": 60, "failureThreshold": 5},
            "readinessProbe": None,
            "startupProbe": {"failureThreshold": 120},
        },
    )
    main = container(render(values))
    assert main["livenessProbe"] == {
        "httpGet": {"path": "/livez", "port": "http"},
        "periodSeconds": 60,
        "timeoutSeconds": 5,
        "failureThreshold": 5,
    }
    assert "readinessProbe" not in main
    assert main["startupProbe"]["failureThreshold"] == 120
    assert main["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}


def test_the_grace_period_outlasts_the_daemons_stop_grace() -> None:
    grace = pod_spec(render(MINIMAL))["terminationGracePeriodSeconds"]
    assert grace == 45
    assert grace > STOP_GRACE.total_seconds()
    longer = merged(MINIMAL, {"terminationGracePeriodSeconds": 90})
    assert pod_spec(render(longer))["terminationGracePeriodSeconds"] == 90


def test_a_pod_that_is_not_ready_is_still_scraped() -> None:
    # Not ready = the API cannot be read; the metrics that say why must still be collected.
    assert only(render(MINIMAL), "Service")["spec"]["publishNotReadyAddresses"] is True


def test_the_port_follows_config_listen() -> None:
    docs = render(merged(MINIMAL, {"config": {"listen": "0.0.0.0:9100"}}))
    assert container(docs)["ports"][0]["containerPort"] == 9100
    assert only(docs, "Service")["spec"]["ports"][0]["port"] == 9100


def test_the_token_is_a_mounted_file_never_an_environment_variable() -> None:
    docs = render(VALUES_SETS["all-features-values.yaml"])
    main = container(docs)
    assert all("secretKeyRef" not in str(env) for env in main.get("env", []))
    secret = only(docs, "Secret")
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["token"]["secret"] == {
        "secretName": secret["metadata"]["name"],
        "items": [{"key": "token", "path": "token"}],
        # Readable by the owner and the pod's fsGroup only, writable by nobody.
        "defaultMode": 0o440,
    }
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["token"] == {
        "name": "token",
        "mountPath": "/var/run/secrets/tfc-watchdog",
        "readOnly": True,
    }


def test_existing_secret_mode_renders_no_secret_and_mounts_the_named_key() -> None:
    docs = render(VALUES_SETS["existing-secret-values.yaml"])
    assert not [d for d in docs if d["kind"] == "Secret"]
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["token"]["secret"] == {
        "secretName": "tfc-api-token",
        "items": [{"key": "api-token", "path": "token"}],
        "defaultMode": 0o440,
    }


def test_ca_bundle_config_map_is_mounted_read_only() -> None:
    docs = render(VALUES_SETS["tfe-ca-bundle-values.yaml"])
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["ca-bundle"]["configMap"] == {
        "name": "corporate-ca",
        "items": [{"key": "ca-bundle.pem", "path": "ca-bundle.pem"}],
    }
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["ca-bundle"]["mountPath"] == "/etc/ssl/tfc-watchdog"
    assert mounts["ca-bundle"]["readOnly"] is True


def test_the_config_directory_is_mounted_whole_so_updates_reach_the_daemon() -> None:
    mounts = {m["name"]: m for m in container(render(MINIMAL))["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/tfc-watchdog"
    assert "subPath" not in mounts["config"]


# --- what restarts the pod ----------------------------------------------------------------


def test_checksum_secret_changes_with_the_token() -> None:
    before = pod_annotations(render(MINIMAL))["checksum/secret"]
    after = pod_annotations(render(merged(MINIMAL, {"token": {"value": "another-token"}})))[
        "checksum/secret"
    ]
    assert before != after


def test_checksum_secret_changes_with_the_existing_secret_reference() -> None:
    one = pod_annotations(render(merged(MINIMAL, {"token": {"value": "", "existingSecret": "a"}})))
    two = pod_annotations(render(merged(MINIMAL, {"token": {"value": "", "existingSecret": "b"}})))
    assert one["checksum/secret"] != two["checksum/secret"]


def test_a_policy_change_restarts_nothing_by_default() -> None:
    before = render(MINIMAL)
    after = render(merged(MINIMAL, {"config": {"defaults": {"lock_stale_after": "4h"}}}))
    assert pod_annotations(before) == pod_annotations(after)
    assert "checksum/config" not in pod_annotations(after)
    assert only(before, "Deployment") == only(after, "Deployment")


# Settings the daemon reads only at start (watchdog/daemon.py RESTART_ONLY): a change must
# roll the pod, or the ConfigMap and the running process disagree (with a new port, the
# NetworkPolicy even blocks the one still in use).
RESTART_ONLY_CHANGES = {
    "organizations": {"config": {"tfc": {"organizations": ["acme", "globex"]}}},
    "address": {"config": {"tfc": {"address": "https://tfe.example.com"}}},
    "timeout": {"config": {"tfc": {"timeout": "10s"}}},
    "listen": {"config": {"listen": "0.0.0.0:9100"}},
    "s3_backend": {"config": {"s3_backend": {"region": "eu-west-1", "dynamodb_tables": ["t"]}}},
    "gcs_backend": {"config": {"gcs_backend": {"buckets": [{"bucket": "tf-state"}]}}},
    "ca_bundle": {"caBundle": {"existingConfigMap": "corp-ca"}},
    "gitlab": {
        "config": {"gitlab": {"projects": ["platform/network"]}},
        "gitlabToken": {"value": "glpat-example-not-real"},
    },
}
# Settings it reloads in place: the pod must not roll, so lock ages survive.
RELOADED_CHANGES = {
    "rules": {"config": {"rules": [{"id": "all", "match": {}, "lock_stale_after": "1h"}]}},
    "limits": {"config": {"limits": {"max_actions_per_hour": 3}}},
    "dry_run": {"config": {"dry_run": False}},
    "interval": {"config": {"interval": "5m"}},
    "protect": {"config": {"protect": {"tags": ["keep"]}}},
    "log": {"config": {"log": {"level": "debug"}}},
}


def test_restart_only_keys_are_the_daemons() -> None:
    assert {"listen", "state_file", "tfc", "s3_backend", "gcs_backend", "gitlab"} == set(
        RESTART_ONLY
    )


@pytest.mark.parametrize("change", sorted(RESTART_ONLY_CHANGES))
def test_a_restart_only_change_rolls_the_pod(change: str) -> None:
    before = render(MINIMAL)
    after = render(merged(MINIMAL, RESTART_ONLY_CHANGES[change]))
    assert only(before, "Deployment") != only(after, "Deployment")
    annotation = "checksum/restart-config"
    assert pod_annotations(after)[annotation] != pod_annotations(before)[annotation]


@pytest.mark.parametrize("change", sorted(RELOADED_CHANGES))
def test_a_reloadable_change_does_not_roll_the_pod(change: str) -> None:
    before = render(MINIMAL)
    after = render(merged(MINIMAL, RELOADED_CHANGES[change]))
    # The ConfigMap changes (the daemon reloads it), the pod template does not.
    assert only(before, "ConfigMap") != only(after, "ConfigMap")
    assert only(before, "Deployment") == only(after, "Deployment")


def test_restart_on_config_change_adds_a_config_checksum_that_follows_the_policy() -> None:
    on = merged(MINIMAL, {"restartOnConfigChange": True})
    before = pod_annotations(render(on))["checksum/config"]
    after = pod_annotations(render(merged(on, {"config": {"interval": "5m"}})))["checksum/config"]
    assert before != after


def test_pod_annotations_and_service_account_annotations_are_passed_through() -> None:
    docs = render(VALUES_SETS["all-features-values.yaml"])
    assert pod_annotations(docs)["example.com/team"] == "platform"
    account = only(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/tfc-watchdog"
    }
    assert account["automountServiceAccountToken"] is False
    assert pod_spec(docs)["serviceAccountName"] == account["metadata"]["name"]


# --- selectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_the_service_selects_the_pod_on_the_named_port(values_name: str) -> None:
    docs = render(VALUES_SETS[values_name])
    service = only(docs, "Service")
    assert _matches(service["spec"]["selector"], _pod_labels(docs))
    assert service["spec"]["ports"][0]["name"] == "http"
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_service_monitor_selects_the_service() -> None:
    docs = render(VALUES_SETS["all-features-values.yaml"])
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names


def test_the_service_monitor_selects_only_its_own_release() -> None:
    mine = render(merged(MINIMAL, {"serviceMonitor": {"enabled": True}}), release="one")
    other = render(MINIMAL, release="two")
    selector = only(mine, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert not _matches(selector, only(other, "Service")["metadata"]["labels"])


def test_the_network_policy_selects_the_pod_and_opens_only_http_dns_and_the_api() -> None:
    docs = render(merged(MINIMAL, {"networkPolicy": {"enabled": True}}))
    policy = only(docs, "NetworkPolicy")["spec"]
    assert _matches(policy["podSelector"]["matchLabels"], _pod_labels(docs))
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}


def test_the_network_policy_follows_a_tfe_port() -> None:
    policy = only(render(VALUES_SETS["tfe-ca-bundle-values.yaml"]), "NetworkPolicy")["spec"]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 8443}


# --- NOTES.txt ----------------------------------------------------------------------------


def test_notes_warn_while_dry_run_is_on() -> None:
    assert "DRY-RUN" in notes(MINIMAL)
    assert "DRY-RUN" not in notes(merged(MINIMAL, {"config": {"dry_run": False}}))


def test_notes_show_how_to_reach_metrics_and_locks_with_selectors_that_match() -> None:
    text = notes(MINIMAL)
    assert "service/tfc-watchdog 9877:http" in text
    assert "/metrics" in text
    assert "/locks" in text
    labels = _pod_labels(render(MINIMAL))
    selector = "app.kubernetes.io/name={},app.kubernetes.io/instance={}".format(
        labels["app.kubernetes.io/name"], labels["app.kubernetes.io/instance"]
    )
    assert f"--selector {selector}" in text


# --- NetworkPolicy escape hatches -----------------------------------------------------------


MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
POD_IDENTITY = {
    "to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}],
    "ports": [{"port": 80, "protocol": "TCP"}],
}
PROXY = {"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}], "ports": [{"port": 3128, "protocol": "TCP"}]}
GRAFANA_AGENT = {"from": [{"podSelector": {"matchLabels": {"app": "agent"}}}]}


def test_network_policy_ingress_can_be_limited_to_the_monitoring_namespace() -> None:
    values = merged(
        MINIMAL,
        {
            "networkPolicy": {
                "enabled": True,
                "ingressFrom": [MONITORING],
                "extraIngress": [GRAFANA_AGENT],
            }
        },
    )
    policy = only(render(values), "NetworkPolicy")["spec"]
    assert policy["ingress"] == [
        {"ports": [{"port": "http", "protocol": "TCP"}], "from": [MONITORING]},
        GRAFANA_AGENT,
    ]


def test_network_policy_extra_egress_reaches_a_proxy_and_eks_pod_identity() -> None:
    values = merged(
        MINIMAL, {"networkPolicy": {"enabled": True, "extraEgress": [PROXY, POD_IDENTITY]}}
    )
    docs = render(values)
    egress = only(docs, "NetworkPolicy")["spec"]["egress"]
    # The chart's own rules come first and stay; the extra ones are appended as given.
    assert egress[-2:] == [PROXY, POD_IDENTITY]
    assert {p["port"] for rule in egress[:-2] for p in rule["ports"]} == {53, 443}
    for version in ("1.27.0", "1.33.0"):
        kubernetes_validate.validate(only(docs, "NetworkPolicy"), version, strict=True)


def test_network_policy_values_document_the_escape_hatches() -> None:
    text = (CHART / "values.yaml").read_text()
    for case in ("HTTPS proxy", "169.254.170.23:80", "169.254.169.254:80", "IRSA"):
        assert case in text, case
