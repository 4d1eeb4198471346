"""`python -m jobq.config` prints the configuration reference (docs/configuration.md)."""

from __future__ import annotations

import sys

from jobq.config.loader import render_reference_markdown


def main() -> None:
    """Write the Markdown reference to standard output."""
    sys.stdout.write(render_reference_markdown())


if __name__ == "__main__":
    main()
