"""Discover and load minimal-pair evaluation tasks (BLiMP, BLiMP supplement, EWoK, built-in pairs).

Every task is a folder of JSON-lines files, plain (``.jsonl``) or gzip-compressed (``.jsonl.gz``);
each file is one subtask (a BLiMP paradigm, an EWoK domain, a built-in phenomenon) named after the
file. Each line becomes an :class:`Item`: an optional context shared by all choices, the choices,
and the index of the gold choice, in the form lm-evaluation-harness's ``multiple_choice`` tasks
use in the BabyLM 2024 pipeline:

- BLiMP format (``blimp``, ``blimp_filtered``, ``blimp_supplement``, ``builtin_pairs``): empty
  context, choices ``[sentence_good, sentence_bad]``, gold 0. The optional ``field`` key
  (morphology, syntax, ...) gives the per-field breakdown.
- EWoK format (``ewok``): context ``Context1``, choices ``[Target1, Target2]``, gold 0, i.e. the
  model should prefer the target that fits the context (``ewok_filtered/_template_yaml`` of
  babylm/evaluation-pipeline-2024). The files list each item twice, the second time with the
  contexts and targets swapped, so both directions are scored.

Every file is parsed before anything is scored: a malformed line (bad JSON, a missing or
non-string key) raises :class:`~babyllama.errors.UserError` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from babyllama.errors import UserError
from babyllama.io import iter_jsonl_objects

BLIMP_KEYS = ("sentence_good", "sentence_bad")
EWOK_KEYS = ("Context1", "Target1", "Target2")

# Task name -> the keys its lines must hold.
TASK_FORMATS: dict[str, tuple[str, ...]] = {
    "blimp": BLIMP_KEYS,
    "blimp_filtered": BLIMP_KEYS,
    "blimp_supplement": BLIMP_KEYS,
    "builtin_pairs": BLIMP_KEYS,
    "ewok": EWOK_KEYS,
}


@dataclass(frozen=True)
class Item:
    """One multiple-choice item: the gold choice should get the highest log-probability.

    ``context`` is ``""`` for BLiMP-style pairs (the tokenizer's BOS token then stands in for it).
    ``line`` is the 1-based line number in the source file, for messages.
    """

    context: str
    choices: tuple[str, ...]
    gold: int
    line: int


@dataclass(frozen=True)
class Subtask:
    """The items of one file (a paradigm or domain), with its field label when the file has one."""

    task: str
    name: str
    path: Path
    field: str | None
    items: tuple[Item, ...]


def task_files(task: str, folder: str | Path) -> list[Path]:
    """The sorted ``*.jsonl`` / ``*.jsonl.gz`` files of ``folder`` (or ``folder`` itself if a file)."""
    from babyllama.evaluation.tasks.ranking_2025 import jsonl_files

    if task not in TASK_FORMATS:
        raise UserError(f"unknown zero-shot task {task!r}; expected one of: {', '.join(TASK_FORMATS)}")
    return jsonl_files(task, folder)


def subtask_name(path: Path) -> str:
    """``adjunct_island.jsonl.gz`` -> ``adjunct_island``."""
    name = path.name
    for suffix in (".gz", ".jsonl"):
        name = name.removesuffix(suffix)
    return name


def load_subtask(task: str, path: str | Path) -> Subtask:
    """Parse one file of ``task`` into a :class:`Subtask`; blank lines are skipped."""
    path = Path(path)
    keys = TASK_FORMATS[task]
    items: list[Item] = []
    field: str | None = None
    for number, record in iter_jsonl_objects(path, keys):
        for key in keys:
            if not isinstance(record[key], str) or not record[key].strip():
                raise UserError(f"{path}:{number}: key {key!r} must be a non-empty string")
        if keys == EWOK_KEYS:
            items.append(Item(record["Context1"], (record["Target1"], record["Target2"]), 0, number))
        else:
            items.append(Item("", (record["sentence_good"], record["sentence_bad"]), 0, number))
        if field is None and isinstance(record.get("field"), str):
            field = record["field"]
    if not items:
        raise UserError(f"{path}: no items")
    return Subtask(task=task, name=subtask_name(path), path=path, field=field, items=tuple(items))


def load_task(task: str, folder: str | Path) -> list[Subtask]:
    """All subtasks of ``task`` found in ``folder``, sorted by name; duplicate names are an error."""
    subtasks = [load_subtask(task, path) for path in task_files(task, folder)]
    seen: dict[str, Path] = {}
    for sub in subtasks:
        if sub.name in seen:
            raise UserError(f"{sub.path}: subtask {sub.name!r} also given by {seen[sub.name]}")
        seen[sub.name] = sub.path
    return subtasks


def load_tasks(tasks: dict[str, str | Path]) -> dict[str, list[Subtask]]:
    """Load every task of ``{task name: folder}``, checking all files before returning."""
    return {task: load_task(task, folder) for task, folder in tasks.items()}
