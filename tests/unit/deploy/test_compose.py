"""docker-compose.yml is a valid Compose file and keeps the promises its users rely on: every
long-running container is health-checked and started in dependency order, each service has its own
database, only the intended ports are published (on loopback), secrets come from .env, and the
Prometheus, Alertmanager and Grafana configuration it mounts is valid and matches what the code exports.

No Docker engine runs here, so this is static: the Compose schema, promtool and amtool, and the code."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from support.deploy import ROOT, SERVICES, find_tool, run_tool, settings_type

COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_DIR = ROOT / "deploy" / "compose"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
PROMETHEUS_CONFIG = COMPOSE_DIR / "prometheus.yml"
ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((COMPOSE_DIR / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
INIT_SCRIPT = COMPOSE_DIR / "postgres" / "init-databases.sh"

DATABASE_SERVICES = ["registry", "deployer", "monitor", "retrainer"]
PUBLISHED = {"gateway": {8000, 8081}, "monitor": {8003}, "grafana": {3000}, "prometheus": {9090}}
RAY_NODES = {"ray-head", "ray-worker"}
# Metric names in PromQL: ModelFleet's own, and the `up` series Prometheus makes for each target.
METRIC_NAME = re.compile(r"\b(fleet_[a-z0-9_]+|up)\b(?![(\w])")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|SALT")
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")
REQUIRED = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")
SERVICE_PORT = {"gateway": 8000, "registry": 8001, "deployer": 8002, "monitor": 8003, "retrainer": 8004}


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # type: ignore[no-any-return]


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]  # type: ignore[no-any-return]


def is_one_shot(spec: dict[str, Any]) -> bool:
    return spec.get("restart") == "no"


def long_running() -> list[str]:
    return [name for name, spec in services().items() if not is_one_shot(spec)]


def environment(name: str) -> dict[str, str]:
    env = services()[name].get("environment", {})
    assert isinstance(env, dict), f"{name}: write environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def defined_metrics() -> dict[str, str]:
    """Every ``fleet_*`` metric the code registers, with its kind, found where it is constructed."""
    constructor = re.compile(
        r"\b(Counter|Gauge|Histogram|Summary|CounterMetricFamily|GaugeMetricFamily|"
        r"HistogramMetricFamily|SummaryMetricFamily)\(\s*\"(fleet_[a-z0-9_]+)\"",
    )
    found: dict[str, str] = {}
    for path in [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]:
        for kind, name in constructor.findall(path.read_text()):
            found[name] = kind.removesuffix("MetricFamily")
    return found


def exported_series() -> set[str]:
    """The series names Prometheus sees for those metrics (prometheus_client's naming)."""
    suffixes = {
        "Counter": ["_total"],
        "Gauge": [""],
        "Histogram": ["_bucket", "_count", "_sum"],
        "Summary": ["", "_count", "_sum"],
    }
    return {name + s for name, kind in defined_metrics().items() for s in suffixes[kind]}


# ------------------------------------------------------------------ the Compose file itself


def test_compose_file_matches_the_compose_specification() -> None:
    check = find_tool("check-jsonschema", "PyPI check-jsonschema, a dev dependency: uv sync")
    run_tool(check, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE.relative_to(ROOT)))


@pytest.mark.parametrize("service", SERVICES)
def test_every_fleet_service_runs_from_its_own_image(service: str) -> None:
    spec = services()[service]
    assert spec["image"].startswith("${FLEET_IMAGE_REGISTRY:-modelfleet}/" + service + ":${FLEET_IMAGE_TAG:?")
    assert spec["build"]["context"] == "."
    assert (ROOT / spec["build"]["dockerfile"]).is_file()


def test_third_party_images_are_pinned_to_exact_tags() -> None:
    for name, spec in services().items():
        image = spec["image"]
        if image.startswith("${FLEET_IMAGE_REGISTRY"):
            continue
        _, _, tag = image.rpartition(":")
        assert "/" not in tag and re.search(r"\d+\.\d+|\d{4}-\d\d-\d\d", tag), f"{name}: pin {image!r}"


@pytest.mark.parametrize("service", long_running())
def test_every_long_running_container_has_a_healthcheck(service: str) -> None:
    check = services()[service].get("healthcheck", {})
    assert check.get("test") and not check.get("disable"), f"{service} has no healthcheck"
    assert services()[service].get("restart") == "unless-stopped"


@pytest.mark.parametrize("service", SERVICES)
def test_fleet_services_are_healthy_only_when_ready(service: str) -> None:
    """depends_on waits for readiness (database, broker, Ray), not mere liveness."""
    assert f"127.0.0.1:{SERVICE_PORT[service]}/readyz" in " ".join(services()[service]["healthcheck"]["test"])


def test_every_dependency_waits_for_health_or_completion() -> None:
    for name, spec in services().items():
        depends_on = spec.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions, not a list"
        for dependency, rule in depends_on.items():
            expected = (
                "service_completed_successfully" if is_one_shot(services()[dependency]) else "service_healthy"
            )
            assert rule.get("condition") == expected, f"{name} → {dependency}: use {expected}"


def test_every_one_shot_job_gates_something() -> None:
    gating = {d for spec in services().values() for d in spec.get("depends_on", {})}
    for name, spec in services().items():
        if is_one_shot(spec) and not spec.get("profiles"):
            assert name in gating, f"{name} runs once but nothing waits for it"


@pytest.mark.parametrize("service", DATABASE_SERVICES)
def test_each_database_service_has_its_own_database_and_role(service: str) -> None:
    raw = environment(service)["FLEET_DATABASE_URL"]
    password = f"FLEET_{service.upper()}_DB_PASSWORD"
    # Compose substitutes the password before the service sees the URL; parse it the same way.
    url = urlsplit(INTERPOLATION.sub(lambda m: m.group(1), raw))
    assert url.scheme == "postgresql+asyncpg"
    assert url.hostname == "postgres"
    assert url.username == service and url.path == f"/{service}"
    assert url.password == password
    assert raw.count(f"${{{password}:?") == 1, f"the password must be the required ${{{password}}}"
    assert environment(service)["FLEET_RUN_MIGRATIONS"] == "false", "migrations run in the migrate job"
    migrate = services()[f"{service}-migrate"]
    assert migrate["command"] == ["python", "-m", f"fleet_{service}", "migrate"]
    assert (
        environment(f"{service}-migrate")["FLEET_DATABASE_URL"] == environment(service)["FLEET_DATABASE_URL"]
    )
    assert services()[service]["depends_on"][f"{service}-migrate"]


# Read by fleet_core.raynode, the drivers' entry point, not by the service's settings.
RAYNODE_VARIABLES = {"FLEET_RAY_JOIN"}


def interpolated(value: str) -> str:
    """``value`` as Compose would pass it, with a secret-sized stand-in for each variable."""
    return INTERPOLATION.sub(
        lambda m: m.group(3) if m.group(2) == "-" else f"{m.group(1).lower()}-" + "x" * 32, value
    )


@pytest.mark.parametrize(
    "container", [c for c in services() if c.removesuffix("-migrate") in SERVICES], ids=str
)
def test_each_service_accepts_its_environment_in_production_mode(
    container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every FLEET_* variable names a real setting (pydantic-settings ignores typos silently), and the
    values pass the production checks (placeholder secrets, salts)."""
    service = container.removesuffix("-migrate")
    settings = settings_type(service)
    env = {key: interpolated(value) for key, value in environment(container).items()}
    fields = {f"FLEET_{name.upper()}" for name in settings.model_fields}
    unknown = {k for k in env if k.startswith("FLEET_")} - fields - RAYNODE_VARIABLES
    assert not unknown, f"{container}: {sorted(unknown)} are not {settings.__name__} fields"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    loaded = settings()
    assert loaded.mode == "production"  # type: ignore[attr-defined]


def test_the_monitor_allows_no_anonymous_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anonymous monitor reads would show every team's traffic and lake rows: embedded stack only."""
    for key, value in environment("monitor").items():
        monkeypatch.setenv(key, interpolated(value))
    assert settings_type("monitor")().anonymous_read is False  # type: ignore[attr-defined]


def test_the_monitor_and_the_registry_hash_pii_with_the_gateways_salt() -> None:
    """Drift on a PII category compares the gateway's hashes with reference categories hashed alike,
    and the registry hashes them so at registration."""
    assert environment("monitor")["FLEET_PII_SALT"] == environment("gateway")["FLEET_PII_SALT"]
    assert environment("registry")["FLEET_PII_SALT"] == environment("gateway")["FLEET_PII_SALT"]


def test_postgres_init_creates_exactly_the_service_databases() -> None:
    loop = re.search(r"^for service in ([a-z ]+); do$", INIT_SCRIPT.read_text(), re.MULTILINE)
    assert loop, "the init script loops over the services"
    assert loop.group(1).split() == DATABASE_SERVICES
    assert set(DATABASE_SERVICES) <= {s for s in SERVICES}
    postgres = services()["postgres"]
    assert any(v.endswith(":/docker-entrypoint-initdb.d/10-databases.sh:ro") for v in postgres["volumes"])
    assert {f"FLEET_{s.upper()}_DB_PASSWORD" for s in DATABASE_SERVICES} <= set(environment("postgres"))


def test_only_the_gateway_dashboards_and_prometheus_are_published_on_loopback() -> None:
    published: dict[str, set[int]] = {}
    for name, spec in services().items():
        for port in spec.get("ports", []):
            assert isinstance(port, str) and port.startswith("${FLEET_BIND_ADDRESS:-127.0.0.1}:"), (
                f"{name}: bind {port!r} to FLEET_BIND_ADDRESS (default 127.0.0.1)"
            )
            published.setdefault(name, set()).add(int(port.rpartition(":")[2]))
    assert published == PUBLISHED


# Secrets that may be empty: the CLI user's own token (passed at `docker compose run`) and the old
# JWT secrets accepted only while a key rotation is under way.
OPTIONAL_SECRETS = ("FLEET_TOKEN", "FLEET_JWT_PREVIOUS_SECRETS")


def test_secrets_are_required_interpolations_never_literals() -> None:
    for name in services():
        for key, value in environment(name).items():
            if SECRET_NAME.search(key) and key != "RAY_AUTH_MODE":
                optional = key in OPTIONAL_SECRETS
                pattern = rf"^\$\{{{key}:-\}}$" if optional else REQUIRED.pattern
                assert re.fullmatch(pattern, value), f"{name}.{key} must be {pattern}, not a literal"
    for value in strings(compose()):
        for match in INTERPOLATION.finditer(value):
            variable, operator, _ = match.groups()
            if SECRET_NAME.search(variable) and variable not in OPTIONAL_SECRETS:
                assert operator == "?", f"${{{variable}}} must be required, not defaulted"


def test_env_example_documents_every_variable_and_holds_no_secret() -> None:
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    used = {m.group(1) for value in strings(compose()) for m in INTERPOLATION.finditer(value)}
    assert used <= set(example), f"not in .env.example: {sorted(used - set(example))}"
    assert not [k for k, v in example.items() if SECRET_NAME.search(k) and v and k != "FLEET_S3_ACCESS_KEY"]
    assert example["FLEET_IMAGE_TAG"] == "", "an image tag must be chosen (the git commit), not defaulted"


def test_every_ray_process_shares_token_auth() -> None:
    ray_processes = RAY_NODES | {n for n in services() if "FLEET_RAY_JOIN" in environment(n)}
    assert {"deployer", "gateway", "retrainer"} <= ray_processes
    for name in ray_processes:
        env = environment(name)
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), name
        if name not in RAY_NODES:
            assert env["FLEET_RAY_JOIN"] == "ray-head:6379"


def test_the_ray_worker_takes_no_spot_capacity() -> None:
    """fleet_spot is for Kubernetes' preemptible group; here every replica is on-demand."""
    assert "fleet_spot" not in " ".join(strings(services()["ray-worker"]))


def test_service_urls_point_at_compose_services() -> None:
    for name in services():
        for key, value in environment(name).items():
            if key.endswith("_URL") and value.startswith("http") and key != "FLEET_PUBLIC_URL":
                host, port = urlsplit(value).hostname, urlsplit(value).port
                assert host in services(), f"{name}.{key}: {host} is not a compose service"
                if host in SERVICE_PORT:
                    assert port == SERVICE_PORT[host], f"{name}.{key}: {host} listens on {SERVICE_PORT[host]}"
    assert environment("monitor")["FLEET_ALERTMANAGER_URL"] == "http://alertmanager:9093"
    assert environment("retrainer")["FLEET_JWT_SECRET"] == environment("registry")["FLEET_JWT_SECRET"], (
        "the retrainer signs its registry token with the shared secret"
    )


def test_bind_mounts_exist() -> None:
    for name, spec in services().items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


# ------------------------------------------------------------------ Kafka: SASL principals and ACLs

PRINCIPALS_SCRIPT = COMPOSE_DIR / "kafka" / "init-principals.sh"


@pytest.mark.parametrize("service", SERVICES)
def test_every_fleet_service_authenticates_to_kafka_as_its_own_principal(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(service)
    password = f"FLEET_{service.upper()}_KAFKA_PASSWORD"
    assert env["FLEET_KAFKA_SECURITY_PROTOCOL"] in {"SASL_PLAINTEXT", "SASL_SSL"}
    assert env["FLEET_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["FLEET_KAFKA_SASL_USERNAME"] == service
    assert env["FLEET_KAFKA_SASL_PASSWORD"].startswith(f"${{{password}:?")
    assert environment("kafka-principals")[password] == env["FLEET_KAFKA_SASL_PASSWORD"]
    for key, value in env.items():
        monkeypatch.setenv(key, interpolated(value))
    security = settings_type(service)().kafka_servers.security  # type: ignore[attr-defined]
    assert (security.protocol, security.sasl_username) == (env["FLEET_KAFKA_SECURITY_PROTOCOL"], service)
    assert services()[service]["depends_on"]["kafka-principals"]


def test_kafka_authenticates_and_authorizes_every_client_the_network_can_reach() -> None:
    env = environment("kafka")
    protocols = dict(pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for listener in env["KAFKA_LISTENERS"].split(","):
        name, _, address = listener.partition("://")
        if not address.startswith("localhost:"):
            assert protocols[name].startswith("SASL_"), f"{listener} is reachable without authentication"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert "SCRAM-SHA-512" in env["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    # The broker's own users: nothing but `admin` and the localhost-only controller listener.
    assert set(env["KAFKA_SUPER_USERS"].split(";")) == {"User:admin", "User:ANONYMOUS"}
    assert "localhost:9093" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    topics = environment("topics")
    assert topics["FLEET_KAFKA_SASL_USERNAME"] == "admin"
    assert topics["FLEET_KAFKA_SASL_PASSWORD"].startswith("${KAFKA_ADMIN_PASSWORD:?")


def test_the_principals_job_grants_exactly_the_access_of_fleet_core_topics() -> None:
    from fleet_core.topics import ACCESS

    job = services()["kafka-principals"]
    assert f"./{PRINCIPALS_SCRIPT.relative_to(ROOT)}:/etc/modelfleet/init-principals.sh:ro" in job["volumes"]
    produced: dict[str, set[str]] = {}
    consumed: dict[str, tuple[str | None, set[str]]] = {}
    users = set()
    for line in PRINCIPALS_SCRIPT.read_text().splitlines():
        words = line.split()
        if words[:1] == ["user"]:
            users.add(words[1])
            assert words[2] == f'"$FLEET_{words[1].upper()}_KAFKA_PASSWORD"'
        elif words[:1] == ["produce"]:
            produced.setdefault(words[1], set()).update(words[2:])
        elif words[:1] == ["consume"]:
            consumed[words[1]] = (None if words[2] == "-" else words[2], set(words[3:]))
    assert users == set(ACCESS) == set(SERVICES)
    for service, access in ACCESS.items():
        assert produced.get(service, set()) == {t.value for t in access.produces}, service
        group, topics = consumed.get(service, (None, set()))
        assert (group, topics) == (access.group, {t.value for t in access.consumes}), service


# ------------------------------------------------------------------ Prometheus, Alertmanager, Grafana


def test_prometheus_scrapes_every_fleet_service_under_its_alerting_job() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service, port in SERVICE_PORT.items():
        targets = [t for c in jobs[f"fleet-{service}"]["static_configs"] for t in c["targets"]]
        assert targets == [f"{service}:{port}"]


def test_every_scrape_target_is_a_compose_service() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for job in config["scrape_configs"]:
        for target in (t for c in job["static_configs"] for t in c["targets"]):
            host = target.rpartition(":")[0]
            assert host in services() or host == "localhost", f"{job['job_name']}: {host} is not in compose"


def test_prometheus_config_is_valid_where_compose_mounts_it(tmp_path: Path) -> None:
    """Compose mounts prometheus.yml and alerts.yml side by side in /etc/prometheus; check that layout."""
    promtool = find_tool("promtool", "Debian/Ubuntu: apt-get install prometheus")
    mounts = {
        v.split(":")[1]: v.split(":")[0] for v in services()["prometheus"]["volumes"] if v.startswith("./")
    }
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/compose/prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./deploy/prometheus/alerts.yml"
    shutil.copy(PROMETHEUS_CONFIG, tmp_path / "prometheus.yml")
    shutil.copy(ALERT_RULES, tmp_path / "alerts.yml")
    output = run_tool(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert "rule files found" in output


def test_alertmanager_config_is_valid() -> None:
    amtool = find_tool("amtool", "Debian/Ubuntu: apt-get install prometheus-alertmanager")
    run_tool(amtool, "check-config", str(COMPOSE_DIR / "alertmanager.yml"))


def test_alertmanager_routes_critical_alerts_apart() -> None:
    config = yaml.safe_load((COMPOSE_DIR / "alertmanager.yml").read_text())
    assert any('severity="critical"' in m for r in config["route"]["routes"] for m in r["matchers"])


def test_code_defines_the_metrics_the_alert_rules_use() -> None:
    """Guards the metric scan below: it must find what alerts.yml already relies on."""
    used = {m for m in METRIC_NAME.findall(ALERT_RULES.read_text()) if m != "up"}
    assert used and used <= exported_series(), sorted(used - exported_series())


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_only_metrics_the_code_exports(dashboard: Path) -> None:
    document = json.loads(dashboard.read_text())
    datasource_uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    series = exported_series() | {"up"}
    exprs = [
        (panel["title"], target["expr"])
        for panel in document["panels"]
        for target in panel.get("targets", [])
    ]
    assert exprs, "the dashboard has no queries"
    for title, expr in exprs:
        referenced = set(METRIC_NAME.findall(expr))
        assert referenced, f"{title}: {expr!r} queries no ModelFleet metric"
        assert referenced <= series, f"{title}: unknown metric(s) {sorted(referenced - series)}"
    for panel in document["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource_uid, f"{panel['title']}: wrong datasource"


def test_the_modelfleet_dashboard_is_provisioned() -> None:
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert "ModelFleet" in titles
    provider = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/dashboards/modelfleet.yml").read_text())
    mounts = {
        v.split(":")[1]: v.split(":")[0] for v in services()["grafana"]["volumes"] if v.startswith("./")
    }
    assert mounts[provider["providers"][0]["options"]["path"]] == "./deploy/compose/grafana/dashboards"
