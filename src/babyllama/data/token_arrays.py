"""Token arrays: each split encoded once, cached on disk, memory-mapped for training.

A split's text files are encoded line by line (``line + "\\n"``, so newlines are tokens and the
decoded array reproduces the text) with the Rust tokenizer's parallel batch encoder, and
concatenated into one flat array: ``uint16`` when the vocabulary fits, else ``uint32``. With
``encoding="reference_whole_file"`` each file is encoded as one string instead (the authors'
``BabylmDataset``; the tokenizer then has no prefix space, see :func:`~babyllama.tokenizer.for_encoding`).
The cache key hashes the tokenizer, the encoding and the text, so any change is re-encoded.

Beside each token array the cache holds a word-start array of the same length (``{key}.words.npy``):
how many corpus words (``str.split`` words of the text) begin at each token, so the words a
training chunk holds are one sum (:func:`chunk_words`) and word-count checkpoints need no text.

Chunking (the paper's, docs/paper-recipe.md): a training chunk is ``seq_length + 1`` tokens (inputs are the first
``seq_length``, labels the last ``seq_length``); each epoch starts the chunks at a fresh random
offset in ``[0, seq_length)`` and visits them in a fresh random order (``per_epoch_offset``), or
each chunk gets its own random offset (``per_sample_offset``, the authors' ``random_chunk``:
neighbouring windows may overlap or leave gaps). Evaluation chunks start at fixed multiples of
``seq_length``, so every token after the first is predicted exactly once.
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
    """A split as one flat token array (``(n_tokens,)``, memory-mapped) and its UTF-8 byte count.

    ``word_starts`` ``(n_tokens,)``: corpus words beginning at each token (``None`` when the split
    was built without text, e.g. in a test); its sum is the split's word count.
    """

    tokens: np.ndarray
    n_bytes: int
    word_starts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class WordTables:
    """Per vocabulary id ``(V,)``: whitespace-to-text transitions inside the token's text
    (``inner``), whether the text begins with non-space (``begins_text``) and ends in space
    (``ends_space``). Each id is decoded on its own (partial UTF-8 bytes decode to U+FFFD)."""

    inner: np.ndarray
    begins_text: np.ndarray
    ends_space: np.ndarray

    @classmethod
    def of(cls, tokenizer) -> "WordTables":
        backend = tokenizer.backend_tokenizer
        texts = backend.decode_batch([[i] for i in range(backend.get_vocab_size(with_added_tokens=True))],
                                     skip_special_tokens=False)
        return cls(np.array([sum(1 for a, b in zip(t, t[1:]) if a.isspace() and not b.isspace()) for t in texts],
                            dtype=np.int64),
                   np.array([bool(t) and not t[0].isspace() for t in texts]),
                   np.array([bool(t) and t[-1].isspace() for t in texts]))


def word_start_counts(tables: WordTables, lines: list[str], pieces: list[np.ndarray]) -> np.ndarray:
    """Corpus words starting at each token ``(sum(len(p) for p in pieces),)`` for encoded ``lines``.

    A word starts where non-space text follows a space or the start of a line. Per token this is
    read from the vocabulary: the whitespace-to-text transitions inside the token's text, plus one
    when the token begins with text and the token before it (or the line start) ends in space.
    For byte-level BPE this is exact; on any line where it disagrees with ``len(line.split())``
    (a tokenizer whose pieces do not decode alone, a space NFKC adds) the line's true count is
    spread evenly over its tokens instead, so every line's total is exact.
    """
    if not pieces:
        return np.zeros(0, dtype=np.int64)
    ids = np.concatenate(pieces).astype(np.int64)
    lengths = np.array([len(p) for p in pieces])
    line_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    after_space = np.concatenate([[True], tables.ends_space[ids[:-1]]])
    after_space[line_starts] = True
    counts = tables.inner[ids] + (tables.begins_text[ids] & after_space)
    exact = np.array([len(line.split()) for line in lines], dtype=np.int64)
    for i in np.flatnonzero(np.add.reduceat(counts, line_starts) != exact):
        n = lengths[i]
        counts[line_starts[i]:line_starts[i] + n] = np.diff((np.arange(n + 1) * exact[i]) // n)
    return counts


def chunk_words(word_starts: np.ndarray, starts: np.ndarray, seq_length: int) -> int:
    """Corpus words beginning in the input windows ``[s, s + seq_length)`` of chunks ``starts`` ``(b,)``.

    Each epoch's windows tile the array, so an epoch counts (about) the split's words once.
    """
    index = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(seq_length)[None, :]
    return int(word_starts[index].sum(dtype=np.int64))


def encode_split(tokenizer, files: list[Path], cache_dir: str | Path,
                 encoding: str = "per_line_prefix_space") -> TokenSplit:
    """Encode ``files`` (or load them from ``cache_dir``) into a :class:`TokenSplit`.

    ``encoding``: ``per_line_prefix_space`` encodes every line plus its newline separately;
    ``reference_whole_file`` encodes each file's text as one string.
    """
    cache_dir = Path(cache_dir)
    digest = hashlib.sha256(tokenizer_fingerprint(tokenizer).encode())
    if encoding != "per_line_prefix_space":  # the default's key is unchanged, so old caches stay valid
        digest.update(encoding.encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    key = digest.hexdigest()[:24]
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    words_path = cache_dir / f"{key}.words.npy"
    if array_path.is_file() and meta_path.is_file() and words_path.is_file():
        meta = json.loads(meta_path.read_text())
        return TokenSplit(np.load(array_path, mmap_mode="r"), meta["n_bytes"], np.load(words_path, mmap_mode="r"))
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    backend = tokenizer.backend_tokenizer
    tables = WordTables.of(tokenizer)
    pieces: list[np.ndarray] = []
    word_pieces: list[np.ndarray] = []
    n_bytes = 0
    if encoding == "reference_whole_file":
        texts = [path.read_text(encoding="utf-8") for path in files]
        n_bytes = sum(len(text.encode("utf-8")) for text in texts)
        encodings = backend.encode_batch_fast(texts, add_special_tokens=False)  # parallel over files
        pieces = [np.asarray(e.ids, dtype=dtype) for e in encodings]
        word_pieces.append(word_start_counts(tables, texts, pieces))
    elif encoding == "per_line_prefix_space":
        for path in files:
            lines = [line + "\n" for line in path.read_text(encoding="utf-8").splitlines()]
            n_bytes += sum(len(line.encode("utf-8")) for line in lines)
            for start in range(0, len(lines), ENCODE_BATCH_LINES):
                batch = lines[start:start + ENCODE_BATCH_LINES]
                ids = [np.asarray(e.ids, dtype=dtype) for e in backend.encode_batch_fast(batch, add_special_tokens=False)]
                pieces.extend(ids)
                word_pieces.append(word_start_counts(tables, batch, ids))
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    word_starts = np.concatenate(word_pieces) if word_pieces else np.zeros(0, dtype=np.int64)
    word_starts = word_starts.astype(np.min_scalar_type(int(word_starts.max(initial=0))))
    cache_dir.mkdir(parents=True, exist_ok=True)
    for path, array in ((array_path, tokens), (words_path, word_starts)):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, array)
    atomic_write_json(meta_path, {"n_tokens": int(len(tokens)), "n_bytes": n_bytes,
                                  "n_words": int(word_starts.sum(dtype=np.int64)), "dtype": str(tokens.dtype),
                                  "files": [p.name for p in files]})
    return TokenSplit(np.load(array_path, mmap_mode="r"), n_bytes, np.load(words_path, mmap_mode="r"))


def chunks_per_epoch(n_tokens: int, seq_length: int) -> int:
    """Training chunks that fit whatever the epoch's random offset."""
    return max(0, (n_tokens - seq_length) // seq_length)


def epoch_chunk_starts(n_tokens: int, seq_length: int, seed: int, epoch: int,
                       sampling: str = "per_epoch_offset") -> np.ndarray:
    """Start positions ``(chunks_per_epoch,)`` of epoch ``epoch``'s chunks, in visiting order.

    ``per_epoch_offset``: one offset in ``[0, seq_length)`` for the epoch, windows disjoint;
    ``per_sample_offset``: chunk ``i`` of the permuted order starts at ``i * seq_length`` plus its
    own offset, as the authors' ``BabylmDataset.__getitem__`` draws ``randrange(seq_length)`` per
    sample. Depends only on ``(seed, epoch)``, so a resumed run rebuilds the same order.
    """
    rng = np.random.default_rng([seed, epoch])
    n = chunks_per_epoch(n_tokens, seq_length)
    if sampling == "per_sample_offset":
        return rng.permutation(n).astype(np.int64) * seq_length + rng.integers(0, seq_length, size=n)
    if sampling != "per_epoch_offset":
        raise ValueError(f"unknown chunk sampling {sampling!r}")
    offset = int(rng.integers(0, seq_length))
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
