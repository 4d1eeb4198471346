"""Who command jobs run as: worker.run_as_user, run_as_group and allow_root_jobs at start-up."""

from __future__ import annotations

import grp
import pwd

import pytest

from jobq.domain.errors import ConfigError
from jobq.worker.job_user import AS_WORKER, ROOT_REFUSAL, JobUser, resolve_job_user


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this system has no user 'nobody'")


def test_a_root_worker_without_a_job_user_refuses_command_jobs() -> None:
    user = resolve_job_user("", "", allow_root_jobs=False, euid=0, egid=0)
    assert user == JobUser(refusal=ROOT_REFUSAL)
    assert "worker.run_as_user" in user.refusal
    assert "worker.allow_root_jobs" in user.refusal


def test_allow_root_jobs_runs_them_as_the_root_worker_itself() -> None:
    assert resolve_job_user("", "", allow_root_jobs=True, euid=0, egid=0) == AS_WORKER


def test_a_worker_that_is_not_root_runs_them_as_itself() -> None:
    assert resolve_job_user("", "", allow_root_jobs=False, euid=1000, egid=1000) == AS_WORKER


def test_a_root_worker_switches_to_the_named_user_and_its_home(
    nobody: pwd.struct_passwd,
) -> None:
    expected = JobUser(
        uid=nobody.pw_uid, gid=nobody.pw_gid, name="nobody", home=nobody.pw_dir or "/"
    )
    assert resolve_job_user("nobody", "", allow_root_jobs=False, euid=0, egid=0) == expected
    by_id = resolve_job_user(str(nobody.pw_uid), "", allow_root_jobs=False, euid=0, egid=0)
    assert by_id == expected


def test_the_group_can_be_named_or_numbered(nobody: pwd.struct_passwd) -> None:
    group = grp.getgrgid(0)  # root's group exists everywhere
    for text in (group.gr_name, "0"):
        user = resolve_job_user("nobody", text, allow_root_jobs=False, euid=0, egid=0)
        assert (user.uid, user.gid) == (nobody.pw_uid, 0)


@pytest.mark.parametrize(
    ("user", "group", "setting"),
    [
        ("jobq-no-such-user", "", "worker.run_as_user"),
        ("4000000000", "", "worker.run_as_user"),
        ("nobody", "jobq-no-such-group", "worker.run_as_group"),
        ("", "nogroup", "worker.run_as_group"),
    ],
)
def test_unknown_users_and_groups_are_config_errors_naming_the_setting(
    nobody: pwd.struct_passwd, user: str, group: str, setting: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_job_user(user, group, allow_root_jobs=False, euid=0, egid=0)
    assert str(raised.value).startswith(setting)


def test_root_as_the_job_user_needs_allow_root_jobs() -> None:
    with pytest.raises(ConfigError, match=r"worker\.run_as_user is 'root'.*allow_root_jobs"):
        resolve_job_user("root", "", allow_root_jobs=False, euid=0, egid=0)
    user = resolve_job_user("root", "", allow_root_jobs=True, euid=0, egid=0)
    assert (user.uid, user.gid) == (0, 0)


def test_a_worker_that_is_not_root_cannot_switch_to_another_user(
    nobody: pwd.struct_passwd,
) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_job_user("nobody", "", allow_root_jobs=False, euid=12345, egid=12345)
    message = str(raised.value)
    assert message.startswith("worker.run_as_user is 'nobody'")
    assert "runs as uid 12345" in message
    assert "not root" in message


def test_naming_the_workers_own_user_is_no_switch(nobody: pwd.struct_passwd) -> None:
    user = resolve_job_user(
        "nobody", "", allow_root_jobs=False, euid=nobody.pw_uid, egid=nobody.pw_gid
    )
    assert user == AS_WORKER
    with pytest.raises(ConfigError, match="not root"):  # its own user, but another group
        resolve_job_user(
            "nobody", "0", allow_root_jobs=False, euid=nobody.pw_uid, egid=nobody.pw_gid
        )
