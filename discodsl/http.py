"""The one HTTP transport of the Disco master and DDFS clients, and where network errors are named.

:class:`Transport` sends a request with timeouts and bounded retries and
turns an error status into a :class:`~discodsl.errors.BadAnswer` (or the
error a caller names for that status); :func:`translate` is the only place
where ``requests`` exceptions become :class:`~discodsl.errors.RequestFailed`
or :class:`~discodsl.errors.Unreachable`, with the cause kept as
``__cause__``. :class:`~discodsl.client.Master` and
:class:`~discodsl.ddfs.DDFS` send everything through here.

Each request has a connection of its own, closed after the answer: the
master's web server (MochiWeb) closes every connection after one answer
without saying so (no ``Connection: close``), so a reused connection would
meet a reset. Requests that cannot change anything twice (GETs,
``get_results``, settings writes) are retried on dropped connections,
timeouts and 503s with exponential backoff; submitting a job or appending to
a tag is retried only when the request provably never left this machine
(a connect timeout), so nothing is ever done twice silently. A refused
connection or a host name that does not resolve is never retried: the master
is not there, and waiting would only delay the error.

Retries are written here rather than with urllib3's ``Retry``: ``Retry``
counts a refused connection and an unknown host as connect errors and
retries them (they must fail at once), has no hook to report each retry
(``on_retry``, the log line), and would retry a POST that may have reached
the master once a read fails, unless told not to per request.

It does not know any endpoint or answer shape (:mod:`discodsl.answers`,
:mod:`discodsl.client`, :mod:`discodsl.ddfs` do).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.exceptions import ProtocolError as Urllib3ProtocolError

from discodsl.answers import snippet
from discodsl.errors import BadAnswer, ClientError, RequestFailed, Unauthorized, Unreachable
from discodsl.jobstatus import command_line

__all__ = [
    "MASTER",
    "ErrorFor",
    "Policy",
    "RetryCallback",
    "Transport",
    "origin",
    "redirect_error",
    "status_error",
    "translate",
]

log = logging.getLogger(__name__)

#: Called before each automatic retry with (attempt that failed, seconds to wait, the error).
RetryCallback = Callable[[int, float, ClientError], None]

#: ``idempotent``: retry on any network error; ``unsent``: retry only when the
#: request never left this machine (connection refused, name not found, connect timeout).
Policy = Literal["idempotent", "unsent"]

#: The error for an answer with a given status, from the answer's body (shortened).
ErrorFor = Callable[[str], ClientError]

MASTER = "the Disco master"


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --------------------------------------------------------------------------
# The one place where requests exceptions become ClientError
# --------------------------------------------------------------------------


# Most specific class wins (the longest MRO among the matches).
class _SlowAnswer(requests.ReadTimeout):
    """An answer whose body did not arrive whole within the read timeout."""


_NETWORK_REASONS: dict[type[requests.RequestException], str] = {
    requests.RequestException: "request failed",
    requests.ConnectionError: "connection failed",
    requests.ConnectTimeout: "no connection within {timeout:g}s",
    requests.ReadTimeout: "no answer within {timeout:g}s",
    _SlowAnswer: "the answer did not arrive whole within {timeout:g}s",
    requests.exceptions.SSLError: "TLS handshake failed",
    requests.exceptions.ProxyError: "the HTTP proxy (HTTP_PROXY) failed",
    requests.exceptions.ChunkedEncodingError: "the answer was cut off",
    requests.exceptions.ContentDecodingError: "its answer claims Content-Encoding: {encoding} "
    "but its body is not in it",
    requests.TooManyRedirects: "its URL redirects in a loop: {exc}",
    requests.exceptions.InvalidURL: "not a valid URL",
    requests.exceptions.MissingSchema: "not a valid URL",
    requests.exceptions.InvalidSchema: "not a valid URL",
}

_BAD_URL = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
)

_DROPPED = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    Urllib3ProtocolError,
)

# Failures after the server answered (or took the request and stopped reading it): asking
# whether it runs, or whether its URL is right, would send the user the wrong way.
_ANSWERED = (requests.exceptions.ContentDecodingError, requests.TooManyRedirects)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception wrapped in it (args, ``reason``, cause, context)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        linked = [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
        stack.extend(x for x in linked if isinstance(x, BaseException))


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(c, kinds) for c in _causes(exc))


def _never_sent(exc: BaseException) -> bool:
    """True if the request surely never reached the server (safe to send again)."""
    return isinstance(exc, requests.ConnectTimeout) or _caused_by(
        exc, (NewConnectionError, ConnectionRefusedError, socket.gaierror)
    )


def _nobody_there(exc: BaseException) -> bool:
    """True if the connection was refused or the host name did not resolve."""
    return _caused_by(exc, (ConnectionRefusedError, NameResolutionError, socket.gaierror))


def _stalled_upload(exc: BaseException) -> bool:
    """True if sending the request timed out: the server took the connection and stopped
    reading (urllib3 wraps the socket's timeout as a dropped connection's ProtocolError)."""
    return (
        isinstance(exc, requests.ConnectionError)
        and not isinstance(exc, requests.Timeout)
        and _caused_by(exc, (Urllib3ProtocolError,))
        and _caused_by(exc, (TimeoutError,))
    )


def _encoding(exc: BaseException) -> str:
    """The content encoding a ContentDecodingError's answer claimed (urllib3 names it)."""
    found = re.search(r"content-encoding: ([\w-]+)", str(exc))
    return found.group(1) if found else "(an encoding)"


def _reason(exc: requests.RequestException, timeout: float) -> str:
    matches = [cls for cls in _NETWORK_REASONS if isinstance(exc, cls)]
    reason = _NETWORK_REASONS[max(matches, key=lambda cls: len(cls.__mro__))]
    if _caused_by(exc, (ConnectionRefusedError,)):
        reason = "connection refused"
    elif _caused_by(exc, (NameResolutionError, socket.gaierror)):
        reason = "host name not found"
    elif _stalled_upload(exc):
        reason = "no progress sending the request within {timeout:g}s"
    elif _caused_by(exc, _DROPPED):
        reason = "connection closed without an answer"
    return reason.format(timeout=timeout, encoding=_encoding(exc), exc=str(exc).rstrip(".").lower())


@contextlib.contextmanager
def translate(
    url: str,
    *,
    endpoint: str = "",
    timeout: float = 30.0,
    who: str = MASTER,
    hint: str = "",
    tries: int = 1,
    unsent_only: bool = False,
) -> Iterator[None]:
    """Turn a ``requests`` exception raised inside into a :class:`RequestFailed`.

    :class:`Unreachable` when nothing was sent. The message names ``who`` is
    at ``url``, why, and what to try (``hint``, the caller's; by default the
    curl command that checks the master, or ``who``). With ``unsent_only`` (a
    request that must not be repeated), it says whether the request may have
    reached the server.
    """
    try:
        yield
    except requests.RequestException as exc:
        reason = _reason(exc, timeout) + (f"; tried {tries} times" if tries > 1 else "")
        error = _network_error(exc, url, endpoint, who, reason, hint)
        if unsent_only and not isinstance(exc, _BAD_URL) and not _never_sent(exc):
            error.args = (
                f"{error}; the request may have reached {who}, so it was not sent again: "
                f"check its state{_state_check(url, who)} before repeating it",
            )
        raise error from exc


def _state_check(url: str, who: str) -> str:
    """The command that shows what a request that may have reached the master did (a job
    submitted), for the master at ``url``: printed with ``--master``, it works as printed
    wherever the master came from (master=, --master, DISCO_MASTER)."""
    return f" (e.g. `{command_line('jobs', url)}`)" if who == MASTER else ""


def _network_error(
    exc: requests.RequestException, url: str, endpoint: str, who: str, reason: str, hint: str
) -> RequestFailed:
    """The error for ``exc``, most specific case first; ``hint`` is the caller's ("": the
    default for ``who``)."""
    if isinstance(exc, _BAD_URL):
        message = f"{url} is {reason} ({exc}): check DISCO_MASTER"
    elif isinstance(exc, _ANSWERED):
        advice = _answered(exc, endpoint, who)
        message = f"{who} at {url} did not complete {endpoint} ({reason}): {advice}"
    elif isinstance(exc, requests.ReadTimeout) or _stalled_upload(exc):
        did = "did not answer" if isinstance(exc, requests.ReadTimeout) else "stopped reading"
        did = "was too slow to answer" if isinstance(exc, _SlowAnswer) else did
        message = (
            f"{who} at {url} {did} {endpoint} ({reason}): it may be overloaded; "
            f"raise DISCODSL_HTTP_TIMEOUT{_check(url, who, hint)}"
        )
    elif _never_sent(exc):
        hint = hint or _reachable(url, who)
        return Unreachable(f"could not reach {who} at {url} ({reason}): {hint}", url=url, who=who)
    else:
        hint = hint or _reachable(url, who)
        message = f"{who} at {url} did not complete {endpoint} ({reason}): {hint}"
    return RequestFailed(message, url=url, who=who)


def _reachable(url: str, who: str) -> str:
    """What to ask about a server that could not be reached, or dropped the connection."""
    if who != MASTER:
        return f"is it up? `curl -I {url}` should answer"
    parts = urlsplit(url)
    usual = os.environ.get("DISCO_PORT") or "8989"  # what the master was told, most likely
    port = (
        f" (it names no port, so {443 if parts.scheme == 'https' else 80} was "
        f"tried: a Disco master listens on DISCO_PORT, 8989 unless set: {url}:{usual}?)"
        if parts.port is None and parts.hostname
        else ""
    )
    return (
        f"is the master's URL right{port} (master=, --master, DISCO_MASTER, or the settings "
        f"file)? is it running? `curl {url}/disco/version` should print its version"
    )


def _check(url: str, who: str, hint: str) -> str:
    """How to check a server that was reached but is slow: the caller's ``hint`` if any
    (a DDFS node's put port, or a node serving blobs, does not serve ``/disco/version``)."""
    if hint:
        return f"; {hint}"
    if who != MASTER:
        return f", or check it with `curl -I {url}`"
    return f", or check it with `curl {url}/disco/version`"


def _answered(exc: requests.RequestException, endpoint: str, who: str) -> str:
    """What to do about an answer that cannot be used (its encoding, its redirects): the
    server is there, so not whether it runs."""
    target = endpoint.partition(" ")[2] or endpoint
    if isinstance(exc, requests.TooManyRedirects):
        fix = "set DISCO_MASTER to the master's own URL, or fix" if who == MASTER else "fix"
        return (
            f"it answers, redirecting again and again: {fix} the front end that redirects "
            f"(`curl -sIL {target}` shows the redirects)"
        )
    return (
        "it answered, but its body is not what its headers say: a proxy on the way "
        f"(DISCO_PROXY, HTTP_PROXY) or the server itself mangles answers; see the raw "
        f"answer with `curl -si {target}`"
    )


# --------------------------------------------------------------------------
# Error statuses
# --------------------------------------------------------------------------

_GENERIC = {
    400: "the request was refused (400): {body}: the body does not have the shape "
    "the master expects (is the server a Disco 0.5.4 master?)",
    401: "the token was refused (401 {body}): set DDFS_READ_TOKEN / DDFS_WRITE_TOKEN",
    403: "the request was refused (403 {body})",
    404: "not found (404 {body}): check the name and that it still exists",
    413: "the request body is too large (413 {body})",
    500: "{who} failed (500 {body}): the request crashed its handler; "
    "check the request, and {whose} log for the reason",
    503: "the server is unavailable (503 {body}): try again later",
}


# Endpoints every Disco 0.5.4 master answers, whatever it holds: a 404, 405 or 501 there
# comes from a server that is no Disco master (another port, another program).
_MASTER_ENDPOINT = re.compile(
    r"/disco/(ctrl/(joblist|nodeinfo|get_settings|load_config_table)|job/new)\b|/ddfs/tags\b"
)
# The master's and DDFS's tag APIs, whose 404s are a line of text ("Not found.", "Tag not
# found." when a job or tag is missing; disco-reference/http-api): an HTML page there comes
# from another server.
_API = re.compile(r"/disco/ctrl/|/ddfs/tags?\b")
_NOT_A_MASTER = (
    ": a Disco master answers this request, so this server is not one: check DISCO_MASTER "
    'and DISCO_PORT (`curl URL/disco/version` answers "0.5.4" on a Disco master)'
)


def status_error(
    resp: requests.Response, endpoint: str, special: Mapping[int, ErrorFor], who: str = MASTER
) -> ClientError:
    """The error for an answer with an error status from ``who``: the caller's for that
    status, else generic."""
    body = snippet(resp.content) or "(empty)"
    status = resp.status_code
    if status == 404 and _API.search(endpoint) and body.lstrip()[:1] == "<":
        # A missing job or tag: a Disco master says so in a line of text, never in HTML.
        return BadAnswer(
            f"{endpoint}: not found (404 {body}){_NOT_A_MASTER}", endpoint=endpoint, status=status
        )
    if status in special:
        error = special[status](body)
        if isinstance(error, BadAnswer):  # the caller's words, the request's facts
            error.endpoint, error.status = endpoint, status
        return error
    text = _GENERIC.get(status, f"unexpected answer {status} {resp.reason}: {{body}}")
    if status in (404, 405, 501) and _MASTER_ENDPOINT.search(endpoint):
        # Not "check the name": no name was wrong, the server is.
        text = (text.partition(": ")[0] if status == 404 else text) + _NOT_A_MASTER
    kind = Unauthorized if status == 401 else BadAnswer
    text = text.replace("{who}", _named(endpoint, who)).replace("{whose}", _whose(who))
    message = f"{endpoint}: " + text.replace("{body}", body)  # names may hold braces
    return kind(message, endpoint=endpoint, status=status)


def _named(endpoint: str, who: str) -> str:
    """``who`` in an error about ``endpoint``: the master, or another server by its URL
    (a DDFS node the master handed out, which the user may not know of)."""
    if who == MASTER:
        return "the master"
    return f"{who} at {origin(endpoint.partition(' ')[2])}"


def _whose(who: str) -> str:
    return "the master's" if who == MASTER else f"{who}'s"


#: Seconds an attempt may take at the least, however little is left of a request's time.
_LEAST_TIMEOUT = 0.05

#: Redirects: followed for a GET or HEAD only (see :func:`redirect_error`).
_REDIRECTS = (301, 302, 303, 307, 308)
_FOLLOWED = ("GET", "HEAD")


def redirect_error(resp: requests.Response, endpoint: str, who: str = MASTER) -> BadAnswer:
    """The error for a redirect answered to a request that is not a GET or HEAD.

    requests re-sends a POST redirected by 301, 302 or 303 as a GET without its
    body (a jobpack submitted became a GET of ``/disco/job/new``, then a 404
    blaming the server it led to); a 307 or 308 would send the body again, to a
    server nobody named. No Disco master redirects: the URL is the wrong one.
    """
    method, _, url = endpoint.partition(" ")
    location = resp.headers.get("Location", "")
    to = urljoin(url, location) if location else "nowhere (no Location header)"
    where = f"the master's URL {origin(url)}" if who == MASTER else _named(endpoint, who)
    return BadAnswer(
        f"{endpoint}: {where} redirects ({resp.status_code} {resp.reason}) "
        f"to {to}: discodsl follows no redirect of a {method} (307 and 308 included), which "
        f"could lose or repeat its body; {_redirect_fix(url, to, who)}",
        endpoint=endpoint,
        status=resp.status_code,
    )


def _redirect_fix(url: str, to: str, who: str) -> str:
    """What to do about a redirected request to ``url``: point discodsl where it leads."""
    shown = f"`curl -sI {url}` shows the redirect"
    if who != MASTER:
        return f"the master handed out this URL: check that server's redirects ({shown})"
    path = urlsplit(url).path
    if path and to.endswith(path) and "://" in to:
        return (
            f"set DISCO_MASTER to {to[: -len(path)]}, the URL it redirects to (or pass that "
            "as master= or --master)"
        )
    return f"set DISCO_MASTER (or master=, --master) to the master's own URL ({shown})"


# --------------------------------------------------------------------------
# Transport: a connection per request, timeouts, retries
# --------------------------------------------------------------------------


class Transport:
    """Sends requests with timeouts and bounded retries; shared by Master and DDFS.

    Without a ``session``, each request gets a session (and so a connection)
    of its own, closed once the answer was read (see the module docstring).
    A given session is used as it is: its owner decides about reusing connections.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retries: int,
        backoff: float,
        session: requests.Session | None,
        on_retry: RetryCallback | None,
        hint: str = "",
    ):
        self.base_url = base_url.rstrip("/")
        self.hint = hint  # what to try when the base URL cannot be reached
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.on_retry = on_retry
        self.session = session

    def send(
        self,
        method: str,
        url: str,
        *,
        policy: Policy = "idempotent",
        ok: tuple[int, ...] = (200,),
        special: Mapping[int, ErrorFor] | None = None,
        who: str = MASTER,
        hint: str = "",
        extra_timeout: float = 0.0,
        within: float | None = None,
        data: bytes | Path | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One request (retried per ``policy``); an answer not in ``ok`` is a ClientError.

        ``url`` is a path under the base URL, or a whole URL; ``special``
        names the error for a status; ``extra_timeout`` is added to the read
        timeout (a blocking ``get_results``); ``within`` seconds, if given,
        bound the request and its retries (a wait with a timeout).
        """
        target = url if "://" in url else self.base_url + url
        endpoint = f"{method} {target.split('?', 1)[0]}"
        where = self.base_url if target.startswith(self.base_url) else origin(target)
        deadline = None if within is None else time.monotonic() + within
        attempt = 0
        while True:
            attempt += 1
            timeouts = self._timeouts(extra_timeout, deadline)
            try:
                with translate(
                    where,
                    endpoint=endpoint,
                    timeout=round(timeouts[1], 2),
                    who=who,
                    hint=hint or self.hint,
                    tries=attempt,
                    unsent_only=policy == "unsent",
                ):
                    resp = self._request(method, target, data, timeouts, kwargs)
            except RequestFailed as err:
                again = self._in_time(attempt, deadline)
                if not (again and _retryable(err.__cause__ or err, policy)):
                    raise
                self._pause(attempt, err)
                continue
            if resp.status_code in _REDIRECTS and method.upper() not in _FOLLOWED:
                raise redirect_error(resp, endpoint, who)
            if (
                resp.status_code == 503
                and policy == "idempotent"
                and self._in_time(attempt, deadline)
            ):
                self._pause(attempt, status_error(resp, endpoint, {}))
                continue
            if resp.status_code not in ok:
                raise status_error(resp, endpoint, special or {}, who)
            return resp

    def _request(
        self,
        method: str,
        url: str,
        data: bytes | Path | None,
        timeout: tuple[float, float],
        kwargs: dict[str, Any],
    ) -> requests.Response:
        with contextlib.ExitStack() as stack:
            session = self.session
            if session is None:  # closed on the way out; a streamed answer still reads to the end
                session = stack.enter_context(requests.Session())
            body: bytes | IO[bytes] | None = (
                stack.enter_context(data.open("rb"))  # streamed from disk, reopened each attempt
                if isinstance(data, Path)
                else data
            )
            # A redirected POST or PUT is refused (redirect_error), never re-sent.
            follow = {"allow_redirects": method.upper() in _FOLLOWED}
            streamed = kwargs.get("stream", False)  # the caller reads it, as it comes
            options = {**follow, **kwargs, "stream": True}
            resp = session.request(method, url, data=body, timeout=timeout, **options)
            if not streamed:
                _read_in_time(resp, timeout[1])
            return resp

    def _timeouts(self, extra: float, deadline: float | None) -> tuple[float, float]:
        """(connect, read) timeouts of one attempt: the transport's (the read's with
        ``extra``), within what is left before ``deadline``."""
        connect, read = self.timeout, self.timeout + extra
        if deadline is None:
            return connect, read
        left = max(_LEAST_TIMEOUT, deadline - time.monotonic())
        return min(connect, left), min(read, left)

    def _in_time(self, attempt: int, deadline: float | None) -> bool:
        """Whether attempt ``attempt`` may be followed by another: a retry is left, and its
        pause ends before ``deadline``."""
        if attempt > self.retries:
            return False
        return deadline is None or time.monotonic() + self._delay(attempt) < deadline

    def _delay(self, attempt: int) -> float:
        """The pause after attempt ``attempt``: doubling from ``backoff``, at most 30 s."""
        return min(self.backoff * 2.0 ** (attempt - 1), 30.0)

    def _pause(self, attempt: int, err: ClientError) -> None:
        delay = self._delay(attempt)
        log.warning(
            "discodsl: %s; retrying in %.2gs (retry %d of %d)", err, delay, attempt, self.retries
        )
        if self.on_retry is not None:
            self.on_retry(attempt, delay, err)
        time.sleep(delay)


def _read_in_time(resp: requests.Response, seconds: float) -> None:
    """Read the answer's body whole within ``seconds``, else raise _SlowAnswer: the read
    timeout bounds each read from the socket, so a body sent a byte at a time never ended
    (run() waited for ever, whatever its timeout=). Past them the connection is shut, and
    what was read is no answer even if the read ended without an error (a body that ends
    with its connection looks whole when cut)."""
    watch = _Watch(resp)
    timer = threading.Timer(seconds, watch.shut)
    timer.daemon = True
    timer.start()
    failed: requests.RequestException | None = None
    try:
        resp.content  # noqa: B018 - read here, in this thread, while the timer runs
    except requests.RequestException as exc:
        failed = exc
    finally:
        timer.cancel()
    if watch.ended():
        raise _SlowAnswer(f"the answer did not arrive whole within {seconds:g}s")
    if failed is not None:
        raise failed


class _Watch:
    """The timer's hold on one answer: it shuts the connection unless the read has ended,
    and the read, once ended, learns whether it was shut (one lock: never both)."""

    def __init__(self, resp: requests.Response):
        self.resp = resp
        self.lock = threading.Lock()
        self.read = False  # the reader is done: the timer leaves the connection be
        self.cut = False  # the timer shut the connection: what was read is cut

    def shut(self) -> None:
        """End the answer's connection, so that the read blocked on it returns."""
        with self.lock:
            if self.read:
                return
            self.cut = True
        sock = _socket_of(self.resp)
        if sock is None:
            self.resp.close()
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def ended(self) -> bool:
        """Note that the read has ended; whether the timer had cut it."""
        with self.lock:
            self.read = True
            return self.cut


def _socket_of(resp: requests.Response) -> socket.socket | None:
    """The socket an answer's body is read from: its connection's, or (once urllib3 has
    handed it over) the one under http.client's file; None if neither is found."""
    connection = getattr(resp.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:  # urllib3's response -> http.client's -> its buffered SocketIO
        stream = getattr(getattr(getattr(resp.raw, "_fp", None), "fp", None), "raw", None)
        sock = getattr(stream, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _retryable(cause: BaseException, policy: Policy) -> bool:
    if _nobody_there(cause):
        return False
    if policy == "unsent":
        return _never_sent(cause)
    return isinstance(
        cause,
        (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError),
    ) and not isinstance(cause, requests.exceptions.SSLError)
