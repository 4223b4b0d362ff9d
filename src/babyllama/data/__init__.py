"""Corpus handling: discovery, per-source cleaning, splitting, the synthetic corpus and token arrays."""
