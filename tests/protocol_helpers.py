"""Both ends of the worker protocol joined on a fake wire, for tests.

Modelled on h11's ``tests/helpers.py``: whatever one side's ``send`` returns
is fed to the other side at once, and every byte that crossed the wire is
logged, so a test can check the dialogue and the exact bytes together.
"""

from __future__ import annotations

from discodsl.worker.messages import Request
from discodsl.worker.replies import Reply
from discodsl.worker.sides import MasterSide, WorkerSide


class ConnectionPair:
    """A :class:`WorkerSide` and a :class:`MasterSide` talking over an in-memory wire."""

    def __init__(self) -> None:
        self.worker = WorkerSide()
        self.master = MasterSide()
        self.wire: list[tuple[str, bytes]] = []

    def send(self, message: Request) -> Request:
        """Worker sends ``message``; returns the message the master decoded from the bytes."""
        return self.deliver_to_master(self.worker.send(message))

    def reply(self, reply: Reply) -> Reply:
        """Master sends ``reply``; returns the reply the worker decoded from the bytes."""
        data = self.master.send(reply)
        self.wire.append(("master->worker", data))
        self.worker.receive_data(data)
        event = self.worker.next_event()
        if event is None:
            raise AssertionError(f"worker decoded nothing from {data!r}")
        return event

    def deliver_to_master(self, data: bytes) -> Request:
        """Put raw worker bytes on the wire; returns the one message they carry."""
        self.wire.append(("worker->master", data))
        self.master.receive_data(data)
        event = self.master.next_event()
        if event is None:
            raise AssertionError(f"master decoded nothing from {data!r}")
        return event
