"""Progress for long work: a live line on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3s``."""
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Reports ``done / total`` with a rate and an ETA.

    On a terminal the line is redrawn in place (at most every 0.2 s); otherwise a plain line is
    printed whenever :meth:`update` is called with ``log=True``, every ``log_every_s`` seconds
    when that is set, and at the end.
    """

    def __init__(self, total: int, desc: str, unit: str = "step", enabled: bool = True, stream=None,
                 log_every_s: float | None = None):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.log_every_s = log_every_s
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self.start_done = None
        self.last_draw = self.start

    def update(self, done: int, log: bool = False, **fields) -> None:
        """Report progress ``done`` (out of ``total``) with extra ``fields`` to show."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.start_done is None:
            self.start_done, self.start = done, now
            if self.tty:
                self.last_draw = 0.0
        if not log and self.log_every_s is not None and not self.tty and now - self.last_draw >= self.log_every_s:
            log = True
        if self.tty and not log and now - self.last_draw < 0.2 and done < self.total:
            return
        if not self.tty and not log and done < self.total:
            return
        self.last_draw = now
        elapsed = now - self.start
        rate = (done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = format_seconds((self.total - done) / rate) if rate > 0 else "?"
        extra = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        line = f"{self.desc}: {done}/{self.total} {self.unit}s {extra} eta {eta}".replace("  ", " ")
        if self.tty:
            self.stream.write("\r\033[K" + line)
            if log or done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line without garbling a live progress line."""
        if self.enabled:
            self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
            self.stream.flush()
