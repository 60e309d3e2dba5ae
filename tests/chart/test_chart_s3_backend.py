"""The chart with only S3-backend lock stores: no token needed, IRSA annotation, egress to AWS."""

from __future__ import annotations

from typing import Any

import yaml

from tests.chart.render import notes, only, render
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


def rendered_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (text,) = only(docs, "ConfigMap")["data"].values()
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def test_s3_only_renders_without_a_token_secret_or_token_volume() -> None:
    docs = render(S3_ONLY)

    assert "Secret" not in {doc["kind"] for doc in docs}
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert "token" not in {volume["name"] for volume in pod["volumes"]}
    config = rendered_config(docs)
    assert config["tfc"] is None
    policy = Policy.model_validate(config)
    assert policy.s3_backend is not None
    assert policy.s3_backend.dynamodb_tables == ("terraform-locks",)


def test_s3_only_carries_the_irsa_annotation_and_opens_egress_to_aws() -> None:
    docs = render(S3_ONLY)

    assert only(docs, "ServiceAccount")["metadata"]["annotations"] == IRSA
    egress_ports = [
        port["port"]
        for rule in only(docs, "NetworkPolicy")["spec"]["egress"]
        for port in rule["ports"]
    ]
    assert egress_ports == [53, 53, 443]
    assert "DynamoDB tables terraform-locks" in notes(S3_ONLY)


def test_a_custom_endpoint_port_is_opened_beside_443() -> None:
    values = {**S3_ONLY, "config": {**S3_ONLY["config"]}}
    values["config"]["s3_backend"] = {
        **S3_ONLY["config"]["s3_backend"],
        "endpoint_url": "http://minio.storage:9000",
    }

    egress = only(render(values), "NetworkPolicy")["spec"]["egress"]

    assert [port["port"] for port in egress[-1]["ports"]] == [9000, 443]
