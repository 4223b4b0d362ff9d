"""The registry of zero-shot tasks: one small module per task family, found by name.

Each :class:`Task` names its data format (the keys every line holds), its scoring rules (shown in
``--help`` and copied into results.json ``settings``) and a loader. A loaded task offers
``encode(tokenizer, max_length) -> list[EncodedItem]`` (the candidate token sequences, scored by
the one shared engine in :mod:`babyllama.evaluation.zero_shot`) and ``summarise(scores) ->
(result entry, predictions or None)``. Adding a task means one module and one line in
:data:`TASKS`.

Two scorers exist: ``harness-2024`` (lm-evaluation-harness, the BabyLM 2024 pipeline: ``blimp``,
``blimp_filtered``, ``blimp_supplement``, ``ewok``, ``builtin_pairs``) and ``pipeline-2025``
(babylm/evaluation-pipeline-2025: every other task).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from babyllama.errors import UserError
from babyllama.evaluation.tasks import blimp_2025, comps, entity_tracking, ewok_2025, harness_2024, wug
from babyllama.evaluation.tasks.ranking_2025 import jsonl_files, read_lines


@dataclass(frozen=True)
class Task:
    """One zero-shot task.

    ``keys`` maps each key every data line must hold to its type (str, list, int or float).
    ``fast``: part of the 2025 per-checkpoint fast evaluation. ``staged``: the folder name of its
    data in the 2025 release (and under ``shared/data/babylm_eval_2025`` when bundled there).
    ``expected``: the pipeline's expected item count per subset (or in all), checked by collate.
    """

    name: str
    help: str
    scorer: str
    rules: tuple[str, ...]
    keys: dict[str, type]
    load: Callable[[str, Path], object]
    fast: bool = False
    staged: str | None = None
    expected: dict[str, int] | int | None = None
    bundled: bool = True


def _tasks() -> dict[str, Task]:
    found: dict[str, Task] = {}
    for module in (harness_2024, blimp_2025, ewok_2025, entity_tracking, wug, comps):
        for spec in module.TASKS:
            found[spec["name"]] = Task(**spec)
    return found


#: Every task by name.
TASKS: dict[str, Task] = _tasks()


def task_names() -> list[str]:
    """All task names, in registry order."""
    return list(TASKS)


def get(name: str) -> Task:
    """The task called ``name``; an unknown name is a ``UserError`` listing the known ones."""
    if name not in TASKS:
        raise UserError(f"unknown zero-shot task {name!r}; expected one of: {', '.join(TASKS)}")
    return TASKS[name]


def check(name: str, folder: str | Path) -> list[Path]:
    """Validate a task name and its data folder up front, cheaply: the folder holds ``.jsonl`` /
    ``.jsonl.gz`` files and the first line of each parses with the task's keys. Returns the files."""
    task = get(name)
    files = jsonl_files(name, folder)
    for path in files:
        for _ in read_lines(path, list(task.keys), task.keys):
            break
        else:
            raise UserError(f"{path}: no items for task {name!r}")
    return files


def load(name: str, folder: str | Path):
    """Parse every line of the task's data (``UserError`` on the first bad one)."""
    check(name, folder)
    return get(name).load(name, Path(folder))
