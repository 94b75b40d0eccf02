"""Both ends of the worker protocol joined on a fake wire, for tests.

Modelled on h11's ``tests/helpers.py``: whatever one side's ``send`` or
``reply`` returns is fed to the other side at once, and every byte that
crossed the wire is logged, so a test can check the dialogue and the exact
bytes together.
"""

from __future__ import annotations

from typing import Any

from discodsl.worker.protocol import Frame, MasterSide, WorkerSide


class ConnectionPair:
    """A :class:`WorkerSide` and a :class:`MasterSide` talking over an in-memory wire."""

    def __init__(self) -> None:
        self.worker = WorkerSide()
        self.master = MasterSide()
        self.wire: list[tuple[str, bytes]] = []

    def send(self, name: str, payload: Any) -> Frame:
        """Worker sends ``name``; returns the message the master decoded from the bytes."""
        data = self.worker.send(name, payload)
        return self.deliver_to_master(data)

    def reply(self, name: str, payload: Any) -> Frame:
        """Master replies ``name``; returns the reply the worker decoded from the bytes."""
        data = self.master.reply(name, payload)
        self.wire.append(("master->worker", data))
        self.worker.receive_data(data)
        frame = self.worker.next_reply()
        if frame is None:
            raise AssertionError(f"worker decoded nothing from {data!r}")
        return frame

    def deliver_to_master(self, data: bytes) -> Frame:
        """Put raw worker bytes on the wire; returns the one message they carry."""
        self.wire.append(("worker->master", data))
        self.master.receive_data(data)
        frame = self.master.next_message()
        if frame is None:
            raise AssertionError(f"master decoded nothing from {data!r}")
        return frame
