"""The chart with GitLab-managed Terraform state: the GitLab token Secret and its mount, the
rendered `gitlab.token_file`, egress to the GitLab port, and the guards."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.render import egress_ports, notes, only, pod_spec, render, rendered_config
from watchdog.policy import Policy

GITLAB_ONLY: dict[str, Any] = {
    "image": {"repository": "registry.example.com/tfc-watchdog"},
    "config": {
        "tfc": None,
        "gitlab": {"address": "https://gitlab.example.com:8443", "projects": ["platform/network"]},
    },
    "gitlabToken": {"value": "glpat-example-not-real"},
    "networkPolicy": {"enabled": True},
}


def test_gitlab_only_renders_its_token_secret_mounted_as_gitlab_token_file() -> None:
    docs = render(GITLAB_ONLY)

    secret = only(docs, "Secret")
    assert secret["metadata"]["name"].endswith("-gitlab")
    pod = pod_spec(docs)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "token" not in volumes
    assert volumes["gitlab-token"]["secret"]["secretName"] == secret["metadata"]["name"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = rendered_config(docs)
    assert config["gitlab"]["token_file"] == f"{mounts['gitlab-token']}/token"
    policy = Policy.model_validate(config)
    assert policy.gitlab is not None and policy.gitlab.projects == ("platform/network",)
    assert "platform/network" in notes(GITLAB_ONLY)


def test_gitlab_opens_egress_to_its_port_only() -> None:
    assert egress_ports(render(GITLAB_ONLY)) == [53, 53, 8443]


def test_an_existing_gitlab_secret_is_mounted_and_none_is_rendered() -> None:
    values = {
        **GITLAB_ONLY,
        "gitlabToken": {"existingSecret": "gitlab-pat", "existingSecretKey": "pat"},
    }
    docs = render(values)
    assert "Secret" not in {doc["kind"] for doc in docs}
    pod = pod_spec(docs)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "gitlab-token"]
    assert volume["secret"]["secretName"] == "gitlab-pat"
    assert volume["secret"]["items"] == [{"key": "pat", "path": "token"}]


def test_gitlab_without_a_token_fails_the_render_with_the_fix() -> None:
    values = {key: value for key, value in GITLAB_ONLY.items() if key != "gitlabToken"}
    with pytest.raises(Exception, match="gitlabToken"):
        render(values)
