"""The chart with only the gcs backend: no token needed, the workload identity annotation,
egress to Cloud Storage."""

from __future__ import annotations

from typing import Any

from tests.chart.render import egress_ports, merged, notes, only, pod_spec, render, rendered_config
from watchdog.policy import Policy

WORKLOAD_IDENTITY = {
    "iam.gke.io/gcp-service-account": "tfc-watchdog@my-project.iam.gserviceaccount.com"
}
GCS_ONLY: dict[str, Any] = {
    "image": {"repository": "registry.example.com/tfc-watchdog"},
    "config": {
        "tfc": None,
        "gcs_backend": {"buckets": [{"bucket": "tf-state", "prefix": "prod/"}]},
    },
    "serviceAccount": {"annotations": WORKLOAD_IDENTITY},
    "networkPolicy": {"enabled": True},
}


def test_gcs_only_renders_a_valid_config_without_a_token_secret() -> None:
    docs = render(GCS_ONLY)

    assert "Secret" not in {doc["kind"] for doc in docs}
    pod = pod_spec(docs)
    assert "token" not in {volume["name"] for volume in pod["volumes"]}
    policy = Policy.model_validate(rendered_config(docs))
    assert policy.tfc is None
    assert policy.gcs_backend is not None
    assert [(b.bucket, b.prefix) for b in policy.gcs_backend.buckets] == [("tf-state", "prod/")]


def test_gcs_only_carries_the_workload_identity_annotation_and_opens_egress_to_443() -> None:
    docs = render(GCS_ONLY)

    assert only(docs, "ServiceAccount")["metadata"]["annotations"] == WORKLOAD_IDENTITY
    assert egress_ports(docs) == [53, 53, 443]
    assert "gs://tf-state/prod/*.tflock" in notes(GCS_ONLY)


def test_a_custom_gcs_endpoint_port_is_opened_beside_443() -> None:
    endpoint = {"config": {"gcs_backend": {"endpoint_url": "http://fake-gcs.storage:4443"}}}
    assert egress_ports(render(merged(GCS_ONLY, endpoint)))[-2:] == [4443, 443]
