"""Bearer token secrets: how they are made and how the server recognises them.

The server stores only a token's SHA-256, never the secret. A plain hash (not a slow password
hash) is enough because the secret is 256 random bits, not something a person chose: nobody
can search that space, and checking a token on every call must stay cheap (about 1 µs).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

__all__ = ["TOKEN_PREFIX", "new_token_secret", "token_digest"]

TOKEN_PREFIX: Final = "jq_"  # noqa: S105 (a marker, not a secret)
"""Marks a string as a jobq secret, so secret scanners and people recognise a leaked one."""


def new_token_secret() -> str:
    """A fresh secret: the prefix and 32 random bytes, URL-safe base64 (46 characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(secret: str) -> str:
    """The lowercase hex SHA-256 of the secret's UTF-8 bytes: what `auth.tokens` holds."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
