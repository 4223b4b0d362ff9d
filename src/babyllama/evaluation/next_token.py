"""Next-token log-probabilities for many (token sequence, target) queries, with shared forward passes.

A query asks for ``log P(target | seq)``: the model's distribution at the last position of ``seq``.
The reading and AoA evaluators phrase every probability they need this way, with the exact token
sequence the 2025 pipeline would feed its model, one run per probability. Here a causal model's
logits at position ``i`` depend only on tokens ``0..i``, so every query whose ``seq`` is a prefix
of a longer query's ``seq`` is answered by that longer sequence's forward pass. The multi-token
words of a reading context, and all the words of one sentence when the tokenizer tokenises
prefixes stably, cost one pass; a sequence that is a prefix of none runs on its own, so the
answers equal the pipeline's one-pass-per-probability algorithm by construction.

The maximal sequences are sorted by length and batched with right padding; logits are projected
only at the positions asked for (``logits_to_keep``) and reduced to ``logit[target] -
logsumexp(logit)`` in float32, returned as float64.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
import torch

from babyllama.errors import UserError
from babyllama.progress import Progress

Query = tuple[tuple[int, ...], int]


def _covers(seqs: list[tuple[int, ...]]) -> list[int]:
    """For lexicographically sorted distinct ``seqs``, the index of a longest sequence that each
    one is a prefix of (itself when none is).

    A sequence that is a prefix of another is a prefix of its immediate successor in sorted order
    (everything sorted between a prefix and its extension extends the prefix too), so one
    backward sweep finds every cover.
    """
    cover = list(range(len(seqs)))
    for i in range(len(seqs) - 2, -1, -1):
        seq, nxt = seqs[i], seqs[i + 1]
        if len(nxt) > len(seq) and nxt[: len(seq)] == seq:
            cover[i] = cover[i + 1]
    return cover


def next_token_logprobs(
    model, queries: Sequence[Query], batch_size: int = 64, progress: bool = False, desc: str = "scoring"
) -> np.ndarray:
    """``log P(target | seq)`` for every ``(seq, target)`` in ``queries``: float64 array (len(queries),).

    ``seq`` is a non-empty tuple of token ids (what the model reads, special tokens included) and
    ``target`` a token id. ``batch_size`` bounds the sequences per forward pass.
    """
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    if any(len(seq) == 0 for seq, _ in queries):
        raise UserError("a context tokenises to no tokens (and the tokenizer adds no BOS): nothing to predict from")
    seqs = sorted({seq for seq, _ in queries})
    index = {seq: i for i, seq in enumerate(seqs)}
    cover = _covers(seqs)
    runs = sorted(set(cover), key=lambda i: (len(seqs[i]), seqs[i]))
    run_slot = {r: k for k, r in enumerate(runs)}
    # Per run: the positions read, and for each query its (run, position).
    positions: list[set[int]] = [set() for _ in runs]
    where = []
    for seq, _ in queries:
        k = run_slot[cover[index[seq]]]
        positions[k].add(len(seq) - 1)
        where.append((k, len(seq) - 1))

    device = next(model.parameters()).device
    fast_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    row_of: dict[tuple[int, int], int] = {}  # (run, position) -> row in the flat kept logits of its batch
    out = np.empty(len(queries), dtype=np.float64)
    by_batch: dict[int, list[int]] = {}
    for q, (k, _) in enumerate(where):
        by_batch.setdefault(k // batch_size, []).append(q)
    bar = Progress(len(runs), desc, unit="sequence", enabled=progress, log_every_s=10.0)
    with torch.inference_mode():
        for b, start in enumerate(range(0, len(runs), batch_size)):
            batch = list(range(start, min(start + batch_size, len(runs))))
            width = max(len(seqs[runs[k]]) for k in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=bool)
            keep = np.zeros((len(batch), width), dtype=bool)
            for j, k in enumerate(batch):
                seq = seqs[runs[k]]
                ids[j, : len(seq)] = seq
                mask[j, : len(seq)] = True
                keep[j, sorted(positions[k])] = True
            flat = (np.cumsum(keep.ravel()) - 1).reshape(keep.shape)
            for j, k in enumerate(batch):
                for pos in positions[k]:
                    row_of[(k, pos)] = int(flat[j, pos])
            keep_t = torch.from_numpy(keep).to(device)
            inputs = dict(input_ids=torch.from_numpy(ids).to(device), attention_mask=torch.from_numpy(mask).to(device),
                          use_cache=False)
            if fast_keep:
                logits = model(**inputs, logits_to_keep=keep_t).logits
            else:  # models without ``logits_to_keep``: project every position, then select
                logits = model(**inputs).logits[keep_t]
            logits = logits.float()
            lse = torch.logsumexp(logits, dim=-1)
            qs = by_batch.get(b, [])
            rows = torch.tensor([row_of[where[q]] for q in qs], dtype=torch.long, device=device)
            targets = torch.tensor([queries[q][1] for q in qs], dtype=torch.long, device=device)
            values = (logits[rows, targets] - lse[rows]).double().cpu().numpy()
            out[qs] = values
            bar.update(batch[-1] + 1)
    return out


def forward_passes(queries: Sequence[Query]) -> int:
    """How many sequences :func:`next_token_logprobs` runs for ``queries`` (one per maximal sequence)."""
    seqs = sorted({seq for seq, _ in queries})
    return len(set(_covers(seqs)))
