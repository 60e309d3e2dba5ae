"""The token Secret and the pod: a new token in the chart's Secret rolls the pod, and the
Deployment carries annotations for reloader-style tools when the Secret is the user's."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import helm_python as helm
import pytest

from tests.chart.render import CHART, MINIMAL, merged, only, pod_annotations, render, values_sets

EXISTING = values_sets()["existing-secret-values.yaml"]
RELOADER = "secret.reloader.stakater.com/reload"


def _data_hash(secret: dict[str, Any]) -> str:
    # Helm's toJson: keys sorted, no spaces.
    text = json.dumps(secret["data"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def test_checksum_secret_is_the_hash_of_the_rendered_secret_data() -> None:
    docs = render(MINIMAL)
    assert pod_annotations(docs)["checksum/secret"] == _data_hash(only(docs, "Secret"))


def test_checksum_secret_ignores_what_is_not_the_token() -> None:
    # A rules change touches neither the Secret's data nor the checksum.
    other = merged(MINIMAL, {"config": {"defaults": {"lock_stale_after": "3h"}}})
    assert (
        pod_annotations(render(other))["checksum/secret"]
        == pod_annotations(render(MINIMAL))["checksum/secret"]
    )


def test_deployment_annotations_reach_the_deployment_not_the_pod() -> None:
    docs = render(EXISTING)
    deployment = only(docs, "Deployment")
    assert deployment["metadata"]["annotations"] == {RELOADER: "tfc-api-token"}
    # On the pod they would do nothing for Reloader, and would roll the pod when edited.
    assert RELOADER not in pod_annotations(docs)


def test_no_deployment_annotations_by_default() -> None:
    assert "annotations" not in only(render(MINIMAL), "Deployment")["metadata"]


def test_schema_rejects_a_deployment_annotation_that_is_not_a_string() -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError) as error:
        chart.render(
            merged(MINIMAL, {"deploymentAnnotations": {RELOADER: True}}), name="w", namespace="ops"
        )
    assert "/deploymentAnnotations" in str(error.value)
