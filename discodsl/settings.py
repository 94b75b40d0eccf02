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
the client settings discodsl has no use for (:data:`UNUSED`); a ``DISCO_`` or
``DDFS_`` name that is neither discodsl's nor Disco's own (``DISCO_MASTR``) is
ignored with a warning pointing at its line, which suggests the setting meant.

:func:`configured_master` says whether the user named a master at all (the
runners and the command line ask it before falling back to Disco's
``http://<this host>:8989``); :func:`job_owner` is the jobdict's ``owner``.

Invalid values raise :class:`~discodsl.errors.SettingsError` naming the
setting, the value, where it came from and what to write instead; pydantic's
``ValidationError`` never escapes this module. This module does no network
I/O: :class:`discodsl.client.Master` uses what it holds.

Only :class:`DiscoSettings` needs pydantic-settings, and it lives in
:mod:`discodsl.settings_model`, loaded the first time it is used (through
:func:`load_settings` or ``discodsl.settings.DiscoSettings``): reading the
settings file, :func:`configured_master` when no master is named, and
:func:`job_owner` use the standard library only, so a job run on this machine
never imports pydantic.
"""

from __future__ import annotations

import ast
import difflib
import getpass
import os
import re
import socket
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from discodsl.errors import SettingsError, SettingWarning, outside_discodsl

if TYPE_CHECKING:
    from discodsl.settings_model import DiscoSettings

__all__ = [
    "DiscoSettings",
    "configured_master",
    "job_owner",
    "load_settings",
    "read_settings_file",
]

#: Where Disco looks for its settings file when DISCO_SETTINGS_FILE is unset.
DEFAULT_SETTINGS_FILES = ("~/.disco", "/etc/disco/settings.py")

#: The settings discodsl reads (the fields of ``DiscoSettings``).
NAMES = (
    "DISCO_MASTER_HOST",
    "DISCO_PORT",
    "DISCO_MASTER",
    "DISCO_PROXY",
    "DISCO_JOB_OWNER",
    "DDFS_READ_TOKEN",
    "DDFS_WRITE_TOKEN",
    "DISCODSL_HTTP_TIMEOUT",
    "DISCODSL_RETRIES",
    "DISCO_SETTINGS_FILE",
)

#: Disco 0.5.4's own settings (its ``lib/disco/settings.py``), which a settings file may set
#: for the master and the nodes, and the variables Disco sets itself (a node gives every
#: worker DISCO_MASTER_PID; a master gives its node DISCO_SETTINGS): discodsl ignores those
#: it does not read, saying nothing.
DISCO_OWN = frozenset(
    """DDFS_ABSOLUTE_SPACE DDFS_BLOB_REPLICAS DDFS_DATA DDFS_GC_BALANCE_THRESHOLD
    DDFS_GC_INITIAL_WAIT DDFS_GET_MAX DDFS_PARANOID_DELETE DDFS_PUT_MAX DDFS_PUT_PORT
    DDFS_READ_TOKEN DDFS_ROOT DDFS_SPACE_AWARE DDFS_TAG_MIN_REPLICAS DDFS_TAG_REPLICAS
    DDFS_WRITE_TOKEN DISCO_DATA DISCO_DEBUG DISCO_ERLANG DISCO_EVENTS DISCO_FLAGS
    DISCO_GC_AFTER DISCO_HOME DISCO_HTTPD DISCO_JOB_OWNER DISCO_LOCAL_CLUSTER DISCO_LOG_DIR
    DISCO_MASTER DISCO_MASTER_CONFIG DISCO_MASTER_HOME DISCO_MASTER_HOST DISCO_MASTER_PID
    DISCO_MASTER_ROOT DISCO_NAME DISCO_PID_DIR DISCO_PORT DISCO_PROFILE DISCO_PROXY
    DISCO_PROXY_CONFIG DISCO_PROXY_ENABLED DISCO_PROXY_PID DISCO_PROXY_PORT DISCO_ROOT
    DISCO_ROTATE_LOG DISCO_SCHEDULER DISCO_SCHEDULER_ALPHA DISCO_SETTINGS DISCO_SETTINGS_FILE
    DISCO_SORT_BUFFER_SIZE DISCO_TEST_DISCODB DISCO_TEST_HOST DISCO_TEST_PORT
    DISCO_TEST_PROFILE DISCO_TEST_PURGE DISCO_ULIMIT DISCO_USER DISCO_VERSION
    DISCO_WORKER_MAX_MEM DISCO_WWW_ROOT""".split()  # noqa: SIM905 - names as Disco spells them
)

#: discodsl's variables of the environment that are no settings (no settings file sets them):
#: the user's, and those discodsl gives its workers.
ENVIRONMENT_ONLY = frozenset(
    {
        "DISCODSL_CACHE_DIR",
        "DISCODSL_CACHE_SIZE",
        "DISCODSL_RUNS_DIR",
        "DISCODSL_NO_FORKSERVER",
        "DISCODSL_PYTHON",
        "DISCODSL_PYTHON_FLAGS",
        "DISCODSL_PATH",
        "DISCODSL_FORKSERVER",
        "DISCODSL_MSG_BYTES",
        "DISCODSL_MSG_PACED",
    }
)

#: Client settings of Disco that discodsl ignores, and why.
UNUSED = {
    "DISCO_EVENTS": "follow a job's events with `discodsl events JOB --follow`, "
    "or its progress with progress=True",
    "DISCO_DEBUG": "a failing task's traceback is in its TaskFailed error and its events",
    "DDFS_PUT_PORT": "the master hands out the put URLs of new blobs",
}


def default_owner() -> str:
    """``<login>@<hostname>``: the job owner when DISCO_JOB_OWNER is not set."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a uid without a passwd entry)
        login = "unknown"
    return f"{login}@{socket.gethostname()}"


def normalise_master_url(value: str, port: int = 8989) -> str:
    """``Master:8989/`` -> ``http://master:8989``; a bare host gets ``port``."""
    url = value.strip().rstrip("/")
    if url.count(":") > 1 and not any(mark in url for mark in ("[", "://", "@")):
        raise ValueError(
            "is an IPv6 address without its brackets: write [::1] or http://[::1]:8989"
        )
    try:
        if "://" not in url:
            url = f"http://{url}"
            if urlsplit(url).port is None and urlsplit(url).hostname:
                url = f"{url}:{port}"
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ValueError("has no port from 1 to 65535") from None
    if parts.port == 0 or parts.netloc.endswith(":"):  # http://host: names no port
        raise ValueError("has no port from 1 to 65535")
    if any(c <= " " or c == "\x7f" for c in url):  # urlsplit drops tabs and newlines
        raise ValueError("is not an http URL")
    if parts.scheme not in ("http", "https") or not _host_name(parts.hostname):
        raise ValueError("is not an http URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("holds a user name or password, which a Disco master takes none of")
    if parts.path or parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"has a path or query after {parts.scheme}://{parts.netloc}")
    host, zone_mark, zone = parts.netloc.partition("%")  # an IPv6 zone: an interface's name
    return f"{parts.scheme}://{host.lower()}{zone_mark}{zone}"  # one spelling: runs compare


def _host_name(host: str | None) -> bool:
    """Whether ``host`` (of a URL) names a host: a name or an address, not a bare number."""
    return bool(host) and not str(host).isdigit() and _HOST_NAME.fullmatch(str(host)) is not None


# What a URL's host may be: a name, an IPv4 address, or an IPv6 one (its brackets gone).
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+|[0-9A-Fa-f:.]+(%[A-Za-z0-9]+)?")


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
        try:
            path = Path(candidate).expanduser()
        except RuntimeError:  # no home directory: no ~/.disco
            continue
        if path.is_file():
            return path
    return None


def read_settings_file(path: Path) -> dict[str, Any]:
    """``NAME = literal`` assignments of a Disco settings file, without executing it.

    Anything else (an import, a call, an expression on the right-hand side), which Disco's
    own client runs, is ignored, unless it sets a setting discodsl reads: then a
    :class:`SettingsError` naming the file and line.
    """
    try:
        source = path.read_text(encoding="utf-8")
        if "\0" in source:  # Python 3.10 raised ValueError, 3.11 a SyntaxError of no line
            line = source.count("\n", 0, source.index("\0")) + 1
            raise SyntaxError("a NUL byte, which no Python source holds", (str(path), line, 0, ""))
        tree = ast.parse(source, filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"cannot read the settings file {path}: {exc}: a Disco settings file is UTF-8 text "
            "of NAME = value lines; fix it, or name another with DISCO_SETTINGS_FILE"
        ) from exc
    except SyntaxError as exc:
        raise SettingsError(
            f"{path}:{exc.lineno}: not valid Python ({exc.msg}): "
            'a Disco settings file holds lines like DISCO_MASTER_HOST = "master"'
        ) from exc
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        try:
            assigned = _assignment(path, node)
        except SettingsError as error:  # said only where the setting is needed
            ours = _names_set(node).intersection(NAMES)
            assigned = [(name, Refused(error)) for name in sorted(ours)]
        for name, value in assigned:
            values[name] = value
            if name.startswith(_PREFIXES) and name not in _KNOWN:
                _warn_unknown(path, node.lineno, name)
    return values


class Refused:
    """A setting of discodsl's that its line in the settings file does not give as a plain
    value (``socket.gethostname()``): ``error`` is raised where the setting is needed, not
    where something else (the environment, ``master=``) gives it."""

    def __init__(self, error: SettingsError):
        self.error = error


_KNOWN = DISCO_OWN.union(NAMES)
_PREFIXES = ("DISCO_", "DDFS_", "DISCODSL_")  # the names of settings, misspelt or not
# Each file's line warned of once (not by a warnings registry: one that a change of the
# warnings filters, as an import may make, empties).
_WARNED: set[tuple[str, int, str]] = set()


def _first_time(path: Path, line: int, name: str) -> bool:
    """Whether this is the first warning of ``name`` at this line of the file."""
    seen = (str(path), line, name) in _WARNED
    _WARNED.add((str(path), line, name))
    return not seen


def _warn_unknown(path: Path, line: int, name: str) -> None:
    """Warn, pointing at the line, of a name in the settings file that no one reads: most
    likely a misspelt setting, whose value would silently not count."""
    if not _first_time(path, line, name):
        return
    ours = name.startswith("DISCODSL_")  # DISCODSL_CACHE_DIR...: the environment's only
    close = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.85 if ours else 0.6)
    fix = f"did you mean {close[0]}?" if close else f"discodsl reads {', '.join(NAMES)} there"
    what = (
        "is not read from the settings file (set it in the environment)"
        if ours and not close
        else "is not a setting of Disco's or discodsl's"
    )
    warnings.warn_explicit(
        f"{name} {what}, and is ignored: {fix}",
        SettingWarning,
        str(path),
        line,
    )


def _assignment(path: Path, node: ast.stmt) -> list[tuple[str, Any]]:
    """The (name, value) pairs one statement assigns. What is no ``NAME = literal`` line
    (an import, a computed value) is Disco's client's to run, and ignored here, unless it
    sets a setting discodsl reads: then a SettingsError, as discodsl never runs the file."""
    targets: list[ast.expr]
    if isinstance(node, ast.Assign):
        targets, value_node = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value_node = [node.target], node.value
    else:
        _refuse_if_ours(path, node, node)
        return []
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    if len(names) != len(targets):
        _refuse_if_ours(path, node, node, "assign one plain name per line")
        return []
    _refuse_if_ours(path, node, value_node)  # a walrus in the value
    try:
        value = ast.literal_eval(value_node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        if not _sets_ours(node):
            return []
        raise SettingsError(
            f"{path}:{node.lineno}: {names[0]} = {ast.unparse(value_node)} is not a literal: "
            f"the settings file is read, never run; write the value itself, "
            f'e.g. {names[0]} = "..." or a number'
        ) from None
    return [(name, value) for name in names]


def _refuse_if_ours(
    path: Path, node: ast.stmt, part: ast.AST, fix: str = "write each setting as a plain value"
) -> None:
    """A SettingsError if ``part`` of the line ``node`` sets a setting discodsl reads; a
    warning if it may (an import of ``*``)."""
    names = _names_set(part)
    ours = sorted(names.intersection(NAMES))
    if ours:
        line = ast.unparse(node).splitlines()[0]
        raise SettingsError(
            f"{path}:{node.lineno}: only NAME = value lines are allowed, found {line!r}, "
            f"which sets {', '.join(ours)}: the settings file is read, never run; {fix}"
        )
    if _ANY in names:
        _warn_of_star(path, next(n for n in ast.walk(part) if _of_everything(n)))


def _warn_of_star(path: Path, node: ast.AST) -> None:
    """Warn, once, of an import of ``*`` at ``node``: it may set settings discodsl reads."""
    lineno = getattr(node, "lineno", 0)
    if _first_time(path, lineno, _ANY):
        warnings.warn_explicit(
            f"{ast.unparse(node)!r} may set settings, which discodsl does not see: it reads "
            "the settings file, never runs it; write the settings discodsl reads there as "
            f"plain values ({', '.join(NAMES)}), or set them in the environment",
            SettingWarning,
            str(path),
            lineno,
        )


def _sets_ours(node: ast.AST) -> bool:
    """Whether ``node`` assigns a name of a setting discodsl reads."""
    return not _names_set(node).isdisjoint(NAMES)


def _names_set(node: ast.AST) -> set[str]:
    """The names ``node`` binds in the file's own scope, imports' too (not a function's, a
    class's or a comprehension's, which bind none of its names but by a walrus). An import
    of ``*``, which may bind any, binds ``_ANY``."""
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Store) else set()
    if _of_everything(node):
        return {_ANY}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).partition(".")[0] for alias in node.names}
    if isinstance(node, _COMPREHENSIONS):
        return {n.target.id for n in ast.walk(node) if isinstance(n, ast.NamedExpr)}
    if isinstance(node, _OWN_SCOPES):
        return set()
    return set().union(*map(_names_set, ast.iter_child_nodes(node)))


def _of_everything(node: ast.AST) -> bool:
    """Whether ``node`` is an import of ``*``."""
    return isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names)


_ANY = "*"  # among the names a line binds: it may bind any
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_OWN_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def load_settings(**overrides: Any) -> DiscoSettings:
    """Settings from keyword arguments, the environment, the settings file, defaults.

    Overrides that are ``None`` are dropped, so command-line options that were
    not given can be passed straight through:
    ``load_settings(DISCO_MASTER=args.master)``.
    """
    from discodsl.settings_model import DiscoSettings

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
    _warn_misspelt_in_environment()
    if not (master or any(_given(name) is not None for name in names)):
        return None
    return load_settings(DISCO_MASTER=master).DISCO_MASTER


def _warn_misspelt_in_environment() -> None:
    """Warn, once a name, of a variable of the environment that is most likely a setting
    misspelt (``DISCO_MASTR``): a run here then took the place of the cluster's without a
    word. Only close misses of a setting's name: other programs' ``DISCO_*`` are theirs."""
    for name in os.environ:
        if not name.startswith(_PREFIXES) or name in _IN_THE_ENVIRONMENT:
            continue
        if ("<env>", 0, name) in _WARNED:
            continue
        close = _ALIKE.get(name) or next(
            iter(difflib.get_close_matches(name, _READ_THERE, n=1, cutoff=0.85)), None
        )
        if close:
            _WARNED.add(("<env>", 0, name))
            warnings.warn(
                f"{name} in the environment is not a setting of Disco's or discodsl's, and is "
                f"ignored: did you mean {close}?",
                SettingWarning,
                stacklevel=outside_discodsl(),
            )


_IN_THE_ENVIRONMENT = _KNOWN.union(ENVIRONMENT_ONLY)
_READ_THERE = sorted(ENVIRONMENT_ONLY.union(NAMES))  # what a misspelt variable may mean
# Names whose most alike setting is not the one meant.
_ALIKE = {"DISCO_MASTER_PORT": "DISCO_PORT"}


def job_owner(needed: bool = True) -> str:
    """The jobdict's ``owner``: ``DISCO_JOB_OWNER`` (environment, settings file),
    else ``<login>@<hostname>``.

    Reads that one setting only, so that a job run here does not fail on a
    cluster setting it does not use. A value of the settings file that is refused (a
    computed one) fails only where the owner is ``needed`` (a master's); else (a local
    run's) the default stands in.
    """
    try:
        value = _given("DISCO_JOB_OWNER")
    except SettingsError:
        if needed:
            raise
        value = None
    return default_owner() if value is None else str(value)


def _given(name: str) -> Any:
    """``name``'s value in the environment, else in the settings file; None if unset or empty."""
    if os.environ.get(name):
        return os.environ[name]
    path = settings_file_path()
    value = read_settings_file(path).get(name) if path is not None else None
    if isinstance(value, Refused):
        raise value.error
    return None if value in (None, "") else value


def __getattr__(name: str) -> Any:
    """``DiscoSettings`` (and its file source), imported from :mod:`discodsl.settings_model`
    on first use."""
    if name in ("DiscoSettings", "DiscoFileSource"):
        from discodsl import settings_model

        return getattr(settings_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
