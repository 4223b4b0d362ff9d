"""The model side of (Super)GLUE finetuning: tokenizer, sequence classifier and its pooling.

The classifier is the pretrained model loaded by ``AutoModelForSequenceClassification`` (its body
and a fresh linear ``score`` head, hidden -> num_labels), read at the last token of each row that
the attention mask marks as real. The index comes from the attention mask, and the position ids
are counted along it, so a row gets the same logits whether the batch is padded on the left or
on the right, and whatever the padding token is (the Hugging Face head finds the last token by
comparing ids with ``pad_token_id``, which picks the wrong token when the padding token is also
the end-of-text token inside a row, and absolute-position models such as GPT-2 see shifted
positions under left padding; the 2025 pipeline's issue #38 is a drop of about 6 points for
GPT-2-style models from this).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babyllama.errors import UserError


def load_tokenizer(model_dir: Path):
    """The model directory's tokenizer, with a padding token (the EOS token if it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"{model_dir}: cannot load a tokenizer ({str(e).splitlines()[0]})") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise UserError(f"{model_dir}: the tokenizer has neither a padding nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_max_length(model_dir: Path, tokenizer) -> int | None:
    """The longest input the model takes: the smaller of the tokenizer's ``model_max_length``
    (ignored when it is the "no limit" placeholder) and the config's ``max_position_embeddings``
    (None when neither gives a limit)."""
    from transformers import AutoConfig

    limits = []
    if tokenizer.model_max_length < 10**9:
        limits.append(int(tokenizer.model_max_length))
    positions = getattr(AutoConfig.from_pretrained(model_dir), "max_position_embeddings", None)
    if isinstance(positions, int):
        limits.append(positions)
    return min(limits) if limits else None


def last_token_index(attention_mask):
    """Index of the last attended position of each row, shape ``(batch,)``, from an
    ``attention_mask`` of shape ``(batch, seq)`` (1 for real tokens, 0 for padding on either side)."""
    import torch

    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(-1)


@cache
def _classifier_module():
    """The ``torch.nn.Module`` class of the pooled classifier (built lazily: torch loads on use)."""
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class LastTokenClassifier(torch.nn.Module):
        """Wraps a sequence classifier (``AutoModelForSequenceClassification``, optionally
        peft-wrapped) and scores the hidden state of each row's last attended token."""

        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, input_ids, attention_mask, labels=None):
            """``input_ids`` and ``attention_mask`` of shape ``(batch, seq)``, ``labels`` of shape
            ``(batch,)``; returns logits of shape ``(batch, num_labels)`` and the mean
            cross-entropy over the batch when labels are given."""
            inner = self.classifier.get_base_model() if hasattr(self.classifier, "get_base_model") else self.classifier
            body = getattr(inner, inner.base_model_prefix)
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            logits = inner.score(hidden[rows, last_token_index(attention_mask)])
            loss = None if labels is None else torch.nn.functional.cross_entropy(logits.float(), labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return LastTokenClassifier


def load_classifier(model_dir: Path, num_labels: int, tokenizer, options: dict):
    """A ``num_labels``-way classifier on the pretrained model, in float32, pooled on the last
    attended token (see the module docstring).

    The ``score`` head (hidden -> num_labels) is freshly initialised from ``options["seed"]``;
    with ``options["lora"]`` the model is wrapped by peft so that only LoRA adapters on the
    attention projections and the head are trained.
    """
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.set_seed(options["seed"])
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=num_labels, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{model_dir}: cannot load a sequence classifier ({str(e).splitlines()[0]})") from None
    if not isinstance(getattr(model, "score", None), torch.nn.Linear):
        raise UserError(
            f"{model_dir}: {type(model).__name__} has no linear 'score' head; GLUE finetuning takes decoder models"
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    if options["lora"]:
        try:
            import peft
        except ImportError:
            raise UserError("LoRA finetuning needs the peft package: pip install 'babyllama[lora]'") from None
        lora = peft.LoraConfig(
            task_type=peft.TaskType.SEQ_CLS,
            r=options["lora_r"],
            lora_alpha=options["lora_alpha"],
            lora_dropout=options["lora_dropout"],
        )
        model = peft.get_peft_model(model, lora)
    return _classifier_module()(model)
