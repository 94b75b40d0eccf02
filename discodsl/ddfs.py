"""Client for DDFS, the Disco Distributed Filesystem (disco-spec section 6).

:class:`DDFS` wraps the parts of DDFS a client uses (tags, blob upload,
attributes, reading blobs). :func:`check_name` and :func:`tag_name` validate
tag names; :func:`resolve_inputs` expands ``tag://`` job inputs into the
replica lists of the tag's blobs.

:func:`resolve_inputs` is the one place ``tag://`` URLs become blobs: job
inputs, a job's save_results tag, and ``discodsl ddfs cat`` all go through it.

It does not send requests itself: every request goes through
:mod:`discodsl.http` (a connection per request, timeouts, retries, the one
place ``requests`` exceptions become :class:`~discodsl.errors.ClientError`),
by way of :class:`~discodsl.service.Service`, which also holds the URL
helpers used here. The Disco master's own API is
:class:`~discodsl.client.Master`, which does not import this module.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

import requests

from discodsl.answers import answer_json, fits, shape_error
from discodsl.errors import BadAnswer, ClientError, TagNotFound, Unauthorized
from discodsl.http import ErrorFor, RetryCallback, origin, translate
from discodsl.jobstatus import command_line
from discodsl.service import Service, disco_url_to_http
from discodsl.worker import urls

if TYPE_CHECKING:
    from discodsl.settings import DiscoSettings

__all__ = ["DDFS", "check_name", "resolve_inputs", "tag_name"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9_\-@:]+")
# The longest tag name a Disco 0.5.4 node keeps: its file, "!partial." + name + "$" + a
# timestamp of up to 15 characters, must fit the file system's 255 bytes (a real master
# took 230 characters and failed on 231 with 500 replication_failed).
TAG_NAME_MAX = 230
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_\-@:]")


# --------------------------------------------------------------------------
# Names and inputs
# --------------------------------------------------------------------------


def check_name(name: str, what: str = "DDFS tag name", longest: int | None = TAG_NAME_MAX) -> str:
    """``name`` if it only holds ``[A-Za-z0-9_-@:]`` (``DDFS.safe_name``) and has at most
    ``longest`` characters (a tag name's limit, :data:`TAG_NAME_MAX`, unless told); else
    ClientError."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        safe = _UNSAFE_CHAR.sub("_", str(name)) or "data"
        raise ClientError(
            f"{name!r} is not a valid {what}: use only letters, digits and _ - @ : (e.g. {safe!r})"
        )
    if longest is not None and len(name) > longest:
        raise ClientError(
            f"{name[:40]!r}... is {len(name)} characters long: a {what} may have at most "
            f"{longest} (a node keeps a tag in a file named after it): shorten it"
        )
    return name


def tag_name(url_or_name: str) -> str:
    """``tag://NAME`` or ``NAME`` -> ``NAME`` (validated)."""
    name = urls.tag_name(url_or_name)  # tag://NAME, or tag://HOST/NAME as Disco allows
    meant = url_or_name.rstrip("/")
    if name == "" and urls.tag_name(meant):
        raise ClientError(
            f"{url_or_name!r} ends with '/': write {meant!r} (a tag's name is what follows "
            "the last '/')"
        )
    return check_name(url_or_name if name is None else name)


def resolve_inputs(inputs: Iterable[str | Sequence[str]], ddfs: DDFS) -> list[list[str]]:
    """Inputs or results as replica lists, each ``tag://NAME`` replaced by the tag's blobs.

    A plain URL becomes a one-replica list; a list is kept as the replicas of
    one input, unless it is one ``tag://`` URL (as a save_results job's
    results are). The master never resolves tags (disco-spec section 2): do it here.
    """
    resolved: list[list[str]] = []
    for item in inputs:
        if not isinstance(item, str) and len(item) == 1 and isinstance(item[0], str):
            item = item[0]
        if isinstance(item, str):
            resolved.extend(ddfs.blobs(item) if urls.is_tag(item) else [[item]])
            continue
        replicas = list(item)
        if not replicas or not all(isinstance(r, str) for r in replicas):
            raise ClientError(f"input {item!r} is not a URL or a list of replica URLs")
        if any(urls.is_tag(r) for r in replicas):
            raise ClientError(
                f"input {replicas!r} lists a tag as one replica of an input: "
                "give tag://NAME as an input of its own"
            )
        resolved.append(replicas)
    return resolved


# --------------------------------------------------------------------------
# DDFS
# --------------------------------------------------------------------------

_TAG_SHAPE = {"urls": [[str]]}


class DDFS(Service):
    """The client side of DDFS (disco-spec section 6), reached through the master.

    Tokens are sent as ``Authorization: Basic base64("token:<t>")``: the read
    token on GETs, the write token on everything else.
    """

    def __init__(
        self,
        master_url: str,
        *,
        read_token: str | None = None,
        write_token: str | None = None,
        disco_port: int | None = None,
        proxy: str = "",
        timeout: float = 30,
        retries: int = 5,
        session: requests.Session | None = None,
        backoff: float = 0.5,
        on_retry: RetryCallback | None = None,
    ):
        super().__init__(
            master_url,
            timeout=timeout,
            retries=retries,
            session=session,
            proxy=proxy,
            backoff=backoff,
            on_retry=on_retry,
        )
        self.read_token = read_token
        self.write_token = write_token
        self.disco_port = disco_port or urlsplit(self.url).port or 8989

    @classmethod
    def from_settings(cls, settings: DiscoSettings, **kwargs: Any) -> DDFS:
        """DDFS of ``settings.DISCO_MASTER``, with the settings' tokens, proxy, timeouts."""
        options: dict[str, Any] = {
            **cls.transport_options(settings),
            "read_token": settings.DDFS_READ_TOKEN,
            "write_token": settings.DDFS_WRITE_TOKEN,
            "disco_port": settings.DISCO_PORT,
        }
        return cls(settings.DISCO_MASTER, **{**options, **kwargs})

    # -- tags ---------------------------------------------------------------

    def list_tags(self, prefix: str = "") -> list[str]:
        """Names of all tags starting with ``prefix``."""
        path = (
            f"/ddfs/tags/{quote(check_name(prefix, 'tag prefix', None))}"
            if prefix
            else "/ddfs/tags"
        )
        resp = self._send("GET", path)
        return cast("list[str]", answer_json(resp, f"GET {path}", [str], "a list of tag names"))

    def get_tag(self, name: str) -> dict[str, Any]:
        """The tag: ``{version, id, last-modified, urls, user-data}``; urls newest first. The
        token of a ``tag://TOKEN@/NAME`` URL is the read token, as Disco's client takes it."""
        path = self._tag_path(name)
        token = urls.tag_token(name)
        resp = self._send("GET", path, special=self._tag_errors(tag_name(name)), token=token)
        return cast(
            "dict[str, Any]", answer_json(resp, f"GET {path}", _TAG_SHAPE, "a tag object with urls")
        )

    def blobs(self, name: str) -> list[list[str]]:
        """The replica lists of a tag's blobs, following entries that are other tags.

        A tag's own blobs come before those of the tags it lists; a tag is
        visited once, so cycles end. A listed tag that does not exist is a
        :class:`TagNotFound` naming both tags (Disco skips it silently).
        """
        found: list[list[str]] = []
        seen: set[str] = set()

        def walk(url: str, parent: str | None) -> None:
            tag = tag_name(url)  # read by its URL, which may hold a token
            if tag in seen:
                return
            seen.add(tag)
            try:
                entries = self.get_tag(url)["urls"]
            except ClientError as exc:
                if parent is None:
                    raise
                raise _listed_by(parent, tag, exc) from exc
            children = [r[0] for r in entries if r and _is_tag_entry(r[0])]
            found.extend(r for r in entries if r and not _is_tag_entry(r[0]))
            for child in children:
                walk(child, tag)

        walk(name, None)
        return found

    def tag(
        self, name: str, urls: Iterable[str | Sequence[str]], *, update: bool = False
    ) -> list[str]:
        """Append replica lists to a tag, creating it; the tag's new URLs.

        With ``update``, URLs already in the tag are skipped, which also makes
        the call safe to retry; without it, it is sent again only if it never
        left this machine (appending twice would duplicate the blobs).
        """
        replicas = [[u] if isinstance(u, str) else list(u) for u in urls]
        if not fits(replicas, [[str]]):
            raise ClientError(f"tag({name!r}, ...): expected a list of URLs or replica lists")
        path = self._tag_path(name)
        resp = self._send(
            "POST",
            path,
            data=json.dumps(replicas).encode(),
            params={"update": "1"} if update else None,
            policy="idempotent" if update else "unsent",
            special=self._tag_errors(name),
        )
        return cast("list[str]", answer_json(resp, f"POST {path}", [str], "a list of tag URLs"))

    def delete(self, name: str, *, missing_ok: bool = True) -> None:
        """Delete a tag (its blobs are garbage-collected by DDFS later). DDFS deletes a
        missing tag as "deleted": without ``missing_ok``, TagNotFound says it is not there,
        found in the tags' list (a GET of the tag would need its read token too, where
        DDFS deletes with the write token)."""
        path = self._tag_path(name)
        if not missing_ok and tag_name(name) not in self.list_tags(tag_name(name)):
            raise self._tag_errors(name)[404]("not found")
        resp = self._send("DELETE", path, special=self._tag_errors(name))
        if answer_json(resp, f"DELETE {path}", str, '"deleted"') != "deleted":
            raise shape_error(f"DELETE {path}", '"deleted"', resp.content)

    def get_attr(self, name: str, attr: str) -> Any:
        """A user attribute of a tag (any JSON value)."""
        path = f"{self._tag_path(name)}/{check_name(attr, 'tag attribute name', None)}"
        where = f"{self.url}{self._tag_path(name)}"

        def missing(body: str) -> BadAnswer:
            return BadAnswer(
                f"tag {name!r} has no attribute {attr!r}, or no such tag ({body}): "
                f"see its attributes (user-data) with `curl {where}`"
            )

        special: dict[int, ErrorFor] = {404: missing}
        return answer_json(self._send("GET", path, special=special), f"GET {path}", object, "JSON")

    def set_attr(self, name: str, attr: str, value: Any) -> None:
        """Set a user attribute of a tag to a JSON value."""
        path = f"{self._tag_path(name)}/{check_name(attr, 'tag attribute name', None)}"
        resp = self._send(
            "PUT", path, data=json.dumps(value).encode(), special=self._tag_errors(name)
        )
        answer_json(resp, f"PUT {path}", [str], "a list of tag URLs")

    # -- blobs --------------------------------------------------------------

    def push(self, name: str, files: Iterable[str | Path], replicas: int = 1) -> list[list[str]]:
        """Upload files as blobs and append them to tag ``name``; their replica lists.

        Per file: ``new_blob`` gives ``replicas`` put URLs, the bytes are PUT to
        each (201, the blob's ``disco://`` URL); then one POST tags them all.
        """
        name = tag_name(name)  # a tag:// URL names its tag, as a job's input does
        if replicas < 1:
            raise ClientError(f"replicas={replicas}: a blob needs at least 1 replica")
        blobs = [self._push_blob(Path(f), replicas) for f in files]
        self.tag(name, blobs)
        return blobs

    def _push_blob(self, path: Path, replicas: int) -> list[str]:
        if path.is_dir():
            raise ClientError(
                f"cannot push {str(path)!r}: it is a directory: push the files in it "
                f"(e.g. {str(path / '*')!r}, which the shell expands)"
            )
        if not path.exists():
            raise ClientError(f"cannot push {str(path)!r}: no such file")
        if not path.is_file():
            raise ClientError(
                f"cannot push {str(path)!r}: {str(path)!r} is not a regular file (a device, "
                "a pipe or a socket): push a file (save what a program writes to one first)"
            )
        blob = _UNSAFE_CHAR.sub("_", path.name)
        where = f"/ddfs/new_blob/{quote(blob)}"
        resp = self._send(
            "GET",
            where,
            params={"replicas": str(replicas)},
            special={403: lambda body: self._no_room(blob, replicas, body)},
        )
        put_urls = answer_json(resp, f"GET {where}", [str], "a list of put URLs")
        if len(put_urls) != replicas:
            raise shape_error(f"GET {where}", f"{replicas} put URL(s)", resp.content)
        return [self._put(url, path) for url in put_urls]

    def _put(self, url: str, path: Path) -> str:
        target = urls.proxy_url(url, self.proxy, method="PUT")
        resp = self._send(
            "PUT",
            target,
            data=path,
            ok=(200, 201),
            who="the DDFS node",
            hint=f"the master handed out this put URL; try `curl -I {url}`",
        )
        return cast("str", answer_json(resp, f"PUT {url}", str, "the blob's disco:// URL"))

    def cat(self, url: str, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """The bytes at a blob or result URL (``disco://``, ``dir://``, ``http://``, ``raw://``)."""
        if url.startswith(urls.RAW):
            yield url[len(urls.RAW) :].encode()
            return
        target = urls.proxy_url(disco_url_to_http(url, self.disco_port), self.proxy)
        hint = f"is the node up? try `curl -I {target}`"
        resp = self._send("GET", target, stream=True, who="the Disco node", hint=hint)
        with (
            resp,
            translate(
                origin(target),
                endpoint=f"GET {url}",
                timeout=self._http.timeout,
                who="the Disco node",
                hint=hint,
            ),
        ):
            yield from resp.iter_content(chunk_size)

    # -- helpers ------------------------------------------------------------

    def _send(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """The request, with ``token`` (else the read token on a GET, the write token on the
        rest) as its authorization."""
        if token is None:
            token = self.read_token if method in ("GET", "HEAD") else self.write_token
        if token is not None:
            auth = base64.b64encode(f"token:{token}".encode()).decode()
            kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Basic {auth}"}
        return self._http.send(method, path, **kwargs)

    @staticmethod
    def _tag_path(name: str) -> str:
        return f"/ddfs/tag/{quote(tag_name(name), safe='@:')}"

    def _no_room(self, blob: str, replicas: int, body: str) -> BadAnswer:
        return BadAnswer(
            f"DDFS cannot place {replicas} replica(s) of {blob!r} ({body}): "
            f"lower replicas, or check the nodes with `curl {self.url}/disco/ctrl/nodeinfo`"
        )

    def _tag_errors(self, name: str) -> dict[int, ErrorFor]:
        # The listing command names this master: without --master it would fail as
        # printed whenever the master came from master= rather than DISCO_MASTER.
        listing = command_line("ddfs ls", self.url)
        return {
            404: lambda body: TagNotFound(
                f"no DDFS tag named {name!r} ({body}): list tags with `{listing}`",
                tag=tag_name(name),
            ),
            403: lambda body: BadAnswer(f"DDFS refused tag {name!r} ({body}): check the name"),
            401: lambda body: Unauthorized(
                f"DDFS refused the token for tag {name!r} ({body}): "
                "set DDFS_READ_TOKEN / DDFS_WRITE_TOKEN to the tag's tokens (an input's "
                f"read token may come in its URL too, tag://TOKEN@/{name}, as Disco's "
                "client takes it; the tags a tag lists are read with DDFS_READ_TOKEN)"
            ),
        }


def _is_tag_entry(url: str) -> bool:
    """A tag's URL entry that names another tag (``tag://NAME``, or a bare name)."""
    return urls.is_tag(url) or ("://" not in url and "/" not in url)


def _listed_by(parent: str, tag: str, exc: ClientError) -> ClientError:
    """``exc`` (its class and facts kept) saying that tag ``parent`` lists the failed ``tag``."""
    error = copy.copy(exc)
    error.args = (f"tag {parent!r} lists tag {tag!r}, which failed: {exc}",)
    return error
