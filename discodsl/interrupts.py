"""Whether code runs in a Python signal handler: code that interrupted a stage, not code it
called.

Inline, a stage runs in the program's own thread, and a signal handler of the program's
(SIGTERM's that calls ``sys.exit``, a timer's that starts a job) runs on top of the stage's
frames as if the stage had called it. The inline runner and ``Job.run`` ask here before
they take what such a handler does for the stage's doing; and :func:`held` keeps such a
handler from running while a run loads its code. Not here: signals of our own (the
command line's SIGTERM, the runs' Ctrl-C), which raise KeyboardInterrupt.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import BuiltinFunctionType, CodeType, FrameType, TracebackType
from typing import Any


def in_handler(frames: Iterator[FrameType]) -> bool:
    """Whether one of ``frames`` runs a signal handler installed now (a function's, a
    method's, a partial's or a callable object's)."""
    return _signal_in(frames, _handlers()) is not None


def _handlers() -> dict[CodeType, int]:
    """The code each signal's handler installed now runs, and the signal (one of them, for
    a handler of several)."""
    handlers: dict[CodeType, int] = {}
    for number in signal.valid_signals():
        code = _code_of(signal.getsignal(number))
        if code is not None:
            handlers[code] = number
    return handlers


def _code_of(handler: object) -> CodeType | None:
    """The code a signal handler runs: a function's, through partials and bound methods, or
    a callable object's ``__call__``; None for SIG_DFL, SIG_IGN and built-in handlers."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    handler = getattr(handler, "__func__", handler)
    if not callable(handler) or isinstance(handler, BuiltinFunctionType):
        return None
    code = getattr(handler, "__code__", None)
    if code is None:
        code = getattr(type(handler).__call__, "__code__", None)  # a callable object's
    return code if isinstance(code, CodeType) else None


def _signal_in(frames: Iterator[FrameType], handlers: dict[CodeType, int]) -> int | None:
    """The signal one of ``handlers`` (by their code) runs for in one of ``frames``."""
    return next((handlers[f.f_code] for f in frames if f.f_code in handlers), None)


def raised_in_handler(exc: BaseException) -> bool:
    """Whether ``exc`` was raised in (or below) a signal handler's frame."""
    return in_handler(_traceback_frames(exc.__traceback__))


def kept_for_the_program(function: Callable[[], object]) -> Callable[[], None]:
    """``function``, to be called by Python's collector (a finalizer, which ignores what it
    raises): what a signal handler of the program's raises on top of it (SIGTERM's
    ``sys.exit``, Ctrl-C's KeyboardInterrupt) is raised again in the program's own code
    once the finalizer has returned, the rest of ``function`` done meanwhile. The handler
    runs once; only its signal's handler is swapped, and only until that raise."""

    def call() -> None:
        handlers = _handlers()  # as they were when the signal came: one may reset itself
        try:
            function()
        except BaseException as exc:
            number = _signal_raising(exc, handlers)
            if number is None or threading.current_thread() is not threading.main_thread():
                raise
            try:
                function()  # the rest of what the handler cut short
            finally:
                _raise_later(exc, number, {call.__code__, _FINALIZER})

    return call


def _signal_raising(exc: BaseException, handlers: dict[CodeType, int]) -> int | None:
    """The signal whose handler (one of ``handlers``, or Python's own Ctrl-C handler
    installed now) raised ``exc``; None if none did."""
    number = _signal_in(_traceback_frames(exc.__traceback__), handlers)
    ctrl_c = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if number is None and isinstance(exc, KeyboardInterrupt) and ctrl_c:
        return signal.SIGINT
    return number


def _raise_later(exc: BaseException, number: int, codes: set[CodeType]) -> None:
    """Raise ``exc`` in the main thread once none of its frames runs one of ``codes`` (looked
    at every SENT_AGAIN_AFTER seconds): a thread sends it signal ``number``, whose handler
    is swapped meanwhile for one that puts it back and raises ``exc`` (a handler the
    program installed since gets the signal instead). At the program's end, when no thread
    starts: not at all."""
    main = threading.main_thread().ident or 0
    handler = signal.getsignal(number)
    kept = signal.SIG_DFL if handler is None else handler
    ended = threading.Event()  # the program's end came first: nothing is sent

    def again(signum: int, frame: FrameType | None) -> None:
        if signal.getsignal(number) is again:
            signal.signal(number, kept)
        raise exc

    def send() -> None:
        while True:
            time.sleep(SENT_AGAIN_AFTER)
            frame = sys._current_frames().get(main)
            if frame is None or ended.is_set():  # the main thread, or the program, has ended
                return
            if not any(f.f_code in codes for f in _stack(frame)):
                break
        # To ``again``; or, if the program swapped in another handler meanwhile, to that
        # one: the signal came, and is not lost. Not to the one that ran for it already,
        # which the program put back: it runs once.
        if signal.getsignal(number) is not handler:
            signal.pthread_kill(main, number)
        atexit.unregister(at_the_end)

    def at_the_end() -> None:
        """Run first at the program's end (registered last): raised in what runs then
        (discodsl's own removal of its files), ``exc`` would cut it short, and be lost."""
        ended.set()
        if signal.getsignal(number) is again:
            signal.signal(number, kept)

    signal.signal(number, again)
    atexit.register(at_the_end)
    try:
        threading.Thread(target=send, name="discodsl signal sent again", daemon=True).start()
    except RuntimeError:
        at_the_end()


# Seconds between two looks at whether the finalizer a handler raised on top of returned.
SENT_AGAIN_AFTER = 0.01
# What calls a finalizer, in Python: a handler's exception raised in it is ignored too.
_FINALIZER = weakref.finalize.__call__.__code__


def here_in_handler() -> bool:
    """Whether the code calling this runs in (or below) a signal handler's frame."""
    return in_handler(_stack(sys._getframe(1)))


def _traceback_frames(tb: TracebackType | None) -> Iterator[FrameType]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _stack(frame: FrameType | None) -> Iterator[FrameType]:
    while frame is not None:
        yield frame
        frame = frame.f_back


@contextlib.contextmanager
def held(ctrl_c: bool = False, grace: float | None = None) -> Iterator[None]:
    """The program's signal handlers held back while in the block, then run for each
    signal that came: a handler (which runs in the main thread, on top of what it was
    doing) would find the modules the block imports half made. Each handler of a function
    is swapped for one that notes its signal, and put back: blocking the signals in this
    thread alone held nothing once the program had another thread (a notebook's kernel
    has several), which the signal was then given to. Python's own Ctrl-C handler is held
    too with ``ctrl_c`` (in the stop a Ctrl-C began: that handler is the one installed).
    With ``grace``, a signal that comes that many seconds or more into the block is
    handled at once, as without it (a Ctrl-C again when the block seems stuck). Off the
    main thread, where no handler runs, nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[tuple[int, FrameType | None]] = []
    until = math.inf if grace is None else time.monotonic() + grace

    def noting(number: int, frame: FrameType | None) -> Any:
        if time.monotonic() < until:
            came.append((number, frame))
            return None
        return swapped[number](number, frame)

    swapped = _swapped(noting, ctrl_c)
    try:
        yield
    finally:  # the signals that came are the program's to handle, whatever the block did
        for number, handler in swapped.items():
            signal.signal(number, handler)
        _handle(came)


@contextlib.contextmanager
def handling(handler: Handler, *numbers: int) -> Iterator[None]:
    """``handler`` installed for the signals ``numbers`` in the block (from the main thread:
    signal handlers can be set there alone), and the handlers before it put back after."""
    previous = {number: signal.signal(number, handler) for number in numbers}
    try:
        yield
    finally:
        for number, kept in previous.items():
            signal.signal(number, kept)


def _handle(came: list[tuple[int, FrameType | None]]) -> None:
    """Call the handler of each signal that ``came``, each, in order: one that raises does
    not keep the next from running; the first exception is raised after them all, but for
    a Ctrl-C's, which any other comes before (a SIGTERM handler's exit is not lost in it)."""
    raised: BaseException | None = None
    for number, frame in came:
        installed = signal.getsignal(number)  # the program's, or what one before set
        if not callable(installed):
            continue
        try:
            installed(number, frame)
        except BaseException as exc:  # the program's, raised once all ran: a Ctrl-C's last
            if raised is None or isinstance(raised, KeyboardInterrupt):
                raised = exc
    if raised is not None:
        raise raised


Handler = Callable[[int, FrameType | None], Any]


def _swapped(noting: Handler, ctrl_c: bool = False) -> dict[int, Handler]:
    """Every signal handler of a function of the program's replaced by ``noting``: the
    handlers replaced. Python's own SIGINT handler stays unless ``ctrl_c`` (a Ctrl-C in a
    load raises KeyboardInterrupt there, as anywhere): a swap sets the OS's disposition,
    and Python's record of it says default_int_handler over what an embedded runtime (a
    JVM, R) set."""
    swapped: dict[int, Handler] = {}
    for number in signal.valid_signals():
        handler = signal.getsignal(number)
        if callable(handler) and (ctrl_c or handler is not signal.default_int_handler):
            signal.signal(number, noting)
            swapped[number] = handler
    return swapped
