"""Who a worker's command jobs run as: `worker.run_as_user`, `run_as_group`, `allow_root_jobs`.

Decided once, at start-up, so a mistake (an unknown user, a switch only root could make) stops
the worker before it takes a job, and each job pays nothing but the switch itself:

- a worker running as root runs command jobs as `run_as_user` (and `run_as_group`, else that
  user's primary group, with no supplementary groups) and HOME set to that user's home;
- without `run_as_user` it refuses them, unless `allow_root_jobs` says root jobs are wanted:
  a command job running as root can read everything the worker can, its secrets included;
- a worker running as another user runs them as itself (only root can switch users), so a
  `run_as_user` naming someone else is a configuration error rather than a silent no-op.

Python handlers are not affected: they run inside the worker, trusted by `--import`.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import Final

from jobq.domain.errors import ConfigError
from jobq.domain.records import record

__all__ = ["AS_WORKER", "JobUser", "resolve_job_user"]


@record
class JobUser:
    """Who command jobs run as. The defaults mean: as the worker itself."""

    uid: int | None = None
    """The user the child switches to before exec; None: stay the worker's user."""
    gid: int | None = None
    """The group the child switches to (set with `uid`)."""
    name: str = ""
    """The user's name, for logs."""
    home: str | None = None
    """The child's HOME; None: the worker's."""
    refusal: str = ""
    """Non-empty: every command job is refused with this text."""


AS_WORKER: Final = JobUser()
"""Command jobs run as the worker's own user, no switch, no refusal."""

ROOT_REFUSAL: Final = (
    "command jobs are refused on this worker: jq-worker runs as root and worker.run_as_user "
    "is not set (set worker.run_as_user, or worker.allow_root_jobs: true to run them as root)"
)


def resolve_job_user(
    run_as_user: str,
    run_as_group: str,
    *,
    allow_root_jobs: bool,
    euid: int | None = None,
    egid: int | None = None,
) -> JobUser:
    """Who command jobs run as, for a worker running as `euid`/`egid` (default: this process).

    Raises:
        ConfigError: an unknown user or group, a group without a user, root named without
            `allow_root_jobs`, or a switch to another user by a worker that is not root.
    """
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    user_text, group_text = run_as_user.strip(), run_as_group.strip()
    if group_text and not user_text:
        raise ConfigError(
            "worker.run_as_group is set but worker.run_as_user is not: set the user too "
            "(the group applies to the user command jobs run as)"
        )
    if not user_text:
        if euid == 0 and not allow_root_jobs:
            return JobUser(refusal=ROOT_REFUSAL)
        return AS_WORKER
    user = _user(user_text)
    gid = _group(group_text) if group_text else user.pw_gid
    if user.pw_uid == 0 and not allow_root_jobs:
        raise ConfigError(
            f"worker.run_as_user is {user_text!r}, which is root: command jobs would run as "
            "root; name an unprivileged user, or set worker.allow_root_jobs: true"
        )
    if euid != 0:
        if user.pw_uid == euid and gid == egid:
            return AS_WORKER  # already that user: nothing to switch
        raise ConfigError(
            f"worker.run_as_user is {user_text!r} (uid {user.pw_uid}, gid {gid}), but jq-worker "
            f"runs as uid {euid} (gid {egid}), not root, and only root can run jobs as another "
            "user: start jq-worker as root or as that user, or leave worker.run_as_user and "
            "worker.run_as_group empty"
        )
    return JobUser(uid=user.pw_uid, gid=gid, name=user.pw_name, home=user.pw_dir or "/")


def _user(text: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
    except (KeyError, OverflowError):
        raise ConfigError(f"worker.run_as_user: no such user {text!r}") from None


def _group(text: str) -> int:
    try:
        return (grp.getgrgid(int(text)) if text.isdigit() else grp.getgrnam(text)).gr_gid
    except (KeyError, OverflowError):
        raise ConfigError(f"worker.run_as_group: no such group {text!r}") from None
