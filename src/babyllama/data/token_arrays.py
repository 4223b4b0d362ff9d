"""Token arrays: each split encoded once, cached on disk, memory-mapped for training.

A split's text files are encoded line by line (``line + "\\n"``, so newlines are tokens and the
decoded array reproduces the text) with the Rust tokenizer's parallel batch encoder, and
concatenated into one flat array: ``uint16`` when the vocabulary fits, else ``uint32``. The
cache key hashes the tokenizer and the text, so a changed tokenizer or corpus is re-encoded.

Chunking (the paper's, docs/paper-recipe.md): a training chunk is ``seq_length + 1`` tokens (inputs are the first
``seq_length``, labels the last ``seq_length``); each epoch starts the chunks at a fresh random
offset in ``[0, seq_length)`` and visits them in a fresh random order. Evaluation chunks start
at fixed multiples of ``seq_length``, so every token after the first is predicted exactly once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..io import atomic_path, atomic_write_json
from ..tokenizer import tokenizer_fingerprint

ENCODE_BATCH_LINES = 20_000
IGNORE_INDEX = -100


@dataclass
class TokenSplit:
    """A split as one flat token array (``(n_tokens,)``, memory-mapped) and its UTF-8 byte count."""

    tokens: np.ndarray
    n_bytes: int

    def __len__(self) -> int:
        return len(self.tokens)


def encode_split(tokenizer, files: list[Path], cache_dir: str | Path) -> TokenSplit:
    """Encode ``files`` (or load them from ``cache_dir``) into a :class:`TokenSplit`."""
    cache_dir = Path(cache_dir)
    digest = hashlib.sha256(tokenizer_fingerprint(tokenizer).encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    key = digest.hexdigest()[:24]
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if array_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return TokenSplit(np.load(array_path, mmap_mode="r"), meta["n_bytes"])
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    backend = tokenizer.backend_tokenizer
    pieces: list[np.ndarray] = []
    n_bytes = 0
    for path in files:
        lines = [line + "\n" for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        n_bytes += sum(len(line.encode("utf-8")) for line in lines)
        for start in range(0, len(lines), ENCODE_BATCH_LINES):
            encodings = backend.encode_batch_fast(lines[start:start + ENCODE_BATCH_LINES], add_special_tokens=False)
            pieces.extend(np.asarray(e.ids, dtype=dtype) for e in encodings)
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(array_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, tokens)
    atomic_write_json(meta_path, {"n_tokens": int(len(tokens)), "n_bytes": n_bytes, "dtype": str(tokens.dtype),
                                  "files": [p.name for p in files]})
    return TokenSplit(np.load(array_path, mmap_mode="r"), n_bytes)


def chunks_per_epoch(n_tokens: int, seq_length: int) -> int:
    """Training chunks that fit whatever the epoch's random offset."""
    return max(0, (n_tokens - seq_length) // seq_length)


def epoch_chunk_starts(n_tokens: int, seq_length: int, seed: int, epoch: int) -> np.ndarray:
    """Start positions ``(chunks_per_epoch,)`` of epoch ``epoch``'s chunks, in visiting order.

    Depends only on ``(seed, epoch)``, so a resumed run rebuilds the same order.
    """
    rng = np.random.default_rng([seed, epoch])
    offset = int(rng.integers(0, seq_length))
    n = chunks_per_epoch(n_tokens, seq_length)
    return offset + rng.permutation(n).astype(np.int64) * seq_length


def gather_chunks(tokens: np.ndarray, starts: np.ndarray, seq_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels ``(len(starts), seq_length)`` int64 for full training chunks."""
    index = starts[:, None] + np.arange(seq_length + 1)[None, :]
    window = torch.from_numpy(tokens[index].astype(np.int64))
    return window[:, :-1], window[:, 1:]


def eval_batches(tokens: np.ndarray, seq_length: int, batch_size: int, pad_id: int):
    """Yield ``(input_ids, labels)`` batches ``(b, seq_length)`` covering ``tokens`` once.

    Chunk ``i`` holds tokens ``[i*T, i*T + T]``; the last chunk is padded, with padded labels set
    to ``IGNORE_INDEX``. Every token but the first is a label exactly once.
    """
    n = len(tokens)
    starts = np.arange(0, max(n - 1, 0), seq_length)
    for b in range(0, len(starts), batch_size):
        batch_starts = starts[b:b + batch_size]
        inputs = torch.full((len(batch_starts), seq_length), pad_id, dtype=torch.long)
        labels = torch.full((len(batch_starts), seq_length), IGNORE_INDEX, dtype=torch.long)
        for row, s in enumerate(batch_starts):
            window = torch.from_numpy(np.asarray(tokens[s:s + seq_length + 1], dtype=np.int64))
            inputs[row, :len(window) - 1] = window[:-1]
            labels[row, :len(window) - 1] = window[1:]
        yield inputs, labels


def require_tokens(split: TokenSplit, name: str, seq_length: int, batch_size: int) -> None:
    """Refuse a training split too small for one batch, naming the numbers."""
    n = chunks_per_epoch(len(split), seq_length)
    if n < batch_size:
        raise UserError(f"{name}: {len(split)} tokens make {n} chunks of {seq_length}, fewer than one batch "
                        f"of {batch_size}; use more text or a smaller train.batch_size")
