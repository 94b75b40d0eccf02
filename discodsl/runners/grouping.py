"""How a stage turns the previous stage's outputs into tasks, as Disco 0.5.4 does it.

Pure functions on plain data (``pipeline_utils:group_outputs``, spec
section 2). A task's group is ``(label, host)``; its inputs carry the label
the worker filters ``dir://`` indexes by, the string ``"all"`` for
``group_all`` and ``group_node`` tasks. The host of a URL is
:func:`discodsl.worker.urls.preferred_host`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from discodsl.worker.urls import preferred_host

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
class GroupInput:
    """One input of a task's group (its label and replica URLs), as an INPUT reply lists it."""

    label: Label
    urls: tuple[str, ...]


@dataclass(frozen=True)
class TaskGroup:
    """One task's group (``(label, host)``) and the inputs grouped into it."""

    group: tuple[int, str]
    inputs: tuple[GroupInput, ...]


def group_outputs(grouping: str, outputs: Sequence[Output], ran: bool = True) -> list[TaskGroup]:
    """The tasks a stage with ``grouping`` runs over ``outputs``, what the tasks of the
    stage before gave (or the job's inputs); ``ran``: that stage ran a task. As Disco
    groups its done tasks' outputs: after no task, no task; ``group_all`` after tasks that
    gave nothing is one task of no input (its hooks run, its function sees no record)."""
    if not ran:
        return []
    if grouping == "split":
        return _split(outputs)
    if grouping == "group_all":
        return [TaskGroup((0, ""), tuple(_input(o, "all") for o in outputs))]
    if grouping == "group_node":
        return [
            TaskGroup((0, host), tuple(_input(o, "all") for o in members))
            for host, members in _by_host(outputs).items()
        ]
    if grouping == "group_label":
        return [
            TaskGroup((label, ""), tuple(_input(o, label) for o in members))
            for label, members in _by_label(outputs).items()
        ]
    if grouping == "group_node_label":
        return [
            TaskGroup((label, host), tuple(_input(o, label) for o in members))
            for host, by_host in _by_host(outputs).items()
            for label, members in _by_label(by_host).items()
        ]
    raise ValueError(f"unknown grouping {grouping!r}")


def _split(outputs: Sequence[Output]) -> list[TaskGroup]:
    plans = []
    for output in outputs:
        if isinstance(output, DirOutput):
            for label, _ in output.labels:
                plans.append(TaskGroup((label, output.host), (GroupInput(label, (output.url,)),)))
        elif output.urls:
            plans.append(TaskGroup((output.label, output.host), (_input(output, output.label),)))
    return plans


def _input(output: Output, label: Label) -> GroupInput:
    if isinstance(output, DirOutput):
        return GroupInput(label, (output.url,))
    return GroupInput(output.label, output.urls)


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
