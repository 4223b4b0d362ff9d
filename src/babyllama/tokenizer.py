"""Train and load the byte-level BPE tokenizer as a ``transformers`` fast tokenizer.

Settings follow the paper (docs/paper-recipe.md): NFKC normalisation, byte-level pre-tokenisation with a
prefix space, vocabulary 16000, minimum pair frequency 2, specials ``<pad>`` ``<s>`` ``</s>``
(ids 0, 1, 2). The tokenizer is saved with ``tokenizer_class: PreTrainedTokenizerFast`` so that
``AutoTokenizer`` reloads ``tokenizer.json`` exactly as trained (a GPT-2 wrapper would drop
``add_prefix_space`` on reload in transformers 5) and ``len(tokenizer)`` equals the trained
vocabulary.

The authors' code (``tokenizer.encoding: reference_whole_file``, docs/reproduction.md) wraps the
trained file in ``GPT2TokenizerFast``, whose default ``add_prefix_space=False`` replaces the
trained pre-tokenizer's: :func:`for_encoding` makes that change on the tokenizer itself, so the
saved folder encodes the way training did.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .errors import UserError
from .io import atomic_path

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
                    byte_alphabet: bool = True) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on ``texts`` (an iterator of lines) and wrap it for transformers.

    ``byte_alphabet``: seed the vocabulary with all 256 byte symbols, so any text encodes; without
    it (the authors' trainer) only the bytes seen in ``texts`` get a token, and others are dropped.
    """
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_alphabet else [],
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def for_encoding(tokenizer: PreTrainedTokenizerBase, encoding: str, where: str = "tokenizer") -> PreTrainedTokenizerBase:
    """``tokenizer`` made to encode as ``encoding`` says (see ``TokenizerConfig``), in place.

    ``reference_whole_file`` turns the byte-level pre-tokenizer's prefix space off, as
    ``GPT2TokenizerFast(tokenizer_file=...)`` does by default; ``per_line_prefix_space`` leaves the
    tokenizer as trained or loaded. A tokenizer without a byte-level pre-tokenizer is refused for
    ``reference_whole_file`` (``where`` names the config key in the message).
    """
    if encoding == "per_line_prefix_space":
        return tokenizer
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    if not isinstance(pre, pre_tokenizers.ByteLevel):
        raise UserError(f"{where}: encoding reference_whole_file needs a byte-level BPE tokenizer "
                        f"(pre-tokenizer {type(pre).__name__})")
    pre.add_prefix_space = False
    return tokenizer


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` with the project's special tokens."""
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=1 << 30)


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: str | Path) -> None:
    """Save atomically: the folder appears complete or not at all."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer folder (ours or any Hugging Face one), with a one-line error if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such tokenizer folder")
    tokenizer_json = path / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # the Rust error type is not exported
            raise UserError(f"{tokenizer_json}: not a valid tokenizer file ({str(exc).splitlines()[0][:120]})") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot load the tokenizer ({first[:160]})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Canonical JSON of the tokenizer's model and pipeline: equal strings mean equal ids."""
    return tokenizer.backend_tokenizer.to_str()


def tokenizer_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """Short stable hash of :func:`tokenizer_fingerprint`."""
    return hashlib.sha256(tokenizer_fingerprint(tokenizer).encode()).hexdigest()[:16]
