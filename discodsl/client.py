"""HTTP client for a Disco 0.5.4 master (disco-spec sections 5 and 7).

:class:`Master` wraps the master's HTTP API (submit a jobpack, wait for its
results, events, job control, cluster configuration).
:func:`disco_url_to_http` and :func:`proxy_url` turn Disco URLs into URLs a
client can fetch. The DDFS client (:class:`~discodsl.ddfs.DDFS`, tag names,
``tag://`` inputs) is :mod:`discodsl.ddfs`, which sends its requests through
this module's transport; this module does not import it.

This module holds the only HTTP transport, and :func:`_translate` is the only
place where ``requests`` exceptions become :class:`~discodsl.errors.ClientError`.
Every answer's JSON shape is checked before it is returned.

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

It does not build jobpacks, read result files record by record, or decide
what to do with events; the runners do.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, cast
from urllib.parse import quote, urlsplit

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.exceptions import ProtocolError as Urllib3ProtocolError

from discodsl.errors import ClientError, JobDead

if TYPE_CHECKING:
    from discodsl.settings import DiscoSettings

__all__ = [
    "Master",
    "RetryCallback",
    "disco_url_to_http",
    "proxy_url",
]

log = logging.getLogger(__name__)

#: Called before each automatic retry with (attempt that failed, seconds to wait, the error).
RetryCallback = Callable[[int, float, ClientError], None]

#: ``idempotent``: retry on any network error; ``unsent``: retry only when the
#: request never left this machine (connection refused, name not found, connect timeout).
_Policy = Literal["idempotent", "unsent"]

_MASTER = "the Disco master"


# --------------------------------------------------------------------------
# URL helpers
# --------------------------------------------------------------------------


def disco_url_to_http(url: str, disco_port: int) -> str:
    """``disco://HOST/PATH`` or ``dir://HOST/PATH`` -> ``http://HOST:PORT/PATH``.

    ``http(s)://`` URLs are returned unchanged; ``raw://``, ``tag://`` and
    local files are not fetched over HTTP and are a :class:`ClientError`.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ClientError(f"{url!r} is not a URL: expected disco://HOST/PATH or http://...")
    if scheme in ("http", "https"):
        return url
    if scheme not in ("disco", "dir"):
        raise ClientError(
            f"{url!r} is not fetched over HTTP ({scheme}://): "
            "give tag://NAME as a job input or to `discodsl ddfs cat`, which expand it into "
            "its blobs; read raw:// and file:// directly"
        )
    netloc, _, path = rest.partition("/")
    if not netloc:
        raise ClientError(f"{url!r} has no host: expected {scheme}://HOST/PATH")
    if ":" not in netloc:
        netloc = f"{netloc}:{disco_port}"
    return f"http://{netloc}/{path}"


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


# --------------------------------------------------------------------------
# The one place where requests exceptions become ClientError
# --------------------------------------------------------------------------

# Most specific class wins (the longest MRO among the matches).
_NETWORK_REASONS: dict[type[requests.RequestException], str] = {
    requests.RequestException: "request failed",
    requests.ConnectionError: "connection failed",
    requests.ConnectTimeout: "no connection within {timeout:g}s",
    requests.ReadTimeout: "no answer within {timeout:g}s",
    requests.exceptions.SSLError: "TLS handshake failed",
    requests.exceptions.ProxyError: "the HTTP proxy (HTTP_PROXY) failed",
    requests.exceptions.ChunkedEncodingError: "the answer was cut off",
    requests.exceptions.InvalidURL: "not a valid URL",
    requests.exceptions.MissingSchema: "not a valid URL",
    requests.exceptions.InvalidSchema: "not a valid URL",
}


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


def _never_sent(exc: BaseException) -> bool:
    """True if the request surely never reached the server (safe to send again)."""
    return isinstance(exc, requests.ConnectTimeout) or any(
        isinstance(c, (NewConnectionError, ConnectionRefusedError, socket.gaierror))
        for c in _causes(exc)
    )


def _nobody_there(exc: BaseException) -> bool:
    """True if the connection was refused or the host name did not resolve."""
    return any(
        isinstance(c, (ConnectionRefusedError, NameResolutionError, socket.gaierror))
        for c in _causes(exc)
    )


_DROPPED = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    Urllib3ProtocolError,
)


def _reason(exc: requests.RequestException, timeout: float) -> str:
    matches = [cls for cls in _NETWORK_REASONS if isinstance(exc, cls)]
    reason = _NETWORK_REASONS[max(matches, key=lambda cls: len(cls.__mro__))]
    causes = list(_causes(exc))
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        reason = "connection refused"
    elif any(isinstance(c, (NameResolutionError, socket.gaierror)) for c in causes):
        reason = "host name not found"
    elif any(isinstance(c, _DROPPED) for c in causes):
        reason = "connection closed without an answer"
    return reason.format(timeout=timeout)


_BAD_URL = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
)


@contextlib.contextmanager
def _translate(
    url: str,
    *,
    endpoint: str = "",
    timeout: float = 30.0,
    who: str = _MASTER,
    hint: str = "",
    tries: int = 1,
    unsent_only: bool = False,
) -> Iterator[None]:
    """Turn a ``requests`` exception raised inside into a :class:`ClientError`.

    The message names ``who`` is at ``url``, why, and what to try (``hint``;
    by default the curl command that checks the master). With ``unsent_only``
    (a request that must not be repeated), it says whether the request may
    have reached the server.
    """
    try:
        yield
    except requests.RequestException as exc:
        hint = hint or f"is DISCO_MASTER right? try `curl {url}/disco/version`"
        reason = _reason(exc, timeout) + (f"; tried {tries} times" if tries > 1 else "")
        if isinstance(exc, _BAD_URL):
            message = f"{url} is {reason} ({exc}): check DISCO_MASTER"
        elif isinstance(exc, requests.ReadTimeout):
            message = (
                f"{who} at {url} did not answer {endpoint} ({reason}): it may be overloaded; "
                f"raise DISCODSL_HTTP_TIMEOUT, or check it with `curl {url}/disco/version`"
            )
        elif _never_sent(exc):
            message = f"could not reach {who} at {url} ({reason}): {hint}"
        else:
            message = f"{who} at {url} did not complete {endpoint} ({reason}): {hint}"
        if unsent_only and not isinstance(exc, _BAD_URL) and not _never_sent(exc):
            message += (
                f"; the request may have reached {who}, so it was not sent again: "
                "check its state (e.g. `discodsl jobs`) before repeating it"
            )
        raise ClientError(message) from exc


# --------------------------------------------------------------------------
# Answers: status codes and JSON shapes
# --------------------------------------------------------------------------


class _OneOf:
    """A shape matching any of several shapes."""

    def __init__(self, *shapes: object):
        self.shapes = shapes


def _fits(value: object, shape: object) -> bool:
    """Does ``value`` (parsed JSON) have ``shape``?

    Shapes: a type (``int`` excludes ``bool``; ``object`` is anything),
    ``[s]`` a list of ``s``, ``(s1, s2)`` a list of that length,
    ``{"key": s}`` an object with at least those keys, ``_OneOf(...)``.
    """
    if isinstance(shape, _OneOf):
        return any(_fits(value, s) for s in shape.shapes)
    if shape is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(shape, type):
        return isinstance(value, shape)
    if isinstance(shape, list):
        return isinstance(value, list) and all(_fits(v, shape[0]) for v in value)
    if isinstance(shape, tuple):
        return (
            isinstance(value, list)
            and len(value) == len(shape)
            and all(_fits(v, s) for v, s in zip(value, shape, strict=True))
        )
    if isinstance(shape, dict):
        return isinstance(value, dict) and all(
            k in value and _fits(value[k], s) for k, s in shape.items()
        )
    return False


def _snippet(data: bytes | str, limit: int = 200) -> str:
    """A short, printable form of an answer's body (a JSON string is unquoted)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        if isinstance(value, str):
            text = value
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _status_error(
    resp: requests.Response, endpoint: str, special: Mapping[int, str]
) -> ClientError:
    """The ClientError for an answer with an error status."""
    body = _snippet(resp.content) or "(empty)"
    status = resp.status_code
    if status in special:  # str.replace: names in the message may hold braces
        return ClientError(special[status].replace("{body}", body))
    generic = {
        400: "the request was refused (400): {body}: the body does not have the shape "
        "the master expects (disco-spec section 5)",
        401: "the token was refused (401 {body}): set DDFS_READ_TOKEN / DDFS_WRITE_TOKEN",
        403: "the request was refused (403 {body})",
        404: "not found (404 {body}): check the name and that it still exists",
        413: "the request body is too large (413 {body})",
        500: "the master failed (500 {body}): the request crashed its handler; "
        "check the request, and the master's log for the reason",
        503: "the server is unavailable (503 {body}): try again later",
    }
    text = generic.get(status, f"unexpected answer {status} {resp.reason}: {{body}}")
    return ClientError(f"{endpoint}: " + text.replace("{body}", body))


def _json(resp: requests.Response, endpoint: str, shape: object, what: str) -> Any:
    """The answer's JSON, checked against ``shape`` (described as ``what``)."""
    try:
        value = json.loads(resp.content)
    except ValueError:
        value = resp.content
    if isinstance(value, bytes) or not _fits(value, shape):
        raise _shape_error(endpoint, what, resp.content)
    return value


def _shape_error(endpoint: str, what: str, got: object) -> ClientError:
    shown = _snippet(got) if isinstance(got, (bytes, str)) else repr(got)[:200]
    return ClientError(
        f"{endpoint} answered {shown!r}, expected {what}: "
        "is this a Disco 0.5.4 master? check it with `curl <master>/disco/version`"
    )


# --------------------------------------------------------------------------
# Transport: a connection per request, timeouts, retries
# --------------------------------------------------------------------------


class _Transport:
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
        policy: _Policy = "idempotent",
        ok: tuple[int, ...] = (200,),
        special: Mapping[int, str] | None = None,
        who: str = _MASTER,
        hint: str = "",
        extra_timeout: float = 0.0,
        data: bytes | Path | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One request (retried per ``policy``); an answer not in ``ok`` is a ClientError."""
        target = url if "://" in url else self.base_url + url
        endpoint = f"{method} {target.split('?', 1)[0]}"
        origin = self.base_url if target.startswith(self.base_url) else _origin(target)
        attempt = 0
        while True:
            attempt += 1
            try:
                with _translate(
                    origin,
                    endpoint=endpoint,
                    timeout=self.timeout + extra_timeout,
                    who=who,
                    hint=hint or self.hint,
                    tries=attempt,
                    unsent_only=policy == "unsent",
                ):
                    resp = self._request(method, target, data, extra_timeout, kwargs)
            except ClientError as err:
                cause = err.__cause__ if err.__cause__ is not None else err
                if attempt > self.retries or not _retryable(cause, policy):
                    raise
                self._pause(attempt, err)
                continue
            if resp.status_code == 503 and policy == "idempotent" and attempt <= self.retries:
                self._pause(attempt, _status_error(resp, endpoint, {}))
                continue
            if resp.status_code not in ok:
                raise _status_error(resp, endpoint, special or {})
            return resp

    def _request(
        self,
        method: str,
        url: str,
        data: bytes | Path | None,
        extra_timeout: float,
        kwargs: dict[str, Any],
    ) -> requests.Response:
        timeout = (self.timeout, self.timeout + extra_timeout)
        with contextlib.ExitStack() as stack:
            session = self.session
            if session is None:  # closed on the way out; a streamed answer still reads to the end
                session = stack.enter_context(requests.Session())
            body: bytes | IO[bytes] | None = (
                stack.enter_context(data.open("rb"))  # streamed from disk, reopened each attempt
                if isinstance(data, Path)
                else data
            )
            return session.request(method, url, data=body, timeout=timeout, **kwargs)

    def _pause(self, attempt: int, err: ClientError) -> None:
        delay = min(self.backoff * 2 ** (attempt - 1), 30.0)
        log.warning("%s; retrying in %.2gs (retry %d of %d)", err, delay, attempt, self.retries)
        if self.on_retry is not None:
            self.on_retry(attempt, delay, err)
        time.sleep(delay)


def _retryable(cause: BaseException, policy: _Policy) -> bool:
    if _nobody_there(cause):
        return False
    if policy == "unsent":
        return _never_sent(cause)
    return isinstance(
        cause,
        (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError),
    ) and not isinstance(cause, requests.exceptions.SSLError)


def _proxy_hint(master_url: str, proxy: str) -> str:
    """The hint for an unreachable master reached through DISCO_PROXY ("" without one)."""
    base = proxy_url(master_url, proxy, to_master=True)
    if base == master_url:
        return ""
    return f"is DISCO_PROXY right? try `curl {base}/disco/version`"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --------------------------------------------------------------------------
# The master
# --------------------------------------------------------------------------

Event = tuple[str, str, str]  # (time, host, message)

_JOBINFO_SHAPE = {
    "timestamp": str,
    "active": str,
    "pipeline": list,
    "results": list,
    "inputs": list,
}
_EVENTS_SHAPE = [(str, str, str)]
_RESULTS_SHAPE = [(str, (str, list))]
_REPLICAS_SHAPE = [_OneOf(str, [str])]
_MASTER_SETTINGS = ("max_failure_rate", "accept_new_jobs")


_S = TypeVar("_S", bound="Service")


class Service:
    """What the master and DDFS clients share: the master's URL and one transport.

    ``session``, if given, carries every request (its owner closes it);
    otherwise each request has a connection of its own, so there is nothing
    to close: :meth:`close` and ``with`` are there for symmetry.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30,
        retries: int = 5,
        session: requests.Session | None = None,
        proxy: str = "",
        backoff: float = 0.5,
        on_retry: RetryCallback | None = None,
    ):
        self.url = url.rstrip("/")
        self.proxy = proxy
        self._http = _Transport(
            proxy_url(self.url, proxy, to_master=True),
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            session=session,
            on_retry=on_retry,
            hint=_proxy_hint(self.url, proxy),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to do: each request closed its connection when it was answered."""


class Master(Service):
    """A Disco master's HTTP API (disco-spec section 5).

    ``url`` is ``DISCO_MASTER`` (``http://HOST:PORT``). Build one from settings
    with :meth:`from_settings`. Every method raises :class:`ClientError` when the master
    cannot be reached or refuses; :meth:`wait` raises :class:`JobDead`.
    """

    @classmethod
    def from_settings(cls, settings: DiscoSettings, **kwargs: Any) -> Master:
        """A client for ``settings.DISCO_MASTER`` with the settings' timeout, retries, proxy."""
        options: dict[str, Any] = {
            "timeout": settings.DISCODSL_HTTP_TIMEOUT,
            "retries": settings.DISCODSL_RETRIES,
            "proxy": settings.DISCO_PROXY,
        }
        return cls(settings.DISCO_MASTER, **{**options, **kwargs})

    # -- jobs ---------------------------------------------------------------

    def submit(self, jobpack: bytes) -> str:
        """POST a jobpack to ``/disco/job/new``; the new job's name.

        Never sent twice: a connection that fails after the jobpack may have
        reached the master is a ClientError that says so.
        """
        resp = self._http.send(
            "POST",
            "/disco/job/new",
            data=jobpack,
            policy="unsent",
            special={
                403: "the master does not accept new jobs ({body}): "
                "ask its admin to turn accept_new_jobs back on in the master's settings",
                413: f"the jobpack ({len(jobpack)} bytes) is too large for the master "
                "({body}, limit 1 GiB): ship less data in the job home",
            },
        )
        reply = _json(
            resp, "POST /disco/job/new", (str, str), '["ok", jobname] or ["error", reason]'
        )
        status, text = cast("list[str]", reply)
        if status == "ok":
            return text
        if status == "error":
            raise ClientError(f"the master refused the job: {text}: {_submit_hint(text)}")
        raise _shape_error(
            "POST /disco/job/new", '["ok", jobname] or ["error", reason]', repr(reply)
        )

    def results(
        self, jobnames: Sequence[str], timeout_ms: int = 0
    ) -> dict[str, tuple[str, list[list[str]]]]:
        """Status and results of jobs (``get_results``): name -> (status, replica lists).

        Status is ``ready``, ``active``, ``dead`` or ``unknown job``. If a job
        is active, the master answers when one ends or after ``timeout_ms``.
        Results are replica lists; save_results' ``"tag://..."`` becomes ``["tag://..."]``.
        """
        endpoint = "POST /disco/ctrl/get_results"
        body = json.dumps([int(timeout_ms), list(jobnames)]).encode()
        resp = self._http.send(
            "POST", "/disco/ctrl/get_results", data=body, extra_timeout=timeout_ms / 1000
        )
        reply = _json(resp, endpoint, _RESULTS_SHAPE, "[[jobname, [status, results]], ...]")
        answers: dict[str, tuple[str, list[list[str]]]] = {}
        for name, (status, results) in reply:
            if not _fits(results, _REPLICAS_SHAPE):
                raise _shape_error(endpoint, "results as lists of URLs", repr(results))
            answers[name] = (status, [[r] if isinstance(r, str) else r for r in results])
        return answers

    def wait(
        self,
        jobname: str,
        *,
        poll_ms: int = 2000,
        timeout_s: float | None = None,
        on_poll: Callable[[str, float], None] | None = None,
    ) -> list[list[str]]:
        """Block until ``jobname`` is ready; its results as replica lists.

        Polls ``get_results`` with short blocking timeouts (a long one can
        miss a save_results job's end; disco-spec section 5), calling
        ``on_poll(status, elapsed_s)`` after each answer. A dead job raises
        :class:`JobDead` carrying its last events; an unknown job, or one still
        active after ``timeout_s``, a :class:`ClientError`.
        """
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            wait_ms = poll_ms
            if timeout_s is not None:
                wait_ms = max(0, min(poll_ms, int((timeout_s - elapsed) * 1000)))
            status, results = self.results([jobname], wait_ms).get(jobname, ("unknown job", []))
            elapsed = time.monotonic() - start
            if on_poll is not None:
                on_poll(status, elapsed)
            if status == "ready":
                return results
            if status == "dead":
                raise self._job_dead(jobname)
            if status != "active":
                raise ClientError(
                    f"the master at {self.url} knows no job named {jobname!r} ({status}): "
                    "it may have been cleaned or purged; list jobs with `discodsl jobs`"
                )
            if timeout_s is not None and elapsed >= timeout_s:
                raise ClientError(
                    f"job {jobname!r} is still active after {elapsed:.1f}s "
                    f"(timeout_s={timeout_s}): "
                    f"it keeps running; wait again, or stop it with `discodsl kill {jobname}`"
                )

    def _job_dead(self, jobname: str) -> JobDead:
        try:
            events = self.events(jobname, num=100)
        except ClientError as exc:
            log.warning("could not fetch the events of dead job %s: %s", jobname, exc)
            events = []
        lines = [" ".join(e) for e in reversed(events)]  # oldest first
        why = [m for _, _, m in events if m.startswith(("FATAL:", "ERROR:", "WARNING:"))]
        reason = why[0] if why else "no error event was recorded"
        if len(why) > 1:
            reason += f" (before that: {why[1]})"
        return JobDead(
            f"job {jobname!r} died: {reason}; its last events are in .events, "
            f"all of them at {self.url}/disco/ctrl/jobevents?name={quote(jobname)}",
            jobname=jobname,
            events=lines,
        )

    def jobinfo(self, name: str) -> dict[str, Any]:
        """``jobinfo``: status (``active``), pipeline progress, results, inputs, owner."""
        resp = self._get("/disco/ctrl/jobinfo", {"name": name}, special=self._no_job(name))
        return cast(
            "dict[str, Any]",
            _json(
                resp,
                "GET /disco/ctrl/jobinfo",
                _JOBINFO_SHAPE,
                "an object with active, pipeline, results, inputs",
            ),
        )

    def joblist(self) -> list[tuple[int, str, str]]:
        """All jobs, newest first: (unix seconds, status, name)."""
        resp = self._get("/disco/ctrl/joblist")
        reply = _json(
            resp, "GET /disco/ctrl/joblist", [(int, str, str)], "[[seconds, status, name], ...]"
        )
        return [(t, s, n) for t, s, n in reply]

    def events(self, name: str, num: int = 100, filter: str | None = None) -> list[Event]:
        """The job's last ``num`` (1-1000) events, newest first: (time, host, message).

        ``filter`` keeps events whose message contains it, ignoring case
        (observed: "DONE" also matched "READY: Job done"). An unknown job has
        no events (the master answers 200 with an empty body).
        """
        if not 1 <= num <= 1000:
            raise ClientError(f"num={num} is out of range: the master returns 1-1000 events")
        params = {"name": name, "num": str(num)}
        if filter is not None:
            params["filter"] = filter
        resp = self._get("/disco/ctrl/jobevents", params)
        if not resp.content.strip():
            return []
        reply = _json(
            resp, "GET /disco/ctrl/jobevents", _EVENTS_SHAPE, "[[time, host, message], ...]"
        )
        return [(t, h, m) for t, h, m in reply]

    def rawevents(self, name: str, offset: int = 0) -> tuple[list[Event], int]:
        """The job's event file from byte ``offset``: (events oldest first, next offset).

        Only complete lines are returned; pass the next offset back to tail the file.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._get(
            "/disco/ctrl/rawevents",
            {"name": name},
            headers=headers,
            ok=(200, 206, 416),
            special=self._no_job(name),
        )
        data = resp.content
        if resp.status_code == 416:
            data = b""
        elif resp.status_code == 200 and offset:  # the Range was ignored
            data = data[offset:]
        complete = data[: data.rfind(b"\n") + 1]
        events: list[Event] = []
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not _fits(event, (str, str, str)):
                raise _shape_error(
                    "GET /disco/ctrl/rawevents", '["time", "host", "message"] lines', line
                )
            events.append((event[0], event[1], event[2]))
        return events, offset + len(complete)

    def stageresults(self, name: str, stage: str) -> list[list[str]]:
        """The results of a finished stage of a job, as replica lists."""
        resp = self._get(
            "/disco/ctrl/get_stageresults",
            {"name": name, "stage": stage},
            special={
                404: f"no results for stage {stage!r} of job {name!r} ({{body}}): "
                "the stage has not finished, the job died, or there is no such job or stage"
            },
        )
        return cast(
            "list[list[str]]",
            _json(resp, "GET /disco/ctrl/get_stageresults", [[str]], "a list of replica lists"),
        )

    def parameters(self, name: str) -> bytes:
        """The jobpack the job was submitted with."""
        return self._get(
            "/disco/ctrl/parameters", {"name": name}, special=self._no_job(name)
        ).content

    def kill(self, name: str) -> None:
        """Stop a job (the master answers "" even for unknown jobs)."""
        self._post_name("kill_job", name)

    def purge(self, name: str) -> None:
        """Delete a job and all its data (asynchronous on the master)."""
        self._post_name("purge_job", name)

    def clean(self, name: str) -> None:
        """Forget a job but keep its data."""
        self._post_name("clean_job", name)

    # -- the cluster ----------------------------------------------------------

    def version(self) -> str:
        """The master's Disco version, e.g. ``"0.5.4"``."""
        return cast(
            "str", _json(self._get("/disco/version"), "GET /disco/version", str, "a version string")
        )

    def nodeinfo(self) -> dict[str, dict[str, Any]]:
        """Per node: job_ok, data_error, error, max_workers, connected, blacklisted, disk."""
        resp = self._get("/disco/ctrl/nodeinfo")
        reply = _json(resp, "GET /disco/ctrl/nodeinfo", dict, "an object of nodes")
        if not all(isinstance(v, dict) for v in reply.values()):
            raise _shape_error(
                "GET /disco/ctrl/nodeinfo", "an object of node objects", resp.content
            )
        return cast("dict[str, dict[str, Any]]", reply)

    def blacklisted(self) -> list[str]:
        """The nodes the master does not schedule tasks on."""
        return cast(
            "list[str]",
            _json(
                self._get("/disco/ctrl/get_blacklist"),
                "GET /disco/ctrl/get_blacklist",
                [str],
                "a list of hosts",
            ),
        )

    def config_table(self) -> list[tuple[str, int]]:
        """The node table: (host pattern, worker slots)."""
        resp = self._get("/disco/ctrl/load_config_table")
        reply = _json(
            resp, "GET /disco/ctrl/load_config_table", [(str, str)], '[[host, "workers"], ...]'
        )
        try:
            return [(host, int(workers)) for host, workers in reply]
        except ValueError:
            raise _shape_error(
                "GET /disco/ctrl/load_config_table", "worker counts as numbers", resp.content
            ) from None

    def save_config_table(self, rows: Iterable[tuple[str, int | str]]) -> None:
        """Replace the node table; worker counts are sent as strings, as the master requires."""
        table = [[str(host), str(workers)] for host, workers in rows]
        resp = self._http.send(
            "POST",
            "/disco/ctrl/save_config_table",
            data=json.dumps(table).encode(),
            special={
                400: f"the master refused the config table {json.dumps(table)} ({{body}}): "
                "give each host pattern once, with a worker count"
            },
        )
        self._expect_text(resp, "POST /disco/ctrl/save_config_table", "table saved!")

    def settings(self) -> dict[str, int]:
        """The master's settings: ``max_failure_rate``, ``accept_new_jobs``."""
        resp = self._get("/disco/ctrl/get_settings")
        reply = _json(resp, "GET /disco/ctrl/get_settings", dict, "an object of settings")
        if not all(_fits(v, int) for v in reply.values()):
            raise _shape_error("GET /disco/ctrl/get_settings", "integer settings", resp.content)
        return cast("dict[str, int]", reply)

    def save_settings(self, mapping: Mapping[str, int | str | bool]) -> None:
        """Change master settings; values are sent as strings (an integer makes
        the 0.5.4 master drop the connection)."""
        unknown = sorted(set(mapping) - set(_MASTER_SETTINGS))
        if unknown:
            raise ClientError(
                f"unknown master setting {unknown[0]!r}: the master knows "
                f"{', '.join(_MASTER_SETTINGS)}"
            )
        body = {k: str(int(v)) if isinstance(v, bool) else str(v) for k, v in mapping.items()}
        resp = self._http.send("POST", "/disco/ctrl/save_settings", data=json.dumps(body).encode())
        self._expect_text(resp, "POST /disco/ctrl/save_settings", "Settings saved")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        retry: bool | None = None,
    ) -> bytes:
        """Send one request to an endpoint this class does not wrap; the answer's body.

        Error statuses are ClientErrors as for every method. ``retry``
        defaults to True for GET only.
        """
        policy: _Policy = (
            "idempotent" if (method == "GET" if retry is None else retry) else "unsent"
        )
        return self._http.send(method, path, params=params, data=data, policy=policy).content

    # -- helpers ------------------------------------------------------------

    def _get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        special: Mapping[int, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        return self._http.send("GET", path, params=params, special=special, **kwargs)

    def _post_name(self, op: str, name: str) -> None:
        resp = self._http.send("POST", f"/disco/ctrl/{op}", data=json.dumps(name).encode())
        self._expect_text(resp, f"POST /disco/ctrl/{op}", "")

    def _no_job(self, name: str) -> dict[int, str]:
        return {
            404: f"no job named {name!r} on the master at {self.url} ({{body}}): it may have "
            "been cleaned or purged; list jobs with `discodsl jobs`"
        }

    @staticmethod
    def _expect_text(resp: requests.Response, endpoint: str, expected: str) -> None:
        if _json(resp, endpoint, str, f"{expected!r}") != expected:
            raise _shape_error(endpoint, repr(expected), resp.content)


def _submit_hint(reason: str) -> str:
    """What to do about a job/new refusal (reasons: disco-spec section 1)."""
    hints = [
        ("invalid header", "the jobpack is truncated or not a jobpack; rebuild it"),
        ("unsupported version", "the master reads jobpack version 2 only"),
        ("missing key", "the jobdict lacks a required key; rebuild the jobpack"),
        ("invalid prefix", "job name prefixes may not contain '.' or '/'"),
        ("invalid grouping", "use split, group_label, group_all, group_node or group_node_label"),
        ("repeated_pipeline_stages", "give each stage of the pipeline its own name"),
        ("Invalid job pipeline", "each stage is [name, grouping, concurrent (a boolean)]"),
        ("invalid_job_inputs", "inputs are [[label, [url, ...]], ...] or lists of replica URLs"),
        ("invalid payload", "the jobdict or jobenvs is not valid JSON of the right shape"),
    ]
    for needle, hint in hints:
        if needle in reason:
            return hint
    return "check the jobpack against disco-spec section 1"
