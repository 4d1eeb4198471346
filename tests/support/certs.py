"""Certificates made with the README's own commands (its "certs" block), so a test that uses
them also proves that those commands work on a fresh machine."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_certificate_script() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- certs:start -->\n```sh\n(.*?)```\n<!-- certs:end -->", text, re.S)
    assert match, "README has no certs block"
    return match.group(1)


@dataclass(frozen=True)
class Pki:
    """The files the README's commands make, under `directory`."""

    directory: Path

    def file(self, name: str) -> str:
        return str(self.directory / name)

    @property
    def ca(self) -> str:
        return self.file("ca.crt")

    def server_env(self) -> dict[str, str]:
        return {
            "JQ_GRPC_TLS_CERT": self.file("server.crt"),
            "JQ_GRPC_TLS_KEY": self.file("server.key"),
            "JQ_GRPC_TLS_CLIENT_CA": self.ca,
        }

    def read(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()


def make_pki(base: Path) -> Pki:
    """Run the README's certificate commands in `base` (they create `base/pki`)."""
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_certificate_script()],
        cwd=base,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Pki(base / "pki")


def make_untrusted_client(base: Path, name: str = "intruder") -> Pki:
    """A client certificate signed by a CA jq-server does not trust (same commands)."""
    other = base / "other"
    other.mkdir()
    script = readme_certificate_script().replace(
        "for client in worker-1 ops", f"for client in {name}"
    )
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=other, check=True, capture_output=True
    )
    return Pki(other / "pki")
