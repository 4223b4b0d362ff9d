"""Graceful stop on SIGTERM / SIGINT: finish the step, checkpoint, exit with a distinct code.

Cluster schedulers send SIGTERM before killing a job. While training, the first SIGTERM or
SIGINT only sets a flag; the loop checks it after each optimizer step, writes a checkpoint and
raises :class:`Preempted`, which the command line turns into exit code ``EXIT_PREEMPTED`` and a
one-line message saying how to resume. A second signal restores the default behaviour.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

#: Exit code of a run stopped by a signal after writing its checkpoint (EX_TEMPFAIL: try again).
EXIT_PREEMPTED = 75


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint; the message says where."""


class StopFlag:
    """Set by the first SIGTERM/SIGINT while installed."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals():
    """Yield a :class:`StopFlag`; handlers are installed only in the main thread."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum, frame):
        flag.signal = signum
        for s, h in previous.items():  # a second signal acts at once
            signal.signal(s, h)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
