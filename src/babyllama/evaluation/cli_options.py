"""Command-line pieces shared by the ``babyllama evaluate`` scorers (reading, aoa, fast)."""

from __future__ import annotations

import argparse
import textwrap


def wrapped(text: str, width: int = 100) -> str:
    """``text`` with each of its lines wrapped at ``width`` (never at hyphens), for a raw ``--help``."""
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) for line in text.split("\n"))


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, ``--dtype``, ``--device`` and ``--quiet``, as every scorer takes them."""
    from babyllama.evaluation.zero_shot import DTYPES

    parser.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass (default: 64)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="compute dtype (default: float32)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
