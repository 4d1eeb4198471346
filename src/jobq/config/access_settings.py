"""Who may reach jq-server and how: the gRPC listener (TLS), bearer tokens and client
certificates with their scopes (SPEC §9)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from jobq.config.section import Port, Section
from jobq.domain.scopes import SCOPE_NAMES


def _check_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [scope for scope in scopes if scope not in SCOPE_NAMES]
    if unknown:
        raise ValueError(
            f"unknown scope(s) {', '.join(map(repr, unknown))}; scopes are "
            + ", ".join(SCOPE_NAMES)
        )
    if not scopes:
        raise ValueError("name at least one scope: " + ", ".join(SCOPE_NAMES))
    return tuple(dict.fromkeys(scopes))


def _split_scopes(value: object) -> object:
    return (
        [part for part in value.replace(",", "+").split("+") if part]
        if isinstance(value, str)
        else value
    )


class GrpcSettings(Section):
    """The gRPC listener of jq-server."""

    host: str = Field(
        "127.0.0.1",
        description="Address the gRPC server listens on. A non-loopback address needs "
        "authentication (auth.tokens or grpc.tls_client_ca) or grpc.insecure.",
    )
    port: Port = Field(50051, description="TCP port of the gRPC server (1-65535).")
    graceful_shutdown_s: float = Field(
        10.0, gt=0, description="Seconds in-flight calls get to finish when the server stops."
    )
    max_message_bytes: int = Field(
        4 * 1024 * 1024, gt=0, description="Largest gRPC message, in bytes, sent or received."
    )
    insecure: bool = Field(
        False,
        description="Allow listening (gRPC, health, metrics) on non-loopback addresses with no "
        "authentication configured; only on a network you trust (also --insecure).",
    )
    reflection: bool = Field(
        True, description="Serve gRPC server reflection (grpcurl); it needs the read scope."
    )
    tls_cert: str = Field(
        "", description="Server certificate chain (PEM file); with grpc.tls_key, serve TLS."
    )
    tls_key: str = Field("", description="Server private key (PEM file).")
    tls_client_ca: str = Field(
        "",
        description="CA certificates (PEM file) that sign client certificates: turns on "
        "mutual TLS, every connection must present a certificate it signed (needs "
        "grpc.tls_cert); auth.certificates gives the certificates scopes.",
    )

    @field_validator("tls_key")
    @classmethod
    def _cert_and_key_together(cls, value: str, info: ValidationInfo) -> str:
        if bool(value) != bool(info.data.get("tls_cert")):
            raise ValueError("grpc.tls_cert and grpc.tls_key must be set together")
        return value

    @field_validator("tls_client_ca")
    @classmethod
    def _client_ca_needs_tls(cls, value: str, info: ValidationInfo) -> str:
        if value and not info.data.get("tls_cert"):
            raise ValueError("mutual TLS needs a server certificate: set grpc.tls_cert too")
        return value


_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class TokenEntry(BaseModel):
    """A bearer token the server accepts: its name (for logs and the audit trail), its scopes,
    and the SHA-256 of its secret. The secret itself is never configured on the server.

    In YAML a mapping; anywhere (and in JQ_AUTH_TOKENS) also `NAME:SCOPE+SCOPE:SHA256`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    scopes: Annotated[
        tuple[str, ...], BeforeValidator(_split_scopes), AfterValidator(_check_scopes)
    ]
    sha256: str

    @model_validator(mode="before")
    @classmethod
    def _from_compact(cls, value: object) -> object:
        if isinstance(value, str):
            parts = value.strip().split(":", 2)
            if len(parts) != 3:
                raise ValueError("a token entry is NAME:SCOPE+SCOPE:SHA256")
            return {"name": parts[0], "scopes": parts[1], "sha256": parts[2]}
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _TOKEN_NAME.fullmatch(value):
            raise ValueError("token names are 1-64 characters from A-Z a-z 0-9 _ . @ -")
        return value

    @field_validator("sha256")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        value = value.strip().lower().removeprefix("sha256:")
        if not _SHA256_HEX.fullmatch(value):
            raise ValueError(
                "sha256 must be the 64 hex digits of the secret's SHA-256 "
                "(jq-ctl token create prints it)"
            )
        return value


class CertificateEntry(BaseModel):
    """The scopes of a client certificate, found by its subject's common name (CN).

    In YAML a mapping; anywhere (and in JQ_AUTH_CERTIFICATES) also `CN:SCOPE+SCOPE`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    common_name: str
    scopes: Annotated[
        tuple[str, ...], BeforeValidator(_split_scopes), AfterValidator(_check_scopes)
    ]

    @model_validator(mode="before")
    @classmethod
    def _from_compact(cls, value: object) -> object:
        if isinstance(value, str):
            common_name, sep, scopes = value.strip().rpartition(":")
            if not sep:
                raise ValueError("a certificate entry is CN:SCOPE+SCOPE")
            return {"common_name": common_name, "scopes": scopes}
        return value

    @field_validator("common_name")
    @classmethod
    def _check_common_name(cls, value: str) -> str:
        if not 1 <= len(value) <= 256 or not value.isprintable():
            raise ValueError("common_name must be 1-256 printable characters")
        return value


class AuthSettings(Section):
    """Who may call jq-server: bearer tokens and client certificates, each with scopes."""

    tokens: tuple[TokenEntry, ...] = Field(
        (),
        description="Bearer tokens: name, scopes (submit, read, admin, worker) and the SHA-256 "
        "of the secret, never the secret. Compact form NAME:SCOPE+SCOPE:SHA256.",
    )
    certificates: tuple[CertificateEntry, ...] = Field(
        (),
        description="Scopes of client certificates (mutual TLS), by subject CN. Compact form "
        "CN:SCOPE+SCOPE.",
    )

    @field_validator("tokens")
    @classmethod
    def _unique_token_names(cls, value: tuple[TokenEntry, ...]) -> tuple[TokenEntry, ...]:
        names = [entry.name for entry in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"token names must be unique: {', '.join(duplicates)}")
        return value
