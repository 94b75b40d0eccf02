"""A job's env= at the edges of what a process environment holds, on each runner."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from discodsl import TaskFailed
from tests import replay_jobs

NAME = "DISCODSL_TEST_ENV_EDGE"


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_the_longest_env_value_linux_starts_a_process_with_reaches_the_tasks(mode: str) -> None:
    """NAME=value and its NUL in 128 KiB: the most an exec takes (one more byte is refused
    when the job is declared, see test_decorators)."""
    value = "y" * (128 * 1024 - len(NAME) - 2)
    got = replay_jobs.env_job.run(inputs=[f"raw://{NAME}"], mode=mode, env={NAME: value})
    assert list(got) == [(NAME, value)]


def test_an_environment_too_big_to_start_a_worker_fails_the_task_once_saying_so() -> None:
    """Each value fits, but not all of them (ARG_MAX): the worker start's E2BIG was taken for
    a failed attempt and tried four times over, naming only the launcher."""
    env = {f"{NAME}_{i}": "y" * 120_000 for i in range(40)}  # 4.8 MB, past Linux's 2 MB
    with pytest.raises(TaskFailed) as info:
        replay_jobs.env_job.run(inputs=[f"raw://{NAME}_0"], mode="local", env=env)
    message = str(info.value)
    assert "attempts" not in message  # one attempt: no "after 4 attempts"
    assert "environment (this process's, with the job's env=) is too big" in message
    assert "make env= smaller" in message


class _Refusing(os._Environ):  # type: ignore[type-arg]
    """os.environ, but refusing one name, as it refuses what it cannot encode."""

    def __init__(self, real: Any, refused: str) -> None:
        self.__dict__.update(real.__dict__)
        self.refused = refused

    def __setitem__(self, key: str, value: str) -> None:
        if key == self.refused:
            raise ValueError(f"cannot set {key}")
        super().__setitem__(key, value)


@pytest.fixture
def refusing_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    refused = f"{NAME}_REFUSED"
    monkeypatch.setattr(os, "environ", _Refusing(os.environ, refused))
    yield refused


def test_an_inline_env_that_cannot_be_set_is_let_go_of(refusing_environ: str) -> None:
    """A name os.environ refused left the run's claim on every name it had set, and their
    values in the process: every later inline run setting one of them was refused."""
    first = f"{NAME}_FIRST"
    env = {first: "left", refusing_environ: "x"}
    with pytest.raises(ValueError, match="cannot set"):
        replay_jobs.env_job.run(inputs=[f"raw://{first}"], mode="inline", env=env)
    assert first not in os.environ
    got = replay_jobs.env_job.run(inputs=[f"raw://{first}"], mode="inline", env={first: "again"})
    assert list(got) == [(first, "again")]
    assert first not in os.environ


@pytest.mark.parametrize("named", [{}, {"DISCODSL_PYTHON": sys.executable}])
@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_a_task_is_not_given_the_python_its_launcher_ran(
    named: dict[str, str], mode: str, request: pytest.FixtureRequest
) -> None:
    """The launcher's variables stayed in a local task's environment: a discodsl program the
    stage started under another Python ran its own local workers on this one (probe EC S1).
    A node's task is given none either, whether the job's env= named one or not."""
    if mode == "cluster":
        request.getfixturevalue("cluster_env")
    names = ["DISCODSL_PYTHON", "DISCODSL_PYTHON_FLAGS"]
    got = replay_jobs.env_job.run(inputs=[f"raw://{n}" for n in names], mode=mode, env=named)
    assert dict(got) == dict.fromkeys(names)
