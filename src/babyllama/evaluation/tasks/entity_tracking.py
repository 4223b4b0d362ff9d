"""Entity tracking as the 2025 pipeline scores it (``entity_tracking``, ``entity_tracking_fast``).

Candidates ``input_prefix + option`` for each of the 5 options; the option is scored. Subset =
``<file stem>_<numops>_ops``. Score (the local scorer, ``run.py:94-107``): accuracy per subset,
the mean over the numops subsets of each split (regular, ambiref, move_contents), then the mean
over the splits present. The prediction scorer takes a flat mean over all (file, numops) blocks;
with 6 numops values in every split the two agree, and where they would not the local one is used.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from babyllama.evaluation.tasks.ranking_2025 import (COMMON_RULES, Candidates, accuracy_by_uid, choose, file_stem,
                                                     load_ranking, macro_mean, predictions_by_uid)

KEYS = {"input_prefix": str, "options": list, "numops": int}
RULES = COMMON_RULES + (
    "candidates: input_prefix + option for every option; the option is scored",
    "subset = <file stem>_<numops>_ops; score = mean over each split's numops subsets, then mean over the splits "
    "(the local scorer; where the prediction scorer's flat mean over all subsets differs, the local one is used)",
)
ENTITY_TRACKING_SIZES = {
    "regular_0_ops": 606, "regular_1_ops": 607, "regular_2_ops": 606, "regular_3_ops": 606, "regular_4_ops": 568,
    "regular_5_ops": 159, "ambiref_0_ops": 607, "ambiref_1_ops": 607, "ambiref_2_ops": 604, "ambiref_3_ops": 604,
    "ambiref_4_ops": 615, "ambiref_5_ops": 187, "move_contents_0_ops": 605, "move_contents_1_ops": 606,
    "move_contents_2_ops": 605, "move_contents_3_ops": 606, "move_contents_4_ops": 529, "move_contents_5_ops": 156,
}


def decode(path: Path, number: int, record: dict) -> Candidates:
    """One line -> the prefix followed by each option; the options are scored."""
    split = file_stem(path)
    options = tuple(record["options"])
    return Candidates(tuple(record["input_prefix"] + o for o in options), options,
                      f"{split}_{record['numops']}_ops", number, path, {"split": split})


def aggregate(items: list[Candidates], scores) -> tuple[dict, dict]:
    """Two-level mean: subsets within a split, then splits."""
    chosen = choose(scores)
    subtasks = accuracy_by_uid(items, chosen)
    split_of = {item.uid: item.meta["split"] for item in items}
    by_split: dict[str, list[float]] = defaultdict(list)
    for uid, sub in subtasks.items():
        by_split[split_of[uid]].append(sub["accuracy"])
    splits = {split: macro_mean(values) for split, values in by_split.items()}
    score = macro_mean(list(splits.values()))
    entry = {"metric": "accuracy", "score": score, "accuracy": score, "splits": splits, "subtasks": subtasks,
             "fast_metric": {uid: s["accuracy"] for uid, s in subtasks.items()}}
    return entry, predictions_by_uid(items, chosen)


def _load(name: str, folder: Path):
    return load_ranking(name, folder, KEYS, decode, aggregate)


TASKS = [
    dict(name="entity_tracking", help="entity tracking: regular, ambiref, move_contents (2025 scoring)",
         scorer="pipeline-2025", rules=RULES, keys=KEYS, load=_load, staged="entity_tracking",
         expected=ENTITY_TRACKING_SIZES),
    dict(name="entity_tracking_fast", help="entity tracking fast set: the regular split (2025 scoring)",
         scorer="pipeline-2025", rules=RULES, keys=KEYS, load=_load, fast=True, staged="entity_tracking_fast",
         expected={k: v for k, v in ENTITY_TRACKING_SIZES.items() if k.startswith("regular_")}),
]
