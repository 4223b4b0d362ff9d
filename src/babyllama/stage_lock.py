"""One process per stage folder: a lock file taken atomically, refreshed, released on exit.

``with stage_lock(folder):`` creates ``folder/stage.lock`` with ``O_CREAT | O_EXCL`` (atomic on
local file systems and NFSv3+), holding JSON ``{host, pid, since, heartbeat, token}``. A daemon
thread rewrites ``heartbeat`` every :data:`HEARTBEAT_S` seconds while the block runs; leaving
the block (normally, by an exception or a signal turned into one) stops the thread and removes
the file. A second process that finds a live lock is refused with one line naming the holder
(:class:`~babyllama.errors.UserError`, exit 2), before it reads or writes anything in the folder,
so ``--only`` jobs on different stages run side by side while two jobs on one stage cannot.

A lock is stale, and taken over, when its process is gone: on the same host, when its pid no
longer exists; on any host, when its heartbeat is older than :data:`STALE_AFTER_S` seconds (a
crashed node, or a pid reused after a reboot). A lock file whose content cannot be read counts
its modification time as its heartbeat. Takeover renames the stale file away and checks it is
the one judged stale, so two processes taking over at once cannot both win.

Under ``accelerate launch`` only the process of global rank 0 takes the lock: the others are
the same job.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError

LOCK_NAME = "stage.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
_TAKEOVER_ATTEMPTS = 5


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _read(path: Path) -> tuple[dict | None, str | None]:
    """The lock's parsed content (``None`` if unparsable) and its raw text (``None`` if unreadable)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError:
        return None, None
    try:
        info = json.loads(raw)
    except ValueError:
        return None, raw
    return (info if isinstance(info, dict) else None), raw


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale(info: dict | None, mtime: float, now: float | None = None) -> bool:
    """Whether a lock with content ``info`` (``None``: unreadable) and file mtime ``mtime`` is abandoned."""
    now = time.time() if now is None else now
    beat = info.get("heartbeat_unix", mtime) if info else mtime
    if now - float(beat) > STALE_AFTER_S:
        return True
    if info and info.get("host") == socket.gethostname():
        return not _pid_alive(int(info.get("pid", -1)))
    return False


def _holder(info: dict | None, path: Path) -> str:
    if not info:
        return f"its stage lock {path} is held by another process (content unreadable); wait or remove it"
    return (f"in use by another process (host {info.get('host')}, pid {info.get('pid')}, since "
            f"{info.get('since')}, last heartbeat {info.get('heartbeat')}); wait for it to finish or stop it")


class StageLock:
    """A held lock on one folder; :meth:`release` (or leaving :func:`stage_lock`) gives it up."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.token = uuid.uuid4().hex
        self.since = _now()
        self._created_folder = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _content(self) -> str:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": self.since,
                           "heartbeat": _now(), "heartbeat_unix": time.time(), "token": self.token}) + "\n"

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self._content())
            f.flush()
            os.fsync(f.fileno())
        return True

    def acquire(self) -> "StageLock":
        """Take the lock, taking over a stale one; refuse a live one with :class:`UserError`."""
        try:
            if not self.folder.exists():
                self.folder.mkdir(parents=True)
                self._created_folder = True
            for _ in range(_TAKEOVER_ATTEMPTS):
                if self._try_create():
                    self._thread = threading.Thread(target=self._beat, name=f"stage-lock {self.folder}", daemon=True)
                    self._thread.start()
                    return self
                info, raw = _read(self.path)
                try:
                    mtime = self.path.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if not is_stale(info, mtime):
                    self._remove_created_folder()
                    raise UserError(f"{self.folder}: {_holder(info, self.path)}")
                if raw is not None:
                    self._take_over(raw)
        except OSError as exc:
            self._remove_created_folder()
            raise UserError(f"{self.folder}: cannot write there ({exc.strerror or exc})") from None
        self._remove_created_folder()
        raise UserError(f"{self.folder}: could not take the stage lock {self.path} (other processes keep taking it)")

    def _take_over(self, judged: str) -> None:
        """Move the stale lock away if it is still the one judged stale (content ``judged``)."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if aside.read_text(encoding="utf-8") != judged:  # another process took over in between
            try:
                os.link(aside, self.path)  # put it back, unless yet another lock is already there
            except FileExistsError:
                pass
        aside.unlink()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            info, _ = _read(self.path)
            if not info or info.get("token") != self.token:
                return  # taken over (we were judged stale): never overwrite the new holder
            tmp = self.path.with_name(f"{LOCK_NAME}.beat-{self.token}")
            tmp.write_text(self._content(), encoding="utf-8")
            os.replace(tmp, self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        info, _ = _read(self.path)
        if info and info.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self._remove_created_folder()

    def _remove_created_folder(self) -> None:
        """A folder this lock created and nothing else filled goes again, so a refusal writes nothing."""
        if self._created_folder:
            try:
                self.folder.rmdir()
            except OSError:
                pass


def check_free(folder: str | Path) -> None:
    """Refuse (:class:`UserError`) a folder whose stage lock a live process holds; take nothing.

    For up-front checks; :func:`stage_lock` still decides, as the holder may change meanwhile.
    """
    path = Path(folder) / LOCK_NAME
    info, raw = _read(path)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return
    if not is_stale(info, mtime):
        raise UserError(f"{folder}: {_holder(info, path)}")


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def stage_lock(folder: str | Path) -> Iterator[StageLock | None]:
    """Hold ``folder``'s stage lock for the block (on global rank 0 only; others yield ``None``)."""
    if not _is_main_rank():
        yield None
        return
    lock = StageLock(folder).acquire()
    try:
        yield lock
    finally:
        lock.release()


def clear_folder(folder: str | Path) -> None:
    """Delete everything in ``folder`` except its stage lock (for ``--overwrite`` under the lock)."""
    for child in Path(folder).iterdir():
        if child.name == LOCK_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
