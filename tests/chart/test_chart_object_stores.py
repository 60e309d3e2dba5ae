"""The chart with only an object-store backend, S3 (with DynamoDB) or Cloud Storage: no token
needed, the cloud identity annotation on the service account, egress to the store."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.render import (
    MINIMAL,
    egress_ports,
    kinds,
    merged,
    notes,
    only,
    pod_spec,
    render,
    rendered_config,
)
from watchdog.policy import Policy

# No `tfc` section, so no API token; the network policy on, to show the egress each opens.
WITHOUT_TFC: dict[str, Any] = {
    "image": MINIMAL["image"],
    "config": {"tfc": None},
    "networkPolicy": {"enabled": True},
}
IRSA = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/tfc-watchdog"}
S3_ONLY = merged(
    WITHOUT_TFC,
    {
        "config": {
            "s3_backend": {
                "region": "eu-west-1",
                "dynamodb_tables": ["terraform-locks"],
                "lockfile_buckets": [{"bucket": "tf-state", "prefix": "prod/"}],
            }
        },
        "serviceAccount": {"annotations": IRSA},
    },
)
WORKLOAD_IDENTITY = {
    "iam.gke.io/gcp-service-account": "tfc-watchdog@my-project.iam.gserviceaccount.com"
}
GCS_ONLY = merged(
    WITHOUT_TFC,
    {
        "config": {"gcs_backend": {"buckets": [{"bucket": "tf-state", "prefix": "prod/"}]}},
        "serviceAccount": {"annotations": WORKLOAD_IDENTITY},
    },
)
STORES = [pytest.param(S3_ONLY, id="s3"), pytest.param(GCS_ONLY, id="gcs")]


@pytest.mark.parametrize("values", STORES)
def test_a_store_alone_renders_without_a_token_secret_or_token_volume(
    values: dict[str, Any],
) -> None:
    docs = render(values)

    assert "Secret" not in kinds(docs)
    assert "token" not in {volume["name"] for volume in pod_spec(docs)["volumes"]}
    assert rendered_config(docs)["tfc"] is None


def test_s3_only_renders_a_valid_config() -> None:
    policy = Policy.model_validate(rendered_config(render(S3_ONLY)))
    assert policy.tfc is None
    assert policy.s3_backend is not None
    assert policy.s3_backend.dynamodb_tables == ("terraform-locks",)


def test_gcs_only_renders_a_valid_config() -> None:
    policy = Policy.model_validate(rendered_config(render(GCS_ONLY)))
    assert policy.tfc is None
    assert policy.gcs_backend is not None
    assert [(b.bucket, b.prefix) for b in policy.gcs_backend.buckets] == [("tf-state", "prod/")]


@pytest.mark.parametrize(
    ("values", "annotations", "in_notes"),
    [
        pytest.param(S3_ONLY, IRSA, "DynamoDB tables terraform-locks", id="s3"),
        pytest.param(GCS_ONLY, WORKLOAD_IDENTITY, "gs://tf-state/prod/*.tflock", id="gcs"),
    ],
)
def test_a_store_alone_carries_its_cloud_identity_annotation_and_opens_egress_to_443(
    values: dict[str, Any], annotations: dict[str, str], in_notes: str
) -> None:
    docs = render(values)

    assert only(docs, "ServiceAccount")["metadata"]["annotations"] == annotations
    assert egress_ports(docs) == [53, 53, 443]
    assert in_notes in notes(values)


@pytest.mark.parametrize(
    ("values", "section", "endpoint_url", "port"),
    [
        pytest.param(S3_ONLY, "s3_backend", "http://minio.storage:9000", 9000, id="s3"),
        pytest.param(GCS_ONLY, "gcs_backend", "http://fake-gcs.storage:4443", 4443, id="gcs"),
    ],
)
def test_a_custom_endpoint_port_is_opened_beside_443(
    values: dict[str, Any], section: str, endpoint_url: str, port: int
) -> None:
    custom = merged(values, {"config": {section: {"endpoint_url": endpoint_url}}})
    egress = only(render(custom), "NetworkPolicy")["spec"]["egress"]

    assert [rule_port["port"] for rule_port in egress[-1]["ports"]] == [port, 443]
