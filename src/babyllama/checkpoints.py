"""Resume checkpoints: numbered folders, written atomically, the newest complete one wins.

``checkpoints/step-00000120/`` holds Accelerate's state (model, optimizer, scheduler, RNG states
of every process), ``trainer_state.json`` and, written last, ``COMPLETE``. A folder is written
under a temporary name and renamed into place, so a kill at any moment leaves either the old set
or the new set of complete checkpoints; a folder without ``COMPLETE`` is never loaded. After a
save, all but the newest ``keep_last`` are removed (the best model lives separately in
``checkpoints/best``).
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

from .errors import UserError
from .io import atomic_path, atomic_write_json

PREFIX = "step-"


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoint folders under ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and (p / "COMPLETE").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint, or ``None``."""
    found = complete_checkpoints(folder)
    return found[-1] if found else None


def read_state(checkpoint: Path) -> dict:
    """The trainer state saved with a checkpoint."""
    return json.loads((checkpoint / "trainer_state.json").read_text())


def save(folder: Path, step: int, state: dict, save_state, keep_last: int) -> Path:
    """Write checkpoint ``step`` (``save_state(path)`` writes the engine's part), then prune.

    A full disk ends in a one-line error; the previous checkpoints are left intact.
    """
    target = folder / f"{PREFIX}{step:08d}"
    try:
        with atomic_path(target) as tmp:
            tmp.mkdir()
            save_state(tmp)
            atomic_write_json(tmp / "trainer_state.json", state)
            (tmp / "COMPLETE").write_text("ok\n")
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            previous = latest(folder)
            raise UserError(f"{target}: disk full while writing the checkpoint; "
                            f"{'the previous one is intact: ' + str(previous) if previous else 'no checkpoint kept'}"
                            ) from None
        raise
    for old in complete_checkpoints(folder)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return target
