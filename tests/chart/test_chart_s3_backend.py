"""The chart with only S3-backend lock stores: no token needed, IRSA annotation, egress to AWS."""

from __future__ import annotations

from typing import Any

from tests.chart.render import egress_ports, merged, notes, only, pod_spec, render, rendered_config
from watchdog.policy import Policy

IRSA = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/tfc-watchdog"}
S3_ONLY: dict[str, Any] = {
    "image": {"repository": "registry.example.com/tfc-watchdog"},
    "config": {
        "tfc": None,
        "s3_backend": {
            "region": "eu-west-1",
            "dynamodb_tables": ["terraform-locks"],
            "lockfile_buckets": [{"bucket": "tf-state", "prefix": "prod/"}],
        },
    },
    "serviceAccount": {"annotations": IRSA},
    "networkPolicy": {"enabled": True},
}


def test_s3_only_renders_without_a_token_secret_or_token_volume() -> None:
    docs = render(S3_ONLY)

    assert "Secret" not in {doc["kind"] for doc in docs}
    pod = pod_spec(docs)
    assert "token" not in {volume["name"] for volume in pod["volumes"]}
    config = rendered_config(docs)
    assert config["tfc"] is None
    policy = Policy.model_validate(config)
    assert policy.s3_backend is not None
    assert policy.s3_backend.dynamodb_tables == ("terraform-locks",)


def test_s3_only_carries_the_irsa_annotation_and_opens_egress_to_aws() -> None:
    docs = render(S3_ONLY)

    assert only(docs, "ServiceAccount")["metadata"]["annotations"] == IRSA
    assert egress_ports(docs) == [53, 53, 443]
    assert "DynamoDB tables terraform-locks" in notes(S3_ONLY)


def test_a_custom_endpoint_port_is_opened_beside_443() -> None:
    endpoint = {"config": {"s3_backend": {"endpoint_url": "http://minio.storage:9000"}}}
    egress = only(render(merged(S3_ONLY, endpoint)), "NetworkPolicy")["spec"]["egress"]
    assert [port["port"] for port in egress[-1]["ports"]] == [9000, 443]
