"""EWoK as the 2025 pipeline scores it (``ewok_2025``, ``ewok_fast``).

Candidates ``Context1 + " " + Target1`` and ``Context1 + " " + Target2``; only ``" " + Target``
is scored (the scripts do not pass ``--full_sentence_scores``). Context2 is unused. Subset = the
line's ``Domain``; score = accuracy per domain, then the unweighted mean over the 11 domains.
"""

from __future__ import annotations

from pathlib import Path

from babyllama.evaluation.tasks.ranking_2025 import COMMON_RULES, Candidates, accuracy_aggregate, load_ranking

KEYS = {"Context1": str, "Target1": str, "Target2": str, "Domain": str}
RULES = COMMON_RULES + (
    "candidates: Context1 + ' ' + Target1 and Context1 + ' ' + Target2; only ' ' + Target is scored",
    "subset = Domain; score = unweighted mean of the domain accuracies",
)
EWOK_SIZES = {"agent-properties": 2210, "social-relations": 1548, "physical-relations": 818,
              "material-dynamics": 770, "physical-interactions": 556, "spatial-relations": 490,
              "social-properties": 328, "quantitative-properties": 314, "social-interactions": 294,
              "material-properties": 170, "physical-dynamics": 120}


def decode(path: Path, number: int, record: dict) -> Candidates:
    """One line -> the context followed by each target; the targets (with their space) are scored."""
    targets = (record["Target1"], record["Target2"])
    return Candidates(tuple(f"{record['Context1']} {t}" for t in targets), tuple(f" {t}" for t in targets),
                      record["Domain"], number, path)


def _load(name: str, folder: Path):
    return load_ranking(name, folder, KEYS, decode, accuracy_aggregate)


TASKS = [
    dict(name="ewok_2025", help="EWoK filtered, 11 domains (2025 scoring; data: the 2024 ewok folder)",
         scorer="pipeline-2025", rules=RULES, keys=KEYS, load=_load, staged="ewok_filtered", expected=EWOK_SIZES),
    dict(name="ewok_fast", help="EWoK fast set, 11 x 100 items (2025 scoring)", scorer="pipeline-2025",
         rules=RULES, keys=KEYS, load=_load, fast=True, staged="ewok_fast", expected={d: 100 for d in EWOK_SIZES}),
]
