"""Running jobq's code as an unprivileged user (`nobody`) from tests that run as root.

The tests run as root (here and in CI); scenarios about a worker that is not root start it with
`user=`/`group=` of an existing unprivileged user, cwd `/`. That user must be able to execute a
Python of the test run's version and read jobq and its dependencies: the virtualenv's own
interpreter when it can (its base interpreter may live where only root can read, e.g. pyenv
under /root), else the system's interpreter of the same version with the virtualenv's
site-packages and jobq's source directory on PYTHONPATH (compiled extensions need the same
major.minor only). When neither works the test is skipped, saying why.
"""

from __future__ import annotations

import os
import pwd
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

import jobq

UNPRIVILEGED_USER = "nobody"
SOURCE_DIR = Path(jobq.__file__).resolve().parents[1]
_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
_PROBE = (
    "import sys, jobq.worker.cli, grpc, asyncpg; "
    f"assert '{{0.major}}.{{0.minor}}'.format(sys.version_info) == '{_VERSION}'"
)


@dataclass(frozen=True)
class UnprivilegedPython:
    """How to run Python code as `user`: the interpreter, and the environment it needs."""

    user: pwd.struct_passwd
    interpreter: str
    env: dict[str, str] = field(default_factory=dict)

    def popen_options(self) -> dict[str, Any]:
        """Keyword arguments for subprocess that run the child as this user, cwd /."""
        return {
            "user": self.user.pw_uid,
            "group": self.user.pw_gid,
            "extra_groups": [],
            "cwd": "/",
        }

    def environment(self, **extra: str) -> dict[str, str]:
        """A clean environment for the child (nothing of root's), plus `extra`."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.user.pw_dir or "/",
            "LANG": "C.UTF-8",
            **self.env,
            **extra,
        }


def unprivileged_python(user_name: str = UNPRIVILEGED_USER) -> UnprivilegedPython:
    """A Python that `user_name` can run with jobq importable; skips the test when there is none
    or when the tests do not run as root (they could not switch users)."""
    if os.geteuid() != 0:
        _unavailable("starting processes as another user needs root; the tests do not run as root")
    try:
        user = pwd.getpwnam(user_name)
    except KeyError:
        _unavailable(f"this system has no user {user_name!r}")
    site_packages = [path for path in site.getsitepackages() if Path(path).is_dir()]
    library_path = os.pathsep.join([str(SOURCE_DIR), *site_packages])
    candidates: list[tuple[str, dict[str, str]]] = [(sys.executable, {})]
    system = shutil.which(f"python{_VERSION}", path="/usr/local/bin:/usr/bin:/bin")
    if system is not None:
        candidates.append((system, {"PYTHONPATH": library_path}))
    problems = []
    for interpreter, env in candidates:
        candidate = UnprivilegedPython(user, interpreter, env)
        try:
            probe = subprocess.run(
                [interpreter, "-c", _PROBE],
                env=candidate.environment(),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                **candidate.popen_options(),
            )
        except OSError as exc:  # exec refused: the interpreter is out of the user's reach
            problems.append(f"{interpreter}: {exc.strerror or exc}")
            continue
        if probe.returncode == 0:
            return candidate
        problems.append(f"{interpreter}: {_last_line(probe.stderr)}")
    return _unavailable(
        f"user {user_name!r} cannot run a Python {_VERSION} that imports jobq and its "
        f"dependencies ({'; '.join(problems)}); make the project and its virtualenv readable "
        "by that user to run this test"
    )


def _unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; in CI (CI=true), where these tests must run, fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test, but {reason}")
    pytest.skip(reason)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
