"""babyllama: pretrain, distil and evaluate small Llama models the BabyLlama-2 way."""

__version__ = "0.1.0"
