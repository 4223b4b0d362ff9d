"""Loss and bits per byte of a causal LM on a token split.

The split is covered by fixed chunks (every token after the first predicted once, see
``token_arrays.eval_batches``). ``loss`` is the mean negative log-likelihood per token in nats;
``bpb`` divides the summed NLL by ``ln 2`` times the split's UTF-8 bytes, so models with
different tokenizers compare fairly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.token_arrays import IGNORE_INDEX, TokenSplit, eval_batches


@torch.inference_mode()
def evaluate_loss(model: torch.nn.Module, split: TokenSplit, seq_length: int, batch_size: int, pad_id: int,
                  device: torch.device, rank: int = 0, world_size: int = 1, reduce=None,
                  autocast=None) -> dict:
    """``{"loss", "bpb", "tokens"}`` of ``model`` on ``split``.

    With several processes each evaluates every ``world_size``-th batch and ``reduce`` (a
    function summing a tensor over processes) combines the sums.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    for i, (inputs, labels) in enumerate(eval_batches(split.tokens, seq_length, batch_size, pad_id)):
        if i % world_size != rank:
            continue
        inputs, labels = inputs.to(device), labels.to(device)
        with autocast() if autocast else torch.autocast(device.type, enabled=False):
            logits = model(input_ids=inputs).logits
        nll = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX,
                              reduction="sum")
        sums[0] += nll.double()
        sums[1] += (labels != IGNORE_INDEX).sum()
    if reduce is not None:
        sums = reduce(sums)
    model.train(was_training)
    nll_sum, tokens = sums[0].item(), int(sums[1].item())
    if tokens == 0:
        return {"loss": float("nan"), "bpb": float("nan"), "tokens": 0}
    return {"loss": nll_sum / tokens, "bpb": nll_sum / (math.log(2) * split.n_bytes), "tokens": tokens}
