"""The bearer token jq-ctl sends: given directly (`--token`, JQ_CTL_TOKEN, `ctl.token`) or read
from a file (`--token-file`, JQ_CTL_TOKEN_FILE, `ctl.token_file`), which keeps it out of the
process list, the shell history and the environment of every child process.

Errors name the file, never its content: whatever is in it may be a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from jobq.ctl.errors import EXIT_USAGE, CtlError

if TYPE_CHECKING:
    from jobq.config import CtlSettings

BOTH_GIVEN = (
    "give a token (--token, JQ_CTL_TOKEN or ctl.token) or a token file (--token-file, "
    "JQ_CTL_TOKEN_FILE or ctl.token_file), not both"
)


def read_token_file(path: str) -> str:
    """The token in `path`, surrounding whitespace (a trailing newline) removed; a usage
    CtlError when the file cannot be read or holds no token."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CtlError(f"cannot read --token-file {path}: {reason}", EXIT_USAGE) from None
    except UnicodeDecodeError:
        raise CtlError(f"--token-file {path} is not UTF-8 text", EXIT_USAGE) from None
    token = text.strip()
    if not token:
        raise CtlError(f"--token-file {path} is empty", EXIT_USAGE)
    if any(char.isspace() for char in token):
        raise CtlError(
            f"--token-file {path} must hold the token alone (it has more than one word)",
            EXIT_USAGE,
        )
    return token


def bearer_token(ctl: CtlSettings) -> str:
    """The token to send ("" for none): `ctl.token`, or the content of `ctl.token_file`."""
    if ctl.token and ctl.token_file:
        raise CtlError(BOTH_GIVEN, EXIT_USAGE)
    if ctl.token_file:
        return read_token_file(ctl.token_file)
    return ctl.token
