"""The test master's DDFS: tags in memory, blobs as files under ``DDFS_DATA/vol0/blob``.

Test support, not product. Answers and refusals as recorded in
``disco-reference/ddfs/http.jsonl``; every URL names the node ``localhost``.
Also the small helpers the test master's modules share (time stamps, JSON).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

HOST = "localhost"
TAG_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-@:")


def now_text() -> str:
    """Event and jobinfo time stamps: ``2026/11/27 21:36:39``."""
    return time.strftime("%Y/%m/%d %H:%M:%S")


def duration(seconds: float) -> str:
    """``0:00:00.365``, as the master words how long something took."""
    millis = int(seconds * 1000)
    minutes, millis = divmod(millis, 60_000)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


def compact(value: Any) -> bytes:
    """JSON as the master writes it: no spaces, non-ASCII escaped."""
    return json.dumps(value, separators=(",", ":")).encode()


class Stamps:
    """Unique Erlang-now() stamps, ``703-c72c0-486bd`` (tags, blobs)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self, sep: str = "-") -> str:
        with self._lock:
            self._last = max(self._last + 1, int(time.time() * 1_000_000))
            seconds, micro = divmod(self._last, 1_000_000)
        mega, sec = divmod(seconds, 1_000_000)
        return f"{mega:x}{sep}{sec:x}{sep}{micro:x}"


# DDFS


class DDFSRefused(Exception):
    """A DDFS request the real DDFS refuses: ``status`` and the plain-text body."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text


class DDFS:
    """Tags in memory, blobs on disk; URLs name the node ``localhost``."""

    def __init__(self, root: Path, stamps: Stamps):
        self.root, self.stamps = root, stamps
        self.tags: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    @staticmethod
    def valid(name: str) -> bool:
        return bool(name) and set(name) <= TAG_NAME_CHARS

    def list_tags(self, prefix: str = "") -> list[str]:
        with self.lock:
            return sorted(n for n in self.tags if n.startswith(prefix))

    def get(self, name: str) -> dict[str, Any]:
        with self.lock:
            if not self.valid(name):
                raise DDFSRefused(403, "Invalid tag.")
            if name not in self.tags:
                raise DDFSRefused(404, "Tag not found.")
            copy: dict[str, Any] = json.loads(json.dumps(self.tags[name]))
            return copy

    def update(
        self, name: str, urls: list[list[str]], *, replace: bool = False, skip_known: bool = False
    ) -> list[str]:
        """Append (newest first) or replace a tag's URLs; the tag's own URL."""
        with self.lock:
            if not self.valid(name):
                raise DDFSRefused(403, "Invalid tag.")
            tag = self._touch(name)
            known = [] if replace else tag["urls"]
            if skip_known:
                urls = [u for u in urls if u not in known]
            tag["urls"] = [*reversed(urls), *known]
            return [self._tag_url(name, tag)]

    def set_attr(self, name: str, attr: str, value: Any) -> list[str]:
        with self.lock:
            if not self.valid(name):
                raise DDFSRefused(403, "Invalid tag.")
            tag = self._touch(name)
            tag["user-data"][attr] = value
            return [self._tag_url(name, tag)]

    def get_attr(self, name: str, attr: str) -> Any:
        tag = self.get(name)
        if attr not in tag["user-data"]:
            raise DDFSRefused(404, "Tag attribute not found.")
        return tag["user-data"][attr]

    def delete(self, name: str) -> None:
        """Delete a tag; one that is not there is "deleted" too, as a real 0.5.4 master says."""
        with self.lock:
            self.tags.pop(name, None)

    def _touch(self, name: str) -> dict[str, Any]:
        tag = self.tags.setdefault(
            name, {"version": 1, "id": "", "last-modified": "", "urls": [], "user-data": {}}
        )
        tag["id"] = f"{name}${self.stamps.next()}"
        tag["last-modified"] = now_text()
        return tag

    @staticmethod
    def _tag_url(name: str, tag: dict[str, Any]) -> str:
        return f"disco://{HOST}/ddfs/vol0/tag/{_hh(tag['id'])}/{tag['id']}"

    # -- blobs ---------------------------------------------------------------

    def new_blob(self, name: str, replicas: int, put_base: str) -> list[str]:
        """Where to PUT the replicas of a new blob (one node: only one replica fits)."""
        if not self.valid(name):
            raise DDFSRefused(403, "Invalid prefix.")
        if replicas > 1:
            raise DDFSRefused(403, "Not enough nodes for replicas.")
        if len(name) > MAX_BLOB_NAME:  # ddfs:new_blob/5: disco:large_hexhash, all of md5
            name = hashlib.md5(name.encode()).hexdigest()
        return [f"{put_base}/ddfs/{name}${self.stamps.next()}"]

    def put_blob(self, blob: str, data: bytes) -> str:
        """Store a blob (``NAME$STAMP``); its ``disco://`` URL."""
        if "$" not in blob or not self.valid(blob.split("$", 1)[0]):
            raise DDFSRefused(403, "Invalid blob.")
        relative = f"vol0/blob/{_hh(blob)}/{blob}"
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"disco://{HOST}/ddfs/{relative}"


# The longest blob name a Disco 0.5.4 master keeps as it is (ddfs.erl, MAX_BLOB_NAME).
MAX_BLOB_NAME = 200


def _hh(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()[:2]
