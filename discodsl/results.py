"""A job's results: iterate ``(key, value)`` records, or pass them as inputs of another job.

Lazy: iterating streams the record files (from local disk, or over HTTP from
a cluster) through the worker runtime's own readers; nothing is loaded whole.
"""

from __future__ import annotations

import html
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from discodsl.errors import JobError
from discodsl.worker import urls
from discodsl.worker.inputs import Cursor, Node, iter_input, read_index


class Results:
    """The results of one run of a job."""

    def __init__(
        self,
        jobname: str,
        urls: list[list[str]],
        *,
        node: Node,
        mode: str,
        counters: dict[str, int] | None = None,
        cleanup: Callable[[], None] | None = None,
    ):
        self.jobname = jobname
        self.urls = urls
        self.node = node
        self.mode = mode
        self.counters = dict(counters or {})
        self._finalizer = weakref.finalize(self, cleanup) if cleanup else None
        self.closed = False

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        self._check_open()
        for replicas in self.urls:
            yield from iter_input(replicas, "all", self.node, Cursor())

    def record_urls(self) -> list[list[str]]:
        """The record files of these results, each a replica list: inputs for another job.

        Files on this machine (a local run's) are given as ``file://`` URLs, so
        any runner here can read them, whichever runner wrote them.
        """
        self._check_open()
        expanded: list[list[str]] = []
        for replicas in self.urls:
            if replicas and urls.is_index(replicas[0]):
                expanded.extend([url] for _, url, _ in read_index(replicas[0], self.node))
            else:
                expanded.append(list(replicas))
        return [[self._here(url) for url in replicas] for replicas in expanded]

    def _here(self, url: str) -> str:
        """A ``disco://`` URL as any runner on this machine can read it: a ``file://`` URL
        for a file of this machine's local node, else the node's HTTP URL (as Disco's own
        client reads results, at ``DISCO_PORT``)."""
        node = self.node
        return urls.readable_here(url, node.host, node.disco_port, node.disco_data)

    def _check_open(self) -> None:
        if self.closed:
            raise JobError(
                f"the results of {self.jobname!r} were closed, which removed their files: "
                "read them before close() (or the end of their `with` block), or run the "
                "job again"
            )

    def to_dict(self) -> dict[Any, Any]:
        """All records as a dict (a later value of a repeated key wins)."""
        return dict(self)

    def close(self) -> None:
        """Remove the files behind these results (local runs); iterating afterwards fails."""
        self.closed = True
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        counters = f", counters {self.counters}" if self.counters else ""
        return (
            f"<Results of {self.jobname!r} ({self.mode}): {len(self.urls)} result file(s)"
            f"{counters}>"
        )

    def _repr_html_(self) -> str:
        counters = "".join(
            f"<li><code>{html.escape(k)}</code>: {v}</li>" for k, v in sorted(self.counters.items())
        )
        return (
            f"<b>Results of <code>{html.escape(self.jobname)}</code></b> ({self.mode}), "
            f"{len(self.urls)} result file(s)" + (f"<ul>{counters}</ul>" if counters else "")
        )
