"""Render the Helm chart offline with Helm's own engine (helm-python-sdk), once per values set.

Renders are cached for the whole session: every test module asks for the same few values
sets, and a render is pure (same values, same output).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "tfc-watchdog"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "tfc-watchdog"
NAMESPACE = "ops"
# The smallest values that render: the values without a usable default are the image (nothing
# publishes one), the organizations to watch and the API token.
MINIMAL: dict[str, Any] = {
    "image": {"repository": "registry.example.com/tfc-watchdog"},
    "config": {"tfc": {"organizations": ["acme"]}},
    "token": {"value": "example-token-not-real"},
}

helm.disable_logging()


def ci_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def values_sets() -> dict[str, dict[str, Any]]:
    """The values sets every chart test runs over: defaults (plus a token) and ci/*."""
    sets = {"defaults": MINIMAL}
    sets.update({path.name: ci_values(path) for path in CI_VALUES})
    return sets


@functools.lru_cache(maxsize=64)
def _render_json(values_json: str, release: str, namespace: str) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(json.loads(values_json), name=release, namespace=namespace)


def render_files(
    values: dict[str, Any], release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text (raises helm_python.HelmError on a failed render)."""
    return dict(_render_json(json.dumps(values, sort_keys=True), release, namespace))


def render(
    values: dict[str, Any], release: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """Every rendered Kubernetes object (NOTES.txt and empty templates left out)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values, release, namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def notes(values: dict[str, Any]) -> str:
    return render_files(values)[f"{CHART.name}/templates/NOTES.txt"]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one object of `kind` (fails when there are none or several)."""
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(doc["kind"] for doc in docs)


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge values dicts, later layers winning (as `helm -f a -f b` does)."""
    result: dict[str, Any] = {}
    for layer in layers:
        result = _merge(result, layer)
    return result


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(docs)["containers"]
    assert len(containers) == 1
    assert isinstance(containers[0], dict)
    return containers[0]


def pod_annotations(docs: list[dict[str, Any]]) -> dict[str, str]:
    annotations = only(docs, "Deployment")["spec"]["template"]["metadata"].get("annotations")
    return dict(annotations or {})


def rendered_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The watchdog's config file as the pod reads it."""
    maps = [doc for doc in docs if doc["kind"] == "ConfigMap" and "config.yaml" in doc["data"]]
    assert len(maps) == 1
    config = yaml.safe_load(maps[0]["data"]["config.yaml"])
    assert isinstance(config, dict)
    return config


def egress_ports(docs: list[dict[str, Any]]) -> list[int]:
    """The NetworkPolicy's egress ports, rule by rule in order."""
    return [
        port["port"]
        for rule in only(docs, "NetworkPolicy")["spec"]["egress"]
        for port in rule["ports"]
    ]
