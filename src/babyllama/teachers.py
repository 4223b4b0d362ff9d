"""A frozen ensemble of teacher models and its combined logits.

Teachers are loaded from model directories, checked against the student's tokenizer (same
token-to-id mapping and vocabulary size, else refused before training starts), put in
``eval()`` mode with gradients off, and run in their compute dtype. The ensemble's logits are
the mean of the teachers' logits.

Training never forms the ensemble's full ``(B, S, V)`` logits: :func:`ensemble_targets` runs
each teacher's decoder once under ``inference_mode`` (hidden states ``(B*S, H)``, small) and
projects them onto the vocabulary a chunk of positions at a time, inside the loss.
:func:`ensemble_logits` is the plain full-tensor version.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import UserError
from .losses import DenseTargets
from .model import load_model_dir
from .tokenizer import load_tokenizer, tokenizer_fingerprint

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_teacher_vocabulary(folder: str | Path, student_tokenizer, student_vocab_size: int | None) -> int:
    """Refuse a teacher folder whose config cannot be read or whose vocabulary is not the student's;
    return the teacher's vocabulary size.

    Reads only ``config.json`` (through ``AutoConfig``) and the folder's tokenizer, never the
    weights, so the whole-run check (:mod:`babyllama.preflight`) can call it before training.
    The vocabulary size must equal ``student_vocab_size`` (``None``: not known yet, not compared);
    when both the teacher folder and the student have a tokenizer (``student_tokenizer`` is
    ``None`` before it is trained), their token-to-id mappings must be identical.
    """
    from transformers import AutoConfig

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: not a model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"teacher {folder}: cannot read its config.json ({first[:160]})") from None
    vocab = getattr(getattr(config, "text_config", None) or config, "vocab_size", None)
    if student_vocab_size is not None and vocab != student_vocab_size:
        raise UserError(f"teacher {folder}: vocabulary size {vocab} differs from the student's {student_vocab_size}")
    if student_tokenizer is not None and (folder / "tokenizer_config.json").is_file():
        teacher_tok = load_tokenizer(folder)
        if tokenizer_fingerprint(teacher_tok) != tokenizer_fingerprint(student_tokenizer):
            raise UserError(f"teacher {folder}: its tokenizer differs from the student's "
                            f"(teacher {len(teacher_tok)} tokens, student {len(student_tokenizer)} tokens)")
    return vocab


def load_teachers(dirs: list[str | Path], student_tokenizer, student_vocab_size: int,
                  dtype: torch.dtype, device: torch.device) -> list[torch.nn.Module]:
    """Load and freeze the teachers in ``dirs``; refuse any whose vocabulary differs."""
    if not dirs:
        raise UserError("distill: at least one teacher directory is needed")
    teachers = []
    for d in dirs:
        d = Path(d)
        check_teacher_vocabulary(d, student_tokenizer, student_vocab_size)
        model = load_model_dir(d, dtype=dtype)
        model.eval().requires_grad_(False).to(device)
        teachers.append(model)
    return teachers


@torch.no_grad()
def ensemble_logits(teachers: list[torch.nn.Module], input_ids: torch.Tensor) -> torch.Tensor:
    """Mean of the teachers' logits, ``(B, S, V)`` from ``input_ids`` ``(B, S)``.

    ``no_grad`` rather than ``inference_mode``: the result enters the student's loss, and
    autograd may not save inference tensors for the backward pass.
    """
    total = None
    for teacher in teachers:
        logits = teacher(input_ids=input_ids).logits
        if total is None:
            total = logits if logits.dtype == torch.float32 else logits.float()
        else:
            total.add_(logits)
        del logits
    return total.div_(len(teachers))


def ensemble_targets(teachers: list[torch.nn.Module], input_ids: torch.Tensor) -> DenseTargets:
    """The ensemble's mean logits for ``input_ids`` ``(B, S)``, served a chunk of positions at a time.

    Each teacher (a ``LlamaForCausalLM``) runs its decoder once under ``inference_mode``; its
    final hidden states ``(B*S, H)`` and output projection ``(V, H)`` are kept, and
    ``DenseTargets.logits(start, stop)`` returns ``mean_i h_i[start:stop] @ W_i.T`` as a fresh
    float32 ``(stop - start, V)`` tensor. The hidden states are freed with the returned object.
    """
    with torch.inference_mode():
        states = [(t.model(input_ids=input_ids).last_hidden_state.flatten(0, 1), t.get_output_embeddings().weight)
                  for t in teachers]
    scale = 1.0 / len(states)

    def logits(start: int, stop: int) -> torch.Tensor:
        hidden, weight = states[0]
        total = (hidden[start:stop] @ weight.t()).float()
        for hidden, weight in states[1:]:
            if hidden.dtype == total.dtype and not torch.is_autocast_enabled(total.device.type):
                total.addmm_(hidden[start:stop], weight.t())
            else:
                total.add_(hidden[start:stop] @ weight.t())
        return total.mul_(scale)

    return DenseTargets(logits)
