"""How a stage turns the previous stage's outputs into tasks, as Disco 0.5.4 does it.

Pure functions on plain data (``pipeline_utils:group_outputs``, spec
section 2). A task's group is ``(label, host)``; its inputs carry the label
the worker filters ``dir://`` indexes by, the string ``"all"`` for
``group_all`` and ``group_node`` tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Label = int | str


@dataclass(frozen=True)
class DataOutput:
    """A job input, or a task output with a scheme: one label, replica URLs."""

    label: int
    size: int
    urls: tuple[str, ...]

    @property
    def host(self) -> str:
        return preferred_host(self.urls[0]) if self.urls else ""


@dataclass(frozen=True)
class DirOutput:
    """A task's index of local outputs: one ``dir://`` URL holding several labels."""

    url: str
    labels: tuple[tuple[int, int], ...]

    @property
    def host(self) -> str:
        return preferred_host(self.url)


Output = DataOutput | DirOutput


@dataclass(frozen=True)
class TaskInput:
    """One input of a task, as an INPUT reply lists it."""

    label: Label
    urls: tuple[str, ...]


@dataclass(frozen=True)
class TaskPlan:
    """One task to run: its group and its inputs."""

    group: tuple[int, str]
    inputs: tuple[TaskInput, ...]


def preferred_host(url: str) -> str:
    """The host part of ``scheme://HOST/...`` (for ``raw://abc``: ``abc``), as Disco takes it."""
    _, sep, rest = url.partition("://")
    if not sep:
        return ""
    host = rest.split("/", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def group_outputs(grouping: str, outputs: Sequence[Output]) -> list[TaskPlan]:
    """The tasks a stage with ``grouping`` runs over ``outputs``."""
    if grouping == "split":
        return _split(outputs)
    if grouping == "group_all":
        return [TaskPlan((0, ""), tuple(_input(o, "all") for o in outputs))] if outputs else []
    if grouping == "group_node":
        return [
            TaskPlan((0, host), tuple(_input(o, "all") for o in members))
            for host, members in _by_host(outputs).items()
        ]
    if grouping == "group_label":
        return [
            TaskPlan((label, ""), tuple(_input(o, label) for o in members))
            for label, members in _by_label(outputs).items()
        ]
    if grouping == "group_node_label":
        return [
            TaskPlan((label, host), tuple(_input(o, label) for o in members))
            for host, by_host in _by_host(outputs).items()
            for label, members in _by_label(by_host).items()
        ]
    raise ValueError(f"unknown grouping {grouping!r}")


def _split(outputs: Sequence[Output]) -> list[TaskPlan]:
    plans = []
    for output in outputs:
        if isinstance(output, DirOutput):
            for label, _ in output.labels:
                plans.append(TaskPlan((label, output.host), (TaskInput(label, (output.url,)),)))
        elif output.urls:
            plans.append(TaskPlan((output.label, output.host), (_input(output, output.label),)))
    return plans


def _input(output: Output, label: Label) -> TaskInput:
    if isinstance(output, DirOutput):
        return TaskInput(label, (output.url,))
    return TaskInput(output.label, output.urls)


def _labels(output: Output) -> list[int]:
    if isinstance(output, DirOutput):
        return [label for label, _ in output.labels]
    return [output.label]


def _by_label(outputs: Sequence[Output]) -> dict[int, list[Output]]:
    groups: dict[int, list[Output]] = {}
    for output in outputs:
        for label in _labels(output):
            groups.setdefault(label, []).append(output)
    return dict(sorted(groups.items()))


def _by_host(outputs: Sequence[Output]) -> dict[str, list[Output]]:
    groups: dict[str, list[Output]] = {}
    for output in outputs:
        groups.setdefault(output.host, []).append(output)
    return groups
