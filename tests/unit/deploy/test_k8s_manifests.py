"""deploy/k8s: the Kubernetes manifests are valid for the API server and agree with jobq.

Static checks only (no cluster): every document the kustomization applies validates strictly
against the Kubernetes OpenAPI schemas shipped by kubernetes-validate, and the manifests agree
with jobq's settings (real JQ_ names, ports, probe paths, grace periods), with the hardening
the image allows (non-root uid 10001, read-only root), and with each other (selectors, named
ports, the HPA's target and metric).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobq.config.loader import env_var_name, iter_fields, load_settings
from jobq.config.settings import Settings
from jobq.worker.registration import RPC_TIMEOUT_S
from jobq.worker.shutdown import FLUSH_WAIT_S

try:
    import kubernetes_validate
except ImportError:  # reported by test_documents_validate_against_the_kubernetes_schema
    kubernetes_validate = None

K8S_DIR = Path(__file__).resolve().parents[3] / "deploy" / "k8s"
K8S_VERSION = "1.33.0"
"""The Kubernetes version whose schemas the manifests must satisfy (strict: no unknown field)."""
K8S_OLDEST_VERSION = "1.30.0"
"""The oldest version supported: the preStop `sleep` action is on by default from 1.30."""
NOT_APPLIED = {"kustomization.yaml", "prometheus-adapter-rules.yaml"}
"""YAML files in deploy/k8s that are not Kubernetes objects the kustomization applies."""
NAMESPACE = "jobq"
SECRET_WORDS = ("TOKEN", "PASSWORD", "DSN", "SECRET")
GRACE_MARGIN_S = 5
"""Spare seconds the worker's terminationGracePeriodSeconds keeps beyond its drain."""
INSTALL_HINT = "pip install kubernetes-validate (a dev dependency: pip install -e '.[dev]')"


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for name in _kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S_DIR / name).read_text()):
            if doc is not None:
                docs.append((name, doc))
    return docs


def _objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _documents() if doc["kind"] == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in _objects(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _deployment(name: str) -> dict[str, Any]:
    return _one("Deployment", name)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per jobq pod"
    return containers[0]


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors expected: {selector}"
    match = selector.get("matchLabels", {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def _config() -> dict[str, str]:
    return _one("ConfigMap", "jobq-config")["data"]


def _settings() -> Settings:
    """The settings the ConfigMap gives (the Secret's placeholders left out)."""
    return load_settings(config_path=None, env=_config()).settings


def _port(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"container {container['name']} has no port named {name!r}: {ports}"
    return ports[name]


def _prestop_sleep_s(container: dict[str, Any]) -> int:
    pre_stop = container.get("lifecycle", {}).get("preStop")
    assert pre_stop, f"container {container['name']} has no preStop hook"
    return int(pre_stop.get("sleep", {}).get("seconds", 0))


def _env_names(container: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for item in container.get("env", []):
        yield item["name"], item


def _real_settings() -> set[str]:
    return {env_var_name(section, field) for section, field, _ in iter_fields()}


def test_kustomization_applies_every_manifest_in_the_jobq_namespace() -> None:
    kustomization = _kustomization()
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources)), f"listed twice: {resources}"
    missing = [name for name in resources if not (K8S_DIR / name).is_file()]
    assert not missing, f"kustomization.yaml lists missing files: {missing}"
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - NOT_APPLIED
    assert set(resources) == on_disk, (
        f"not in kustomization.yaml: {sorted(on_disk - set(resources))}; "
        f"listed but not a manifest: {sorted(set(resources) - on_disk)}"
    )
    assert not list(K8S_DIR.glob("*.yml")), "use the .yaml extension"
    assert kustomization["namespace"] == NAMESPACE
    namespaces = [doc["metadata"]["name"] for doc in _objects("Namespace")]
    assert namespaces == [NAMESPACE]
    for name, doc in _documents():
        ns = doc["metadata"].get("namespace", NAMESPACE)
        assert ns == NAMESPACE, f"{name}: {doc['kind']} in namespace {ns}"


@pytest.mark.parametrize("version", [K8S_VERSION, K8S_OLDEST_VERSION])
def test_documents_validate_against_the_kubernetes_schema(version: str) -> None:
    assert kubernetes_validate is not None, f"kubernetes-validate is missing: {INSTALL_HINT}"
    problems = []
    for name, doc in _documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            problems.append(
                f"{name}: {doc['kind']} {doc['metadata']['name']}: {where}: {exc.message}"
            )
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_every_jq_variable_is_a_real_setting() -> None:
    real = _real_settings()
    named: dict[str, str] = {}
    for key in _config():
        named[key] = "ConfigMap jobq-config"
    secret = _one("Secret", "jobq-secrets")
    for key in {**secret.get("stringData", {}), **secret.get("data", {})}:
        named[key] = "Secret jobq-secrets"
    for deployment in _objects("Deployment"):
        for name, item in _env_names(_container(deployment)):
            named[name] = f"env of {deployment['metadata']['name']}"
            key_ref = item.get("valueFrom", {}).get("secretKeyRef")
            if key_ref:
                named[key_ref["key"]] = f"secretKeyRef of {deployment['metadata']['name']}"
    unknown = {name: where for name, where in named.items() if name not in real}
    assert not unknown, f"not jobq settings (see README 'Configuration reference'): {unknown}"
    assert all(name.startswith("JQ_") for name in named), sorted(named)


def test_the_configmap_is_a_valid_configuration() -> None:
    settings = _settings()  # raises ConfigError naming the bad value
    for name, value in _config().items():
        assert isinstance(value, str), f"{name}: ConfigMap values must be strings, got {value!r}"
    assert settings.grpc.host == settings.health.host == settings.metrics.host == "0.0.0.0"
    assert settings.dashboard.host == "0.0.0.0"
    assert settings.dashboard.port != 0, "the http port (dashboard and /api/v1) must be on"


def test_no_secret_in_the_configmap() -> None:
    for name, value in _config().items():
        assert not any(word in name for word in SECRET_WORDS), (
            f"{name} looks secret: put it in the Secret jobq-secrets"
        )
        assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{name} holds a password"


def test_secrets_reach_the_containers_only_from_the_secret() -> None:
    secret = _one("Secret", "jobq-secrets")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for deployment in _objects("Deployment"):
        container = _container(deployment)
        who = deployment["metadata"]["name"]
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, f"{who}: take single keys, not the whole Secret"
            assert source["configMapRef"]["name"] == "jobq-config"
        for name, item in _env_names(container):
            if any(word in name for word in SECRET_WORDS):
                key_ref = item.get("valueFrom", {}).get("secretKeyRef")
                assert key_ref, f"{who}: {name} must come from a secretKeyRef"
                assert key_ref["name"] == "jobq-secrets"
                assert key_ref["key"] in keys, f"{who}: no key {key_ref['key']} in the Secret"
    worker_env = {name for name, _ in _env_names(_container(_deployment("jobq-worker")))}
    assert worker_env.isdisjoint({"JQ_DB_DSN", "JQ_AUTH_TOKENS", "JQ_DASHBOARD_SESSION_SECRET"})
    assert "JQ_WORKER_TOKEN" in worker_env, "a worker listening on 0.0.0.0 needs its token"
    server_env = {name for name, _ in _env_names(_container(_deployment("jobq-server")))}
    assert {"JQ_DB_DSN", "JQ_AUTH_TOKENS"} <= server_env


def test_server_probes_and_ports_match_the_settings() -> None:
    settings = _settings()
    container = _container(_deployment("jobq-server"))
    assert _port(container, "grpc") == settings.grpc.port
    assert _port(container, "http") == settings.dashboard.port
    assert _port(container, "health") == settings.health.port
    assert _port(container, "metrics") == settings.metrics.port
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert (readiness["path"], readiness["port"]) == ("/readyz", "health")
    assert (liveness["path"], liveness["port"]) == ("/healthz", "health")
    startup = container.get("startupProbe")
    if startup:
        assert startup["httpGet"]["path"] == "/healthz", "a startup probe must not need the db"
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "migrations"
    assert container["command"] == ["jq-server"]


def test_worker_probes_and_ports_match_the_settings() -> None:
    settings = _settings()
    container = _container(_deployment("jobq-worker"))
    assert _port(container, "health") == settings.worker.health_port
    assert _port(container, "metrics") == settings.worker.metrics_port
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert (readiness["path"], readiness["port"]) == ("/readyz", "health")
    assert (liveness["path"], liveness["port"]) == ("/healthz", "health")
    assert container["command"] == ["jq-worker"]
    pod = _deployment("jobq-worker")["spec"]["template"]["spec"]
    assert pod.get("shareProcessNamespace") is True, "an init (pause) reaps command orphans"
    host, _, port = settings.worker.server_addr.rpartition(":")
    service = _one("Service", host)
    grpc_ports = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert grpc_ports, f"Service {host} has no port {port} (worker.server_addr)"
    assert grpc_ports[0]["targetPort"] == "grpc"
    worker_id = dict(_env_names(container))["JQ_WORKER_WORKER_ID"]
    assert worker_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid", "ids are UUIDs"


def test_probe_and_service_ports_name_container_ports() -> None:
    deployments = _objects("Deployment")
    for deployment in deployments:
        container = _container(deployment)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in container:
                _port(container, container[probe]["httpGet"]["port"])
    for service in _objects("Service"):
        selected = [
            d
            for d in deployments
            if _selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(d))
        ]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {selected}"
        container = _container(selected[0])
        for port in service["spec"]["ports"]:
            assert isinstance(port["targetPort"], str), "target ports by name"
            assert _port(container, port["targetPort"]) == port["port"]
    for policy in _objects("NetworkPolicy"):
        selected = [
            d for d in deployments if _selects(policy["spec"]["podSelector"], _pod_labels(d))
        ]
        assert len(selected) == 1, f"NetworkPolicy {policy['metadata']['name']}"
        container = _container(selected[0])
        for rule in policy["spec"].get("ingress", []):
            for port in rule["ports"]:
                if isinstance(port["port"], str):
                    _port(container, port["port"])


def test_server_outlives_its_graceful_shutdown_and_the_workers_drain() -> None:
    settings = _settings()
    server = _deployment("jobq-server")
    grace = server["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pause = _prestop_sleep_s(_container(server))
    assert grace > pause + settings.grpc.graceful_shutdown_s, (
        f"terminationGracePeriodSeconds {grace} must exceed the preStop pause ({pause} s) + "
        f"grpc.graceful_shutdown_s ({settings.grpc.graceful_shutdown_s} s)"
    )
    assert grace > settings.worker.shutdown_grace_period_s, (
        "a server must outlast the drain of the workers it serves"
    )
    strategy = server["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert server["spec"]["replicas"] >= 2


def test_worker_is_never_killed_during_its_drain() -> None:
    settings = _settings()
    worker = _deployment("jobq-worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pause = _prestop_sleep_s(_container(worker))
    drain = pause + settings.worker.shutdown_grace_period_s + FLUSH_WAIT_S + RPC_TIMEOUT_S
    assert grace >= drain + GRACE_MARGIN_S, (
        f"terminationGracePeriodSeconds {grace} must cover the preStop pause ({pause} s) + "
        f"worker.shutdown_grace_period_s ({settings.worker.shutdown_grace_period_s} s) + "
        f"result flush ({FLUSH_WAIT_S} s) + deregistration ({RPC_TIMEOUT_S} s) + "
        f"{GRACE_MARGIN_S} s"
    )


@pytest.mark.parametrize("name", ["jobq-server", "jobq-worker"])
def test_containers_run_hardened_as_non_root(name: str) -> None:
    deployment = _deployment(name)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    pod_ctx = pod.get("securityContext", {})
    ctx = container.get("securityContext", {})
    assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True
    assert ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 10001, "the image's uid"
    assert ctx.get("readOnlyRootFilesystem") is True
    assert ctx.get("allowPrivilegeEscalation") is False
    assert ctx.get("capabilities", {}).get("drop") == ["ALL"]
    assert not ctx.get("capabilities", {}).get("add"), "no capability is added"
    assert ctx.get("privileged", False) is False
    seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
    assert seccomp.get("type") == "RuntimeDefault"
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    assert "/tmp" in mounts, "a read-only root needs a writable /tmp"
    assert "emptyDir" in volumes[mounts["/tmp"]]
    resources = container.get("resources", {})
    assert {"cpu", "memory"} <= set(resources.get("requests", {}))
    assert "memory" in resources.get("limits", {})
    assert pod.get("automountServiceAccountToken") is False
    account = _one("ServiceAccount", pod["serviceAccountName"])
    assert account.get("automountServiceAccountToken") is False
    assert container["image"].split(":")[0] in {i["name"] for i in _kustomization()["images"]}
    assert pod.get("hostNetwork", False) is False


def test_pdb_keeps_a_server_up() -> None:
    pdb = _one("PodDisruptionBudget", "jobq-server")
    assert _selects(pdb["spec"]["selector"], _pod_labels(_deployment("jobq-server")))
    assert not _selects(pdb["spec"]["selector"], _pod_labels(_deployment("jobq-worker")))
    assert pdb["spec"]["minAvailable"] >= 1
    assert pdb["spec"]["minAvailable"] < _deployment("jobq-server")["spec"]["replicas"], (
        "a PDB as large as the Deployment blocks every node drain"
    )


def test_deployment_selectors_match_their_pods() -> None:
    for deployment in _objects("Deployment"):
        labels = _pod_labels(deployment)
        assert _selects(deployment["spec"]["selector"], labels)
        spec = deployment["spec"]["template"]["spec"]
        for constraint in spec.get("topologySpreadConstraints", []):
            assert _selects(constraint["labelSelector"], labels)


def test_hpa_scales_the_workers_on_queue_depth() -> None:
    hpa = _one("HorizontalPodAutoscaler", "jobq-worker")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert target["name"] == "jobq-worker"
    _deployment(target["name"])  # exists
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in _deployment("jobq-worker")["spec"], (
        "the HPA owns the worker count: `replicas` would reset it at every kubectl apply"
    )
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "jq_job_queue_depth"
    labels = metric["external"]["metric"]["selector"]["matchLabels"]
    assert labels["status"] == "PENDING"
    assert labels["queue"] in _settings().worker.queues
    assert metric["external"]["target"]["type"] == "AverageValue"
    # The example adapter rule serves exactly this metric, as a max over server replicas.
    rules = yaml.safe_load((K8S_DIR / "prometheus-adapter-rules.yaml").read_text())
    (rule,) = rules["rules"]["external"]
    assert rule["name"]["as"] == "jq_job_queue_depth"
    assert "jq_job_queue_depth" in rule["seriesQuery"]
    assert rule["metricsQuery"].startswith("max(")


def test_network_policies_admit_only_the_expected_peers() -> None:
    settings = _settings()
    server = _one("NetworkPolicy", "jobq-server")["spec"]
    worker = _one("NetworkPolicy", "jobq-worker")["spec"]
    worker_labels = _pod_labels(_deployment("jobq-worker"))
    server_labels = _pod_labels(_deployment("jobq-server"))
    for spec in (server, worker):
        assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    by_port: dict[str, list[dict[str, Any]]] = {}
    for rule in server["ingress"]:
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule["from"])
    assert set(by_port) == {"grpc", "http", "metrics"}
    assert any(_selects(peer.get("podSelector", {}), worker_labels) for peer in by_port["grpc"])
    assert any(
        peer.get("podSelector", {}).get("matchLabels") == {"jobq-client": "true"}
        for peer in by_port["grpc"] + by_port["http"]
    )
    assert all("namespaceSelector" in peer for peer in by_port["metrics"])
    for spec in (server, worker):
        for rule in spec["ingress"]:
            for peer in rule["from"]:
                assert peer != {}, "no ingress from everywhere"
                assert "ipBlock" not in peer, "no ingress by address range"
    egress_ports = {p["port"] for rule in server["egress"] for p in rule["ports"]}
    assert {5432, 6379, 9092, 53} <= egress_ports
    (to_server,) = [
        r
        for r in worker["egress"]
        if any(_selects(p.get("podSelector", {}), server_labels) for p in r["to"])
    ]
    assert [p["port"] for p in to_server["ports"]] == [settings.grpc.port]
    worker_egress = {p["port"] for rule in worker["egress"] for p in rule["ports"]}
    assert worker_egress == {settings.grpc.port, 53}
