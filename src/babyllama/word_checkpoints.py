"""Model checkpoints at fixed counts of corpus words seen (the BabyLM 2025 rule).

The 2025 pipeline evaluates intermediate checkpoints named ``chck_{N}M`` (words seen, in
millions): every million up to 10M, then every ten million up to 100M. Training saves one full
Hugging Face model folder per crossed count under ``MODEL_DIR/word_checkpoints/chck_{N}M/``; the
evaluators (``evaluate fast``, ``evaluate aoa``) and ``push`` find them with
:func:`list_word_checkpoints`. Counts are corpus words (whitespace-separated), not tokens.
"""

from __future__ import annotations

import re
from pathlib import Path

from babyllama.errors import UserError

#: Folder under a model directory that holds the word-count checkpoints.
WORD_CHECKPOINTS_DIR = "word_checkpoints"

#: The 2025 schedule in words: 1M, 2M, ..., 10M, 20M, ..., 100M.
DEFAULT_WORD_COUNTS: tuple[int, ...] = tuple(m * 1_000_000 for m in (*range(1, 11), *range(20, 101, 10)))

_NAME = re.compile(r"^chck_(\d+)M$")


def checkpoint_name(words: int) -> str:
    """``chck_{N}M`` for a word count that is a whole number of millions (the pipeline's branch name)."""
    if words <= 0 or words % 1_000_000:
        raise UserError(f"word checkpoint {words:,}: expected a positive whole number of millions of words")
    return f"chck_{words // 1_000_000}M"


def parse_checkpoint_name(name: str) -> int | None:
    """Words seen for a ``chck_{N}M`` folder name, or None for any other name."""
    match = _NAME.match(name)
    return int(match.group(1)) * 1_000_000 if match else None


def list_word_checkpoints(model_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(words, folder), ...]`` of a model directory's word-count checkpoints, by increasing count.

    Only folders that hold a ``config.json`` count (a folder being written is not listed: saves
    are atomic renames). An empty list when the model has none.
    """
    root = Path(model_dir) / WORD_CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        words = parse_checkpoint_name(folder.name)
        if words is not None and (folder / "config.json").is_file():
            found.append((words, folder))
    return sorted(found)
