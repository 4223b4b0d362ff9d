"""Reading (Super)GLUE task files: BabyLM jsonl records to checked texts and labels, and the
tokenized features the finetuning loop trains on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from babyllama.errors import UserError
from babyllama.evaluation.glue_tasks import GlueTask
from babyllama.io import iter_jsonl_objects

PathLike = str | os.PathLike


@dataclass
class Examples:
    """The texts and labels of one task file; ``labels`` is int64 of shape ``(n,)``, ``n`` at
    most ``records``, the number of records in the file (all of them checked)."""

    path: Path
    first: list[str]
    second: list[str] | None
    labels: np.ndarray
    records: int


def task_file(data_dirs: PathLike | Sequence[PathLike], name: str, split: str) -> Path | None:
    """The file ``{name}.{split}.jsonl`` (or ``.jsonl.gz``) in the first of ``data_dirs`` (one
    folder or several, searched in order) that holds it; None if none does."""
    folders = [data_dirs] if isinstance(data_dirs, (str, os.PathLike)) else data_dirs
    for folder in folders:
        for suffix in (".jsonl", ".jsonl.gz"):
            path = Path(folder) / f"{name}.{split}{suffix}"
            if path.is_file():
                return path
    return None


def needed_files(data_dirs: Sequence[Path], task: GlueTask) -> tuple[dict[str, Path], str | None]:
    """The files a task needs, by role, and a reason it cannot run (None when all exist).

    Each file is looked up in ``data_dirs`` in order (see ``task_file``).

    Roles: ``train`` (the training task's training file), ``select`` (the training task's
    validation file, used to pick the checkpoint) and ``valid`` (the file the task is scored on).
    """
    wanted = {
        "train": (task.train_task, "train"),
        "select": (task.train_task, "valid"),
        "valid": (task.name, "valid"),
    }
    files = {}
    for role, (name, split) in wanted.items():
        path = task_file(data_dirs, name, split)
        if path is None:
            why = f" (needed to score {task.name})" if name != task.name else ""
            where = ", ".join(str(folder) for folder in data_dirs)
            return {}, f"no {split} file {name}.{split}.jsonl[.gz] in {where}{why}"
        files[role] = path
    return files, None


def load_examples(path: Path, task: GlueTask, limit: int | None = None) -> Examples:
    """Read a BabyLM jsonl file of ``task``, checking every record; keep the first ``limit``.

    Raises UserError naming the file (and line) for unreadable JSON, a missing key, a text that
    is not a string, a label the task's ``num_labels``-way head does not fit, or no records.
    """
    first: list[str] = []
    second: list[str] = []
    labels: list[int] = []
    records = 0
    for lineno, record in iter_jsonl_objects(path, task.keys):
        for key in task.keys:
            if key != "label" and not isinstance(record[key], str):
                raise UserError(f"{path}:{lineno}: '{key}' must be a string, got {record[key]!r}")
        label = record["label"]
        if isinstance(label, bool):
            label = int(label)
        if not isinstance(label, int) or not 0 <= label < task.num_labels:
            raise UserError(
                f"{path}:{lineno}: label {record['label']!r} does not fit the {task.num_labels}-way "
                f"{task.name} head (expected an integer 0..{task.num_labels - 1})"
            )
        records += 1
        if limit is not None and len(labels) >= limit:
            continue
        text_a, text_b = task.texts(record)
        first.append(text_a)
        if text_b is not None:
            second.append(text_b)
        labels.append(label)
    if not labels:
        raise UserError(f"{path}: no {task.name} examples in the file")
    return Examples(path, first, second if task.second else None, np.asarray(labels, dtype=np.int64), records)


def encode(examples: Examples, tokenizer, max_length: int) -> list[dict[str, Any]]:
    """Tokenize examples into Trainer features: ``input_ids`` and ``attention_mask`` (lists of
    at most ``max_length`` ints) and ``labels`` (int); padding is left to the collator."""
    args = (examples.first,) if examples.second is None else (examples.first, examples.second)
    encoded = tokenizer(*args, truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": int(label)}
        for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], examples.labels)
    ]
