"""Job inputs that are ``dir://`` indexes (an earlier run's outputs), expanded into their files.

A run's results are ``dir://`` URLs, one index per task, each listing that
task's files under their partitions' labels. A job's own inputs all have
label 0 (a version 2 jobpack labels nothing else), and a worker reads an index
under its task's label only, so an index given as a job input would yield
partition 0 alone. Disco's own client expands ``dir://`` job inputs into every
file they list before it submits (``util.inputlist``); :func:`expand` does
the same, reading each index as a client reads results: a local run's from
this process's local node, a cluster's over HTTP at ``DISCO_PORT``.

:class:`~discodsl.results.Results` lists its record files the same way
(``record_urls``). Not here: reading the index
(:func:`discodsl.worker.inputs.read_index`), the outputs passed between a job's
own stages (their labels count).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace

from discodsl.worker import urls
from discodsl.worker.errors import DataError
from discodsl.worker.inputs import listed_twice, read_index
from discodsl.worker.opening import Node
from discodsl.worker.spec import JobSpec

# A URL an index lists (``disco://HOST/...``) as the job reading it gets it.
Form = Callable[[str, Node], str]
# Files that indexes listed, by URL as the job gets them: the size each index gave, and what
# gave it ("the index dir://...").
Listed = dict[str, tuple[int, str]]


def readable_here(url: str, node: Node) -> str:
    """A listed file as a worker on this machine reads it: ``file://`` on this machine's
    local node, else over HTTP."""
    return urls.readable_here(url, node.host, node.disco_port, node.disco_data)


def expand(
    inputs: list[list[str]],
    node_of: Callable[[str], Node],
    form: Form,
    listed: Listed | None = None,
) -> list[list[str]]:
    """``inputs`` with each ``dir://`` replica list replaced by the files its index lists,
    all labels, in order (one replica list each), as ``form`` gives them; ``node_of(host)``
    is the node an index of ``host`` is read through. Each file goes into ``listed`` too,
    with the size its index gave and that index (for the job's tasks to check)."""
    expanded: list[list[str]] = []
    for replicas in inputs:
        if not (replicas and all(urls.is_index(url) for url in replicas)):
            expanded.append(replicas)
            continue
        index, node, entries = _first_readable(replicas, node_of)
        seen: set[str] = set()
        for _, url, size in entries:
            if url in seen:  # read twice, its records would count twice
                raise listed_twice(index, url, "all")
            seen.add(url)
            file = form(url, node)
            expanded.append([file])
            if listed is not None:
                listed[file] = (size, f"the index {index}")
    return expanded


def _first_readable(
    replicas: list[str], node_of: Callable[[str], Node]
) -> tuple[str, Node, list[tuple[int, str, int]]]:
    """The first replica of an index that can be read, its node and its entries."""
    for url in replicas[:-1]:
        with suppress(DataError):
            return url, *_read(url, node_of)
    return replicas[-1], *_read(replicas[-1], node_of)


def _read(url: str, node_of: Callable[[str], Node]) -> tuple[Node, list[tuple[int, str, int]]]:
    host = urls.split_host(urls.split(url)[1])[0]
    node = node_of(host)
    try:
        return node, read_index(url, node)
    except DataError as exc:
        job = _JOB_OF_INDEX.search(url)
        if job is None or not (exc.status == 404 or isinstance(exc.__cause__, FileNotFoundError)):
            raise
        asked = f"{host}:{node.disco_port}" if exc.status == 404 else None
        raise _gone(url, job.group(1), asked) from exc


def _gone(url: str, job: str, asked: str | None) -> DataError:
    """The error for the index ``url`` of ``job`` that its node has not: a purged job's,
    or (``asked`` over HTTP, at that host and port) one of a job that ran on another master
    than the one asked."""
    if asked is None:
        return DataError(
            f"{url}: the index of job {job!r}'s outputs is gone (its node has it no more): if "
            "that job was purged, its results went with it: run it again",
            url=url,
        )
    return DataError(
        f"{url}: the index of job {job!r}'s outputs is not on its node (asked at "
        f"{asked}, the port of this run's master, which answered 404): "
        "if that job was purged, its results went with it: run it again; if it ran on "
        "another master than this run's, run this one there (master=, or DISCO_MASTER and "
        "DISCO_PORT)",
        url=url,
    )


def listing(spec: JobSpec, listed: Listed, inputs: list[list[str]]) -> JobSpec:
    """``spec`` telling its tasks the sizes of the files among ``inputs`` that ``listed``
    has (a file of another size is not the one its task wrote: ``worker.inputs``)."""
    given = {url for replicas in inputs for url in replicas}
    found = {url: listed[url] for url in given if url in listed}
    return replace(spec, listed={**spec.listed, **found}) if found else spec


# A job's name in the path of an index of its outputs: .../JOB/.disco/STAGE-TASK-TIME.results
_JOB_OF_INDEX = re.compile(r"/([^/]+@[^/]+)/\.disco/[^/]+$")
