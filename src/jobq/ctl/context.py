"""What every jq-ctl command shares: the global options, the settings they resolve to, the
connection and the printer, each made on first use.

The root callback runs even for `jq-ctl job submit --help`, so it only records the options;
the configuration is loaded and gRPC imported when a command first needs them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from jobq.ctl.errors import EXIT_USAGE, CtlError
from jobq.ctl.output import Printer

if TYPE_CHECKING:
    from jobq.config import CtlSettings, KafkaSettings
    from jobq.ctl.client import Client

PROG = "jq-ctl"


@dataclass(frozen=True)
class GlobalOptions:
    """The root options as given on the command line; None means "not given"."""

    config: Path | None = None
    server_addr: str | None = None
    output: str | None = None
    timeout_s: float | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    token: str | None = None
    token_file: str | None = None

    def overrides(self) -> dict[str, object]:
        """The flags as dotted setting names for the loader (flags beat env beat file)."""
        return {
            "ctl.server_addr": self.server_addr,
            "ctl.output": self.output,
            "ctl.timeout_s": self.timeout_s,
            "ctl.tls_ca": self.tls_ca,
            "ctl.tls_cert": self.tls_cert,
            "ctl.tls_key": self.tls_key,
            "ctl.token": self.token,
            "ctl.token_file": self.token_file,
        }


def load_ctl_settings(options: GlobalOptions) -> CtlSettings:
    """The `ctl` settings from the file, the environment and the flags.

    A bad value is a CtlError naming the field (all problems on one line). Warnings about the
    `ctl` section (a token written in the file, a misspelt JQ_CTL_* variable) go to stderr; those
    about the server's and worker's sections are theirs to report."""
    from jobq.config import load_settings
    from jobq.domain.errors import ConfigError

    try:
        loaded = load_settings(options.config, overrides=options.overrides())
    except ConfigError as exc:
        raise CtlError("; ".join(str(exc).splitlines()) or str(exc), EXIT_USAGE) from None
    for warning in loaded.warnings:
        if warning.startswith(("ctl.", "JQ_CTL_")):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return loaded.settings.ctl


def load_kafka_settings(
    options: GlobalOptions, bootstrap_servers: str, topic_prefix: str | None
) -> KafkaSettings:
    """The `kafka` settings for reading events from the broker: `bootstrap_servers` and (when
    given) `topic_prefix` from the command line, the rest (the topic prefix otherwise, the
    security protocol, the CA file, the SASL user and password) from the file and the
    environment, as jq-server reads them. The SASL credentials have no flag on purpose: a
    command line is visible to every user of the machine (`ps`), JQ_KAFKA_SASL_USERNAME and
    JQ_KAFKA_SASL_PASSWORD are not. A bad value is a CtlError naming the field."""
    from jobq.config import load_settings
    from jobq.domain.errors import ConfigError

    overrides = {"kafka.bootstrap_servers": bootstrap_servers, "kafka.topic_prefix": topic_prefix}
    try:
        loaded = load_settings(options.config, overrides=overrides)
    except ConfigError as exc:
        raise CtlError("; ".join(str(exc).splitlines()) or str(exc), EXIT_USAGE) from None
    return loaded.settings.kafka


class CtlState:
    """Held in the typer context object; commands reach it with `CtlState.of(ctx)`."""

    def __init__(self, options: GlobalOptions) -> None:
        self.options = options
        self._settings: CtlSettings | None = None
        self._client: Client | None = None
        self._printer: Printer | None = None

    @staticmethod
    def of(ctx: typer.Context) -> CtlState:
        state = ctx.find_object(CtlState)
        if state is None:  # a command invoked without the root callback (tests)
            state = CtlState(GlobalOptions())
            ctx.obj = state
        return state

    @property
    def settings(self) -> CtlSettings:
        if self._settings is None:
            self._settings = load_ctl_settings(self.options)
        return self._settings

    def client(self) -> Client:
        """The connection to jq-server, opened on first use and closed by `close()`."""
        if self._client is None:
            from jobq.ctl.client import Client, ConnectionOptions
            from jobq.ctl.credentials import bearer_token

            ctl = self.settings
            token = bearer_token(ctl)
            self._client = Client(
                ConnectionOptions(
                    server_addr=ctl.server_addr,
                    timeout_s=ctl.timeout_s,
                    tls_ca=ctl.tls_ca,
                    tls_cert=ctl.tls_cert,
                    tls_key=ctl.tls_key,
                    token=token,
                )
            )
        return self._client

    @property
    def printer(self) -> Printer:
        if self._printer is None:
            self._printer = Printer(self.settings.output)
        return self._printer

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
