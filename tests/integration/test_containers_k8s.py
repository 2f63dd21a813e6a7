"""deploy/k8s: every overlay renders with kustomize and each rendered object passes offline
validation against the Kubernetes API schema (kubernetes-validate, strict: unknown fields fail);
each service has a Deployment with /health and /ready probes, resources and a non-root security
context, a Service, a PodDisruptionBudget, and every ConfigMap/Secret it refers to."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ..conftest import REPO

K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
SERVICES = ("intake", "triage", "notifications", "panels")
KUBERNETES_VERSION = "1.33"
# Created by ops outside the repository in prod (the dev overlay generates them).
EXTERNAL_SECRETS = {f"{s}-database" for s in SERVICES} | {"notifications-police-webhook"}


def kustomize() -> str:
    """The kustomize binary `make kustomize` builds (KUSTOMIZE, or its cache), or one on PATH."""
    cached = sorted((Path.home() / ".cache" / "dcsp" / "bin").glob("kustomize-v*"))
    found = os.environ.get("KUSTOMIZE") or (str(cached[-1]) if cached else None) or shutil.which("kustomize")
    if not found or not Path(found).exists():
        pytest.fail(
            "kustomize not found: run `make kustomize` (builds it from the Go module proxy) or set KUSTOMIZE",
            pytrace=False,
        )
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run([kustomize(), "build", str(K8S / "overlays" / overlay)], capture_output=True, text=True)
    assert out.returncode == 0, f"kustomize build {overlay} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_there_are_dev_and_prod_overlays() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_manifests_pass_the_kubernetes_schema(overlay: str) -> None:
    docs = render(overlay)
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"}


def test_the_validator_rejects_a_broken_deployment() -> None:
    (deployment,) = [d for d in render("dev") if d["kind"] == "Deployment" and d["metadata"]["name"] == "intake"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["port"] = {"http": 8001}  # not an int-or-string
    container["livenessProbe"]["initialDelay"] = 5  # not a field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_is_deployable_on_its_own(overlay: str) -> None:
    docs = render(overlay)
    deployments, services, pdbs = (
        by_kind(docs, "Deployment"),
        by_kind(docs, "Service"),
        by_kind(docs, "PodDisruptionBudget"),
    )
    config_maps, secrets = set(by_kind(docs, "ConfigMap")), set(by_kind(docs, "Secret"))
    assert set(deployments) == set(services) == set(pdbs) == set(SERVICES)
    for name in SERVICES:
        spec = deployments[name]["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert all(labels.get(k) == v for k, v in services[name]["spec"]["selector"].items())
        assert all(labels.get(k) == v for k, v in pdbs[name]["spec"]["selector"]["matchLabels"].items())
        env_from = {ref["configMapRef"]["name"] for ref in container["envFrom"]}
        assert env_from <= config_maps, f"{name} refers to missing ConfigMaps {env_from - config_maps}"
        secret_refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "valueFrom" in e}
        assert f"{name.upper()}_DATABASE_URL" in {e["name"] for e in container["env"]}
        if secrets:  # the overlay generates its Secrets: every reference must resolve
            assert secret_refs <= secrets, f"{name} refers to missing Secrets {secret_refs - secrets}"
        else:
            assert {r.split("-", 1)[1] for r in secret_refs} <= {"database", "police-webhook"}
            assert secret_refs <= EXTERNAL_SECRETS
        if overlay == "prod":
            assert spec["replicas"] >= 2, "prod keeps a replica serving through a drain"
