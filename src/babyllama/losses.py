"""Training losses: cross-entropy and the ensemble distillation loss.

Every loss takes ``(student_logits, teacher_logits, labels)``: logits ``(batch, seq, vocab)``
and labels ``(batch, seq)`` already aligned with the logits (``labels[b, t]`` is the token that
``logits[b, t]`` predicts; ``IGNORE_INDEX`` marks positions without a target). Positions with an
ignored label count for neither the cross-entropy nor the KL term.

Distillation (DESIGN.md): ``loss = alpha * CE + (1 - alpha) * T^2 * KL(p_teacher || p_student)``
with both distributions at temperature ``T``; the teacher distribution is that of the ensemble's
mean logits. Two KL reductions:

- ``per_token``: the KL summed over predicted positions, divided by their number.
- ``reference``: the authors' code (``KLDivLoss(reduction="batchmean")`` on ``(B, T, V)``
  tensors): summed over positions, divided by the batch size ``B``, so about ``seq`` times the
  per-token value. Kept so the paper's runs can be reproduced.

The KL is computed in sequence chunks (sum per chunk, divide once) so that only one chunk's
worth of full-vocabulary float32 temporaries is alive at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data.token_arrays import IGNORE_INDEX

KL_CHUNK_TOKENS = 1024


@dataclass
class LossParts:
    """The loss to back-propagate and its logged parts (0-dim tensors, on device)."""

    loss: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor | None = None


def cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                  labels: torch.Tensor) -> LossParts:
    """Mean next-token cross-entropy over non-ignored labels (``teacher_logits`` is unused)."""
    ce = F.cross_entropy(student_logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
    return LossParts(loss=ce, ce=ce)


def kl_sum(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
           temperature: float, chunk_tokens: int = KL_CHUNK_TOKENS) -> torch.Tensor:
    """``sum over kept positions of KL(softmax(t/T) || softmax(s/T))``, a 0-dim float32 tensor.

    ``student_logits``, ``teacher_logits``: ``(B, S, V)``; ``labels``: ``(B, S)``. Processed in
    chunks of about ``chunk_tokens`` positions, one fused log-softmax per tensor per chunk.
    """
    s = student_logits.flatten(0, 1)
    t = teacher_logits.flatten(0, 1)
    keep = labels.flatten() != IGNORE_INDEX
    total = s.new_zeros((), dtype=torch.float32)
    for start in range(0, s.shape[0], chunk_tokens):
        stop = start + chunk_tokens
        mask = keep[start:stop]
        log_p_s = F.log_softmax(s[start:stop].float() / temperature, dim=-1)
        log_p_t = F.log_softmax(t[start:stop].float() / temperature, dim=-1)
        # F.kl_div(input=log q, target=log p, log_target=True) = p * (log p - log q), elementwise.
        per_pos = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(-1)
        total = total + (per_pos * mask).sum()
    return total


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      alpha: float = 0.5, temperature: float = 1.0, reduction: str = "per_token",
                      chunk_tokens: int = KL_CHUNK_TOKENS) -> LossParts:
    """``alpha * CE + (1 - alpha) * T^2 * KL`` with the named KL reduction (see module doc)."""
    ce = cross_entropy(student_logits, None, labels).ce
    total = kl_sum(student_logits, teacher_logits, labels, temperature, chunk_tokens)
    if reduction == "per_token":
        kd = total / (labels != IGNORE_INDEX).sum().clamp(min=1)
    elif reduction == "reference":
        kd = total / labels.shape[0]
    else:
        raise ValueError(f"unknown KL reduction {reduction!r}")
    kd = kd * temperature ** 2
    return LossParts(loss=alpha * ce + (1.0 - alpha) * kd, ce=ce, kd=kd)
