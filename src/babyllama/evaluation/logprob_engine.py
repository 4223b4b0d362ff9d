"""The shared batched log-probability engine: ``sum log P(tokens | preceding tokens)`` per candidate.

Every zero-shot task (2024 harness rules or 2025 pipeline rules) turns its data into
:class:`EncodedItem` token sequences and gets one summed log-probability per candidate from
:func:`score_encoded`. What makes it fast, with the same numbers as scoring every sequence alone:

- every distinct item is scored once (``blimp`` and ``blimp_filtered`` share most pairs);
- the candidates of an item share a token prefix (the BOS token or context, and often the first
  words of a minimal pair). The prefix runs once; its key/value cache is then copied to one row per
  candidate and only the differing suffixes run, so each token of an item goes through the model
  once. An item whose candidates share no first token is split into one unit per candidate;
- items are sorted by length and batched with right padding; logits are computed only at the
  positions that are scored (``logits_to_keep``) and reduced to ``logit[target] - logsumexp``
  without materialising a log-softmax copy; everything runs under ``torch.inference_mode`` in the
  compute dtype, with log-probabilities summed in float64.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from babyllama.errors import UserError
from babyllama.progress import Progress

LOG_INTERVAL_S = 10.0


@dataclass(frozen=True)
class EncodedItem:
    """Token ids of one item, as the harness builds them.

    ``choices[k]`` is the full sequence context + choice k (a tuple of ints, length ``n_k``);
    tokens at indices ``>= context_len`` are scored, each predicted from the tokens before it.
    ``starts``, when given, overrides ``context_len`` per choice (``starts[k] >= 1``): the 2025
    pipeline decides per candidate sentence which tokens belong to the completion.
    """

    choices: tuple[tuple[int, ...], ...]
    context_len: int
    starts: tuple[int, ...] | None = None

    def start(self, k: int) -> int:
        """Index of the first scored token of choice ``k``."""
        return self.context_len if self.starts is None else self.starts[k]


def _common_prefix(seqs: Sequence[tuple[int, ...]]) -> int:
    """Length of the longest token prefix shared by all ``seqs``."""
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for j in range(n):
        token = first[j]
        if any(s[j] != token for s in seqs[1:]):
            return j
    return n


def _accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def cache_keyword(model) -> str:
    """The forward keyword for a key/value cache: ``cache`` where the model's forward takes it
    (current transformers, which deprecates ``past_key_values`` and removes it in 5.40), else
    ``past_key_values`` (older releases and remote code)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _kept_logits(model, keep: torch.Tensor, fast_keep: bool, **inputs) -> tuple[torch.Tensor, object]:
    """Run ``model`` and return the logits at the ``True`` positions of ``keep`` (B, L) as a float32
    (N_keep, V) tensor in row-major order of ``keep``, with the model's key/value cache."""
    if fast_keep:
        out = model(**inputs, use_cache=True, logits_to_keep=keep)
        logits = out.logits
    else:  # models without ``logits_to_keep`` (older remote code): project every position
        out = model(**inputs, use_cache=True)
        logits = out.logits[keep]
    cache = out["cache"] if "cache" in out else out.get("past_key_values")
    return logits.float(), cache


def _target_logprobs(logits: torch.Tensor, rows: list[int], tokens: list[int]) -> torch.Tensor:
    """log P(tokens[i] | position rows[i]) from (N, V) logits: ``logit - logsumexp``, float64 (len(rows),)."""
    device = logits.device
    rows_t = torch.tensor(rows, dtype=torch.long, device=device)
    tokens_t = torch.tensor(tokens, dtype=torch.long, device=device)
    lse = torch.logsumexp(logits, dim=-1)
    return (logits[rows_t, tokens_t] - lse[rows_t]).double()


def score_encoded(
    model, encoded: Sequence[EncodedItem], batch_size: int = 64, progress: bool = True, desc: str = "zero-shot"
) -> list[tuple[float, ...]]:
    """Score every choice of every item: ``sum log P(choice tokens | context)`` per choice.

    ``batch_size`` bounds the sequences (choices) per forward pass. Returns one tuple of floats per
    item, in the order given. Identical items are scored once.
    """
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    device = next(model.parameters()).device
    pad_id = 0
    fast_keep = _accepts_logits_to_keep(model)

    unique: dict[EncodedItem, int] = {}
    for enc in encoded:
        unique.setdefault(enc, len(unique))
    distinct = list(unique)
    # Slot of (item u, choice k) in the flat score vector.
    offsets = np.cumsum([0] + [len(item.choices) for item in distinct])
    scores = torch.zeros(int(offsets[-1]), dtype=torch.float64, device=device)
    # Units of work: an item whose choices share no first token (no BOS, different first words)
    # is split into one unit per choice, so every unit has a non-empty shared prefix.
    items: list[_Unit] = []
    for u, item in enumerate(distinct):
        if _common_prefix(item.choices) > 0 or len(item.choices) == 1:
            items.append(_Unit(item.choices, tuple(item.start(k) for k in range(len(item.choices))),
                               tuple(int(offsets[u]) + k for k in range(len(item.choices)))))
        else:
            items.extend(_Unit((seq,), (item.start(k),), (int(offsets[u]) + k,)) for k, seq in enumerate(item.choices))
    shared = [_common_prefix(item.choices) for item in items]

    def suffix_len(u: int) -> int:
        return max(len(seq) for seq in items[u].choices) - 1 - shared[u]

    order = sorted(range(len(items)), key=lambda u: (shared[u], suffix_len(u)), reverse=True)
    bar = Progress(sum(len(item.choices) for item in items), desc, unit="sequence", enabled=progress,
                   log_every_s=LOG_INTERVAL_S)
    done = 0
    # Batches hold at most ``batch_size`` sequences (a unit's choices are never split).
    batches: list[list[int]] = [[]]
    filled = 0
    for u in order:
        if batches[-1] and filled + len(items[u].choices) > batch_size:
            batches.append([])
            filled = 0
        batches[-1].append(u)
        filled += len(items[u].choices)

    with torch.inference_mode():
        for batch in (b for b in batches if b):
            _score_batch(model, items, shared, batch, scores, pad_id, fast_keep, device)
            done += sum(len(items[u].choices) for u in batch)
            bar.update(done)

    flat = scores.tolist()
    per_item = [tuple(flat[offsets[u] : offsets[u + 1]]) for u in range(len(distinct))]
    return [per_item[unique[enc]] for enc in encoded]


@dataclass(frozen=True)
class _Unit:
    """Choices scored together on one shared prefix: token sequences, first scored index of each,
    and the slot of each in the flat score vector."""

    choices: tuple[tuple[int, ...], ...]
    starts: tuple[int, ...]
    slots: tuple[int, ...]


def _score_batch(model, items, shared, batch, scores, pad_id, fast_keep, device) -> None:
    """Add the log-probabilities of one batch of items into ``scores`` (float64, one slot per choice).

    Pass 1 runs each item's shared prefix (B, P_max) and scores the shared targets plus the first
    token after the prefix of every choice. Pass 2 runs each choice's remaining tokens (S, L_max)
    on a copy of its item's prefix cache, with positions continuing from the prefix length.
    """
    n = len(batch)
    width = max(shared[u] for u in batch)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=bool)
    keep = np.zeros((n, width), dtype=bool)
    for b, u in enumerate(batch):
        p, c = shared[u], min(items[u].starts)
        ids[b, :p] = items[u].choices[0][:p]
        mask[b, :p] = True
        keep[b, c - 1 : p] = True
    # Row of each kept position in the flattened logits.
    kept_row = (np.cumsum(keep.ravel()) - 1).reshape(n, width)

    rows, tokens, slots = [], [], []
    suffix_rows = []  # (b, u, k) for choices with tokens left after the prefix
    for b, u in enumerate(batch):
        p = shared[u]
        first = items[u].choices[0]
        for k, seq in enumerate(items[u].choices):
            slot, c = items[u].slots[k], items[u].starts[k]
            for j in range(c, p):  # shared targets, predicted at position j - 1
                rows.append(int(kept_row[b, j - 1]))
                tokens.append(first[j])
                slots.append(slot)
            if len(seq) > p >= c:  # first token after the shared prefix
                rows.append(int(kept_row[b, p - 1]))
                tokens.append(seq[p])
                slots.append(slot)
            if len(seq) - 1 > p:
                suffix_rows.append((b, u, k))

    logits, cache = _kept_logits(
        model,
        torch.from_numpy(keep).to(device),
        fast_keep,
        input_ids=torch.from_numpy(ids).to(device),
        attention_mask=torch.from_numpy(mask).to(device),
    )
    if rows:
        values = _target_logprobs(logits, rows, tokens)
        scores.index_add_(0, torch.tensor(slots, dtype=torch.long, device=device), values)
    del logits
    if not suffix_rows:
        return

    s_width = max(len(items[u].choices[k]) - 1 - shared[u] for _, u, k in suffix_rows)
    s_ids = np.full((len(suffix_rows), s_width), pad_id, dtype=np.int64)
    s_mask = np.zeros((len(suffix_rows), s_width), dtype=bool)
    s_pos = np.zeros((len(suffix_rows), s_width), dtype=np.int64)
    for r, (b, u, k) in enumerate(suffix_rows):
        seq, p = items[u].choices[k], shared[u]
        length = len(seq) - 1 - p
        s_ids[r, :length] = seq[p : p + length]
        s_mask[r, :length] = True
        s_pos[r] = p + np.arange(s_width)
    s_kept_row = (np.cumsum(s_mask.ravel()) - 1).reshape(s_mask.shape)
    rows, tokens, slots = [], [], []
    for r, (b, u, k) in enumerate(suffix_rows):
        seq, p = items[u].choices[k], shared[u]
        slot, c = items[u].slots[k], items[u].starts[k]
        for j in range(max(0, c - p - 1), len(seq) - 1 - p):  # suffix position j predicts token p + j + 1
            rows.append(int(s_kept_row[r, j]))
            tokens.append(seq[p + j + 1])
            slots.append(slot)

    source = torch.tensor([b for b, _, _ in suffix_rows], dtype=torch.long, device=device)
    cache.reorder_cache(source)
    s_mask_t = torch.from_numpy(s_mask).to(device)
    logits, _ = _kept_logits(
        model,
        s_mask_t,
        fast_keep,
        input_ids=torch.from_numpy(s_ids).to(device),
        attention_mask=torch.cat([torch.from_numpy(mask).to(device)[source], s_mask_t], dim=1),
        position_ids=torch.from_numpy(s_pos).to(device),
        **{cache_keyword(model): cache},
    )
    values = _target_logprobs(logits, rows, tokens)
    scores.index_add_(0, torch.tensor(slots, dtype=torch.long, device=device), values)
