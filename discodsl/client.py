"""Client for a Disco 0.5.4 master's HTTP API (disco-spec sections 5 and 7).

:class:`Master` wraps the master's HTTP API (submit a jobpack, wait for its
results, events, job control, cluster configuration), built on
:class:`~discodsl.service.Service`, which the DDFS client
(:mod:`discodsl.ddfs`, not imported here) shares.

Requests go through :mod:`discodsl.http` (a connection per request,
timeouts, retries, the one place network errors are named); every answer's
JSON shape is checked (:mod:`discodsl.answers`) before it is returned; what
a job's status means is :mod:`discodsl.jobstatus`.

It does not build jobpacks, read result files record by record, or decide
what to do with events; the runners do.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import requests

from discodsl import jobstatus
from discodsl.answers import OneOf, answer_json, fits, shape_error
from discodsl.errors import BadAnswer, ClientError, RequestFailed
from discodsl.http import ErrorFor, Policy, RetryCallback
from discodsl.jobstatus import Event
from discodsl.service import Service
from discodsl.worker.jobfile import MAGIC

if TYPE_CHECKING:
    from discodsl.settings import DiscoSettings

__all__ = ["Event", "Master", "RetryCallback"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# The master
# --------------------------------------------------------------------------

_JOBINFO_SHAPE = {
    "timestamp": str,
    "active": str,
    "pipeline": list,
    "results": list,
    "inputs": list,
}
_EVENTS_SHAPE = [(str, str, str)]
_RESULTS_SHAPE = [(str, (str, list))]
_REPLICAS_SHAPE = [OneOf(str, [str])]
# Seconds a poll of a wait with a timeout has past it, for the master's answer to come.
ANSWER_S = 1.0
# How every jobpack starts: its magic, big-endian.
_JOBPACK_START = MAGIC.to_bytes(2, "big")


class Master(Service):
    """A Disco master's HTTP API (disco-spec section 5).

    ``url`` is ``DISCO_MASTER`` (``http://HOST:PORT``). Build one from settings
    with :meth:`from_settings`. Every method raises :class:`ClientError` when the master
    cannot be reached or refuses; :meth:`wait` raises :class:`JobDead`.
    """

    @classmethod
    def from_settings(cls, settings: DiscoSettings, **kwargs: Any) -> Master:
        """A client for ``settings.DISCO_MASTER`` with the settings' timeout, retries, proxy."""
        return cls(settings.DISCO_MASTER, **{**cls.transport_options(settings), **kwargs})

    # -- jobs ---------------------------------------------------------------

    def submit(
        self, jobpack: bytes, within: float | None = None, timeout: float | None = None
    ) -> str:
        """POST a jobpack to ``/disco/job/new``; the new job's name.

        Never sent twice: a connection that fails after the jobpack may have
        reached the master is a ClientError that says so. ``within`` seconds,
        if given, bound the request and its retries: what is left of the run's
        ``timeout=`` (said as given), and a second for the answer.
        """
        started = time.monotonic()
        try:
            resp = self._send_jobpack(jobpack, within)
        except RequestFailed as exc:
            if within is None or time.monotonic() - started < within - ANSWER_S:
                raise
            raise RequestFailed(  # the run's timeout= cut it, not DISCODSL_HTTP_TIMEOUT
                f"the Disco master at {self.url} did not answer POST /disco/job/new within "
                f"the run's timeout= ({within - ANSWER_S if timeout is None else timeout:g}s): "
                "the job may have been "
                f"submitted all the same; look with `{jobstatus.command_line('jobs', self.url)}` "
                "before submitting it again, or give the run a longer timeout= (or none)",
                url=self.url,
                who=exc.who,
            ) from exc
        reply = answer_json(
            resp, "POST /disco/job/new", (str, str), '["ok", jobname] or ["error", reason]'
        )
        status, text = cast("list[str]", reply)
        if status == "ok":
            return text
        if status == "error":
            raise jobstatus.submit_refused(text)
        raise shape_error(
            "POST /disco/job/new", '["ok", jobname] or ["error", reason]', repr(reply)
        )

    def _send_jobpack(self, jobpack: bytes, within: float | None) -> Any:
        return self._http.send(
            "POST",
            "/disco/job/new",
            data=jobpack,
            policy="unsent",
            within=within,
            special={403: _not_accepting, 413: lambda body: _too_large(len(jobpack), body)},
        )

    def results(
        self, jobnames: Sequence[str], timeout_ms: int = 0, within: float | None = None
    ) -> dict[str, tuple[str, list[list[str]]]]:
        """Status and results of jobs (``get_results``): name -> (status, replica lists).

        Status is ``ready``, ``active``, ``dead`` or ``unknown job``. If a job
        is active, the master answers when one ends or after ``timeout_ms``.
        Results are replica lists; save_results' ``"tag://..."`` becomes ``["tag://..."]``.
        ``within`` seconds, if given, bound the request and its retries.
        """
        endpoint = "POST /disco/ctrl/get_results"
        body = json.dumps([int(timeout_ms), list(jobnames)]).encode()
        resp = self._http.send(
            "POST",
            "/disco/ctrl/get_results",
            data=body,
            extra_timeout=timeout_ms / 1000,
            within=within,
        )
        reply = answer_json(resp, endpoint, _RESULTS_SHAPE, "[[jobname, [status, results]], ...]")
        answers: dict[str, tuple[str, list[list[str]]]] = {}
        for name, (status, results) in reply:
            if not fits(results, _REPLICAS_SHAPE):
                raise shape_error(endpoint, "results as lists of URLs", repr(results))
            answers[name] = (status, [[r] if isinstance(r, str) else r for r in results])
        return answers

    def status(
        self, jobname: str, timeout_ms: int = 0, within: float | None = None
    ) -> tuple[str, list[list[str]]]:
        """One job's status and results (see :meth:`results`); ``unknown job`` when the
        answer is empty. An answer about other jobs only is no answer: a BadAnswer."""
        answers = self.results([jobname], timeout_ms, within)
        if jobname not in answers and answers:
            raise shape_error(
                "POST /disco/ctrl/get_results",
                f"an answer about the job asked for, {jobname!r}",
                f"an answer about {', '.join(map(repr, answers))} only",
            )
        return answers.get(jobname, ("unknown job", []))

    def wait(
        self,
        jobname: str,
        *,
        poll_ms: int = 2000,
        timeout_s: float | None = None,
        on_poll: Callable[[str, float], None] | None = None,
        started: float | None = None,
    ) -> list[list[str]]:
        """Block until ``jobname`` is ready; its results as replica lists.

        Polls ``get_results`` with short blocking timeouts (a long one can
        miss a save_results job's end; disco-spec section 5), calling
        ``on_poll(status, elapsed_s)`` after each answer. A dead job raises
        :class:`JobDead` carrying its last events; an unknown job
        :class:`NoSuchJob`; one still active after ``timeout_s`` :class:`JobActive`,
        counted from now, or from ``started`` (``time.monotonic()``: a run's submission).
        """
        timeout_s = jobstatus.wait_limit(timeout_s)
        start = time.monotonic() if started is None else started
        while True:
            elapsed = time.monotonic() - start
            wait_ms = poll_ms
            if timeout_s is not None:
                wait_ms = max(0, min(poll_ms, int((timeout_s - elapsed) * 1000)))
            status, results = self._poll(jobname, wait_ms, start, timeout_s)
            elapsed = time.monotonic() - start
            if on_poll is not None:
                on_poll(status, elapsed)
            if status != "active":
                return self._ready(jobname, status, results)
            if timeout_s is not None and elapsed >= timeout_s:
                raise jobstatus.still_active(jobname, elapsed, timeout_s, self.url)

    def _poll(
        self, jobname: str, wait_ms: int, start: float, timeout_s: float | None
    ) -> tuple[str, list[list[str]]]:
        """One poll of a wait that began at ``start``: within its ``timeout_s`` (a second
        more for the answer to come), its request and retries included; a master that does
        not answer in that time is a JobActive, as a job still active then is."""
        if timeout_s is None:
            return self.status(jobname, wait_ms)
        within = max(0.0, timeout_s - (time.monotonic() - start)) + ANSWER_S
        try:
            return self.status(jobname, wait_ms, within)
        except RequestFailed as exc:
            elapsed = time.monotonic() - start
            if elapsed < timeout_s:
                raise
            raise jobstatus.no_answer_in_time(jobname, elapsed, timeout_s, self.url) from exc

    def results_of(self, jobname: str) -> list[list[str]]:
        """The results of a job that is ready, at once; the error its status means if it is not."""
        status, results = self.status(jobname)
        return jobstatus.ready_results(self.url, jobname, status, results)

    def _ready(self, jobname: str, status: str, results: list[list[str]]) -> list[list[str]]:
        """A dead job's error carries its events; other statuses map as for results_of."""
        if status == "dead":
            raise jobstatus.dead_job(self.url, jobname, self._last_events(jobname))
        return jobstatus.ready_results(self.url, jobname, status, results)

    def _last_events(self, jobname: str) -> list[Event]:
        try:
            return self.events(jobname, num=100)
        except ClientError as exc:
            log.warning("could not fetch the events of dead job %s: %s", jobname, exc)
            return []

    def jobinfo(self, name: str, within: float | None = None) -> dict[str, Any]:
        """``jobinfo``: status (``active``), pipeline progress, results, inputs, owner
        (``within`` seconds, if given, bound the request and its retries)."""
        resp = self._get(
            "/disco/ctrl/jobinfo", {"name": name}, special=self._no_job(name), within=within
        )
        return cast(
            "dict[str, Any]",
            answer_json(
                resp,
                "GET /disco/ctrl/jobinfo",
                _JOBINFO_SHAPE,
                "an object with active, pipeline, results, inputs",
            ),
        )

    def joblist(self) -> list[tuple[int, str, str]]:
        """All jobs, newest first: (unix seconds, status, name)."""
        resp = self._get("/disco/ctrl/joblist")
        reply = answer_json(
            resp, "GET /disco/ctrl/joblist", [(int, str, str)], "[[seconds, status, name], ...]"
        )
        return [(t, s, n) for t, s, n in reply]

    def events(self, name: str, num: int = 100, filter: str | None = None) -> list[Event]:
        """The job's last ``num`` (1-1000) events, newest first: (time, host, message).

        The master answers from the events it keeps in memory: the newest 100
        to 200 of a job's. For the whole log, read :meth:`rawevents`.

        ``filter`` (letters, digits, ``_:;<=>?@!``) is a case-blind ``grep`` of
        the job's event file, whole lines: the first ``num`` lines it matches,
        newest first, of the events the master has written so far (observed:
        "DONE" also matched "READY: Job done"). An unknown job has no events
        (the master answers 200 with an empty body).
        """
        if not 1 <= num <= 1000:
            raise ClientError(f"num={num} is out of range: the master returns 1-1000 events")
        params = {"name": name, "num": str(num)}
        if filter:
            params["filter"] = _grep_query(filter)
        resp = self._get("/disco/ctrl/jobevents", params)
        if not resp.content.strip():
            return []
        reply = answer_json(
            resp, "GET /disco/ctrl/jobevents", _EVENTS_SHAPE, "[[time, host, message], ...]"
        )
        return [(t, h, m) for t, h, m in reply]

    def rawevents(
        self, name: str, offset: int = 0, within: float | None = None
    ) -> tuple[list[Event], int]:
        """The job's event file from byte ``offset``: (events oldest first, next offset).

        Only complete lines are returned; pass the next offset back to tail the file.
        ``within`` seconds, if given, bound the request and its retries.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._get(
            "/disco/ctrl/rawevents",
            {"name": name},
            headers=headers,
            ok=(200, 206, 416),
            special=self._no_job(name),
            within=within,
        )
        data = resp.content
        if resp.status_code == 416:
            data = b""
        elif resp.status_code == 200 and offset:  # the Range was ignored
            data = data[offset:]
        complete = data[: data.rfind(b"\n") + 1]
        return [_event(line) for line in complete.splitlines()], offset + len(complete)

    def stageresults(self, name: str, stage: str) -> list[list[str]]:
        """The results of a finished stage of a job, as replica lists."""
        resp = self._get(
            "/disco/ctrl/get_stageresults",
            {"name": name, "stage": stage},
            special={404: lambda body: _no_stage_results(name, stage, body)},
        )
        return cast(
            "list[list[str]]",
            answer_json(
                resp, "GET /disco/ctrl/get_stageresults", [[str]], "a list of replica lists"
            ),
        )

    def parameters(self, name: str) -> bytes:
        """The jobpack the job was submitted with (a BadAnswer if what came starts as none:
        a login page, a proxy's answer)."""
        data: bytes = self._get(
            "/disco/ctrl/parameters", {"name": name}, special=self._no_job(name)
        ).content
        if not data.startswith(_JOBPACK_START):
            raise shape_error("GET /disco/ctrl/parameters", "a jobpack", data)
        return data

    def kill(self, name: str) -> None:
        """Stop a job (the master answers "" even for unknown jobs)."""
        self._post_name("kill_job", name)

    def purge(self, name: str) -> None:
        """Delete a job and all its data (asynchronous on the master)."""
        self._post_name("purge_job", name)

    # -- the cluster ----------------------------------------------------------

    def version(self) -> str:
        """The master's Disco version, e.g. ``"0.5.4"``."""
        resp = self._get("/disco/version")
        return cast("str", answer_json(resp, "GET /disco/version", str, "a version string"))

    def nodeinfo(self) -> dict[str, dict[str, Any]]:
        """Per node: job_ok, data_error, error, max_workers, connected, blacklisted, disk."""
        resp = self._get("/disco/ctrl/nodeinfo")
        reply = answer_json(resp, "GET /disco/ctrl/nodeinfo", dict, "an object of nodes")
        if not all(isinstance(v, dict) for v in reply.values()):
            raise shape_error("GET /disco/ctrl/nodeinfo", "an object of node objects", resp.content)
        return cast("dict[str, dict[str, Any]]", reply)

    def config_table(self) -> list[tuple[str, int]]:
        """The node table: (host pattern, worker slots)."""
        resp = self._get("/disco/ctrl/load_config_table")
        reply = answer_json(
            resp, "GET /disco/ctrl/load_config_table", [(str, str)], '[[host, "workers"], ...]'
        )
        try:
            return [(host, int(workers)) for host, workers in reply]
        except ValueError:
            raise shape_error(
                "GET /disco/ctrl/load_config_table", "worker counts as numbers", resp.content
            ) from None

    def settings(self) -> dict[str, int]:
        """The master's settings: ``max_failure_rate``, ``accept_new_jobs``."""
        resp = self._get("/disco/ctrl/get_settings")
        reply = answer_json(resp, "GET /disco/ctrl/get_settings", dict, "an object of settings")
        if not all(fits(v, int) for v in reply.values()):
            raise shape_error("GET /disco/ctrl/get_settings", "integer settings", resp.content)
        return cast("dict[str, int]", reply)

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
        policy: Policy = "idempotent" if (method == "GET" if retry is None else retry) else "unsent"
        return self._http.send(method, path, params=params, data=data, policy=policy).content

    # -- helpers ------------------------------------------------------------

    def _get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        special: Mapping[int, ErrorFor] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        return self._http.send("GET", path, params=params, special=special, **kwargs)

    def _post_name(self, op: str, name: str) -> None:
        resp = self._http.send("POST", f"/disco/ctrl/{op}", data=json.dumps(name).encode())
        self._expect_text(resp, f"POST /disco/ctrl/{op}", "")

    def _no_job(self, name: str) -> dict[int, ErrorFor]:
        return jobstatus.no_job_status(self.url, name)

    @staticmethod
    def _expect_text(resp: requests.Response, endpoint: str, expected: str) -> None:
        if answer_json(resp, endpoint, str, f"{expected!r}") != expected:
            raise shape_error(endpoint, repr(expected), resp.content)


def _grep_query(text: str) -> str:
    """``text`` as a jobevents filter, which the master hands to ``grep -i`` after dropping
    all but letters, digits and ``:;<=>?@[\\]^_!`` (``[\\]^`` then act as a pattern)."""
    refused = sorted(set(re.findall(r"[^a-zA-Z0-9_:;<=>?@!]", text)))
    if refused:
        raise ClientError(
            f"filter={text!r}: the master's filter takes letters, digits and _:;<=>?@! as "
            f"they are, but drops or reads as a pattern {''.join(refused)!r}: pass a filter "
            "of those characters only (one word, say), or filter rawevents() yourself"
        )
    return text


def _not_accepting(body: str) -> BadAnswer:
    return BadAnswer(
        f"the master does not accept new jobs ({body}): "
        "ask its admin to turn accept_new_jobs back on in the master's settings",
    )


def _too_large(size: int, body: str) -> BadAnswer:
    return BadAnswer(
        f"the jobpack ({size} bytes) is too large for the master "
        f"({body}, limit 1 GiB): ship less data in the job home",
    )


def _event(line: bytes) -> Event:
    """One line of a job's event file: the master's ``["time", "host", "message"]``; a line
    that is not one (bytes that are not UTF-8, as a worker's last words cut mid-character;
    an edit) as its text, with no time or host: one odd line must not hide the others, nor
    fail the job it is about."""
    text = line.decode("utf-8", "replace")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        event = None
    if fits(event, (str, str, str)):
        return (event[0], event[1], event[2])
    return ("", "", text)


def _no_stage_results(name: str, stage: str, body: str) -> BadAnswer:
    return BadAnswer(
        f"no results for stage {stage!r} of job {name!r} ({body}): "
        "the stage has not finished (the job may have died before it did; a dead job keeps "
        "the results of the stages that finished until it is purged), or there is no such "
        "job or stage",
    )
