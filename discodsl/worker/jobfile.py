"""The jobpack header, defined once: for the client that writes it and the worker that reads it.

A Disco jobpack (version 2) starts with a fixed header (disco-spec.md
section 1, big-endian): u16 magic ``0xd5c0``, u16 version 2, then the u32
offsets of the jobdict (always 128), jobenvs, jobhome and jobdata, zeros up
to byte 128. :mod:`discodsl.jobpack` (client side) writes and checks it with
these definitions; the worker reads its jobdata from the jobfile with
:func:`read_jobdata`, and its jobenvs with :func:`read_jobenvs`. What it
does not hold: the checks of the jobpack's contents (the client's
:mod:`discodsl.jobpack`), or what jobdata carries (:mod:`discodsl.worker.spec`).
"""

from __future__ import annotations

import json
import os
import struct
from typing import BinaryIO

MAGIC = 0xD5C0
VERSION = 2
HEADER_SIZE = 128
# magic, version, then the jobdict, jobenvs, jobhome and jobdata offsets: what the master reads
FIXED = struct.Struct(">HHIIII")


def bad_env_name(name: object) -> bool:
    """Whether ``name`` cannot name an environment variable: empty, holding '=' or NUL, or
    not UTF-8 text (a lone surrogate)."""
    return not isinstance(name, str) or not name or "=" in name or not _text(name)


def bad_env_value(value: object) -> bool:
    """Whether ``value`` cannot be an environment variable's: not text, holding NUL, or
    not UTF-8 text (a lone surrogate)."""
    return not isinstance(value, str) or not _text(value)


def env_too_long(name: str, value: str) -> bool:
    """Whether ``NAME=value`` is longer than an environment string may be (Linux refuses
    one of 128 KiB or more, with its NUL, when a process is started: MAX_ARG_STRLEN)."""
    return len(name.encode()) + len(value.encode()) + 2 > ENV_STRING_MAX


# The bytes of the longest environment string a Linux process may be started with, NUL and all.
ENV_STRING_MAX = 128 * 1024


def _text(text: str) -> bool:
    """Whether ``text`` is UTF-8 text without NUL: what a master and an exec pass on."""
    if "\0" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def read_jobdata(path: str) -> bytes:
    """The jobdata of the jobpack at ``path`` (everything from its offset on).

    OSError if the file cannot be read, ValueError if it is too short for the header.
    """
    with open(path, "rb") as handle:
        start = _offsets(handle)[5]
        size = os.fstat(handle.fileno()).st_size
        if start > size:
            raise ValueError(
                f"its jobdata offset {start} lies beyond its end ({size} bytes): the jobpack "
                "is truncated; submit it again"
            )
        handle.seek(start)
        return handle.read()


def read_jobenvs(path: str) -> dict[str, str]:
    """The jobenvs of the jobpack at ``path``: the job's ``env=``, as the client wrote it.

    A Disco 0.5.4 master passes them to the worker's environment with their UTF-8
    bytes read as Latin-1 (``café`` arrives as ``cafÃ©``), so the worker takes them
    from here. OSError if the file cannot be read, ValueError if they are not there.
    """
    with open(path, "rb") as handle:
        start, end = _offsets(handle)[3:5]
        handle.seek(start)
        envs = json.loads(handle.read(end - start))
    if not isinstance(envs, dict):
        raise ValueError(f"its jobenvs are a {type(envs).__name__}, not an object")
    return {str(name): str(value) for name, value in envs.items()}


def _offsets(handle: BinaryIO) -> tuple[int, ...]:
    """The fixed header's fields (magic, version, then the offsets); ValueError if short."""
    header = handle.read(FIXED.size)
    if len(header) < FIXED.size:
        raise ValueError(
            f"it is truncated ({len(header)} bytes, fewer than the header's {FIXED.size}): "
            "resubmit the job"
        )
    return FIXED.unpack(header)


# Set in a worker's environment (a job's env=; a local run's workers have the runner's),
# a number of seconds > 0: the timeout for its inputs, as the client's for the master.
TIMEOUT_ENV = "DISCODSL_HTTP_TIMEOUT"
# The longest an HTTP connect or read may stall, in seconds, that TIMEOUT_ENV may ask (the
# client's, and a worker's for its inputs): a longer one overflows the socket's.
HTTP_TIMEOUT_MAX = 1_000_000.0


def timeout_seconds(text: str) -> float | None:
    """The seconds ``text`` gives as TIMEOUT_ENV's value; None if it gives none it may."""
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0 < seconds <= HTTP_TIMEOUT_MAX else None
