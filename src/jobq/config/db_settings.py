"""PostgreSQL settings: an external server or the embedded one, and the schema jobq lives in."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import platformdirs
from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from jobq.config.section import Port, Section

SCHEMA_NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,52}")
"""What `db.schema` may be: a plain lower-case identifier, which means the same quoted or not
(an operator's `SET search_path = jobq` in psql finds it), of at most 53 characters so that the
schema's notification channel (`jobq_jobs_<schema>`, see jobq.server.notifier) stays within
PostgreSQL's 63-byte names. It is still quoted wherever it reaches SQL."""


def check_schema_name(name: str) -> str:
    if not SCHEMA_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            "must be 1 to 53 characters from a-z 0-9 _, not starting with a digit (a plain "
            "PostgreSQL identifier)"
        )
    if name.startswith("pg_") or name == "information_schema":
        raise ValueError("names starting with pg_, and information_schema, belong to PostgreSQL")
    return name


SchemaName = Annotated[str, AfterValidator(check_schema_name)]

# pydantic warns that a field called `schema` shadows BaseModel.schema(), its deprecated v1
# JSON-schema method; `db.schema` is the setting's public name (YAML key, JQ_DB_SCHEMA), and
# nothing of jobq's calls that method, so the warning is silenced for this one class.
_SHADOWS_SCHEMA = r'Field name "schema" in "DbSettings" shadows an attribute'
warnings.filterwarnings("ignore", _SHADOWS_SCHEMA, UserWarning)


class DbSettings(Section):
    """PostgreSQL: an external server (`dsn`, or `host` and friends) or the embedded one."""

    dsn: str = Field(
        "",
        repr=False,
        description="Full PostgreSQL DSN. Empty: built from db.host etc. if db.host is set, "
        "else the embedded server is used.",
    )
    host: str = Field("", description="PostgreSQL host; used only when db.dsn is empty.")
    port: Port = Field(5432, description="PostgreSQL port; used with db.host.")
    name: str = Field("jobq", description="Database name; used with db.host.")
    user: str = Field("jobq", description="Database user; used with db.host.")
    password: str = Field("", repr=False, description="Database password; used with db.host.")
    pool_min_size: int = Field(2, ge=1, description="Connections the pool keeps open (>= 1).")
    pool_max_size: int = Field(
        10, ge=1, description="Most connections the pool opens (>= db.pool_min_size)."
    )
    embedded_data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("jobq")) / "postgres",
        description="Data directory of the embedded PostgreSQL ('~' is expanded).",
        json_schema_extra={"doc_default": "<user data dir>/jobq/postgres"},
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Seconds to wait for a new database connection."
    )
    command_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a single database statement may run."
    )
    schema: SchemaName = Field(  # type: ignore[assignment]  # shadows BaseModel.schema()
        "public",
        description="Schema that holds every jobq object (tables, types, "
        "flyway_schema_history); created at start-up when missing. Default public: existing "
        "installations keep their tables where they are, as Flyway does, and psql finds them "
        "without a search_path. Set e.g. jobq to share an application's database. Applied "
        "with SET search_path on every jobq session; a plain name of at most 53 characters "
        "(a-z 0-9 _).",
    )

    @field_validator("pool_max_size")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("pool_min_size")
        if isinstance(low, int) and value < low:
            raise ValueError(f"must be >= db.pool_min_size ({low})")
        return value

    @field_validator("embedded_data_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    def resolved_dsn(self) -> str | None:
        """The DSN to connect with, or None to mean "start and use the embedded server"."""
        if self.dsn:
            return self.dsn
        if not self.host:
            return None
        userinfo = quote(self.user, safe="")
        if self.password:
            userinfo += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        at = f"{userinfo}@" if userinfo else ""
        return f"postgresql://{at}{host}:{self.port}/{quote(self.name, safe='')}"
