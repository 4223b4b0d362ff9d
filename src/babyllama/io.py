"""Atomic file writes and JSON-lines helpers.

Every file the project writes under a final name goes through here: the content is written to a
temporary file in the same folder, flushed and fsynced, then renamed over the final name, so a
crash never leaves a half-written file behind.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    Works for files and directories: whatever the caller creates at the yielded path replaces
    ``path`` at the end (an existing directory at ``path`` is removed only after the new one is
    complete). On error the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON record as a line to ``path`` (created if missing) and flush it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def ensure_writable(folder: str | os.PathLike) -> None:
    """Create ``folder`` if needed and check a file can be written there, else a one-line error."""
    from .errors import UserError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{folder}: cannot write there ({exc.strerror or exc})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file, skipping a torn last line left by a crash."""
    records = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise
    return records


def iter_jsonl_objects(path: str | os.PathLike, required: Iterable[str] = ()) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, record)`` for each non-blank line of a (possibly gzipped) jsonl file.

    Every refusal is a one-line error naming ``file:line``: unreadable file, invalid JSON, a line
    that is not a JSON object, or a record missing one of the ``required`` keys.
    """
    from .errors import UserError

    path = Path(path)
    required = tuple(required)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise UserError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
                for key in required:
                    if key not in record:
                        raise UserError(f"{path}:{number}: missing key {key!r} (a line needs {', '.join(required)})")
                yield number, record
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
