"""Configuration of jq-server, jq-worker and jq-ctl: frozen models and their loader (SPEC §9)."""

from jobq.config.loader import (
    LoadedSettings,
    Source,
    env_var_name,
    iter_fields,
    load_settings,
    render_reference_markdown,
)
from jobq.config.settings import (
    CREDENTIAL_URL_FIELDS,
    SECRET_FIELDS,
    CtlSettings,
    DbSettings,
    GrpcSettings,
    HealthSettings,
    KafkaSettings,
    LimitsSettings,
    LoggingSettings,
    MetricsSettings,
    RedisSettings,
    SchedulerSettings,
    Settings,
    WorkerSettings,
)

__all__ = [
    "CREDENTIAL_URL_FIELDS",
    "SECRET_FIELDS",
    "CtlSettings",
    "DbSettings",
    "GrpcSettings",
    "HealthSettings",
    "KafkaSettings",
    "LimitsSettings",
    "LoadedSettings",
    "LoggingSettings",
    "MetricsSettings",
    "RedisSettings",
    "SchedulerSettings",
    "Settings",
    "Source",
    "WorkerSettings",
    "env_var_name",
    "iter_fields",
    "load_settings",
    "render_reference_markdown",
]
