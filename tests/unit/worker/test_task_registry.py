"""The `@task` decorator and its registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from jobq.task import clear_registry, registered_tasks, task


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    """Each test starts with no tasks; the tasks other modules registered come back after."""
    saved = dict(registered_tasks())
    clear_registry()
    yield
    clear_registry()
    for name, function in saved.items():
        task(name=name)(function)


def test_bare_task_registers_the_qualified_and_the_bare_name() -> None:
    @task
    def resize(width: int) -> int:
        return width // 2

    assert dict(registered_tasks()) == {
        f"{__name__}:test_bare_task_registers_the_qualified_and_the_bare_name.<locals>.resize": (
            resize
        ),
        "resize": resize,
    }
    assert resize(10) == 5  # still an ordinary function


def test_a_custom_name_is_the_only_name() -> None:
    @task(name="send_email")
    async def send(to: str) -> str:
        return to

    assert dict(registered_tasks()) == {"send_email": send}


def test_task_with_parentheses_and_no_name_behaves_like_bare_task() -> None:
    @task()
    def noop() -> None:
        return None

    assert registered_tasks()["noop"] is noop


def test_a_name_taken_by_another_function_raises_at_decoration() -> None:
    @task(name="send_email")
    def first() -> None:
        return None

    def second() -> None:
        return None

    with pytest.raises(ValueError, match="'send_email' is already registered"):
        task(name="send_email")(second)
    assert registered_tasks()["send_email"] is first


def test_a_bare_name_clash_raises_and_registers_nothing() -> None:
    def make(label: str) -> Any:
        def handler() -> str:
            return label

        return handler

    task(make("one"))
    with pytest.raises(ValueError, match="already registered"):
        task(make("two"))
    assert len(registered_tasks()) == 2  # the first function's two names only


def test_registering_the_same_function_again_is_harmless() -> None:
    def ping() -> str:
        return "pong"

    task(ping)
    task(ping)
    assert registered_tasks()["ping"] is ping


@pytest.mark.parametrize("name", ["", "x" * 513])
def test_names_must_be_non_empty_and_bounded(name: str) -> None:
    with pytest.raises(ValueError, match="task name"):
        task(name=name)


def test_only_callables_can_be_tasks() -> None:
    with pytest.raises(TypeError, match="needs a function"):
        task(name="x")(42)  # type: ignore[type-var]


def test_the_registry_view_is_read_only_and_clearable() -> None:
    @task(name="one")
    def one() -> int:
        return 1

    view = registered_tasks()
    with pytest.raises(TypeError):
        view["two"] = one  # type: ignore[index]
    clear_registry()
    assert len(view) == 0
