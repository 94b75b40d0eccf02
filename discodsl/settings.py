"""Cluster settings: where the Disco master is and how to talk to it.

:class:`DiscoSettings` holds the settings a client reads, under Disco's own
names (``DISCO_MASTER``, ``DISCO_PORT``, ...; disco-spec section 7) plus two of
ours (``DISCODSL_HTTP_TIMEOUT``, ``DISCODSL_RETRIES``). Each value comes from,
highest priority first:

1. keyword arguments (``load_settings(DISCO_PORT=9000)``);
2. the environment (``DISCO_PORT=9000``; an empty variable counts as unset);
3. the settings file: ``DISCO_SETTINGS_FILE`` if set, else ``~/.disco``, else
   ``/etc/disco/settings.py``, whichever exists first;
4. the defaults below.

Disco's settings file is Python (``DISCO_PORT = 8989``). It is read with
:mod:`ast`, never executed: only ``NAME = <literal>`` lines are allowed, and
names this class does not know (``DISCO_HOME``, ...) are ignored, including
the client settings discodsl has no use for (:data:`UNUSED`).

:func:`configured_master` says whether the user named a master at all (the
runners and the command line ask it before falling back to Disco's
``http://<this host>:8989``); :func:`job_owner` is the jobdict's ``owner``.

Invalid values raise :class:`~discodsl.errors.SettingsError` naming the
setting, the value, where it came from and what to write instead; pydantic's
``ValidationError`` never escapes this module. This module does no network
I/O: :class:`discodsl.client.Master` uses what it holds.
"""

from __future__ import annotations

import ast
import difflib
import getpass
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from discodsl.errors import SettingsError

__all__ = [
    "DiscoSettings",
    "configured_master",
    "job_owner",
    "load_settings",
    "read_settings_file",
]

#: Where Disco looks for its settings file when DISCO_SETTINGS_FILE is unset.
DEFAULT_SETTINGS_FILES = ("~/.disco", "/etc/disco/settings.py")

#: Client settings of Disco that discodsl ignores, and why.
UNUSED = {
    "DISCO_EVENTS": "follow a job's events with `discodsl events JOB --follow`, "
    "or its progress with progress=True",
    "DISCO_DEBUG": "a failing task's traceback is in its TaskFailed error and its events",
    "DDFS_PUT_PORT": "the master hands out the put URLs of new blobs",
}


def _default_owner() -> str:
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a uid without a passwd entry)
        login = "unknown"
    return f"{login}@{socket.gethostname()}"


class DiscoSettings(BaseSettings):
    """The settings of one Disco cluster, as a client sees them.

    Build one with :func:`load_settings` (or ``DiscoSettings(**overrides)``),
    then hand it to :meth:`discodsl.client.Master.from_settings`. Instances
    are frozen; load new ones to change a value.
    """

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
        coerce_numbers_to_str=True,  # settings files may say DISCO_JOB_OWNER = 1
    )

    # Declared before DISCO_MASTER: its default is built from these two.
    DISCO_MASTER_HOST: str = Field(default_factory=socket.gethostname, min_length=1)
    DISCO_PORT: int = Field(default=8989, ge=1, le=65535)
    DISCO_MASTER: str = Field(default="", validate_default=True)
    DISCO_PROXY: str = ""
    DISCO_JOB_OWNER: str = Field(default_factory=_default_owner)
    DDFS_READ_TOKEN: str | None = None
    DDFS_WRITE_TOKEN: str | None = None
    DISCODSL_HTTP_TIMEOUT: float = Field(default=30.0, gt=0)
    DISCODSL_RETRIES: int = Field(default=5, ge=0, le=100)
    #: The settings file that was read ("" if none).
    DISCO_SETTINGS_FILE: str = ""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _settings_error(exc, values) from exc

    @field_validator("DISCO_MASTER")
    @classmethod
    def _master_url(cls, value: str, info: ValidationInfo) -> str:
        host, port = info.data.get("DISCO_MASTER_HOST"), info.data.get("DISCO_PORT")
        if not value:
            # An invalid host or port is reported on its own; nothing to derive from.
            return f"http://{host}:{port}" if host and port else value
        return normalise_master_url(value, port or 8989)

    @field_validator("DISCO_PROXY")
    @classmethod
    def _proxy_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http URL")
        return value.strip().rstrip("/")

    @field_validator("DDFS_READ_TOKEN", "DDFS_WRITE_TOKEN")
    @classmethod
    def _empty_token_is_none(cls, value: str | None) -> str | None:
        return value or None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then Disco's settings file."""
        explicit = getattr(init_settings, "init_kwargs", {}).get("DISCO_SETTINGS_FILE")
        return (
            init_settings,
            env_settings,
            DiscoFileSource(settings_cls, settings_file_path(explicit)),
        )


def normalise_master_url(value: str, port: int = 8989) -> str:
    """``master:8989/`` -> ``http://master:8989``; a bare host gets ``port``."""
    url = value.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
        if urlsplit(url).port is None and urlsplit(url).hostname:
            url = f"{url}:{port}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ValueError("bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http URL")
    if parts.path or parts.query or parts.fragment:
        raise ValueError("has a path")
    return url


class DiscoFileSource(PydanticBaseSettingsSource):
    """The values of Disco's settings file, below the environment in priority."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None):
        super().__init__(settings_cls)
        self.path = path
        self.values = read_settings_file(path) if path is not None else {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        known = self.settings_cls.model_fields
        data = {k: v for k, v in self.values.items() if k in known}
        data.pop("DISCO_SETTINGS_FILE", None)  # the file cannot name another file
        if self.path is not None:
            data["DISCO_SETTINGS_FILE"] = str(self.path)
        return data


def settings_file_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The settings file to read: ``explicit``, ``$DISCO_SETTINGS_FILE``, or a default.

    A file named explicitly must exist; the defaults are used only if they do.
    """
    named = explicit or os.environ.get("DISCO_SETTINGS_FILE")
    if named:
        path = Path(named).expanduser()
        if not path.exists():
            raise SettingsError(
                f"DISCO_SETTINGS_FILE={str(named)!r}: no such file: "
                "create it, or unset DISCO_SETTINGS_FILE to use ~/.disco"
            )
        return path
    for candidate in DEFAULT_SETTINGS_FILES:
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    return None


def read_settings_file(path: Path) -> dict[str, Any]:
    """``NAME = literal`` assignments of a Disco settings file, without executing it.

    Anything else (an import, a call, an expression on the right-hand side) is a
    :class:`SettingsError` naming the file and line.
    """
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read the settings file {path}: {exc}") from exc
    except SyntaxError as exc:
        raise SettingsError(
            f"{path}:{exc.lineno}: not valid Python ({exc.msg}): "
            'a Disco settings file holds lines like DISCO_MASTER_HOST = "master"'
        ) from exc
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        for name, value in _assignment(path, node):
            values[name] = value
    return values


def _assignment(path: Path, node: ast.stmt) -> list[tuple[str, Any]]:
    """The (name, value) pairs one statement assigns, or a SettingsError."""
    targets: list[ast.expr]
    if isinstance(node, ast.Assign):
        targets, value_node = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value_node = [node.target], node.value
    else:
        raise SettingsError(
            f"{path}:{node.lineno}: only NAME = value lines are allowed, found "
            f"{ast.unparse(node).splitlines()[0]!r}: the settings file is read, never run; "
            "write each setting as a plain value"
        )
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    if len(names) != len(targets):
        raise SettingsError(
            f"{path}:{node.lineno}: only NAME = value lines are allowed: "
            "assign one plain name per line"
        )
    try:
        value = ast.literal_eval(value_node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise SettingsError(
            f"{path}:{node.lineno}: {names[0]} = {ast.unparse(value_node)} is not a literal: "
            f"the settings file is read, never run; write the value itself, "
            f'e.g. {names[0]} = "..." or a number'
        ) from None
    return [(name, value) for name in names]


# What each setting must look like, for error messages: (problem, what to set).
_EXPECTED: dict[str, tuple[str, str]] = {
    "DISCO_PORT": ("is not a port number", "an integer 1-65535"),
    "DISCO_MASTER": ("is not a master URL", "http://HOST:PORT, e.g. http://master:8989"),
    "DISCO_MASTER_HOST": ("is not a host name", "the master's host name"),
    "DISCO_PROXY": ("is not a proxy URL", "http://HOST:PORT, or leave it empty"),
    "DISCODSL_HTTP_TIMEOUT": ("is not a timeout", "a number of seconds greater than 0"),
    "DISCODSL_RETRIES": ("is not a retry count", "an integer 0-100"),
}


def _settings_error(exc: ValidationError, kwargs: dict[str, Any]) -> SettingsError:
    lines = [_describe(err, kwargs) for err in exc.errors()]
    return SettingsError("; ".join(lines))


def _describe(err: ErrorDetails, kwargs: dict[str, Any]) -> str:
    name = str(err["loc"][0]) if err["loc"] else "?"
    if err["type"] == "extra_forbidden" and name in UNUSED:
        return f"{name} is a Disco setting discodsl does not use: {UNUSED[name]}"
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(name, DiscoSettings.model_fields, n=1)
        fix = f"did you mean {close[0]}?" if close else "see discodsl.settings for the names"
        return f"{name} is not a Disco setting: {fix}"
    problem, expected = _EXPECTED.get(name, (f"is not valid ({err['msg']})", "a string"))
    return (
        f"{name}={err['input']!r} {problem}: set {name} to {expected} "
        f"(the value came from {_origin(name, kwargs)})"
    )


def _origin(name: str, kwargs: dict[str, Any]) -> str:
    if name in kwargs:
        return "a keyword argument"
    if os.environ.get(name):
        return "the environment"
    try:
        path = settings_file_path(kwargs.get("DISCO_SETTINGS_FILE"))
    except SettingsError:
        path = None
    return f"the settings file {path}" if path is not None else "the defaults"


def load_settings(**overrides: Any) -> DiscoSettings:
    """Settings from keyword arguments, the environment, the settings file, defaults.

    Overrides that are ``None`` are dropped, so command-line options that were
    not given can be passed straight through:
    ``load_settings(DISCO_MASTER=args.master)``.
    """
    return DiscoSettings(**{k: v for k, v in overrides.items() if v is not None})


def configured_master(master: str | None = None) -> str | None:
    """The master's URL if the user named one, else None.

    Named means: ``master`` (a keyword or ``--master``), or ``DISCO_MASTER``
    or ``DISCO_MASTER_HOST`` in the environment or the settings file. The
    URL is what :func:`load_settings` makes of them. Without any, Disco
    itself would use ``http://<this host>:8989``; discodsl runs jobs locally
    instead, and its command line says that no master is set.
    """
    names = ("DISCO_MASTER", "DISCO_MASTER_HOST")
    if not (master or any(_given(name) is not None for name in names)):
        return None
    return load_settings(DISCO_MASTER=master).DISCO_MASTER


def job_owner() -> str:
    """The jobdict's ``owner``: ``DISCO_JOB_OWNER`` (environment, settings file),
    else ``<login>@<hostname>``.

    Reads that one setting only, so that a job run here does not fail on a
    cluster setting it does not use.
    """
    value = _given("DISCO_JOB_OWNER")
    return _default_owner() if value is None else str(value)


def _given(name: str) -> Any:
    """``name``'s value in the environment, else in the settings file; None if unset or empty."""
    if os.environ.get(name):
        return os.environ[name]
    path = settings_file_path()
    value = read_settings_file(path).get(name) if path is not None else None
    return None if value in (None, "") else value
