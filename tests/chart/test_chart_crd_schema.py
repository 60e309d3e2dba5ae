"""The chart's ServiceMonitor and PrometheusRule are valid against the Prometheus Operator's CRD
schemas, for every values set the chart tests render, the README's kube-prometheus-stack install
and every ServiceMonitor option at once.

The schemas are the npm package `@kubernetes-models/prometheus-operator` 6.0.0, pinned with its
lock file in tests/chart/crd/ (README.md there): ajv validators generated from the operator's
monitoring.coreos.com/v1 API, which check types, required fields, enums and patterns (the
Duration pattern of `interval` and `for`, the relabel `action` enum). One node process
validates every rendered object and the deliberately broken ones at once. .ci/run installs the
package (`npm ci`); a local run without it skips with the command to run, CI never skips.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.chart.render import MINIMAL, merged, render, values_sets
from tests.chart.test_chart_readme_install import _install
from tests.support.process import run_captured
from tests.support.tools import require, require_binary

CRD = Path(__file__).resolve().parent / "crd"
PACKAGE = "@kubernetes-models/prometheus-operator"
PINNED = json.loads((CRD / "package.json").read_text())["dependencies"][PACKAGE]
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _readme_install() -> dict[str, Any]:
    words, values = _install()
    return {"release": words[2], "namespace": words[words.index("-n") + 1], "values": values}


# Every ServiceMonitor and PrometheusRule value the chart takes, set at once.
EVERY_OPTION = merged(
    MINIMAL,
    {
        "serviceMonitor": {
            "enabled": True,
            "interval": "1m",
            "labels": {"release": "kube-prometheus-stack"},
            "namespace": "monitoring",
            "scrapeTimeout": "30s",
            "honorLabels": True,
            "scheme": "https",
            "tlsConfig": {"insecureSkipVerify": False, "serverName": "tfc-watchdog.ops.svc"},
            "relabelings": [
                {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
            ],
            "metricRelabelings": [
                {"sourceLabels": ["__name__"], "regex": "python_gc_.*", "action": "drop"}
            ],
        },
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "namespace": "monitoring",
        },
    },
)


def _renders() -> dict[str, list[dict[str, Any]]]:
    """Values set name -> its rendered ServiceMonitor and PrometheusRule objects."""
    renders = {
        name: render(values)
        for name, values in {**values_sets(), "every monitoring option": EVERY_OPTION}.items()
    }
    readme = _readme_install()
    renders["README kube-prometheus-stack install"] = render(
        readme["values"], release=readme["release"], namespace=readme["namespace"]
    )
    return {
        name: [doc for doc in docs if doc["kind"] in CUSTOM_KINDS] for name, docs in renders.items()
    }


RENDERS = _renders()
# The values sets that must render both objects (the others may render none).
MONITORED = (
    "all-features-values.yaml",
    "every monitoring option",
    "README kube-prometheus-stack install",
)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [doc for doc in docs if doc["kind"] == kind]
    return doc


def _broken() -> dict[str, tuple[dict[str, Any], str]]:
    """Name -> (a deliberately broken copy of a rendered object, the error it must draw)."""
    docs = RENDERS["all-features-values.yaml"]
    monitor = _by_kind(docs, "ServiceMonitor")
    rule = _by_kind(docs, "PrometheusRule")
    cases: dict[str, tuple[dict[str, Any], str]] = {}

    doc = copy.deepcopy(monitor)
    doc["spec"]["endpoints"][0]["interval"] = 5
    cases["interval as an integer"] = (doc, "/spec/endpoints/0/interval must be string")

    doc = copy.deepcopy(monitor)
    doc["spec"]["endpoints"][0]["scrapeTimeout"] = "10 seconds"
    cases["scrapeTimeout not a duration"] = (doc, "/spec/endpoints/0/scrapeTimeout must match")

    doc = copy.deepcopy(monitor)
    doc["spec"]["endpoints"][0]["metricRelabelings"][0]["action"] = "delete"
    cases["unknown relabel action"] = (
        doc,
        "/spec/endpoints/0/metricRelabelings/0/action must be equal to one of the allowed values",
    )

    doc = copy.deepcopy(monitor)
    doc["spec"].pop("selector", None)
    cases["ServiceMonitor without selector"] = (doc, "/spec must have required property selector")

    doc = copy.deepcopy(rule)
    doc["spec"]["groups"][0]["rules"][0].pop("expr", None)
    cases["rule without expr"] = (doc, "/spec/groups/0/rules/0 must have required property expr")

    doc = copy.deepcopy(rule)
    doc["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    cases["for not a duration"] = (doc, "/spec/groups/0/rules/0/for must match")

    doc = copy.deepcopy(rule)
    doc["spec"]["groups"][0]["rules"][0]["labels"] = {"severity": 2}
    cases["label value not a string"] = (
        doc,
        "/spec/groups/0/rules/0/labels/severity must be string",
    )

    doc = copy.deepcopy(rule)
    doc["apiVersion"] = "monitoring.coreos.com/v2"
    cases["unknown apiVersion"] = (doc, "no schema for apiVersion monitoring.coreos.com/v2")
    return cases


BROKEN = _broken()


@pytest.fixture(scope="module")
def validated() -> dict[str, Any]:
    """Every rendered object and every broken one, validated by one node process."""
    node = require_binary("node")
    require(
        (CRD / "node_modules" / PACKAGE).is_dir(),
        f"{PACKAGE} (install it with `npm ci --prefix tests/chart/crd`)",
    )
    batch = [(name, doc) for name, docs in RENDERS.items() for doc in docs]
    batch += [(f"broken: {case}", doc) for case, (doc, _) in BROKEN.items()]
    completed = run_captured(
        [node, CRD / "validate.mjs"], cwd=CRD, input=json.dumps([doc for _, doc in batch])
    )
    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    errors: dict[str, list[dict[str, Any]]] = {}
    for (name, _), result in zip(batch, output["results"], strict=True):
        errors.setdefault(name, []).append(result)
    return {"package": output["package"], "results": errors}


def test_the_schemas_are_the_pinned_version(validated: dict[str, Any]) -> None:
    assert validated["package"] == {"name": PACKAGE, "version": PINNED}
    assert PINNED == "6.0.0"


@pytest.mark.parametrize("values_name", sorted(RENDERS))
def test_rendered_monitoring_objects_match_the_operator_schemas(
    values_name: str, validated: dict[str, Any]
) -> None:
    results = validated["results"].get(values_name, [])
    if values_name in MONITORED:
        assert sorted(r["kind"] for r in results) == sorted(CUSTOM_KINDS)
    failures = [f"{r['kind']} {r['name']}: {error}" for r in results for error in r["errors"]]
    assert failures == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_object_is_rejected(case: str, validated: dict[str, Any]) -> None:
    _, expected = BROKEN[case]
    (result,) = validated["results"][f"broken: {case}"]
    errors = result["errors"]
    assert any(error.startswith(expected) for error in errors), errors
