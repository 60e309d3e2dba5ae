"""What a first install gets wrong fails the render with one clear line: the message names
the value, says what to do, and is the chart's own (not a bare JSON-schema keyword)."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.chart.render import CHART, MINIMAL, container, merged, notes, render
from tests.support.process import make

NO_ORGANIZATIONS = {"config": {"tfc": {"organizations": []}}}


def _render_error(values: dict[str, Any]) -> str:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as error:
        chart.render(values, name="w", namespace="ops")
    return str(error.value)


@pytest.mark.parametrize(
    ("bad_values", "message"),
    [
        # The defaults: no image, no organizations. Nothing in the repository publishes an
        # image, and an `acme` placeholder would be watched silently.
        ({"image": {"repository": ""}}, "image.repository: set the image to run"),
        (NO_ORGANIZATIONS, "config.tfc.organizations: list the HCP Terraform / TFE"),
        ({"config": {"tfc": {"organizations": None}}}, "config.tfc.organizations: list"),
        ({"image": {"tag": "latest"}}, "image.tag: `latest` is not a version"),
        (
            {"token": {"existingSecret": "s"}},
            "token: set either token.value or token.existingSecret, not both",
        ),
        # The kubelet's probes and Prometheus come from outside the pod's loopback.
        ({"config": {"listen": "127.0.0.1:9877"}}, "config.listen: 127.0.0.1:9877 is a loopback"),
        ({"config": {"listen": "localhost:9877"}}, "is a loopback address"),
        ({"config": {"listen": "[::1]:9877"}}, "is a loopback address"),
    ],
)
def test_a_bad_first_install_fails_with_a_clear_message(
    bad_values: dict[str, Any], message: str
) -> None:
    text = _render_error(merged(MINIMAL, bad_values))
    assert message in text
    assert "'not' failed" not in text


def test_the_image_message_says_how_to_build_one() -> None:
    text = _render_error(merged(MINIMAL, {"image": {"repository": ""}}))
    assert "make image" in text
    assert "docker or podman" in text


def test_the_defaults_alone_do_not_render() -> None:
    text = _render_error({"token": {"value": "t"}})
    assert "image.repository" in text or "config.tfc.organizations" in text


def test_an_s3_only_config_needs_no_organizations() -> None:
    values = merged(
        MINIMAL,
        {"config": {"tfc": None, "s3_backend": {"region": "eu-west-1"}}, "token": {"value": ""}},
    )
    assert render(values)


def test_listening_on_all_addresses_renders() -> None:
    for listen in ("0.0.0.0:9100", "[::]:9100", "tfc-watchdog:9100"):
        docs = render(merged(MINIMAL, {"config": {"listen": listen}}))
        assert container(docs)["ports"][0]["containerPort"] == 9100


def test_the_image_is_pulled_by_digest_when_one_is_set() -> None:
    digest = "sha256:" + "ab" * 32
    docs = render(merged(MINIMAL, {"image": {"digest": digest, "tag": "0.9.0"}}))
    assert container(docs)["image"] == f"registry.example.com/tfc-watchdog@{digest}"
    docs = render(merged(MINIMAL, {"image": {"tag": "0.9.0"}}))
    assert container(docs)["image"] == "registry.example.com/tfc-watchdog:0.9.0"


def test_notes_remind_that_an_existing_secret_must_exist() -> None:
    values = merged(MINIMAL, {"token": {"value": "", "existingSecret": "tfc-api-token"}})
    text = notes(values)
    assert "The chart does not create that Secret" in text
    assert "create secret generic tfc-api-token --from-file=token=" in text
    assert "does not create" not in notes(MINIMAL)


def test_make_image_builds_with_the_engine_it_finds() -> None:
    result = make("-n", "image", "ENGINE=podman", "IMAGE=registry.example.com/w:1")
    assert result.returncode == 0, result.stderr
    assert "podman build -f deploy/Dockerfile --build-arg VERSION=" in result.stdout
    assert "--build-arg REVISION=" in result.stdout
    assert result.stdout.rstrip().endswith("-t registry.example.com/w:1 .")


def test_make_image_without_an_engine_says_so() -> None:
    result = make("image", "ENGINE=")
    assert result.returncode != 0
    assert "docker or podman" in result.stderr
