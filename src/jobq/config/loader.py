"""Build `Settings` from defaults, the YAML file, the environment and the flags (SPEC §9).

Precedence, lowest first: the models' defaults, the YAML file (`--config`), the environment
(`JQ_<SECTION>_<FIELD>`), and the programs' flags (passed in as `overrides`). Every problem is
reported at once in a single `ConfigError`, one line each, naming the field and where its value
came from, so a program can print it and exit non-zero before starting anything.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from jobq.config.settings import CREDENTIAL_URL_FIELDS, SECRET_FIELDS, Settings, section_models
from jobq.domain.errors import ConfigError

if TYPE_CHECKING:
    import yaml

Source = Literal["default", "file", "env", "flag"]
"""Where a field's value came from."""

ENV_PREFIX = "JQ_"
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class LoadedSettings:
    """The validated settings, the warnings to log once logging is set up, and each field's source.

    `sources` maps every dotted field name (`"grpc.port"`) to where its value came from.
    """

    settings: Settings
    warnings: tuple[str, ...] = ()
    sources: Mapping[str, Source] = field(default_factory=lambda: MappingProxyType({}))


def env_var_name(section: str, field: str) -> str:
    """The environment variable that sets `section.field`: `JQ_DB_PASSWORD` for `db.password`."""
    return f"{ENV_PREFIX}{section.upper()}_{field.upper()}"


def iter_fields() -> Iterator[tuple[str, str, FieldInfo]]:
    """Every setting as (section, field, pydantic FieldInfo with default and description)."""
    for section, model in section_models().items():
        for name, info in model.model_fields.items():
            yield section, name, info


def load_settings(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> LoadedSettings:
    """Load and validate the configuration; raise ConfigError listing every problem.

    `env` defaults to `os.environ`. `overrides` holds the flags as dotted keys (`"grpc.port"`);
    None values mean "flag not given" and are skipped.
    """
    merge = _Merge()
    if config_path is not None:
        merge.apply_file(config_path)
    merge.apply_env(os.environ if env is None else env)
    merge.apply_overrides(overrides or {})
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(merge.raw)
    except ValidationError as exc:
        merge.problems.extend(merge.describe(error) for error in exc.errors())
    if merge.problems or settings is None:
        raise ConfigError("\n".join(merge.problems))
    return LoadedSettings(settings, tuple(merge.warnings), MappingProxyType(dict(merge.sources)))


class _Merge:
    """The layers applied so far: raw values per section, their sources, problems, warnings."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldInfo] = {f"{s}.{n}": info for s, n, info in iter_fields()}
        self.raw: dict[str, dict[str, object]] = {section: {} for section in section_models()}
        self.sources: dict[str, Source] = dict.fromkeys(self.fields, "default")
        self.origins: dict[str, str] = dict.fromkeys(self.fields, "default")
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def set(self, dotted: str, value: object, source: Source, origin: str) -> None:
        section, name = dotted.split(".", 1)
        self.raw[section][name] = value
        self.sources[dotted] = source
        self.origins[dotted] = origin

    def apply_file(self, path: Path) -> None:
        label = f"config file {path}"
        for key, section_value in _read_yaml(path, label).items():
            section = str(key)
            if section not in self.raw:
                self.problems.append(
                    f"{label}: unknown section {section!r}{_hint(section, self.raw)}"
                )
                continue
            if section_value is None:  # every key of the section commented out
                continue
            if not isinstance(section_value, dict):
                kind = type(section_value).__name__
                self.problems.append(f"{label}: section {section!r} must be a mapping, got {kind}")
                continue
            for name, value in section_value.items():
                dotted = f"{section}.{name}"
                if dotted not in self.fields:
                    self.problems.append(
                        f"{label}: unknown field {dotted!r}{_hint(dotted, self.fields)}"
                    )
                    continue
                self.set(dotted, value, "file", f"from {label}")
                self._warn_if_secret(dotted, value, path)

    def _warn_if_secret(self, dotted: str, value: object, path: Path) -> None:
        env_name = env_var_name(*dotted.split(".", 1))
        if dotted in SECRET_FIELDS and value not in (None, ""):
            self.warnings.append(
                f"{dotted} is set in the config file {path}; "
                f"pass secrets through the environment ({env_name}) instead"
            )
        elif dotted in CREDENTIAL_URL_FIELDS and isinstance(value, str) and _has_password(value):
            self.warnings.append(
                f"{dotted} in the config file {path} contains a password; "
                f"pass it through the environment ({env_name}) instead"
            )

    def apply_env(self, env: Mapping[str, str]) -> None:
        for name in sorted(env):
            if not name.startswith(ENV_PREFIX) or name != name.upper():
                continue
            section, _, field_name = name.removeprefix(ENV_PREFIX).lower().partition("_")
            if section not in self.raw:
                continue  # another tool's JQ_* variable, such as JQ_TEST_DSN
            dotted = f"{section}.{field_name}"
            info = self.fields.get(dotted)
            if info is None:
                close = difflib.get_close_matches(dotted, list(self.fields), n=1)
                hint = f" (did you mean {env_var_name(*close[0].split('.', 1))}?)" if close else ""
                self.warnings.append(
                    f"{name} is ignored: section {section!r} has no field {field_name!r}{hint}"
                )
                continue
            try:
                value = _parse_env_value(info, env[name])
            except ValueError as exc:
                self.problems.append(f"{dotted} (from {name}): {exc}")
                continue
            self.set(dotted, value, "env", f"from {name}")

    def apply_overrides(self, overrides: Mapping[str, object]) -> None:
        for dotted, value in overrides.items():
            if value is None:
                continue
            info = self.fields.get(dotted)
            if info is None:
                self.problems.append(f"unknown setting {dotted!r} (from command-line flag)")
                continue
            if _is_list(info) and isinstance(value, str):
                value = _split_list(value)
            self.set(dotted, value, "flag", "from command-line flag")

    def describe(self, error: ErrorDetails) -> str:
        """One line for one pydantic error: field, source, what is wrong, and the bad value."""
        dotted = ".".join(str(part) for part in error["loc"][:2])
        origin = self.origins.get(dotted, "default")
        message = _rewrite_message(str(error["type"]), str(error["msg"]))
        hidden = dotted in SECRET_FIELDS or dotted in CREDENTIAL_URL_FIELDS
        if not hidden:
            message += f", got {_show(error['input'])}"
        return f"{dotted} ({origin}): {message}"


def _read_yaml(path: Path, label: str) -> dict[object, object]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{label}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not valid UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read: {exc.strerror or exc}") from None
    # Imported here: only a program given --config reads YAML (1.3 MB resident, issue 17).
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:  # an empty file, or only comments
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"{label}: the top level must be a mapping of sections, got {kind}")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{exc.problem}{where}"
    return " ".join(str(exc).split())


def _has_password(url: str) -> bool:
    if re.search(r"(^|\s)password\s*=", url):  # libpq keyword form: "host=x password=y"
        return True
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


def _hint(name: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_list(info: FieldInfo) -> bool:
    return get_origin(info.annotation) in (tuple, list)


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _parse_env_value(info: FieldInfo, text: str) -> object:
    """Lists are comma-separated, booleans true/false/1/0/yes/no; pydantic converts the rest."""
    if _is_list(info):
        return _split_list(text)
    if info.annotation is bool:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"must be one of true, false, 1, 0, yes, no, got {_show(text)}")
    return text


def _rewrite_message(kind: str, message: str) -> str:
    """Pydantic's wording made to read "field (source): must be ..., got VALUE"."""
    if kind == "string_type":
        return "must be a string (in YAML, put it in quotes)"
    if kind in ("tuple_type", "list_type"):
        return "must be a list (in YAML, [a, b]; in the environment, a,b)"
    message = message.removeprefix("Value error, ")
    message = re.sub(r"^(Input|String|List|Tuple|Value) should\b", "must", message)
    if message.startswith("must be a valid "):
        message = message.split(",", 1)[0]  # drop "unable to parse string as an integer" etc.
    return message


def _show(value: object) -> str:
    if isinstance(value, str):
        if len(value) > 60:
            value = value[:60] + "…"
        return value if value and not any(c.isspace() for c in value) else repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    return str(value) if isinstance(value, int | float | Path) else repr(value)


_EXAMPLE_YAML = """\
grpc:
  port: 50051
db:
  host: db.internal        # empty host and dsn: the embedded PostgreSQL
  user: jobq               # the password comes from JQ_DB_PASSWORD
scheduler:
  interval_ms: 250
worker:
  concurrency: 8
  queues: [default, emails]
logging:
  level: info
  format: json
"""

_INTRO = f"""\
# Configuration reference

<!-- Generated by `python -m jobq.config`; do not edit by hand. -->

`jq-server`, `jq-worker` and `jq-ctl` read one configuration. Every setting has a default, so
no file at all is a valid configuration: it runs the embedded PostgreSQL, with Redis and Kafka
off.

## Where values come from

Each setting takes the value of the highest of these that sets it:

1. the default (below);
2. the YAML file given with `--config`;
3. the environment variable `JQ_<SECTION>_<FIELD>`, for example `JQ_DB_PASSWORD` or
   `JQ_SCHEDULER_INTERVAL_MS`. Lists are comma-separated (`JQ_WORKER_QUEUES=default,emails`),
   booleans are `true`/`false`/`1`/`0`/`yes`/`no`. Other `JQ_*` variables are ignored, but a
   misspelt field of a known section (`JQ_DB_PASWORD`) is reported as a warning;
4. the program's flags (`--grpc-port`, `--concurrency`, ...).

An invalid value stops the program before it starts anything, with one line per problem naming
the field and where its value came from, for example
`scheduler.interval_ms (from JQ_SCHEDULER_INTERVAL_MS): must be greater than 0, got -5`.
Unknown keys in the file are errors; an empty file, or an empty section, is fine.

## Secrets

{", ".join(f"`{name}`" for name in SECRET_FIELDS[:-1])} and `{SECRET_FIELDS[-1]}` are secrets:
pass them through the environment. A secret written in the config file (or a password inside
`db.dsn` or `redis.url`) gives a warning at start-up. Error messages never show secret values.

## Example

```yaml
{_EXAMPLE_YAML}```
"""


def render_reference_markdown() -> str:
    """The configuration reference: the precedence and secrets rules, then one table per section."""
    parts = [_INTRO]
    models = section_models()
    current = ""
    for section, name, info in iter_fields():
        if section != current:
            current = section
            summary = (models[section].__doc__ or "").strip().splitlines()[0]
            parts.append(f"\n## `{section}`\n\n{summary}\n\n")
            parts.append("| YAML key | Environment variable | Default | Meaning |\n")
            parts.append("|---|---|---|---|\n")
        meaning = info.description or ""
        if f"{section}.{name}" in SECRET_FIELDS:
            meaning += " **Secret**: set it through the environment."
        cells = (
            f"`{section}.{name}`",
            f"`{env_var_name(section, name)}`",
            _doc_default(info),
            meaning.replace("|", "\\|"),
        )
        parts.append("| " + " | ".join(cells) + " |\n")
    return "".join(parts)


def _doc_default(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and "doc_default" in extra:
        return f"`{extra['doc_default']}`"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(str(item) for item in value) + "]`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"
