"""Validation distillation loss of a student against its frozen teacher ensemble.

The authors' distillation Trainer overrides ``compute_loss``, and its evaluation calls the same
method, so their ``eval_loss`` (the value that picks the kept checkpoint,
``metric_for_best_model="eval_loss"``) is the distillation loss
``alpha * CE + (1 - alpha) * T^2 * KL(ensemble || student)`` on the validation chunks, not the
cross-entropy. :func:`evaluate_distill_loss` computes it in the same pass as the cross-entropy
and bits per byte of :func:`~babyllama.evaluation.perplexity.evaluate_loss` (same chunks, same
values), so ``train.select_on`` can choose either.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.token_arrays import IGNORE_INDEX, TokenSplit, eval_batches
from ..losses import chunk_rows
from ..teachers import ensemble_targets


@torch.inference_mode()
def evaluate_distill_loss(model: torch.nn.Module, teachers: list[torch.nn.Module], split: TokenSplit,
                          seq_length: int, batch_size: int, pad_id: int, device: torch.device, alpha: float,
                          temperature: float, reduction: str, rank: int = 0, world_size: int = 1, reduce=None,
                          autocast=None) -> dict:
    """``{"loss", "bpb", "tokens", "kd", "distill_loss"}`` of student ``model`` on ``split``.

    ``loss`` and ``bpb`` are the cross-entropy and bits per byte, as ``evaluate_loss`` reports them.
    ``kd`` is ``T^2 * KL`` summed over predicted positions and divided by their number
    (``reduction="per_token"``) or by the number of validation sequences (``"reference"``: the
    authors' ``KLDivLoss(reduction="batchmean")`` per batch, averaged over batches weighted by
    their size, as the Trainer averages). ``distill_loss = alpha * loss + (1 - alpha) * kd``.
    Each batch's student logits are ``(b, seq_length, V)``; the ensemble's are formed
    ``chunk_rows(V)`` positions at a time. With several processes each evaluates every
    ``world_size``-th batch and ``reduce`` sums the totals over processes.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # nll, tokens, kl, sequences
    for i, (inputs, labels) in enumerate(eval_batches(split.tokens, seq_length, batch_size, pad_id)):
        if i % world_size != rank:
            continue
        inputs, labels = inputs.to(device), labels.flatten().to(device)
        keep = labels != IGNORE_INDEX
        with autocast() if autocast else torch.autocast(device.type, enabled=False):
            logits = model(input_ids=inputs).logits.flatten(0, 1)
            targets = ensemble_targets(teachers, inputs)
            rows = chunk_rows(logits.shape[-1])
            for a in range(0, logits.shape[0], rows):
                log_q = F.log_softmax(logits[a:a + rows].float() / temperature, dim=-1)
                log_p = F.log_softmax(targets.logits(a, min(a + rows, logits.shape[0])).div_(temperature), dim=-1)
                kl_rows = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)
                sums[2] += (kl_rows * keep[a:a + rows]).sum().double()
        sums[0] += F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum").double()
        sums[1] += keep.sum()
        sums[3] += inputs.shape[0]
    if reduce is not None:
        sums = reduce(sums)
    model.train(was_training)
    nll_sum, tokens, kl_total, sequences = sums[0].item(), int(sums[1].item()), sums[2].item(), sums[3].item()
    if tokens == 0:
        nan = float("nan")
        return {"loss": nan, "bpb": nan, "tokens": 0, "kd": nan, "distill_loss": nan}
    if reduction == "per_token":
        kd = kl_total / tokens
    elif reduction == "reference":
        kd = kl_total / sequences
    else:
        raise ValueError(f"unknown KL reduction {reduction!r}")
    kd *= temperature ** 2
    ce = nll_sum / tokens
    return {"loss": ce, "bpb": nll_sum / (math.log(2) * split.n_bytes), "tokens": tokens, "kd": kd,
            "distill_loss": alpha * ce + (1.0 - alpha) * kd}
