"""Every URL form discodsl uses, as Disco 0.5.4 writes them: pure functions on strings.

- ``SCHEME://REST`` and plain paths (scheme ``""``): :func:`split`;
  ``HOST/PATH`` after the scheme: :func:`split_host`; the host a task on a
  URL is placed near: :func:`preferred_host` (``pipeline_utils``).
- ``raw://DATA``: the data is the rest of the URL.
- ``file://PATH[#range=START-END]``: :func:`file_url`, :func:`file_path`,
  :func:`file_target`, :func:`with_range` (a line-aligned chunk of a text file).
- ``disco://HOST/disco/...`` and ``disco://HOST/ddfs/...``: on the node
  ``HOST`` itself, files below its ``disco_data`` and ``ddfs_data``
  (:func:`node_path`, spec section 4); elsewhere served at
  ``http://HOST:DISCO_PORT/...`` (:func:`http_url`, :func:`served_path`,
  :func:`readable_here`).
- ``dir://HOST/disco/...``: an index of a task's outputs (:func:`is_index`);
  :func:`job_url` builds both from a path below a job's home.
- ``tag://NAME`` (or ``tag://HOST/NAME``): a DDFS tag (:func:`tag_name`).

Standard library only: it ships to the nodes. What it does not do: open
or fetch anything (:mod:`discodsl.worker.inputs` does), validate tag names
or resolve tags (:mod:`discodsl.ddfs` does).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit

RAW: Final = "raw://"
TAG: Final = "tag://"
INDEX: Final = "dir://"
# The schemes a job's inputs may have (spec: "Inputs: URL schemes a worker must read");
# a tag:// is resolved to its blobs by the runner (through a master) before the job starts.
SCHEMES: Final = frozenset({"raw", "http", "https", "disco", "dir", "tag", "file"})
# The top directories of a node's URL paths, and the TASK reply fields naming their roots.
NODE_ROOTS: Final = {"disco": "disco_data", "ddfs": "ddfs_data"}
_RANGE: Final = re.compile(r"range=([0-9]+)-([0-9]+)")


def split(url: str) -> tuple[str, str]:
    """``(scheme, rest)`` of ``url``, the scheme lowercased; a plain path has the scheme ``""``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", url
    return scheme.lower(), rest


def split_host(rest: str) -> tuple[str, str]:
    """``HOST/PATH`` (what follows ``SCHEME://``) as ``(HOST, PATH)``."""
    host, _, path = rest.partition("/")
    return host, path


def preferred_host(url: str) -> str:
    """The host part of ``scheme://HOST/...`` (for ``raw://abc``: ``abc``), as Disco takes it."""
    if "://" not in url:
        return ""
    return host_name(split_host(split(url)[1])[0])


def file_url(path: str) -> str:
    """The absolute, percent-encoded ``file://`` URL of a local path."""
    return _as_uri(os.path.realpath(path))


def _as_uri(path: str) -> str:
    """``pathlib.Path(path).as_uri()`` of an absolute, normalised path, but for the ``@`` and
    ``:`` of a Disco job's name, kept as they are (Disco's own reader takes a ``file://``
    URL's path as it is). Not pathlib itself: a Disco node starts a worker per task, and
    importing pathlib costs it about 5 ms."""
    if not os.path.isabs(path):
        raise ValueError(f"a relative path has no file:// URL: {path!r}")
    return "file://" + quote_from_bytes(os.fsencode(path), safe="/@:")


def file_path(url: str) -> str | None:
    """The local file behind a ``file://`` URL of a whole file (no range), else None (any
    other URL, whatever it holds: a ``raw://`` one's data is no URL to parse)."""
    scheme, rest = split(url)
    if scheme != "file" or "#" in rest:
        return None
    _, _, path = rest.partition("/")  # file:///PATH, or file://HOST/PATH
    return _unquoted_path("/" + path)


def file_target(rest: str) -> tuple[str, tuple[int, int] | None]:
    """The path and byte range of ``file://REST``; ValueError for an unknown fragment."""
    quoted, _, fragment = rest.partition("#")
    path = _unquoted_path(quoted)
    if not fragment:
        return path, None
    match = _RANGE.fullmatch(fragment)
    if match is None:
        raise ValueError(f"unknown fragment #{fragment}: the only one is #range=START-END")
    start, end = int(match[1]), int(match[2])
    if start > end:
        raise ValueError(f"#{fragment} ends before it starts: give #range=START-END, START <= END")
    if end > _LARGEST_OFFSET:
        raise ValueError(f"#{fragment} is past any file's size: give byte offsets of the file")
    return path, (start, end)


_LARGEST_OFFSET = 2**63 - 1  # the largest offset a file has (off_t)


def _unquoted_path(quoted: str) -> str:
    """A ``file://`` URL's percent-encoded path as a path: its bytes, decoded as this
    process's file system does (``os.fsdecode``: UTF-8, or under a C locale ASCII, each
    other byte kept), the inverse of :func:`file_url`."""
    return os.fsdecode(unquote_to_bytes(quoted))


def with_range(url: str, start: int, end: int) -> str:
    """The chunk of the text file at ``url`` whose lines start in ``[start, end)``."""
    return f"{url}#range={start}-{end}"


def node_path(path: str, roots: Mapping[str, str]) -> str:
    """The file behind a node's URL path ``disco/REST`` or ``ddfs/REST``.

    ``roots`` maps ``disco`` and ``ddfs`` to the node's data directories;
    ValueError says what is wrong (another top directory, an unknown root, a
    path leading outside its root).
    """
    top, _, rest = path.partition("/")
    if top not in NODE_ROOTS or not rest:
        raise NoNodePath(f"a local path must start with disco/ or ddfs/, not {path!r}")
    root, setting = roots.get(top, ""), NODE_ROOTS[top]
    if not root:
        raise ValueError(f"the file is on this node but its {setting} is unknown")
    root = os.path.normpath(root)
    local = os.path.normpath(os.path.join(root, rest))
    if local != root and not local.startswith(root.rstrip("/") + "/"):  # both normalised
        raise NoNodePath(f"it points outside {setting} ({root})")
    return local


class NoNodePath(ValueError):
    """A URL path that names no file of a node, on any node: not a node's directory, or
    out of it."""


def host_name(host: str) -> str:
    """``HOST`` of ``HOST:PORT``: a node is read at its DISCO_PORT, as Disco's own worker
    reads it (``util.urlsplit``), whatever port a URL names."""
    if host.startswith("["):  # [IPv6], perhaps with :PORT after its bracket
        return host[: host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def http_url(host: str, port: int, path: str) -> str:
    """Where node ``host`` serves its URL path ``path`` (``disco/...``, ``ddfs/...``)."""
    return f"http://{host}:{port}/{path}"


def proxy_url(url: str, proxy: str, *, method: str = "GET", to_master: bool = False) -> str:
    """Route ``url`` through ``DISCO_PROXY`` (disco-spec section 7, ``util.proxy_url``).

    Only ``http`` URLs whose host has no ``.`` (cluster-internal names) are
    rewritten: to the master as ``<proxy>/<path>``, to a node as
    ``<proxy>/proxy/<host>/<method>/<path>``. Without a proxy, ``url`` is returned.
    """
    if not proxy:
        return url
    parts = urlsplit(url)
    if parts.scheme != "http" or "." in (parts.hostname or "."):
        return url
    path = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    proxy = proxy.rstrip("/")
    if to_master:
        return f"{proxy}/{path}".rstrip("/")
    return f"{proxy}/proxy/{parts.hostname}/{method}/{path}"


def served_path(url: str, host: str, port: int) -> str | None:
    """The ``disco/...`` or ``ddfs/...`` path of an ``http://`` URL that ``host:port``
    serves, as Disco's Python reads such URLs from local disk; None for any other URL."""
    if not host:
        return None
    try:
        parts = urlsplit(url)
        url_port = parts.port
    except ValueError:  # not a URL urllib parses (a bad [host]): not one of the node's
        return None
    if parts.scheme != "http" or parts.hostname != host or url_port != port:
        return None
    path = parts.path.lstrip("/")
    return path if path.startswith(("disco/", "ddfs/")) else None


def job_url(host: str, job_home: str, path: str, scheme: str = "disco") -> str:
    """The URL of ``path`` below a job home (``job_home`` relative to DISCO_DATA) on ``host``."""
    return f"{scheme}://{host}/disco/{job_home}/{path}"


def readable_here(url: str, host: str, port: int, disco_data: str) -> str:
    """A ``disco://`` URL as anything on this machine can read it: a ``file://`` URL for a
    file of this machine's node ``host``, else that node's HTTP URL. Other URLs unchanged."""
    scheme, rest = split(url)
    if scheme != "disco":
        return url
    url_host, path = split_host(rest)
    url_host = host_name(url_host)  # a port it names gives way to the node's
    if disco_data and url_host == host and path.startswith("disco/"):
        with contextlib.suppress(ValueError):  # a path leading outside: read over HTTP
            return _as_uri(node_path(path, {"disco": disco_data}))
    return http_url(url_host, port, path)


def is_index(url: str) -> bool:
    """Whether ``url`` is a ``dir://`` index of task outputs."""
    return url.startswith(INDEX)


def is_tag(url: str) -> bool:
    """Whether ``url`` names a DDFS tag."""
    return url.startswith(TAG)


def tag_name(url: str) -> str | None:
    """``NAME`` of ``tag://NAME`` or ``tag://HOST/NAME`` (not validated), else None."""
    if not is_tag(url):
        return None
    return url[len(TAG) :].rsplit("/", 1)[-1]


def tag_token(url: str) -> str | None:
    """The token of ``tag://TOKEN@/NAME`` (``tag://USER:TOKEN@HOST/NAME``), as Disco's
    client reads one (``disco.util.urltoken``); None if none. Only before a '/': a tag's
    name may hold '@' (``tag://data@2024`` is a name, where Disco took ``data`` for a token)."""
    if not is_tag(url) or "/" not in url[len(TAG) :]:
        return None
    location = url[len(TAG) :].split("/", 1)[0]
    if "@" not in location:
        return None
    return location.split("@", 1)[0].rpartition(":")[2]
