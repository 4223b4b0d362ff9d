"""The WUG morphology tasks as the 2025 pipeline scores them (``wug_adj``, ``wug_past``).

Each line holds TAB-separated candidate ``sentences`` (for adjective nominalization: "... X. X-ity"
then "... X-ness") and the human ``ratio``. Every sentence is scored in full; a softmax over the
candidates' summed log-probabilities gives the model's probability of the FIRST candidate. Score:
Spearman's rho (scipy.stats.spearmanr) between those probabilities and the human ratios, pooled
over all items, reported raw (-1..1) as the local scorer and the per-checkpoint collate do (the
prediction scorer multiplies it by 100). Predictions carry the chosen sentence and ``prob``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import softmax
from scipy.stats import spearmanr

from babyllama.errors import UserError
from babyllama.evaluation.tasks.ranking_2025 import (COMMON_RULES, Candidates, choose, file_stem, load_ranking,
                                                     predictions_by_uid)

KEYS = {"sentences": str, "ratio": float}
RULES = COMMON_RULES + (
    "candidates: the TAB-separated sentences, each scored in full",
    "model ratio = softmax over the candidates' scores, probability of the first candidate",
    "score = Spearman's rho (scipy.stats.spearmanr) of model ratio against human ratio over all items, raw -1..1",
)


def decode(path: Path, number: int, record: dict) -> Candidates:
    """One line -> its candidate sentences and the human ratio."""
    sentences = tuple(record["sentences"].split("\t"))
    if len(sentences) < 2 or not all(sentences):
        raise UserError(f"{path}:{number}: key 'sentences' must hold at least 2 non-empty TAB-separated sentences")
    try:
        ratio = float(record["ratio"])
    except ValueError:
        raise UserError(f"{path}:{number}: key 'ratio' must be a number, got {record['ratio']!r}") from None
    return Candidates(sentences, sentences, file_stem(path), number, path, {"ratio": ratio})


def aggregate(items: list[Candidates], scores) -> tuple[dict, dict]:
    """Spearman's rho of the first candidate's softmax probability against the human ratio."""
    probs = [float(softmax(np.asarray(s, dtype=np.float64))[0]) for s in scores]
    human = [item.meta["ratio"] for item in items]
    rho = float(spearmanr(probs, human).statistic) if len(set(probs)) > 1 and len(set(human)) > 1 else float("nan")
    per_uid: dict[str, tuple[list[float], list[float]]] = {}
    for item, p in zip(items, probs):
        model, ratios = per_uid.setdefault(item.uid, ([], []))
        model.append(p)
        ratios.append(item.meta["ratio"])
    fast = {uid: float(spearmanr(m, h).statistic) if len(set(m)) > 1 and len(set(h)) > 1 else float("nan")
            for uid, (m, h) in per_uid.items()}
    entry = {"metric": "spearman_rho", "score": rho, "subtasks": {uid: {"spearman_rho": v, "items": len(per_uid[uid][0])}
                                                                  for uid, v in fast.items()},
             "fast_metric": fast}
    return entry, predictions_by_uid(items, choose(scores), extra=[{"prob": p} for p in probs])


def _load(name: str, folder: Path):
    return load_ranking(name, folder, KEYS, decode, aggregate)


TASKS = [
    dict(name="wug_adj", help="WUG adjective nominalization, 200 items (2025 scoring; full = fast)",
         scorer="pipeline-2025", rules=RULES, keys=KEYS, load=_load, fast=True, staged="wug_adj_nominalization",
         expected={"wug_adj_nominalization": 200}),
    dict(name="wug_past", help="WUG past tense, 50 items (2025 scoring; data not bundled)",
         scorer="pipeline-2025", rules=RULES, keys=KEYS, load=_load, fast=True, staged="wug_past_tense",
         expected={"wug_past_tense": 50}, bundled=False),
]
