"""Opening one input URL as a byte stream: Disco's URL schemes, local or over HTTP.

:func:`open_url` opens one URL, as the node described by :class:`Node` (what
the master's TASK reply says about the node running the task) reaches it: a
local path, a ``file://`` URL (with a byte range, for a chunk of a file), or a
GET, asked again of a busy Disco node; gzip and bzip2 data is decompressed.

The schemes are those of Disco 0.5.4 (``disco.schemes``, ``util.urlsplit``):
``raw://``, plain paths and ``file://``, ``http(s)://``, ``disco://``,
``dir://``; ``tag://`` is resolved to its blobs before a job runs.
What this module does not do: take URLs apart (see :mod:`.urls`), read
records or lines, or fail over between replicas (:mod:`.inputs`), retry a
GET that was answered or timed out (a connection dropped before the answer
is tried again, twice), or use HTTP proxies (node-to-node GETs go direct,
as Disco's own do).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import time
import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Protocol, cast

if TYPE_CHECKING:
    import urllib.request


from discodsl.worker import forks, urls
from discodsl.worker.errors import (
    BadURL,
    DamagedInput,
    DataError,
    MalformedRecord,
)
from discodsl.worker.jobfile import TIMEOUT_ENV, timeout_seconds

# How many first bytes of a file tell compressed data (see compression_of).
MAGIC_SIZE: Final = 10
_GZIP_MAGIC: Final = b"\x1f\x8b"
_BZIP2_START: Final = b"BZh"  # then the block size, a digit 1-9
_BZIP2_MAGICS: Final = (b"1AY&SY", b"\x17rE8P\x90")  # a first block's, an empty stream's end
# Compressed data no worker reads, by its first bytes: said so, not read as text.
_UNREAD_MAGICS: Final = {b"\xfd7zXZ\x00": "xz", b"(\xb5/\xfd": "zstd"}
_COMPRESSED_SUFFIXES: Final = {".gz": "gzip", ".bz2": "bzip2"}
# A GET whose connection is dropped before the answer (a busy server, a reset) is sent again,
# after these pauses; one that is answered with an error, or times out, is not.
HTTP_PAUSES: Final = (0.1, 0.3)
# A Disco node that answers busy (503 "Maximum number of downloaders reached", or 403
# "Disco node is busy" when its file server's gate does not answer in time, as under load)
# is asked again after these pauses, as Disco's own client asks again after a 503.
BUSY_PAUSES: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
_BUSY = b"Disco node is busy"
_READ_BUFFER: Final = 1 << 16


# The HTTP modules cost a worker ~50 ms to import: loaded on the first HTTP input only.
@cache
def _opener() -> urllib.request.OpenerDirector:
    import urllib.request

    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading any source can raise: files and sockets (OSError, timeouts included),
    HTTP framing (IncompleteRead), gzip and bz2 (EOFError when cut short, zlib.error or
    OSError when corrupt)."""
    http_client = sys.modules.get("http.client")
    framing = (http_client.HTTPException,) if http_client is not None else ()
    return (OSError, EOFError, ValueError, zlib.error, *framing)


# Seconds an HTTP connect or read of an input may stall, unless TIMEOUT_ENV says otherwise.
HTTP_TIMEOUT = 60.0


def http_timeout() -> float:
    """The seconds an input's HTTP connect or read may stall: TIMEOUT_ENV's, if it is a
    number > 0 and at most HTTP_TIMEOUT_MAX (a job's env= is checked so when declared),
    else HTTP_TIMEOUT."""
    seconds = timeout_seconds(os.environ.get(TIMEOUT_ENV, ""))
    return HTTP_TIMEOUT if seconds is None else seconds


@dataclass(frozen=True)
class Node:
    """What a TASK reply says about the node running the task.

    ``host`` is the node's name in ``disco://`` URLs (an empty host matches
    none), ``disco_data`` and ``ddfs_data`` the local directories behind
    ``disco/...`` and ``ddfs/...`` paths, ``timeout`` the seconds an HTTP
    connect or read may stall. ``proxy`` is ``DISCO_PROXY``, for a client reading a
    cluster's files from outside it (:func:`~discodsl.worker.urls.proxy_url`); a
    worker on a node reads them directly.
    """

    host: str = ""
    disco_port: int = 8989
    disco_data: str = ""
    ddfs_data: str = ""
    timeout: float = field(default_factory=http_timeout)
    proxy: str = ""


class Chunk:
    """Where one chunk of a split text file (``#range=``) starts in it: at byte ``start``,
    after :meth:`lines_before` lines, counted the first time an error asks."""

    def __init__(self, path: str, start: int) -> None:
        self.path, self.start = path, start
        self._lines: int | None = None if start else 0

    def lines_before(self) -> int:
        if self._lines is None:
            lines = 0
            with contextlib.suppress(OSError), open(self.path, "rb") as file:
                left = self.start
                while left > 0 and (block := file.read(min(left, _READ_BUFFER * 16))):
                    lines += block.count(b"\n")
                    left -= len(block)
            self._lines = lines
        return self._lines


WHOLE = Chunk("", 0)  # a file read whole


class ChunkReader(io.BufferedReader):
    """The buffered stream of a chunk of a file, and where the chunk starts in it."""

    chunk: Chunk


class _ReadInto(Protocol):
    """What every source we wrap has: files, HTTP responses, gzip and bz2 readers."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: Any, /) -> int | None: ...

    def close(self) -> None: ...


def open_url(url: str, node: Node) -> BinaryIO:
    """Open ``url`` for reading, as a stream of its bytes.

    gzip and bzip2 data is decompressed on the fly, known by its first bytes
    (:func:`compression_of`), not by its name; HTTP bodies are streamed. Every
    failure, when opening or later when reading, is a DataError naming the URL
    and what to check.
    """
    return open_stream(url, node)


def open_stream(url: str, node: Node) -> io.BufferedReader:
    """Open any URL but ``dir://`` and ``tag://`` as a buffered byte stream."""
    scheme, rest = urls.split(url)
    if scheme == "raw":
        data = io.BytesIO(rest.encode("utf-8"))
        return _buffered(data, url, data)
    if scheme == "disco":
        return open_located(rest, url, node)
    if scheme == "":
        return _open_file(rest, url)
    if scheme == "file":
        return _open_file_url(rest, url)
    if scheme in ("http", "https"):
        return _open_http(url, node)
    if scheme == "tag":
        raise BadURL(
            f"{url} is a DDFS tag, which a worker does not read: discodsl resolves tags to "
            "their blobs before a job runs, with mode='cluster', or mode='local' with a Disco "
            "master configured (DISCO_MASTER); run the job so, or pass the tag's blob URLs "
            "as its inputs",
            url=url,
        )
    if scheme == "dir":
        raise DataError(
            f"{url} is an index, not a file: read it with read_index or iter_input", url=url
        )
    raise BadURL(
        f"{url}: unsupported URL scheme {scheme!r}: use raw://, file://, http(s)://, "
        "disco://, dir:// or a plain path",
        url=url,
    )


def open_located(rest: str, url: str, node: Node) -> io.BufferedReader:
    """Open ``HOST/PATH`` of a disco:// or dir:// URL: the local file, or an HTTP GET."""
    host, path = urls.split_host(rest)
    if not host or not path:
        raise BadURL(f"{url}: expected SCHEME://HOST/PATH; check the URL", url=url)
    host = urls.host_name(host)
    if node.host and host == node.host:
        return _open_file(_local_path(path, url, node), url)
    return _open_http(urls.http_url(host, node.disco_port, path), node, url)


def _local_path(path: str, url: str, node: Node) -> str:
    """The file behind a URL path ``disco/REST`` or ``ddfs/REST`` on this node."""
    try:
        return urls.node_path(path, {"disco": node.disco_data, "ddfs": node.ddfs_data})
    except urls.NoNodePath as exc:  # the same on every attempt, and every node
        raise BadURL(f"{url}: {exc}: check the URL", url=url) from None
    except ValueError as exc:
        raise DataError(
            f"{url}: {exc}: check the URL (the node's directories come in the TASK reply)",
            url=url,
        ) from None


def _open_file(path: str, url: str) -> io.BufferedReader:
    if not path:
        raise DataError(f"{url!r} names no file: pass a path or a URL", url=url)
    try:
        raw = _open_raw(path, url)
    except OSError as exc:
        raise DataError(
            f"{url}: cannot open {path}: {exc.strerror or exc}; check that the file exists "
            "on this node and is readable",
            url=url,
        ) from exc
    return _decompressed(raw, path, url)


def _open_raw(path: str, url: str) -> io.FileIO:
    """``path`` open for reading, unbuffered; a DataError for a named pipe, whose open
    would wait for a writer for good (one put where an input was after the run began)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise DataError(
                f"{url}: {path} is a named pipe (FIFO), not a file: a task reads files, "
                "whose bytes stay there to be read again; give it a file",
                url=url,
            )
        os.set_blocking(fd, True)
        raw = io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    raw.name = path  # as open() names it
    return raw


def _open_file_url(rest: str, url: str) -> io.BufferedReader:
    """``file://PATH``, percent-decoded, optionally ``#range=START-END`` (see _ranged)."""
    try:
        path, byte_range = urls.file_target(rest)
    except ValueError as exc:  # the same on every attempt
        raise BadURL(f"{url}: {exc}", url=url) from None
    if byte_range is None:
        return _open_file(path, url)
    return _ranged(path, *byte_range, url)


def _ranged(path: str, start: int, end: int, url: str) -> io.BufferedReader:
    """The lines of a text file that start in ``[start, end)``: one chunk of a split file.

    Chunks cut at any byte offsets cover every line exactly once: a chunk skips
    the line running into its start and finishes the line running past its end.
    """
    raw: io.FileIO | None = None
    try:
        raw = _open_raw(path, url)
        size = os.fstat(raw.fileno()).st_size  # 0 for /proc's: the reading tells
        if 0 < size < end:  # cut from a longer file (one cut to nothing: see _Limited)
            raise _changed(url, f"is {size} bytes long, shorter than the {end} this range reads to")
        first, stop = _line_start(raw, start), _line_start(raw, end)
        raw.seek(first)
    except BaseException as exc:
        if raw is not None:
            raw.close()
        if not isinstance(exc, OSError):
            raise
        raise DataError(f"{url}: cannot read {path}: {exc.strerror or exc}", url=url) from exc
    limited = _Limited(raw, max(0, stop - first), url)
    stream = ChunkReader(_Source(limited, url, limited), buffer_size=_READ_BUFFER)
    stream.chunk = Chunk(path, first)
    return stream


def _line_start(raw: io.FileIO, offset: int) -> int:
    """Where the first line starting at or after ``offset`` begins (or the file's end)."""
    if offset <= 0:
        return 0
    raw.seek(offset - 1)
    position = offset - 1
    while chunk := raw.read(_READ_BUFFER):
        newline = chunk.find(b"\n")
        if newline >= 0:
            return position + newline + 1
        position += len(chunk)
    return position


def _changed(url: str, how: str) -> DamagedInput:
    """The error for a range of a file that changed since the run cut it into ranges, or
    that was given past its end: not retried, as the file will not grow back."""
    return DamagedInput(
        f"{url}: the file {how}, as it was when the run cut it into ranges: it changed "
        "while the job ran (a log rotated with copytruncate, a file rewritten), and the "
        "lines it lost would be missing from the results; run the job on a copy that stays "
        "as it is; or "
        "the range was given past its end: give one within the file",
        url=url,
    )


def _cut_while_read(url: str, size: int, opened: int) -> DamagedInput:
    """The error for a file that ended before the size it had when its task opened it."""
    return DamagedInput(
        f"{url}: the file is {size} bytes long now, shorter than the {opened} it had when the "
        "task opened it: it changed while the job ran (a log rotated with copytruncate, a "
        "file rewritten), and the lines it lost would be missing from the results; run the "
        "job on a copy that stays as it is",
        url=url,
    )


class _Limited(io.RawIOBase):
    """At most ``length`` bytes of ``raw`` from where it stands; a DataError naming ``url``
    if the file ends before them (cut shorter while it is read)."""

    def __init__(self, raw: io.FileIO, length: int, url: str) -> None:
        super().__init__()
        self._raw, self._left, self._url = raw, length, url

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        got = self._raw.readinto(view) or 0
        self._left -= got
        if not got and self._left:
            end, size = self._raw.tell() + self._left, os.fstat(self._raw.fileno()).st_size
            raise _changed(
                self._url, f"is {size} bytes long now, shorter than the {end} this range reads to"
            )
        return got

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_http(location: str, node: Node, url: str = "") -> io.BufferedReader:
    """GET ``location`` (``url`` names the input, when it is not the same)."""
    url = url or location
    local = urls.served_path(location, node.host, node.disco_port)
    if local is not None:
        return _open_file(_local_path(local, url, node), url)
    import urllib.parse

    response = _get(urls.proxy_url(location, node.proxy), node, url)
    path = urllib.parse.urlsplit(location).path
    return _decompressed(response, path, url)


def _get(location: str, node: Node, url: str) -> Any:
    """The answer to GET ``location``, sent again after each of HTTP_PAUSES while its
    connection is dropped before the answer, and after each of BUSY_PAUSES while the node
    answers busy; a DataError naming ``url`` if none comes."""
    import http.client

    dropped = busy = 0
    while True:
        try:
            return _opener().open(location, timeout=node.timeout)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if _busy(exc) and busy < len(BUSY_PAUSES):
                time.sleep(BUSY_PAUSES[busy])
                busy += 1
            elif _dropped(exc) and dropped < len(HTTP_PAUSES):
                time.sleep(HTTP_PAUSES[dropped])
                dropped += 1
            else:
                raise _get_failed(exc, location, node, url, dropped + busy + 1) from exc


def _busy(exc: BaseException) -> bool:
    """Whether ``exc`` is a Disco node's answer that it is busy (worth asking again)."""
    code = getattr(exc, "code", None)
    return code == 503 or (code == 403 and _answer(exc).startswith(_BUSY))


def _answer(exc: BaseException) -> bytes:
    """The start of the body of an HTTP error answer (read once, kept on ``exc``)."""
    body: bytes | None = getattr(exc, "answer_head", None)
    if body is None:
        try:
            body = exc.read(200) if hasattr(exc, "read") else b""
        except (OSError, ValueError):
            body = b""
        exc.answer_head = body  # type: ignore[attr-defined]
    return body


def _get_failed(exc: Exception, location: str, node: Node, url: str, tries: int) -> DataError:
    import http.client
    import urllib.error

    get = "GET" if location == url else f"GET {location}"
    tried = f"; tried {tries} times" if tries > 1 else ""
    if isinstance(exc, urllib.error.HTTPError):
        return _answered(exc, get, location, node, url, tried)
    if _unverified(exc):  # the same on every attempt, until the nodes trust the server
        return _not_trusted(exc, get, location, url)
    if isinstance(exc, (http.client.InvalidURL, UnicodeError)):  # never sent: no retry helps
        return BadURL(
            f"{url}: {get} cannot be sent: {_reason(exc)}; escape what a URL cannot carry as "
            "it is (a space is %20: urllib.parse.quote does it)",
            url=url,
        )
    if _through_proxy(location, node):
        return DataError(
            f"{url}: {get} failed: {_reason(exc)}{tried}; it went through the proxy "
            f"DISCO_PROXY={node.proxy}: check that the proxy is up, or unset DISCO_PROXY "
            "where the cluster's nodes are reached directly",
            url=url,
        )
    return DataError(
        f"{url}: {get} failed: {_reason(exc)}{tried}; check that the host is up and "
        f"reachable on its port{_port_said(url, node)} (timeout {node.timeout:g} s: {TIMEOUT_ENV} "
        f"{_timeout_set(node)} sets it)",
        url=url,
    )


def _port_said(url: str, node: Node) -> str:
    """For a node's file (``disco://``, ``dir://``), read at DISCO_PORT: that the port must
    be the nodes'; "" for any other URL."""
    if urls.split(url)[0] not in ("disco", "dir"):
        return ""
    return f", and that port {node.disco_port} (DISCO_PORT) is the one the nodes serve files at"


def _answered(exc: Any, get: str, location: str, node: Node, url: str, tried: str) -> DataError:
    """The error for a GET answered with an error status (``exc``, an HTTPError), which
    holds that status."""
    said = _answer(exc).decode("utf-8", "replace").strip()
    exc.close()
    check = (
        f"it went through the proxy DISCO_PROXY={node.proxy}: check the proxy, or unset "
        "DISCO_PROXY where the cluster's nodes are reached directly"
        if _through_proxy(location, node)
        else "check that the file exists and the node serving it is healthy" + _port_said(url, node)
    )
    answered = DataError(
        f"{url}: {get} answered HTTP {exc.code} {exc.reason}"
        f"{f' ({said[:120]!r})' if said else ''}{tried}; {check}",
        url=url,
    )
    answered.status = exc.code
    return answered


def _not_trusted(exc: Exception, get: str, location: str, url: str) -> BadURL:
    """The error for a server whose TLS certificate does not verify here."""
    if _mismatch(exc):  # trusted, but issued for another name
        host = urls.host_name(urls.split_host(urls.split(location)[1])[0])
        return BadURL(
            f"{url}: {get} failed: {_reason(exc)}: the server's certificate does not name "
            f"{host}: give the host by the name its certificate was issued for",
            url=url,
        )
    return BadURL(
        f"{url}: {get} failed: {_reason(exc)}: the server's TLS certificate does not "
        "verify here: install its CA on the nodes, or name a file of it with "
        "SSL_CERT_FILE (or a directory, SSL_CERT_DIR) in the job's env=",
        url=url,
    )


def _timeout_set(node: Node) -> str:
    """Where ``node``'s read timeout comes from, as advice that works: a worker on a node
    (its host named by the TASK reply) takes the job's env=; a read with no node's host is
    this program's own (the client reading a cluster's results through
    runners.base.client_node, from its environment or settings file; an inline run), which
    a job's env= sent to the cluster does not reach."""
    if node.host:
        return "in the job's env="
    return "in this program's environment or settings file"


def _dropped(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection was dropped before an answer came (worth another
    try: refused connections and timeouts are not)."""
    cause = getattr(exc, "reason", None)
    if isinstance(cause, BaseException):  # a URLError around the socket's error
        exc = cause
    return isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError))


def _through_proxy(location: str, node: Node) -> bool:
    """Whether a GET of ``location`` went through ``node``'s DISCO_PROXY."""
    return bool(node.proxy) and location.startswith(node.proxy.rstrip("/") + "/")


def _unverified(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error a URLError wraps) is a TLS certificate that did not
    verify."""
    ssl = sys.modules.get("ssl")
    if ssl is None:
        return False
    return isinstance(exc, ssl.SSLCertVerificationError) or isinstance(
        getattr(exc, "reason", None), ssl.SSLCertVerificationError
    )


def _mismatch(exc: BaseException) -> bool:
    """Whether a certificate that did not verify names another host (OpenSSL's hostname,
    e-mail or IP address mismatch: 62 to 64)."""
    error = exc if getattr(exc, "verify_code", None) is not None else getattr(exc, "reason", exc)
    return getattr(error, "verify_code", None) in (62, 63, 64)


def _reason(exc: BaseException) -> str:
    urllib_error = sys.modules.get("urllib.error")
    url_error = urllib_error.URLError if urllib_error is not None else ()
    if isinstance(exc, url_error) and not isinstance(exc.reason, str):
        return _reason(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def compression_of(head: bytes) -> str | None:
    """``"gzip"`` or ``"bzip2"`` if ``head``, the first MAGIC_SIZE bytes of a file (fewer
    if it is shorter), starts data compressed so, else None.

    gzip data starts 1f 8b, which no UTF-8 text does (0x8b continues a
    character) nor a record file (0x81). bzip2 starts ``BZh``, the block size
    (a digit 1-9), then the magic of its first block (31 41 59 26 53 59, that
    is ``1AY&SY``) or, in an empty stream, of its end: text would have to
    start with those ten bytes exactly to be taken for bzip2.
    """
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    level, magic = head[3:4], head[4:MAGIC_SIZE]
    if head.startswith(_BZIP2_START) and b"1" <= level <= b"9" and magic in _BZIP2_MAGICS:
        return "bzip2"
    return None


def _decompressed(raw: _ReadInto, name: str, url: str) -> io.BufferedReader:
    """Wrap ``raw`` so that gzip and bzip2 data reads decompressed.

    The data is known by its first bytes (see :func:`compression_of`), so a
    DDFS blob (a pushed ``a.txt.gz`` is stored as ``a_txt_gz$<stamp>``) or a
    URL whose name lost its ending is decompressed too. A ``.gz`` or ``.bz2``
    name over other data is a DataError, as a wrong name is likely a wrong file.
    """
    stream = _buffered(raw, url, raw)
    try:
        head = stream.peek(MAGIC_SIZE)[:MAGIC_SIZE]  # one read of the source: _Source fills it
        found = compression_of(head)
        suffix = name[name.rfind(".") :]
        if suffix in _COMPRESSED_SUFFIXES and head and found != _COMPRESSED_SUFFIXES[suffix]:
            named = _COMPRESSED_SUFFIXES[suffix]
            if found is None and _starts(head, named):  # shorter than its own magic
                raise DamagedInput(
                    f"{url}: its {len(head)} byte(s) start {named} data, cut short: copy the "
                    "file again, whole",
                    url=url,
                    span=(0, len(head)),
                )
            raise _misnamed(url, suffix, found, head)
        for magic, kind in _UNREAD_MAGICS.items():
            if head.startswith(magic):
                raise MalformedRecord(
                    f"{url}: its bytes are {kind}-compressed data, which no Disco worker "
                    "reads: decompress it, or compress it with gzip or bzip2 instead",
                    url=url,
                    span=(0, len(magic)),
                )
    except BaseException:
        stream.close()
        raise
    # Imported when first needed: every forked worker copies what its zygote imported.
    if found == "gzip":
        import gzip

        return _buffered(gzip.GzipFile(fileobj=cast(BinaryIO, stream), mode="rb"), url, stream)
    if found == "bzip2":
        return _buffered(_Bzip2(stream), url, stream)
    return stream


class _Bzip2(io.RawIOBase):
    """bzip2 data read decompressed, stream after stream (``cat a.bz2 b.bz2`` joins them).

    Not ``bz2.BZ2File``, which drops bytes after the last stream that are no stream
    without a word (``bzip2 -d`` warns of them, and gzip's reader refuses them): here
    they are an OSError, which the reading names (a DamagedInput).
    """

    def __init__(self, source: io.BufferedReader) -> None:
        super().__init__()
        import bz2  # here: every forked worker copies what its zygote imported

        self._new = bz2.BZ2Decompressor
        self._source, self._decompressor = source, self._new()
        self._pending = memoryview(b"")  # decompressed, not read yet

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if not self._decompress():
                return 0
        view = memoryview(buffer).cast("B")
        size = min(len(view), len(self._pending))
        view[:size], self._pending = self._pending[:size], self._pending[size:]
        return size

    def _decompress(self) -> bool:
        """Decompress what comes next into ``_pending``; False at the end of the data."""
        decompressor = self._decompressor
        if decompressor.eof:  # a stream ended: another, or the end, or bytes that are neither
            data = decompressor.unused_data.lstrip(b"\0")  # NULs padding it, as gzip skips
            while len(data) < len(_BZIP2_START) and (more := self._source.read(_READ_BUFFER)):
                data = (data + more).lstrip(b"\0")
            if not data:
                return False
            if not data.startswith(_BZIP2_START):
                raise OSError(
                    f"bytes that are not bzip2 data follow its bzip2 data: {data[:16]!r} (cut "
                    "them off, or compress the whole file again)"
                )
            decompressor = self._decompressor = self._new()
        elif decompressor.needs_input:
            data = self._source.read(_READ_BUFFER)
            if not data:
                raise EOFError("the bzip2 data ended before its end-of-stream marker")
        else:
            data = b""  # more of what it was given, held back by the output limit
        self._pending = memoryview(decompressor.decompress(data, _READ_BUFFER * 16))
        return True


def _starts(head: bytes, kind: str) -> bool:
    """Whether ``head``, shorter than a magic, is how data compressed as ``kind`` starts."""
    if kind == "gzip":
        return _GZIP_MAGIC.startswith(head)
    level, magic = head[3:4], head[4:]
    return (
        _BZIP2_START.startswith(head[:3])
        and (not level or b"1" <= level <= b"9")
        and any(known.startswith(magic) for known in _BZIP2_MAGICS)
    )


def _misnamed(url: str, suffix: str, found: str | None, head: bytes) -> DataError:
    named = _COMPRESSED_SUFFIXES[suffix]
    what = f"{found} data, not {named}" if found else f"not {named} data (they start {head!r})"
    return DamagedInput(
        f"{url}: its name ends in {suffix} but its bytes are {what}: check that this is the "
        f"file meant, then rename it to say what it holds, or compress it with {named}",
        url=url,
        span=(0, len(head)),
    )


def _buffered(inner: _ReadInto, url: str, origin: _ReadInto) -> io.BufferedReader:
    return io.BufferedReader(_Source(inner, url, origin), buffer_size=_READ_BUFFER)


def opened_size(stream: BinaryIO) -> int | None:
    """The size in bytes of the regular file, or the HTTP body of a given length, under
    ``stream`` (one of :func:`open_url`'s), as it is read, not decompressed; None if unknown."""
    source = getattr(stream, "raw", None)
    return source.size() if isinstance(source, _Source) else None


class _Source(io.RawIOBase):
    """A raw stream over one source that fills each read and raises only DataError.

    ``inner`` is read; ``origin`` is the file or HTTP response under it (the
    same object unless decompressing), closed with it. Filling each read
    (short only at end of file) lets :func:`iter_input` sniff a file's first
    bytes with one ``peek``. An HTTP body that ends before its Content-Length
    is an error here, as ``http.client`` only reports it from ``read()``.
    """

    def __init__(self, inner: _ReadInto, url: str, origin: _ReadInto) -> None:
        super().__init__()
        self._inner = inner
        self._url = url
        self._origin = origin
        self._offset = 0
        # A local file's size as it was opened (0 for /proc's): one cut shorter while it is
        # read is refused at its end, as a range of it is (_Limited).
        self._opened_size = (
            os.fstat(origin.fileno()).st_size if origin.__class__ is io.FileIO else 0
        )

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        """The descriptor of the file or connection under the stream (its origin's)."""
        return int(self._origin.fileno())  # type: ignore[attr-defined]

    def readinto(self, buffer: Any) -> int:
        forks.check("read", self._url)  # whose offset a forked child shares with the task
        view = memoryview(buffer).cast("B")
        filled = 0
        try:
            while filled < len(view):
                got = self._inner.readinto(view[filled:])
                if not got:
                    self._check_complete()
                    break
                filled += got
        except _read_errors() as exc:
            at = self._offset + filled
            # A source's own errors come as DataErrors: this is its bytes failing to decompress.
            raise (DamagedInput if self._decompressing else DataError)(
                f"{self._url}: reading failed at {self._where(at)}: {_reason(exc)}; "
                + (
                    "the compressed data is cut short: copy the file again, whole"
                    if isinstance(exc, EOFError)
                    else "check that the file is whole and its node reachable"
                ),
                url=self._url,
                span=(at, at),
            ) from exc
        self._offset += filled
        return filled

    def size(self) -> int | None:
        """See :func:`opened_size`."""
        if self._decompressing:
            return None
        if self._origin.__class__ is io.FileIO:
            found = os.fstat(self._origin.fileno())
            return found.st_size if stat.S_ISREG(found.st_mode) else None
        length = getattr(getattr(self._origin, "headers", None), "get", lambda name: None)(
            "Content-Length"
        )
        return int(length) if isinstance(length, str) and length.isdigit() else None

    @property
    def _decompressing(self) -> bool:
        return self._inner is not self._origin

    def _where(self, at: int) -> str:
        """Where byte ``at`` of what is read lies, in words: a read that failed part way
        (an HTTP body that stalled, a decompressor) may have taken bytes it cannot count."""
        if self._decompressing:
            return f"or after byte {at} of its decompressed data"
        http_client = sys.modules.get("http.client")
        if http_client is not None and isinstance(self._origin, http_client.HTTPResponse):
            return f"or after byte {at}"
        return f"byte {at}"

    def _check_complete(self) -> None:
        """At end of data, refuse a local file that ended before the size it was opened
        with, and an HTTP body cut short of its Content-Length."""
        if self._opened_size and cast(io.FileIO, self._origin).tell() < self._opened_size:
            size = os.fstat(self._origin.fileno()).st_size  # type: ignore[attr-defined]
            if size < self._opened_size:  # not one that says it is bigger (/sys's: 4096)
                raise _cut_while_read(self._url, size, self._opened_size)
        http_client = sys.modules.get("http.client")
        if http_client is None:
            return
        if isinstance(self._origin, http_client.HTTPResponse) and self._origin.length:
            raise http_client.IncompleteRead(b"", self._origin.length)

    def close(self) -> None:
        if not self.closed:
            for source in {id(self._inner): self._inner, id(self._origin): self._origin}.values():
                # Closing a source that already failed must not mask its error.
                with contextlib.suppress(Exception):
                    source.close()
        super().close()
