"""The default partitioner: a content hash, the same in every process and on every machine.

Built-in ``hash()`` is salted per process (``PYTHONHASHSEED``), so two map
tasks would send one key to different reduces; a CRC-32 of a canonical
encoding of the key is not. Keys of equal value and type always land in the
same partition; ``1`` and ``1.0`` (equal but of different types) are not
promised to.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any
from zlib import crc32


def canonical_bytes(key: Any) -> bytes:
    """A byte encoding of ``key`` that does not depend on the process."""
    kind = type(key)
    if kind is str:
        text: str = key
        return b"s" + text.encode("utf-8", "surrogatepass")
    if kind is bytes:
        data: bytes = key
        return b"b" + data
    if kind is int:
        return b"i" + str(key).encode()
    return b"p" + pickle.dumps(key, protocol=4)


def default_partition(key: Any, partitions: int) -> int:
    """The partition, 0 to ``partitions - 1``, that ``key`` belongs to."""
    if partitions <= 1:
        return 0
    return crc32(canonical_bytes(key)) % partitions


_STR = crc32(b"s")


def partitioner(partitions: int) -> Callable[[Any], int]:
    """``default_partition`` with ``partitions`` fixed, fastest for ``str`` keys (the common
    case: the CRC of ``b"s" + utf8`` computed as a CRC continued from ``b"s"``)."""
    if partitions <= 1:
        return lambda key: 0

    def label(key: Any) -> int:
        if type(key) is str:
            return crc32(key.encode("utf-8", "surrogatepass"), _STR) % partitions
        return crc32(canonical_bytes(key)) % partitions

    return label
