"""Model checkpoints at fixed counts of corpus words seen (the BabyLM 2025 rule).

The 2025 pipeline evaluates intermediate checkpoints named ``chck_{N}M`` (words seen, in
millions): every million up to 10M, then every ten million up to 100M (and on to 1000M for the
strict track). Counts below a whole million (small demos) are named ``chck_{N}K``. Training saves one full
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

_NAME = re.compile(r"^chck_(\d+)([MK])$")
_UNITS = {"M": 1_000_000, "K": 1_000}


def checkpoint_name(words: int) -> str:
    """``chck_{N}M`` for a whole number of millions of words (the pipeline's branch name), else
    ``chck_{N}K`` for a whole number of thousands (names the 2025 pipeline does not read)."""
    if words <= 0 or words % 1_000:
        raise UserError(f"word checkpoint {words:,}: expected a positive whole number of thousands of words")
    return f"chck_{words // 1_000_000}M" if words % 1_000_000 == 0 else f"chck_{words // 1_000}K"


def parse_checkpoint_name(name: str) -> int | None:
    """Words seen for a ``chck_{N}M`` or ``chck_{N}K`` folder name, or None for any other name."""
    match = _NAME.match(name)
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


def is_pipeline_name(name: str) -> bool:
    """True for the ``chck_{N}M`` names the 2025 pipeline reads as checkpoint branches."""
    match = _NAME.match(name)
    return bool(match) and match.group(2) == "M"


def check_word_counts(counts: list[int], where: str) -> None:
    """Refuse a word-checkpoint list that is not strictly increasing whole thousands, in one line."""
    for words in counts:
        if isinstance(words, bool) or words <= 0 or words % 1_000:
            raise UserError(f"{where}: got {words!r}, expected positive whole thousands of words "
                            f"(named chck_{{N}}K or chck_{{N}}M)")
    if any(b <= a for a, b in zip(counts, counts[1:])):
        raise UserError(f"{where}: got {counts!r}, expected strictly increasing word counts")


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
