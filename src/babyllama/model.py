"""Model presets, construction, and Hugging Face model directories.

Models are ``transformers.LlamaForCausalLM`` built from a ``LlamaConfig`` (never downloaded).
A preset fixes the architecture; the vocabulary size always comes from the tokenizer, so a
model and its tokenizer cannot disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from .config import ModelConfig
from .errors import UserError

#: Architectures by name. ``babyllama2-345m`` is the paper's model (docs/paper-recipe.md); the others are
#: CPU sizes: ``tiny`` for tests, ``demo`` (~2M with the demo's 2k vocabulary) for the demo,
#: ``cpu-14m`` and ``cpu-52m`` for the benchmarks of issue 6.
PRESETS: dict[str, dict] = {
    "babyllama2-345m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                            num_attention_heads=15, num_key_value_heads=5),
    "cpu-52m": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=12,
                    num_attention_heads=8, num_key_value_heads=4),
    "cpu-14m": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=8,
                    num_attention_heads=8, num_key_value_heads=4),
    "demo": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
}

#: Settings shared by every preset (the paper's, docs/paper-recipe.md).
COMMON = dict(max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=1e4, tie_word_embeddings=False,
              attention_dropout=0.0, hidden_act="silu")


def max_positions(model: ModelConfig) -> int:
    """The longest sequence a model of this config accepts."""
    if model.max_position_embeddings is not None:
        return model.max_position_embeddings
    return {**COMMON, **PRESETS[model.preset]}["max_position_embeddings"]


def llama_config(model: ModelConfig, vocab_size: int, pad_token_id: int, bos_token_id: int,
                 eos_token_id: int) -> LlamaConfig:
    """The ``LlamaConfig`` for a preset with ``model``'s overrides and the tokenizer's vocabulary."""
    settings = {**COMMON, **PRESETS[model.preset]}
    for key in settings:
        value = getattr(model, key, None)
        if value is not None:
            settings[key] = value
    if settings["hidden_size"] % settings["num_attention_heads"]:
        raise UserError(f"model: hidden_size {settings['hidden_size']} is not divisible by "
                        f"num_attention_heads {settings['num_attention_heads']}")
    if settings["num_attention_heads"] % settings["num_key_value_heads"]:
        raise UserError(f"model: num_attention_heads {settings['num_attention_heads']} is not divisible by "
                        f"num_key_value_heads {settings['num_key_value_heads']}")
    rope_theta = settings.pop("rope_theta")
    config = LlamaConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, bos_token_id=bos_token_id,
                         eos_token_id=eos_token_id, rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
                         **settings)
    return config


def build_model(config: LlamaConfig, seed: int) -> LlamaForCausalLM:
    """A freshly initialised model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def count_parameters(config: LlamaConfig) -> int:
    """Parameter count of a model without allocating its weights (built on the meta device)."""
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    return sum(p.numel() for p in model.parameters())


def load_model_dir(path: str | Path, dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    """Load a saved model directory, refusing anything that is not one with a one-line error."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a model directory (no config.json)")
    weights = [p for p in path.glob("*.safetensors")] + [p for p in path.glob("pytorch_model*.bin")]
    if not weights:
        raise UserError(f"{path}: not a model directory (no model.safetensors)")
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot load the model ({first})") from None
