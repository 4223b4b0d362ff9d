"""Offline teacher cache: the ensemble's distribution at every training position, sampled once.

``build_teacher_cache`` runs the frozen teacher ensemble once over the training token array and
stores, for every position of every training chunk, ``k`` token ids drawn with replacement from
the ensemble distribution ``softmax(mean_logits / T)`` together with the ensemble's
log-probability of each drawn id (Sparse Logit Sampling, arXiv 2503.16870). Distillation then
reads these instead of running the teachers: the sampled ids give unbiased estimates of the KL
and of its gradient (:class:`~babyllama.losses.SparseTargets`), unlike a top-k truncation.

Storage per token: ``k`` ids (``uint16`` when the vocabulary fits, else ``uint32``) and ``k``
float16 log-probabilities, i.e. ``4k`` bytes with vocab <= 65536 (``k = 32``: 128 bytes, against
64,000 bytes for one float32 logits row at vocab 16000).

Fixed boundaries (the trade-off): a teacher's prediction depends on its context, so a cached
distribution belongs to one chunking of the token array. Online training starts each epoch's
chunks at a fresh random offset in ``[0, seq_length)``; with a cache, each epoch picks its offset
from the few cached ones (``offsets``, default ``[0]``), in a fresh random chunk order. One
offset means every epoch sees the same contexts (less data augmentation); each extra offset
costs one more teacher pass at build time and ``4k`` bytes per token on disk.

Layout (a folder, written atomically): ``meta.json`` (format, teachers' weight hashes, token
array hash, ``seq_length``, offsets, ``k``, temperature, vocabulary size), ``ids.npy`` and
``logp.npy`` of shape ``(n_offsets, n_chunks, seq_length, k)``, memory-mapped when read.
Loading checks every recorded fact against the training run and refuses a mismatch in one line.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.token_arrays import chunks_per_epoch, gather_chunks
from .errors import UserError
from .io import atomic_path, atomic_write_json
from .losses import SparseTargets, chunk_rows
from .progress import Progress
from .teachers import ensemble_targets, load_teachers

FORMAT = "babyllama-teacher-cache-1"


def teacher_hash(folder: str | Path) -> str:
    """SHA-256 of a model folder's ``config.json`` and weight files (names and bytes)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in [folder / "config.json", *sorted(folder.glob("*.safetensors"))]:
        if not path.is_file():
            raise UserError(f"{folder}: not a model directory (no {path.name})")
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


def tokens_hash(tokens: np.ndarray) -> str:
    """SHA-256 of a token array's dtype, length and contents."""
    digest = hashlib.sha256(f"{np.dtype(tokens.dtype).str}:{len(tokens)}:".encode())
    digest.update(np.ascontiguousarray(tokens).tobytes())
    return digest.hexdigest()


def cache_epoch_starts(n_tokens: int, seq_length: int, seed: int, epoch: int, offsets: tuple[int, ...]) -> np.ndarray:
    """Chunk starts ``(chunks_per_epoch,)`` of one epoch when the offset must be a cached one.

    Like :func:`~babyllama.data.token_arrays.epoch_chunk_starts` (a pure function of
    ``(seed, epoch)``, so resuming is exact) but the epoch's offset is drawn from ``offsets``.
    """
    rng = np.random.default_rng([seed, epoch])
    offset = int(offsets[int(rng.integers(0, len(offsets)))])
    n = chunks_per_epoch(n_tokens, seq_length)
    return offset + rng.permutation(n).astype(np.int64) * seq_length


@dataclass
class TeacherCache:
    """An opened cache: ``ids`` and ``logp`` ``(n_offsets, n_chunks, seq_length, k)`` (memory-mapped)."""

    path: Path
    meta: dict
    ids: np.ndarray
    logp: np.ndarray

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(self.meta["offsets"])

    def targets(self, starts: np.ndarray, device: torch.device) -> SparseTargets:
        """Sparse targets for the chunks starting at ``starts`` ``(b,)``: ids and log-probs ``(b*S, k)``."""
        seq_length = self.meta["seq_length"]
        slot = {o: i for i, o in enumerate(self.offsets)}
        starts = np.asarray(starts, dtype=np.int64)
        offset_index = np.array([slot.get(int(s) % seq_length, -1) for s in starts])
        chunk_index = starts // seq_length
        if (offset_index < 0).any() or (chunk_index >= self.ids.shape[1]).any():
            bad = int(starts[(offset_index < 0) | (chunk_index >= self.ids.shape[1])][0])
            raise ValueError(f"{self.path}: no cached chunk starts at token {bad}")
        k = self.ids.shape[-1]
        ids = torch.from_numpy(self.ids[offset_index, chunk_index].astype(np.int64)).view(-1, k)
        logp = torch.from_numpy(self.logp[offset_index, chunk_index].astype(np.float32)).view(-1, k)
        return SparseTargets(ids.to(device), logp.to(device))


def build_teacher_cache(teacher_dirs: list[str | Path], train_tokens: np.ndarray, seq_length: int,
                        out_path: str | Path, k: int = 32, tokenizer=None, temperature: float = 1.0,
                        offsets: tuple[int, ...] = (0,), dtype: torch.dtype = torch.float32,
                        batch_size: int = 32, seed: int = 0, device: torch.device | str = "cpu",
                        progress: bool = True) -> dict:
    """Run the teachers once over ``train_tokens`` ``(n,)`` and write the cache folder ``out_path``.

    Covers every training chunk (``chunks_per_epoch(n, seq_length)`` per offset) at each offset in
    ``offsets`` (each in ``[0, seq_length)``), drawing ``k`` ids per position with a generator
    seeded by ``seed``. Teachers load as in :func:`~babyllama.teachers.load_teachers` (checked
    against ``tokenizer`` when given) in ``dtype``. Returns the cache's ``meta.json`` contents,
    including ``bytes_per_token`` and the build time.
    """
    for name, value in (("k", k), ("seq_length", seq_length), ("batch_size", batch_size)):
        if value < 1:
            raise UserError(f"teacher cache {name}: got {value}, expected >= 1")
    if temperature <= 0:
        raise UserError(f"teacher cache temperature: got {temperature}, expected > 0")
    offsets = tuple(int(o) for o in offsets)
    if not offsets or len(set(offsets)) != len(offsets) or not all(0 <= o < seq_length for o in offsets):
        raise UserError(f"teacher cache offsets {list(offsets)}: expected distinct values in [0, {seq_length})")
    n_chunks = chunks_per_epoch(len(train_tokens), seq_length)
    if n_chunks < 1:
        raise UserError(f"teacher cache: {len(train_tokens)} training tokens make no chunk of {seq_length}")
    device = torch.device(device)
    reference_tok = tokenizer if tokenizer is not None else _tokenizer_of(teacher_dirs)
    vocab = len(reference_tok)
    teachers = load_teachers(teacher_dirs, reference_tok, vocab, dtype, device, seq_length=seq_length)
    id_dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.uint32
    shape = (len(offsets), n_chunks, seq_length, k)
    meta = {"format": FORMAT, "kind": "sample", "k": k, "temperature": float(temperature), "seq_length": seq_length,
            "offsets": list(offsets), "n_chunks": n_chunks, "vocab_size": vocab,
            "teachers": [str(d) for d in teacher_dirs], "teacher_hashes": [teacher_hash(d) for d in teacher_dirs],
            "teacher_dtype": str(dtype).removeprefix("torch."), "tokens_hash": tokens_hash(train_tokens),
            "n_tokens": int(len(train_tokens)), "seed": seed,
            "bytes_per_token": k * (np.dtype(id_dtype).itemsize + 2)}
    generator = torch.Generator(device=device).manual_seed(seed)
    bar = Progress(len(offsets) * n_chunks, f"teacher cache ({len(teachers)} teachers, k={k})", unit="chunk",
                   enabled=progress)
    begin = time.perf_counter()
    with atomic_path(out_path) as tmp:
        tmp.mkdir()
        ids_out = np.lib.format.open_memmap(tmp / "ids.npy", mode="w+", dtype=id_dtype, shape=shape)
        logp_out = np.lib.format.open_memmap(tmp / "logp.npy", mode="w+", dtype=np.float16, shape=shape)
        done = 0
        for o_index, offset in enumerate(offsets):
            for c0 in range(0, n_chunks, batch_size):
                c1 = min(c0 + batch_size, n_chunks)
                starts = offset + np.arange(c0, c1, dtype=np.int64) * seq_length
                inputs, _ = gather_chunks(train_tokens, starts, seq_length)
                ids, logp = _sample(ensemble_targets(teachers, inputs.to(device)), (c1 - c0) * seq_length, vocab,
                                    k, temperature, generator)
                ids_out[o_index, c0:c1] = ids.view(c1 - c0, seq_length, k).cpu().numpy().astype(id_dtype)
                logp_out[o_index, c0:c1] = logp.view(c1 - c0, seq_length, k).cpu().numpy().astype(np.float16)
                done += c1 - c0
                bar.update(done)
        ids_out.flush()
        logp_out.flush()
        del ids_out, logp_out
        meta["build_time_s"] = round(time.perf_counter() - begin, 2)
        meta["built"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        atomic_write_json(tmp / "meta.json", meta)
    return meta


def _tokenizer_of(teacher_dirs) -> object:
    """The first teacher's tokenizer, to check the others against (``None`` if it has none)."""
    from .tokenizer import load_tokenizer

    if not teacher_dirs:
        raise UserError("teacher cache: at least one teacher directory is needed")
    first = Path(teacher_dirs[0])
    if not (first / "tokenizer_config.json").is_file():
        raise UserError("teacher cache: the first teacher folder has no tokenizer; pass --tokenizer")
    return load_tokenizer(first)


@torch.no_grad()
def _sample(targets, n_pos: int, vocab: int, k: int, temperature: float,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` draws per position from ``softmax(logits / T)``: ids ``(n_pos, k)`` int64 and their log-probs."""
    ids_parts, logp_parts = [], []
    rows = chunk_rows(vocab)
    for a in range(0, n_pos, rows):
        log_p = targets.logits(a, min(a + rows, n_pos))
        if temperature != 1.0:
            log_p.div_(temperature)
        log_p.sub_(torch.logsumexp(log_p, -1, keepdim=True))
        ids = torch.multinomial(log_p.exp(), k, replacement=True, generator=generator)
        ids_parts.append(ids)
        logp_parts.append(log_p.gather(1, ids))
    return torch.cat(ids_parts), torch.cat(logp_parts)


def load_teacher_cache(path: str | Path, teacher_dirs: list[str | Path], train_tokens: np.ndarray, seq_length: int,
                       temperature: float, k: int, offsets: tuple[int, ...], vocab_size: int) -> TeacherCache:
    """Open a cache for a distillation run, refusing (one line) any cache built for other inputs."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise UserError(f"distill.teacher_cache: {path} is not a teacher cache (no meta.json); "
                        f"build it with `babyllama teach-cache`")
    try:
        meta = json.loads((path / "meta.json").read_text())
        ids = np.load(path / "ids.npy", mmap_mode="r")
        logp = np.load(path / "logp.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable teacher cache ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: unknown teacher cache format {meta.get('format')!r}, expected {FORMAT}")
    expected = {"seq_length": seq_length, "k": k, "offsets": [int(o) for o in offsets],
                "temperature": float(temperature), "vocab_size": vocab_size,
                "n_tokens": int(len(train_tokens))}
    for key, value in expected.items():
        if meta.get(key) != value:
            raise UserError(f"{path}: built with {key} {meta.get(key)!r}, but this run needs {value!r}; "
                            f"rebuild it with `babyllama teach-cache`")
    if meta["tokens_hash"] != tokens_hash(train_tokens):
        raise UserError(f"{path}: built from other training tokens (another corpus or tokenizer); rebuild it")
    if len(teacher_dirs) != len(meta["teacher_hashes"]):
        raise UserError(f"{path}: built from {len(meta['teacher_hashes'])} teachers, this run names "
                        f"{len(teacher_dirs)}; rebuild it")
    for folder, recorded in zip(teacher_dirs, meta["teacher_hashes"]):
        if teacher_hash(folder) != recorded:
            raise UserError(f"{path}: teacher {folder} differs from the one the cache was built from; rebuild it")
    shape = (len(offsets), meta["n_chunks"], seq_length, k)
    if ids.shape != shape or logp.shape != shape:
        raise UserError(f"{path}: arrays have shape {ids.shape} / {logp.shape}, expected {shape}; rebuild it")
    return TeacherCache(path, meta, ids, logp)
