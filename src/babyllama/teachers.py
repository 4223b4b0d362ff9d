"""A frozen ensemble of teacher models and its combined logits.

A teacher is any Hugging Face causal language model folder (``AutoModelForCausalLM``: Llama,
GPT-2, Mistral, ...; architectures may be mixed in one ensemble) whose tokenizer is the
student's. :func:`check_teacher_config` refuses from ``config.json`` alone, without loading
weights, what cannot work (a config that is not a causal LM, an encoder-only or encoder-decoder
model, another vocabulary size, too few positions); :func:`check_teacher_tokenizer` refuses a
tokenizer with other ids. Loaded teachers are put in ``eval()`` mode with gradients off and run
in their compute dtype. The ensemble's logits are the mean of the teachers' logits.

Training never forms the ensemble's full ``(B, S, V)`` logits: :func:`ensemble_targets` runs
each teacher's decoder (``get_decoder()``) once under ``inference_mode`` (final hidden states
``(B*S, H)``, small) and projects them onto the vocabulary through ``get_output_embeddings()``
(weight and bias) a chunk of positions at a time, inside the loss. A teacher whose logits are
something else (e.g. a soft-capped or scaled head) is refused when loaded, by a probe comparing
both ways on a few tokens. :func:`ensemble_logits` is the plain full-tensor version.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .errors import UserError
from .losses import DenseTargets
from .model import load_model_dir
from .tokenizer import load_tokenizer, tokenizer_fingerprint

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: Class names ``AutoModelForCausalLM`` builds, e.g. ``LlamaForCausalLM``, ``GPT2LMHeadModel``.
CAUSAL_LM_CLASSES = frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())

#: Tokens of the probe that checks a teacher's head (see :func:`check_teacher_head`).
PROBE_TOKENS = 8


def check_teacher_config(folder: str | Path, vocab_size: int, seq_length: int | None = None) -> PretrainedConfig:
    """Refuse, in one line, a teacher folder that cannot serve a student of ``vocab_size`` tokens.

    Reads ``config.json`` through ``AutoConfig`` (no weights are loaded) and checks that the folder
    holds weights, that the config is a decoder-only causal LM (its ``model_type`` has an
    ``AutoModelForCausalLM`` class, it is not encoder-decoder, not an encoder family's config
    without ``is_decoder``, and the classes it was saved from, if named, are causal-LM classes),
    that its vocabulary size is ``vocab_size`` and, given ``seq_length``, that it accepts that many
    positions. Returns the config.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"teacher {folder}: no such folder")
    if not (folder / "config.json").is_file():
        raise UserError(f"teacher {folder}: not a model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"teacher {folder}: cannot read config.json ({first[:160]})") from None
    model_type = config.model_type
    named = [a for a in (config.architectures or []) if a]
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(f"teacher {folder}: model type {model_type!r} is not a causal language model "
                        f"(AutoModelForCausalLM has no class for it)")
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(f"teacher {folder}: model type {model_type!r} is an encoder-decoder model; "
                        f"a teacher must be a decoder-only causal language model")
    if getattr(config, "is_decoder", None) is False or (named and not CAUSAL_LM_CLASSES.intersection(named)):
        saved = f" (saved as {', '.join(named)})" if named else ""
        raise UserError(f"teacher {folder}: an encoder-only or non-causal-LM {model_type!r} model{saved}; "
                        f"a teacher must be a causal language model")
    if not list(folder.glob("*.safetensors")) and not list(folder.glob("pytorch_model*.bin")):
        raise UserError(f"teacher {folder}: not a model directory (no model.safetensors)")
    vocab = getattr(config.get_text_config(), "vocab_size", None)
    if vocab != vocab_size:
        raise UserError(f"teacher {folder}: vocabulary size {vocab} differs from the student's {vocab_size}")
    positions = getattr(config.get_text_config(), "max_position_embeddings", None)
    if seq_length is not None and positions is not None and positions < seq_length:
        raise UserError(f"teacher {folder}: accepts {positions} positions, fewer than seq_length {seq_length}")
    return config


def check_teacher_tokenizer(folder: str | Path, student_tokenizer) -> None:
    """Refuse a teacher whose saved tokenizer maps text to other ids than the student's.

    A teacher folder without a tokenizer is accepted (its vocabulary size is checked by
    :func:`check_teacher_config`), and so is any teacher while the student has none yet
    (``student_tokenizer`` is ``None`` when the run has not trained it).
    """
    folder = Path(folder)
    if student_tokenizer is None or not (folder / "tokenizer_config.json").is_file():
        return
    teacher_tok = load_tokenizer(folder)
    if tokenizer_fingerprint(teacher_tok) != tokenizer_fingerprint(student_tokenizer):
        raise UserError(f"teacher {folder}: its tokenizer differs from the student's "
                        f"(teacher {len(teacher_tok)} tokens, student {len(student_tokenizer)} tokens)")


def check_teacher(folder: str | Path, student_tokenizer, vocab_size: int,
                  seq_length: int | None = None) -> PretrainedConfig:
    """Both checks: :func:`check_teacher_config` then :func:`check_teacher_tokenizer`; returns the config."""
    config = check_teacher_config(folder, vocab_size, seq_length)
    check_teacher_tokenizer(folder, student_tokenizer)
    return config


def _head(teacher: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]:
    """``(decoder, weight (V, H), bias (V,) or None)``: the generic pieces of a causal LM's logits."""
    projection = teacher.get_output_embeddings()
    return teacher.get_decoder(), projection.weight, getattr(projection, "bias", None)


def check_teacher_head(folder: str | Path, teacher: torch.nn.Module) -> None:
    """Refuse a loaded teacher whose logits are not ``decoder output @ W.T + b``.

    Runs both the model's own forward and :func:`ensemble_targets`' path on ``PROBE_TOKENS``
    tokens; they must agree to the precision of the teacher's dtype.
    """
    weight = teacher.get_output_embeddings().weight
    ids = (torch.arange(PROBE_TOKENS, device=weight.device) * 7 % weight.shape[0]).view(1, -1)
    with torch.inference_mode():
        expected = teacher(input_ids=ids).logits.flatten(0, 1).float()
        got = ensemble_targets([teacher], ids).logits(0, PROBE_TOKENS)
    tolerance = 1e-3 if weight.dtype == torch.float32 else 5e-2
    scale = expected.abs().max().clamp(min=1.0)
    if not torch.allclose(got, expected, atol=tolerance * scale.item(), rtol=tolerance):
        raise UserError(f"teacher {folder}: its logits are not its decoder's output through get_output_embeddings() "
                        f"({type(teacher).__name__}, e.g. a scaled or soft-capped head); not supported as a teacher")


def teacher_dtype(teacher_precision: str, mixed_precision: str) -> torch.dtype:
    """The dtype of the frozen teachers' weights (``distill.teacher_precision``).

    An explicit dtype wins. ``same`` follows the student's compute: bfloat16 under ``bf16``;
    float32 under ``fp16``, as in the authors' code (teachers loaded in float32 and run under the
    Trainer's fp16 autocast, so their matmuls run in fp16 while norms and softmax stay float32,
    out of fp16's range limits); float32 without mixed precision.
    """
    if teacher_precision != "same":
        return DTYPES[teacher_precision]
    return torch.bfloat16 if mixed_precision == "bf16" else torch.float32


def load_teachers(dirs: list[str | Path], student_tokenizer, student_vocab_size: int,
                  dtype: torch.dtype, device: torch.device, seq_length: int | None = None) -> list[torch.nn.Module]:
    """Check every teacher in ``dirs`` (:func:`check_teacher`), then load and freeze them."""
    if not dirs:
        raise UserError("distill: at least one teacher directory is needed")
    for d in dirs:
        check_teacher(d, student_tokenizer, student_vocab_size, seq_length)
    teachers = []
    for d in dirs:
        model = load_model_dir(d, dtype=dtype)
        model.eval().requires_grad_(False).to(device)
        check_teacher_head(d, model)
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

    Each teacher (any causal LM) runs its decoder once under ``inference_mode``; its final hidden
    states ``(B*S, H_i)`` and output projection, weight ``(V, H_i)`` and bias ``(V,)`` if it has
    one, are kept, and ``DenseTargets.logits(start, stop)`` returns
    ``mean_i (h_i[start:stop] @ W_i.T + b_i)`` as a fresh float32 ``(stop - start, V)`` tensor.
    Hidden sizes and dtypes may differ between teachers. The hidden states are freed with the
    returned object.
    """
    states = []
    with torch.inference_mode():
        for teacher in teachers:
            decoder, weight, bias = _head(teacher)
            hidden = decoder(input_ids=input_ids).last_hidden_state.flatten(0, 1)
            states.append((hidden, weight, bias))
    scale = 1.0 / len(states)

    def logits(start: int, stop: int) -> torch.Tensor:
        hidden, weight, bias = states[0]
        total = (hidden[start:stop] @ weight.t()).float()
        if bias is not None:
            total.add_(bias)
        for hidden, weight, bias in states[1:]:
            if hidden.dtype == total.dtype and not torch.is_autocast_enabled(total.device.type):
                total.addmm_(hidden[start:stop], weight.t())
            else:
                total.add_(hidden[start:stop] @ weight.t())
            if bias is not None:
                total.add_(bias)
        return total.mul_(scale)

    return DenseTargets(logits)
