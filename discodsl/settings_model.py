"""The pydantic-settings model of Disco's client settings, imported only when settings are loaded.

:class:`DiscoSettings` and its settings-file source live here, apart from
:mod:`discodsl.settings`, so that what every run asks (is a master named? who
owns the job?) is answered by the standard library alone: pydantic and
pydantic-settings cost a fresh process about 0.1 s to import, and a job run on
this machine never needs them. Import ``DiscoSettings`` and ``load_settings``
from :mod:`discodsl.settings`, which loads this module on first use; the
settings, their precedence and their error messages are described there.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from discodsl.errors import SettingsError
from discodsl.settings import (
    UNUSED,
    Refused,
    default_owner,
    normalise_master_url,
    read_settings_file,
    settings_file_path,
)
from discodsl.worker.errors import a_type
from discodsl.worker.jobfile import HTTP_TIMEOUT_MAX

__all__ = ["DiscoFileSource", "DiscoSettings"]


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
    DISCO_JOB_OWNER: str = Field(default_factory=default_owner)
    DDFS_READ_TOKEN: str | None = None
    DDFS_WRITE_TOKEN: str | None = None
    DISCODSL_HTTP_TIMEOUT: float = Field(default=30.0, gt=0, le=HTTP_TIMEOUT_MAX)
    DISCODSL_RETRIES: int = Field(default=5, ge=0, le=100)
    #: The settings file that was read ("" if none).
    DISCO_SETTINGS_FILE: str = ""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # Not chained to pydantic's error where a value may hold a secret (user@host).
            secret = any("@" in str(err.get("input")) for err in exc.errors())
            raise _settings_error(exc, values) from (None if secret else exc)

    @model_validator(mode="before")
    @classmethod
    def _port_of_the_master(cls, values: Any) -> Any:
        """DISCO_PORT, where nothing sets it, is the port DISCO_MASTER names: in Disco one
        setting is both the master's port and its nodes' (their results, their files)."""
        if isinstance(values, dict):
            values = _without_refused(values)
        if isinstance(values, dict) and not values.get("DISCO_PORT"):
            port = _port_in(values.get("DISCO_MASTER"))
            if port is not None:
                return {**values, "DISCO_PORT": port}
        return values

    @field_validator("DISCO_PORT", "DISCODSL_HTTP_TIMEOUT", "DISCODSL_RETRIES", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        """A number, not a settings file's True or False (pydantic takes them for 1 and 0)."""
        if isinstance(value, bool):
            raise ValueError("a bool is no number")
        return value

    @field_validator("DISCO_MASTER")
    @classmethod
    def _master_url(cls, value: str, info: ValidationInfo) -> str:
        host, port = info.data.get("DISCO_MASTER_HOST"), info.data.get("DISCO_PORT")
        if not value:
            # An invalid host or port is reported on its own; nothing to derive from.
            if host and ":" in host and not host.startswith("["):
                host = f"[{host}]"  # an IPv6 address, as a URL writes it
            return f"http://{host}:{port}" if host and port else value
        return normalise_master_url(value, port or 8989)

    @field_validator("DISCO_MASTER_HOST")
    @classmethod
    def _host_name(cls, value: str) -> str:
        """A host name or address, not a URL (``http://x`` would make ``http://http://x``),
        and not a bare number (``5`` would be the address 0.0.0.5)."""
        if not _HOST.fullmatch(value) or value.isdigit() or not _ipv6_if_colons(value):
            raise ValueError("not a host name")
        return value

    @field_validator("DISCO_PROXY")
    @classmethod
    def _proxy_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http URL")
        if "@" in parts.netloc:  # urllib would not send it: the read fails as no such host
            raise ValueError("not an http URL a read can go through (it holds a user part)")
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


def _without_refused(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the settings file's refused lines that DISCO_MASTER, given, makes
    unneeded (the master's host and port); any other one's error raised."""
    kept = {}
    for name, value in values.items():
        if not isinstance(value, Refused):
            kept[name] = value
        elif not (name in _OF_THE_MASTER and isinstance(values.get("DISCO_MASTER"), str)):
            raise value.error
    return kept


_OF_THE_MASTER = ("DISCO_MASTER_HOST", "DISCO_PORT")


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


# A host name, an IPv4 address, or an IPv6 one (bracketed, or not: then with two colons at
# least, so that an address with its port, 10.0.0.5:8989, is none).
_HOST = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*")

# What each setting must look like, for error messages: (problem, what to set).
_EXPECTED: dict[str, tuple[str, str]] = {
    "DISCO_PORT": ("is not a port number", "an integer 1-65535"),
    "DISCO_MASTER": ("is not a master URL", "http://HOST:PORT, e.g. http://master:8989"),
    "DISCO_MASTER_HOST": (
        "is not a host name",
        "the master's host name alone (e.g. master, or 10.0.0.5), or its URL to DISCO_MASTER",
    ),
    "DISCO_PROXY": ("is not a proxy URL", "http://HOST:PORT, or leave it empty"),
    "DISCODSL_HTTP_TIMEOUT": (
        "is not a timeout",
        f"a number of seconds greater than 0, at most {HTTP_TIMEOUT_MAX:.0f}",
    ),
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
    value = _unsecret(err["input"])
    if name == "DISCO_MASTER" and err["type"] == "value_error":  # as normalise_master_url
        problem = f"{problem} (it {err['msg'].removeprefix('Value error, ')})"  # said why
    elif name == "DISCO_MASTER":  # a value of another type, from a settings file
        problem = f"{problem} (it is {a_type(err['input'])}, not text)"
    if name == "DISCO_MASTER" and name in kwargs:  # master= or --master, not the variable
        return f"the master {value!r} {problem}: give {expected} (master= or --master)"
    given, origin = f"{name}={value!r}", _origin(name, kwargs)
    return f"{given} {problem}: set {name} to {expected} (the value came from {origin})"


def _ipv6_if_colons(host: str) -> bool:
    """Whether ``host`` with colons in it is an IPv6 address (10.0.0.5::8989 is none)."""
    if ":" not in host:
        return True
    try:
        ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def _unsecret(value: Any) -> Any:
    """``value`` with what a URL in it holds before its host (a user, a password, a token)
    as ``***``, a host name's own user part too (``user:pw@host``), and a query's or
    fragment's values as ``...`` (a dashboard's ``?token=``)."""
    if not isinstance(value, str):
        return value
    start = value.find("//") + 2 if "//" in value else 0
    ends = [at for at in (value.find(mark, start) for mark in "/?#") if at >= 0]
    end = min(ends, default=len(value))
    if not _HOST_AND_PORT.fullmatch(value[start:end]):  # a password may hold a / or ?
        end = len(value)
    at = value.rfind("@", start, end)  # in the user and host part alone: not a path's @
    if at >= 0:
        value, end = f"{value[:start]}***{value[at:]}", start + 3 + end - at
    cut = [at for at in (value.find(mark, end) for mark in "?#") if at >= 0]
    return value[: min(cut) + 1] + "..." if cut and min(cut) + 1 < len(value) else value


# What stands before a URL's path when it names no user: a host and a port of digits.
_HOST_AND_PORT = re.compile(r"[^@:/?#]*(:[0-9]*)?|\[[^\]@/]*\](:[0-9]*)?")


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


def _port_in(master: Any) -> int | None:
    """The port a master URL (or ``host:port``) names; None if it names none, or is not one
    (then DISCO_MASTER's own check says so)."""
    try:
        return urlsplit(normalise_master_url(master)).port
    except (AttributeError, TypeError, ValueError):  # not a str; not a master URL
        return None
