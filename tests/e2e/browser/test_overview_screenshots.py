"""`make screenshots` (tools/screenshots.py): it starts its own jq-server on a fresh embedded
PostgreSQL and a jq-worker, fills them with demo jobs, and leaves a 1280x800 PNG of every
dashboard page in --out."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (which must come first)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR", f"{path}: no IHDR first"
    assert length == 13, f"{path}: a bad IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.endswith(b"IEND\xaeB`\x82"), f"{path} is truncated"
    return width, height


def test_the_screenshots_command_saves_every_page(tmp_path: Path) -> None:
    out = tmp_path / "shots"
    env = {k: v for k, v in os.environ.items() if k != "JQ_DB_DSN"}
    finished = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "screenshots.py"),
            "--out",
            str(out),
            "--chart-samples",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["job.png", "jobs.png", "overview.png", "queues.png", "workers.png"]
    for name in names:
        assert png_size(out / name) == (1280, 800), name
        assert (out / name).stat().st_size > 5_000, name  # a page, not a blank image
    assert finished.stdout.split() == [
        str(out / n) for n in ["overview.png", "queues.png", "jobs.png", "job.png", "workers.png"]
    ]
