"""COMPS as the 2025 pipeline scores it (``comps``; data not bundled).

Candidates ``prefix_acceptable + " " + property_phrase`` and ``prefix_unacceptable + " " +
property_phrase``; only ``" " + property_phrase`` is scored, so the comparison is log P(property |
acceptable prefix) against log P(property | unacceptable prefix). Subset from the file stem:
comps_base -> base, comps_wugs -> wugs, comps_wugs_dist-before -> wugs_dist_before, anything else
-> wugs_dist_in_between. Score: accuracy per subset, then the unweighted mean. The prediction is
the whole chosen sentence.
"""

from __future__ import annotations

from pathlib import Path

from babyllama.evaluation.tasks.ranking_2025 import (COMMON_RULES, Candidates, accuracy_aggregate, file_stem,
                                                     load_ranking)

KEYS = {"prefix_acceptable": str, "prefix_unacceptable": str, "property_phrase": str}
RULES = COMMON_RULES + (
    "candidates: prefix_acceptable / prefix_unacceptable + ' ' + property_phrase; ' ' + property_phrase is scored",
    "subset from the file stem (comps_base, comps_wugs, comps_wugs_dist-before, else wugs_dist_in_between); "
    "score = unweighted mean of subset accuracies; the prediction is the whole chosen sentence",
)
COMPS_SIZES = {"base": 49340, "wugs_dist_before": 13896, "wugs_dist_in_between": 13896, "wugs": 13896}
_SUBSETS = {"comps_base": "base", "comps_wugs": "wugs", "comps_wugs_dist-before": "wugs_dist_before"}


def decode(path: Path, number: int, record: dict) -> Candidates:
    """One line -> the property after the acceptable and after the unacceptable prefix."""
    phrase = record["property_phrase"]
    prefixes = (record["prefix_acceptable"], record["prefix_unacceptable"])
    return Candidates(tuple(f"{p} {phrase}" for p in prefixes), (f" {phrase}", f" {phrase}"),
                      _SUBSETS.get(file_stem(path), "wugs_dist_in_between"), number, path)


def _load(name: str, folder: Path):
    return load_ranking(name, folder, KEYS, decode,
                        lambda items, scores: accuracy_aggregate(items, scores, pred=lambda item, c: item.sentences[c]))


TASKS = [
    dict(name="comps", help="COMPS: base, wugs, wugs_dist-before, wugs_dist-in-between (2025 scoring; data not bundled)",
         scorer="pipeline-2025", rules=RULES, keys=KEYS, load=_load, staged="comps", expected=COMPS_SIZES,
         bundled=False),
]
