"""`jq-ctl token create|hash`: make bearer tokens for jq-server, locally (no server is called).

`create` makes a secret and prints it once, with what the server's configuration needs: an
`auth.tokens` entry (name, scopes, SHA-256) and the compact `NAME:SCOPE+SCOPE:SHA256` form for
JQ_AUTH_TOKENS. The server never holds the secret. `hash` prints the SHA-256 of a secret made
elsewhere, read from stdin so that it stays out of the process list and the shell history.
"""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.text import Text

from jobq.ctl.context import PROG, CtlState
from jobq.ctl.errors import EXIT_USAGE, CtlError, one_line
from jobq.domain.scopes import SCOPE_NAMES
from jobq.domain.tokens import new_token_secret, token_digest

if TYPE_CHECKING:
    from jobq.config.settings import TokenEntry

app = typer.Typer(
    name="token",
    help="Make bearer tokens for jq-server's auth.tokens (locally: no server is called).",
    no_args_is_help=True,
)

WEAK_SECRET_CHARS = 32
"""Below this a secret may have been chosen by a person, and its plain SHA-256 can be searched."""

_HINTS = {"name": "NAME", "scopes": "--scopes", "sha256": "SHA-256"}


def token_entry(name: str, scopes: str, secret: str) -> TokenEntry:
    """The `auth.tokens` entry of `secret`, checked by the server's own rules; a usage error
    naming NAME or --scopes otherwise."""
    from pydantic import ValidationError  # here: `jq-ctl --help` need not load pydantic

    from jobq.config.settings import TokenEntry

    try:
        return TokenEntry.model_validate(
            {"name": name, "scopes": scopes, "sha256": token_digest(secret)}
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "name"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise typer.BadParameter(one_line(message), param_hint=_HINTS.get(field, field)) from None


def compact_entry(entry: TokenEntry) -> str:
    """`NAME:SCOPE+SCOPE:SHA256`, as JQ_AUTH_TOKENS takes it (entries separated by commas)."""
    return f"{entry.name}:{'+'.join(entry.scopes)}:{entry.sha256}"


def token_document(entry: TokenEntry, secret: str) -> dict[str, Any]:
    """What `token create -o json|yaml` prints: the secret and both forms of the entry."""
    return {
        "name": entry.name,
        "scopes": list(entry.scopes),
        "secret": secret,
        "sha256": entry.sha256,
        "auth_tokens_entry": {
            "name": entry.name,
            "scopes": list(entry.scopes),
            "sha256": entry.sha256,
        },
        "compact": compact_entry(entry),
    }


def token_text(entry: TokenEntry, secret: str) -> Text:
    """What `token create` prints for people."""
    listed = {"name": entry.name, "scopes": list(entry.scopes), "sha256": entry.sha256}
    config = yaml.safe_dump(
        {"auth": {"tokens": [listed]}}, sort_keys=False, default_flow_style=None
    ).rstrip("\n")
    return Text(
        f"token '{entry.name}' with scope(s) {', '.join(entry.scopes)}\n"
        "\n"
        "Secret, shown this once (jq-ctl keeps no copy; the server stores only its SHA-256):\n"
        f"  {secret}\n"
        "\n"
        "jq-server configuration (YAML):\n"
        + "\n".join(f"  {line}" for line in config.splitlines())
        + "\n\n"
        "or its environment (entries separated by commas):\n"
        f"  JQ_AUTH_TOKENS={compact_entry(entry)}\n"
        "\n"
        "Callers send the secret: jq-ctl with --token-file FILE or JQ_CTL_TOKEN, jq-worker with "
        "worker.token_file or JQ_WORKER_TOKEN."
    )


@app.command("create")
def create_token(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="The token's name, as logs and the audit trail show it (token:NAME): 1-64 of "
            "A-Z a-z 0-9 _ . @ -.",
            show_default=False,
        ),
    ],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            "-s",
            metavar="SCOPE,...",
            help=f"What the token may do, comma-separated: {', '.join(SCOPE_NAMES)}.",
            show_default=False,
        ),
    ],
) -> None:
    """Make a new token: print its secret once and the entry jq-server's auth.tokens needs.

    jq-ctl token create ci --scopes submit,read
    """
    secret = new_token_secret()
    entry = token_entry(name, scopes, secret)
    state = CtlState.of(ctx)
    state.printer.show(token_document(entry, secret), lambda: token_text(entry, secret))


def read_secret() -> str:
    """The secret from stdin: typed without echo on a terminal, else its first line."""
    if sys.stdin.isatty():
        text = getpass.getpass("secret: ", stream=sys.stderr)
    else:
        text = sys.stdin.readline()
    secret = text.strip()
    if not secret:
        raise CtlError("no secret on stdin (e.g. jq-ctl token hash < FILE)", EXIT_USAGE)
    if any(char.isspace() for char in secret):
        raise CtlError("the secret must be one word (no spaces inside)", EXIT_USAGE)
    return secret


@app.command("hash")
def hash_token(ctx: typer.Context) -> None:
    """Print the SHA-256 of a secret made elsewhere, read from stdin, for auth.tokens.

    jq-ctl token hash < ci.token
    """
    secret = read_secret()
    if len(secret) < WEAK_SECRET_CHARS:
        print(
            f"{PROG}: warning: a secret shorter than {WEAK_SECRET_CHARS} characters may be "
            "guessed from its SHA-256; 'jq-ctl token create' makes strong ones",
            file=sys.stderr,
        )
    digest = token_digest(secret)
    state = CtlState.of(ctx)
    state.printer.show({"sha256": digest}, lambda: Text(digest))
