"""`@jobq.task` functions keep their parameter types in `.delay()`, `.job()` and
`.options(...).delay()`: mypy refuses wrong arguments."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from jobq.task import registered_tasks

ROOT = Path(__file__).resolve().parents[3]

SAMPLE = textwrap.dedent(
    """
    import jobq

    @jobq.task(name="typing_sample_add")
    def add(a: int, b: int) -> int:
        return a + b

    add.delay(1, 2)
    add.options(queue="q", priority=3).delay(1, b=2)
    add.submit(1, 2, queue="q", delay=5)
    spec = add.job(1, 2)
    total: int = add(1, 2)
    add.delay(1, "two")  # line 13: wrong type
    add.job(1)  # line 14: missing argument
    add.options(queue=3)  # line 15: wrong option type
    """
)


def test_mypy_checks_task_arguments(tmp_path: Path) -> None:
    sample = tmp_path / "sample_tasks_typing.py"
    sample.write_text(SAMPLE)
    mypy = Path(sys.executable).with_name("mypy")
    done = subprocess.run(
        [str(mypy), "--strict", "--no-incremental", "--config-file", "/dev/null", str(sample)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    lines = sorted({int(line.split(":")[1]) for line in errors})
    assert lines == [13, 14, 15], done.stdout
    assert '"delay"' in done.stdout


def test_the_decorator_still_returns_the_function_with_submitters() -> None:
    import jobq

    def double(x: int) -> int:
        return 2 * x

    decorated = jobq.task(name="typing_test_double")(double)
    try:
        assert decorated is double
        assert decorated(4) == 8
        assert decorated.task_name == "typing_test_double"
        assert callable(decorated.delay)
        assert registered_tasks()["typing_test_double"] is double
    finally:
        from jobq.task import _lock, _registry

        with _lock:
            _registry.pop("typing_test_double", None)
