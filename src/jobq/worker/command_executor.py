"""Run a command payload as a child process: no shell, its own process group, bounded output.

Why it is shaped this way (SPEC §7):

- `exec` without a shell, so an argument such as `"$HOME; rm -rf /"` is one literal argv item.
- `start_new_session=True` puts the child and everything it forks into a process group of its
  own, so a timeout or a shutdown kills the whole job (`os.killpg`), not just its first process.
  When the first process exits, what is left of its group is killed too: a job's processes do
  not outlive the job (daemons that must survive have to `setsid` themselves).
- Nor do they outlive the worker: each job's process group is registered with the worker's job
  guardian (`job_guardian.py`) from its start until it has been killed, and the guardian kills
  what is registered when the worker dies, SIGKILL included. Unregistering comes only after the
  group's SIGKILL, so a group is never unguarded while it may still hold a process. Every job's
  environment also holds the guard's `JQ_JOB_GUARD=<marker>`, set last so a payload cannot
  remove it: a dying worker's guardian finds by it what no registration names (a job started
  just before the worker died, before its group was registered; a process that `setsid` took
  out of the job's group). So a daemon that must outlive its job survives the job's end and an
  orderly stop of the worker, but not the worker's death, unless it drops that variable.
- The child sees a minimal environment, PATH, HOME and LANG from the worker plus the payload's
  `env` (and the guard's marker), so the worker's secrets (database passwords, tokens) never
  reach job code.
- Output is read by an asyncio protocol as it arrives, so a chatty child never blocks on a full
  pipe; only the first `max_output_bytes` of stdout are kept (then the marker
  `b"\\n[truncated: N bytes dropped]"` is appended) and only the last bytes of stderr, which is
  where the reason for a failure usually is.
- Command jobs are opt-in: with `allowed_commands` empty every one is refused, `"*"` allows
  any executable. Other entries are executable names (argv[0] exactly that name, looked up on
  the worker's PATH, not the payload's) or absolute paths (argv[0] naming that file, compared
  as normalised paths without following symlinks, so one allowed applet of a multi-call binary
  does not allow them all). It restricts which program starts, not what it does: allowing
  `sh` or `python3` allows everything.
- The child runs as the `JobUser` decided at start-up (`job_user.py`): on a root worker, as
  `worker.run_as_user` with no supplementary groups and that user's HOME, or not at all.
- A cancel (issue 18) gets the same treatment as a timeout, with its own grace
  (`worker.cancel_grace_s`): SIGTERM to the group, SIGKILL to what is left after the grace.
- Progress: the child gets a pipe's write end as an extra file descriptor, named by
  `JOBQ_PROGRESS_FD` in its environment; each line written to it, `<fraction> [message]`
  (`0.42 resized 42 of 100`), is the job's progress (`progress_pipe.py`). A child that ignores
  it loses nothing; a child that starts its own children passes it on like any descriptor.
- A job that can never run here (command jobs off, a program not allowed, a root worker that
  may not run them) is a refusal (`ExecutionResult.refused`): dead-lettered at once, not
  retried. "command not found" is an ordinary failure: another worker may have the program.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Final, cast

from jobq.domain.payload import CommandSpec
from jobq.observability.logging_setup import get_logger
from jobq.running_job import CurrentJob
from jobq.worker.execution_result import ExecutionResult, refusal, timed_out_message
from jobq.worker.job_guardian import NO_GUARD, JobProcessGuard
from jobq.worker.job_user import JobUser
from jobq.worker.progress_pipe import PROGRESS_FD_ENV, ProgressPipe

__all__ = [
    "ANY_COMMAND",
    "COMMANDS_OFF",
    "DEFAULT_LANG",
    "DEFAULT_PATH",
    "STDERR_TAIL_BYTES",
    "CommandExecutor",
    "minimal_environment",
]

log = get_logger("jobq.worker.command")

DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
"""The child's PATH when the worker has none."""
DEFAULT_LANG: Final = "C.UTF-8"
"""The child's LANG when the worker has none."""
STDERR_TAIL_BYTES: Final = 2048
"""How much of the end of stderr goes into a failure's error_message."""
ANY_COMMAND: Final = "*"
"""The `worker.allowed_commands` entry that allows any executable."""
COMMANDS_OFF: Final = (
    "command jobs are not allowed on this worker: worker.allowed_commands is empty"
)
"""The refusal of every command job by a worker whose allow-list is empty (the default)."""

_PIPE_DRAIN_GRACE_S: Final = 1.0
"""After the group is gone, how long to wait for pipes still held by escaped processes."""
_REAP_LIMIT_S: Final = 10.0
"""Longest wait for a SIGKILLed child to be reaped (only a process stuck in the kernel lasts)."""


def minimal_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """PATH, HOME and LANG taken from `source` (default: this process), with defaults."""
    env = os.environ if source is None else source
    return {
        "PATH": env.get("PATH") or DEFAULT_PATH,
        "HOME": env.get("HOME") or _home_directory(),
        "LANG": env.get("LANG") or DEFAULT_LANG,
    }


class CommandExecutor:
    """Runs `CommandSpec`s. Job problems come back as failed `ExecutionResult`s, never raised."""

    def __init__(
        self,
        *,
        allowed_commands: Sequence[str],
        max_output_bytes: int,
        job_user: JobUser,
        kill_grace_s: float = 2.0,
        base_env: Mapping[str, str] | None = None,
        guard: JobProcessGuard = NO_GUARD,
        cancel_grace_s: float = 10.0,
    ) -> None:
        """`allowed_commands` is `worker.allowed_commands` (empty: refuse every command job;
        `"*"`: allow any); `job_user` says who children run as (`resolve_job_user`);
        `base_env` defaults to the minimal environment of this process, taken now;
        `kill_grace_s` is how long a timed-out group gets between SIGTERM and SIGKILL,
        `cancel_grace_s` the same for a cancelled one;
        `guard` is told each job's process group and marks each job's environment (the
        worker's `JobGuardian`)."""
        self._guard = guard
        if max_output_bytes <= 0:
            raise ValueError("max_output_bytes must be positive")
        listed = [entry for entry in allowed_commands if entry != ANY_COMMAND]
        self._allowed_names = frozenset(name for name in listed if "/" not in name)
        self._allowed_paths = frozenset(os.path.abspath(path) for path in listed if "/" in path)
        self._restricted = ANY_COMMAND not in allowed_commands
        # Checked before anything else: no command job can run on this worker at all.
        self._refusal = COMMANDS_OFF if not allowed_commands else job_user.refusal
        self._max_output_bytes = max_output_bytes
        self._kill_grace_s = kill_grace_s
        self._cancel_grace_s = cancel_grace_s
        self._base_env = minimal_environment(base_env)
        if job_user.home is not None:
            self._base_env["HOME"] = job_user.home
        # None unless the child switches users: then subprocess can start it with vfork;
        # to switch, it must fork (the child calls setgroups, setgid and setuid before exec).
        self._uid, self._gid = job_user.uid, job_user.gid
        self._extra_groups: list[int] | None = None if job_user.uid is None else []
        # A switched child would otherwise start in the worker's directory (often /root), which
        # its user may not read: it starts in its own home, or /, unless the payload says.
        self._default_cwd: str | None = None
        if job_user.uid is not None:
            home = job_user.home or ""
            self._default_cwd = home if home and os.path.isdir(home) else "/"

    async def run(
        self, spec: CommandSpec, timeout_s: float | None, *, job: CurrentJob | None = None
    ) -> ExecutionResult:
        """Run `spec` to completion, or until `timeout_s` (None: no limit) has passed, or
        until `job` is cancelled (then SIGTERM, and SIGKILL after the cancel grace).

        On cancellation of the task the process group is SIGKILLed and the child reaped before
        `CancelledError` propagates.
        """
        if self._refusal:
            return refusal(self._refusal)
        env = {**self._base_env, **spec.env}
        progress = ProgressPipe(job) if job is not None else None
        if progress is not None:
            env[PROGRESS_FD_ENV] = str(progress.child_fd)
        env.update(self._guard.job_environment)
        try:
            return await self._start(spec, env, timeout_s, job, progress)
        finally:
            if progress is not None:
                progress.close()

    async def _start(
        self,
        spec: CommandSpec,
        env: dict[str, str],
        timeout_s: float | None,
        job: CurrentJob | None,
        progress: ProgressPipe | None,
    ) -> ExecutionResult:
        executable = self._resolve(spec, env)
        if isinstance(executable, ExecutionResult):
            return executable
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _CaptureProtocol(loop, self._max_output_bytes),
                *spec.argv,
                executable=executable,
                stdin=subprocess.DEVNULL if spec.stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=spec.cwd if spec.cwd is not None else self._default_cwd,
                env=env,
                start_new_session=True,
                user=self._uid,
                group=self._gid,
                extra_groups=self._extra_groups,
                pass_fds=() if progress is None else (progress.child_fd,),
            )
        except OSError as exc:
            return _failure(_spawn_error(exc, spec))
        pid = transport.get_pid()
        self._guard.register(pid)  # the child leads its group: pgid == pid
        try:
            if progress is not None:
                await progress.started()
            return await self._supervise(spec, transport, protocol, timeout_s, job)
        finally:
            # _supervise has SIGKILLed the group, whichever way it ended.
            self._guard.unregister(pid)
            transport.close()

    async def _supervise(
        self,
        spec: CommandSpec,
        transport: asyncio.SubprocessTransport,
        protocol: _CaptureProtocol,
        timeout_s: float | None,
        job: CurrentJob | None,
    ) -> ExecutionResult:
        pid = transport.get_pid()
        cancel = _cancel_future(job)
        try:
            stdin = cast("asyncio.WriteTransport | None", transport.get_pipe_transport(0))
            if spec.stdin is not None and stdin is not None:
                stdin.write(spec.stdin)  # buffered by the transport, written as the child reads
                stdin.close()
            waiting: set[asyncio.Future[None]] = {protocol.exited}
            if cancel is not None:
                waiting.add(cancel)
            done, _ = await asyncio.wait(
                waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            timed_out = not done
            cancelled = cancel is not None and cancel in done and not protocol.exited.done()
            if timed_out or cancelled:
                if cancelled:
                    log.info("command cancelled", action="job.command_cancelled", pid=pid)
                else:
                    log.info("command timed out", action="job.command_timed_out", pid=pid)
                _signal_group(pid, signal.SIGTERM)
                grace = self._cancel_grace_s if cancelled else self._kill_grace_s
                await asyncio.wait({protocol.exited}, timeout=grace)
            # The leader is gone; whatever is left of its group goes with it.
            _signal_group(pid, signal.SIGKILL)
            await _wait_reaped(protocol)
            done, _ = await asyncio.wait({protocol.pipes_closed}, timeout=_PIPE_DRAIN_GRACE_S)
            if not done:
                log.warning(
                    "a process outside the job's group holds its output pipes; output cut short",
                    action="job.command_pipes_open",
                    pid=pid,
                )
        except BaseException:  # cancelled (shutdown, a lost worker), or a bug of ours
            _signal_group(pid, signal.SIGKILL)
            await _wait_reaped(protocol)
            raise
        finally:
            if job is not None:
                job.set_cancel_hook(None)
        if cancelled:
            return _cancelled_outcome(transport.get_returncode(), protocol)
        return _outcome(transport.get_returncode(), protocol, timeout_s if timed_out else None)

    def _resolve(self, spec: CommandSpec, env: Mapping[str, str]) -> str | ExecutionResult:
        """The file to exec for argv[0], or the failure saying why there is none."""
        name = spec.argv[0]
        # With an allow-list, names are looked up on the worker's PATH: a payload must not be
        # able to point PATH at another directory holding a program of an allowed name.
        search_path = self._base_env["PATH"] if self._restricted else env.get("PATH", "")
        if "/" in name:
            path: str | None = os.path.abspath(os.path.join(spec.cwd or os.getcwd(), name))
        else:
            path = shutil.which(name, path=search_path)
        if self._restricted and not self._is_allowed(name, path):
            return refusal(f"command not allowed: {name} (not in worker.allowed_commands)")
        if path is None:
            return _failure(f"command not found: {name}")
        return path

    def _is_allowed(self, name: str, path: str | None) -> bool:
        if "/" not in name and name in self._allowed_names:
            return True
        if path is None:
            return False
        allowed_paths = set(self._allowed_paths)
        for allowed_name in self._allowed_names:
            found = shutil.which(allowed_name, path=self._base_env["PATH"])
            if found is not None:
                allowed_paths.add(os.path.abspath(found))
        return os.path.abspath(path) in allowed_paths


class _HeadBuffer:
    """Keeps the first `limit` bytes written and counts the rest."""

    def __init__(self, limit: int) -> None:
        self._data = bytearray()
        self._limit = limit
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self._limit - len(self._data)
        if room > 0:
            self._data += data[:room]
        self.dropped += max(0, len(data) - room)

    def value(self) -> bytes:
        if not self.dropped:
            return bytes(self._data)
        return bytes(self._data) + b"\n[truncated: %d bytes dropped]" % self.dropped


class _TailBuffer:
    """Keeps the last `limit` bytes written and counts the ones pushed out."""

    def __init__(self, limit: int) -> None:
        self._data = bytearray()
        self._limit = limit
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        self._data += data
        excess = len(self._data) - self._limit
        if excess > 0:
            del self._data[:excess]
            self.dropped += excess

    def text(self) -> str:
        text = self._data.decode("utf-8", errors="replace").strip()
        return "…" + text if self.dropped and text else text


class _CaptureProtocol(asyncio.SubprocessProtocol):
    """Collects stdout and stderr as they arrive and signals exit and end of output."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_output_bytes: int) -> None:
        self.stdout = _HeadBuffer(max_output_bytes)
        self.stderr = _TailBuffer(min(max_output_bytes, STDERR_TAIL_BYTES))
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open_pipes = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        (self.stdout if fd == 1 else self.stderr).feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open_pipes.discard(fd)
        if not self._open_pipes and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _outcome(
    returncode: int | None, protocol: _CaptureProtocol, timed_out_after: float | None
) -> ExecutionResult:
    stdout = protocol.stdout.value()
    stderr = protocol.stderr.text()
    if timed_out_after is not None:
        status = timed_out_message(timed_out_after)
    elif returncode == 0:
        return ExecutionResult(success=True, result=stdout)
    elif returncode is None:
        status = "exit status unknown"
    elif returncode < 0:
        status = f"killed by signal {_signal_name(-returncode)}"
    else:
        status = f"exit status {returncode}"
    message = f"{status}; stderr: {stderr}" if stderr else status
    return ExecutionResult(success=False, result=stdout, error_message=message)


def _cancel_future(job: CurrentJob | None) -> asyncio.Future[None] | None:
    """A future the job's cancel resolves (already resolved if it came before the spawn)."""
    if job is None:
        return None
    cancel: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def cancelled() -> None:
        if not cancel.done():
            cancel.set_result(None)

    job.set_cancel_hook(cancelled)
    if job.cancelled:
        cancelled()
    return cancel


def _cancelled_outcome(returncode: int | None, protocol: _CaptureProtocol) -> ExecutionResult:
    """A command stopped by a cancel: how its group ended, and its output so far."""
    if returncode is not None and returncode < 0:
        how = f"stopped by {_signal_name(-returncode)}"
    else:
        how = f"exited with status {returncode} after SIGTERM"
    return ExecutionResult(success=False, result=protocol.stdout.value(), error_message=how)


def _spawn_error(exc: OSError, spec: CommandSpec) -> str:
    name = spec.argv[0]
    if spec.cwd is not None and exc.filename == spec.cwd:
        if isinstance(exc, FileNotFoundError):
            return f"working directory not found: {spec.cwd}"
        return f"working directory not usable: {spec.cwd} ({exc.strerror or exc})"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {name}"
    if isinstance(exc, PermissionError):
        return f"command not executable: {name} (permission denied)"
    return f"cannot start command {name}: {exc.strerror or exc}"


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    """Signal the job's process group; it may be gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _wait_reaped(protocol: _CaptureProtocol) -> None:
    """Wait until the SIGKILLed leader has been reaped, even through a cancellation (which is
    re-raised afterwards), but not forever: a process stuck in the kernel is left to the
    child watcher."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _REAP_LIMIT_S
    cancelled = False
    while not protocol.exited.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("a killed command has not exited", action="job.command_unreaped")
            break
        try:
            await asyncio.wait({protocol.exited}, timeout=remaining)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"{number}"


def _failure(message: str) -> ExecutionResult:
    return ExecutionResult(success=False, error_message=message)


def _home_directory() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir or "/"
    except KeyError:
        return "/"
