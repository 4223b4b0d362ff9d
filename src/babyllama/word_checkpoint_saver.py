"""Save a model folder each time the corpus words seen in training cross a configured count.

The training loop adds each optimizer step's words (:func:`~babyllama.data.token_arrays.chunk_words`
over the step's global batch, so every process holds the same count) and calls
:meth:`WordCheckpointSaver.after_step`. A crossed count ``N`` is saved once, as
``MODEL_DIR/word_checkpoints/chck_{N}M`` (or ``chck_{N}K``, :mod:`babyllama.word_checkpoints`):
the current weights (not the best so far), the tokenizer, the resolved config and
``word_checkpoint.json`` (``words`` target, ``words_seen``, ``tokens``, ``step``). Each folder
appears by an atomic rename and loads with ``AutoModelForCausalLM`` and ``AutoTokenizer``.

Resume: a step's word checkpoints are written before that step's resume checkpoint, so a resumed
run has saved every count below its restored word count; counts crossed again after the resume
point are skipped when their folder already exists (written by the killed run, same config).
A fresh start removes the folder's old word checkpoints (they belong to another run).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from .io import append_jsonl, atomic_path, atomic_write_json, atomic_write_text
from .word_checkpoints import WORD_CHECKPOINTS_DIR, checkpoint_name


class WordCheckpointSaver:
    """Pending word counts of one training run and the folder they are saved under.

    ``save_weights(folder)`` writes the model's current weights into ``folder`` (called on every
    process, since gathering sharded weights is collective; only the main process writes).
    """

    def __init__(self, model_dir: Path, counts: list[int], tokenizer, resolved_config: str,
                 save_weights: Callable[[Path | None], None], is_main: bool, log_path: Path):
        self.root = Path(model_dir) / WORD_CHECKPOINTS_DIR
        self.counts = sorted(counts)
        self.tokenizer = tokenizer
        self.resolved_config = resolved_config
        self.save_weights = save_weights
        self.is_main = is_main
        self.log_path = log_path
        self.existing: set[str] = set()

    def start(self, fresh: bool, words_seen: int) -> None:
        """Call once on every process before training, with the restored word count: a ``fresh``
        start removes the word checkpoints of an earlier run in this folder; a resume keeps them,
        drops the counts it has passed (saved before its resume checkpoint) and will not save the
        others again. (Training waits for every process after this, so all see the same folders.)"""
        self.counts = [c for c in self.counts if c > words_seen]
        if fresh:
            if self.is_main and self.root.exists():
                shutil.rmtree(self.root)
        elif self.root.is_dir():
            self.existing = {p.name for p in self.root.iterdir() if (p / "word_checkpoint.json").is_file()}

    def after_step(self, words_seen: int, tokens: int, step: int) -> list[Path]:
        """Save every count crossed by ``words_seen`` whose folder is missing; return the new folders."""
        saved = []
        while self.counts and self.counts[0] <= words_seen:
            target = self.counts.pop(0)
            folder = self.root / checkpoint_name(target)
            if self.is_main:
                append_jsonl(self.log_path, {"event": "word_checkpoint", "step": step, "words_seen": words_seen,
                                             "tokens": tokens, "name": folder.name})
            if folder.name in self.existing:
                continue
            if self.is_main:
                with atomic_path(folder) as tmp:
                    self.save_weights(tmp)
                    self.tokenizer.save_pretrained(tmp)
                    atomic_write_text(tmp / "resolved_config.yaml", self.resolved_config)
                    atomic_write_json(tmp / "word_checkpoint.json", {"name": folder.name, "words": target,
                                                                     "words_seen": words_seen, "tokens": tokens,
                                                                     "step": step})
            else:
                self.save_weights(None)
            saved.append(folder)
        return saved
