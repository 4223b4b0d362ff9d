"""Training losses: cross-entropy and the ensemble distillation loss.

Every loss takes ``(student_logits, teacher_logits, labels)``: logits ``(batch, seq, vocab)``
and labels ``(batch, seq)`` already aligned with the logits (``labels[b, t]`` is the token that
``logits[b, t]`` predicts; ``IGNORE_INDEX`` marks positions without a target). Positions with an
ignored label count for neither the cross-entropy nor the KL term.

Distillation (docs/paper-recipe.md): ``loss = alpha * CE + (1 - alpha) * T^2 * KL(p_teacher || p_student)``
with both distributions at temperature ``T``; the teacher distribution is that of the ensemble's
mean logits. Two KL reductions:

- ``per_token``: the KL summed over predicted positions, divided by their number.
- ``reference``: the authors' code (``KLDivLoss(reduction="batchmean")`` on ``(B, T, V)``
  tensors): summed over positions, divided by the batch size ``B``, so about ``seq`` times the
  per-token value. Kept so the paper's runs can be reproduced.

The KL is computed in sequence chunks (sum per chunk, divide once) so that only one chunk's
worth of full-vocabulary float32 temporaries is alive at a time.

Training uses :func:`chunked_lm_loss`, which computes the same quantities without ever holding a
full ``(B, S, V)`` tensor: it takes the student's final hidden states and its output projection,
forms the logits a chunk of positions at a time, and computes the gradient of that chunk's loss
terms on the spot (so the backward pass needs neither stored nor recomputed logits). The teacher
side arrives chunk by chunk as well (:class:`DenseTargets`, e.g. an ensemble's logits from its
hidden states) or as sampled token ids from a teacher cache (:class:`SparseTargets`).
:func:`distillation_loss` on full logits stays as the plain reference it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .data.token_arrays import IGNORE_INDEX

KL_CHUNK_TOKENS = 1024

#: Elements of one ``(rows, vocab)`` float32 temporary in :func:`chunked_lm_loss`: 16 MiB, under
#: glibc's largest mmap threshold (32 MiB), so freed chunks are reused from the heap instead of
#: being returned to the kernel and zeroed again on the next allocation (page zeroing dominated the
#: reimplemented authors' distillation: the ``sys s/step`` column of benchmarks/RESULTS.md).
CHUNK_ELEMENTS = 1 << 22


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


# --------------------------------------------------------------------------------------------
# Chunked loss from hidden states (the training path)


@dataclass
class DenseTargets:
    """Full teacher distributions, produced a chunk of positions at a time.

    ``logits(start, stop)`` returns the ensemble's logits for flattened positions
    ``[start, stop)`` as a fresh float32 tensor ``(stop - start, V)`` (the loss overwrites it).
    """

    logits: Callable[[int, int], torch.Tensor]


@dataclass
class SparseTargets:
    """Teacher distributions as ``k`` ids drawn per position (with replacement) from the ensemble
    distribution at the loss's temperature (Sparse Logit Sampling, arXiv 2503.16870).

    ``ids``: ``(N, k)`` int64; ``logp``: ``(N, k)`` float32, the teacher's log-probability of each
    drawn id. Each draw weighs ``1/k``, so ``mean_j f(ids[:, j])`` is an unbiased estimate of
    ``E_p[f]``: the KL value and its gradient with respect to the student are both unbiased.
    """

    ids: torch.Tensor
    logp: torch.Tensor


def chunk_rows(vocab_size: int) -> int:
    """Positions per chunk so that one ``(rows, vocab)`` float32 temporary holds ``CHUNK_ELEMENTS``."""
    return max(1, CHUNK_ELEMENTS // vocab_size)


def _acc_mm(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a @ b``: in place in full precision, or through autocast's dtype when it is on."""
    if torch.is_autocast_enabled(a.device.type):
        acc.add_(a @ b)
    else:
        acc.addmm_(a, b)


def _bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot product ``(n,)`` of two ``(n, V)`` tensors without an ``(n, V)`` temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


class _ChunkedLMLoss(torch.autograd.Function):
    """Forward returns ``(loss, ce, kd)`` and computes the gradients of ``loss`` chunk by chunk;
    backward only scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, features, weight, labels, targets, alpha, temperature, kd_norm, rows):
        n_pos, dev = features.shape[0], features.device
        keep = labels != IGNORE_INDEX
        safe_labels = labels.clamp(min=0)
        n_kept = keep.sum().clamp(min=1).float()
        ce_row_scale = keep.float() * (alpha / n_kept)
        kd_row_scale = keep.float() * ((1.0 - alpha) * temperature / kd_norm)  # d(T^2 KL)/dz = T (q_T - p)
        grad_features = torch.empty(features.shape, dtype=torch.float32, device=dev)
        grad_weight = None if weight is None else torch.zeros(weight.shape, dtype=torch.float32, device=dev)
        ce_sum = torch.zeros((), dtype=torch.float32, device=dev)
        kl_sum_ = torch.zeros((), dtype=torch.float32, device=dev)
        for a in range(0, n_pos, rows):
            b = min(a + rows, n_pos)
            x = features[a:b]
            z = (x @ weight.t() if weight is not None else x).float()
            if z.data_ptr() == x.data_ptr():
                z = z.clone()  # logits passed in directly: z becomes the gradient buffer below
            lab, ce_w, kd_w = safe_labels[a:b, None], ce_row_scale[a:b], kd_row_scale[a:b]
            lse = torch.logsumexp(z, -1)
            ce_sum += (keep[a:b] * (lse - z.gather(1, lab).squeeze(1))).sum()
            g = z  # (n, V), overwritten in place: logits -> softmax -> gradient of the loss
            if targets is not None:
                if temperature == 1.0:
                    zt, lse_t = z, lse
                else:
                    zt = z / temperature
                    lse_t = torch.logsumexp(zt, -1)
                if isinstance(targets, DenseTargets):
                    log_p = targets.logits(a, b)
                    if temperature != 1.0:
                        log_p.div_(temperature)
                    log_p.sub_(torch.logsumexp(log_p, -1, keepdim=True))
                    p = log_p.exp()
                    # KL(p || q_T) per row = sum p (log p - z_T) + lse_T, as sum p = 1
                    kl_rows = _bdot(p, log_p) - _bdot(p, zt) + lse_t
                    del log_p
                else:
                    ids, logp = targets.ids[a:b], targets.logp[a:b]
                    kl_rows = (logp - zt.gather(1, ids)).mean(-1) + lse_t
                kl_sum_ += (keep[a:b] * kl_rows).sum()
                if temperature == 1.0:
                    g.sub_(lse[:, None]).exp_().mul_((ce_w + kd_w)[:, None])
                else:
                    q_t = zt.sub_(lse_t[:, None]).exp_()
                    g.sub_(lse[:, None]).exp_().mul_(ce_w[:, None]).addcmul_(q_t, kd_w[:, None])
                    del q_t
                if isinstance(targets, DenseTargets):
                    g.addcmul_(p, kd_w[:, None], value=-1.0)
                    del p
                else:
                    g.scatter_add_(1, ids, (kd_w / -ids.shape[1])[:, None].expand_as(ids).contiguous())
            else:
                g.sub_(lse[:, None]).exp_().mul_(ce_w[:, None])
            g.scatter_add_(1, lab, -ce_w[:, None])
            if weight is None:
                grad_features[a:b] = g
            else:
                grad_features[a:b] = g @ weight
                _acc_mm(grad_weight, g.t(), x)
            del g, z
        ce = ce_sum / n_kept
        kd = kl_sum_ * (temperature ** 2 / kd_norm)
        loss = alpha * ce + (1.0 - alpha) * kd if targets is not None else ce.clone()
        # float16 would flush these unscaled gradients (about 1/N each) to zero: they stay float32
        # until backward multiplies in grad_loss, which carries the fp16 GradScaler's factor
        ctx.dtypes = (features.dtype, None if weight is None else weight.dtype)
        ctx.save_for_backward(*(None if g is None else g if dt == torch.float16 else g.to(dt)
                                for g, dt in zip((grad_features, grad_weight), ctx.dtypes)))
        ctx.mark_non_differentiable(ce, kd)
        return loss, ce, kd

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce, _grad_kd):
        grad_features, grad_weight = ctx.saved_tensors
        dt_features, dt_weight = ctx.dtypes
        return ((grad_features * grad_loss).to(dt_features),
                None if grad_weight is None else (grad_weight * grad_loss).to(dt_weight),
                None, None, None, None, None, None)


def chunked_lm_loss(features: torch.Tensor, weight: torch.Tensor | None, labels: torch.Tensor,
                    targets: DenseTargets | SparseTargets | None = None, alpha: float = 0.5,
                    temperature: float = 1.0, reduction: str = "per_token", batch_size: int | None = None,
                    rows: int | None = None) -> LossParts:
    """Cross-entropy, or the distillation loss, computed a chunk of positions at a time.

    ``features``: ``(N, H)`` final hidden states of the student at ``N`` flattened positions,
    with ``weight`` ``(V, H)`` its output projection (logits = ``features @ weight.T``); or, with
    ``weight=None``, ``features`` are the logits ``(N, V)`` themselves (for sharded models whose
    projection cannot be called outside their forward). ``labels``: ``(N,)``. ``targets``:
    ``None`` for plain cross-entropy, else the teachers' distributions at the same positions.

    Values match :func:`cross_entropy` / :func:`distillation_loss` on full logits
    (``reduction="reference"`` divides the KL sum by ``batch_size``, the number of sequences).
    Gradients with respect to ``features`` and ``weight`` are computed during the forward pass,
    one ``(rows, V)`` chunk at a time (``rows`` defaults to :func:`chunk_rows`), so peak memory
    holds a few chunk-sized temporaries plus ``(N, H)`` and ``(V, H)`` gradient buffers.
    """
    if reduction == "per_token":
        kd_norm = (labels != IGNORE_INDEX).sum().clamp(min=1).float()
    elif reduction == "reference":
        if batch_size is None:
            raise ValueError("reduction 'reference' needs batch_size")
        kd_norm = float(batch_size)
    else:
        raise ValueError(f"unknown KL reduction {reduction!r}")
    vocab = weight.shape[0] if weight is not None else features.shape[-1]
    alpha = 1.0 if targets is None else alpha
    loss, ce, kd = _ChunkedLMLoss.apply(features, weight, labels, targets, float(alpha), float(temperature),
                                        kd_norm, rows or chunk_rows(vocab))
    return LossParts(loss=loss, ce=ce, kd=kd if targets is not None else None)
