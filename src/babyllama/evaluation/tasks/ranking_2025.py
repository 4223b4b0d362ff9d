"""The BabyLM 2025 pipeline's completion-ranking rule, shared by its zero-shot tasks.

Every 2025 ranking task (BLiMP, supplement, EWoK, entity tracking, WUG, COMPS; full and fast sets)
turns each data line into candidate ``sentences`` and the ``completions`` scored in them
(``sentence_zero_shot/read_files.py`` of babylm/evaluation-pipeline-2025). The causal scorer
(``dataset.py``, ``compute_results.py``; see ``SCORING.md`` beside the staged data) then:

- tokenises the whole sentence with the tokenizer's default special tokens and its offset mapping;
- scores a token when its character span ends after the start of the completion, except token 0,
  which is never a target (inputs and targets are shifted by one): with a tokenizer that adds no
  BOS, the first token of a full-sentence completion (BLiMP, WUG) is not scored;
- sums the natural-log probabilities of the scored tokens (temperature 1, no length normalisation);
- picks the highest-scoring candidate, the lowest index winning ties; candidate 0 is correct.

Here the sums come from the shared engine (:func:`babyllama.evaluation.zero_shot.score_encoded`),
which runs each candidate set's shared prefix once; tokens after the last scored one are dropped
(a causal model's scores do not depend on them), so a trailing EOS added by the tokenizer costs
nothing. Scores are summed in float64 where the pipeline sums float32, which can only change
exact near-ties.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from babyllama.errors import UserError
from babyllama.evaluation.logprob_engine import EncodedItem
from babyllama.io import iter_jsonl_objects

#: Rules every 2025 ranking task states in --help and in results.json settings.
COMMON_RULES = (
    "candidate score = sum of natural-log probabilities of the completion's tokens, temperature 1, no length "
    "normalisation (2025 pipeline, causal backend)",
    "a token is scored when its character span ends after the start of the completion; the sentence is "
    "tokenised with the tokenizer's default special tokens",
    "token 0 is never scored: with a tokenizer that adds no BOS the first token of a full-sentence completion "
    "is left out",
    "prediction = highest-scoring candidate; ties go to the lowest index; candidate 0 is the correct one",
)


@dataclass(frozen=True)
class Candidates:
    """One data line as the 2025 pipeline decodes it.

    ``sentences[k]`` is candidate k in full and ``completions[k]`` the part of it that is scored
    (a suffix of it). ``uid`` is the subset the line counts towards; ``meta`` holds what the
    aggregation needs (e.g. the human ``ratio`` of a WUG item, the split of an entity-tracking item).
    """

    sentences: tuple[str, ...]
    completions: tuple[str, ...]
    uid: str
    line: int
    source: Path
    meta: dict = field(default_factory=dict, compare=False)


def jsonl_files(task: str, folder: str | Path) -> list[Path]:
    """The sorted ``*.jsonl`` / ``*.jsonl.gz`` files of ``folder`` (zips and other files are ignored,
    as the pipeline ignores them)."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise UserError(f"{folder}: data folder for task {task!r} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
    if not files:
        raise UserError(f"{folder}: no .jsonl or .jsonl.gz files for task {task!r}")
    return files


def file_stem(path: Path) -> str:
    """``regular.jsonl.gz`` -> ``regular`` (the pipeline's ``Path.stem`` of the unzipped file)."""
    return path.name.removesuffix(".gz").removesuffix(".jsonl")


def read_lines(path: Path, keys: Sequence[str], types: dict[str, type] | None = None):
    """Yield ``(line number, record)`` of a JSON-lines file, checking ``keys`` are present and of
    ``types`` (default: non-empty strings); a bad line raises ``UserError`` naming file and line."""
    for number, record in iter_jsonl_objects(path, tuple(keys)):
        for key in keys:
            expected = (types or {}).get(key, str)
            value = record[key]
            if expected is str and (not isinstance(value, str) or not value.strip()):
                raise UserError(f"{path}:{number}: key {key!r} must be a non-empty string")
            if expected is float and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
                raise UserError(f"{path}:{number}: key {key!r} must be a number")
            if expected is list and (not isinstance(value, list) or len(value) < 2
                                     or not all(isinstance(v, str) and v for v in value)):
                raise UserError(f"{path}:{number}: key {key!r} must be a list of at least 2 non-empty strings")
            if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise UserError(f"{path}:{number}: key {key!r} must be an integer")
        yield number, record


def encode_candidates(tokenizer, items: Sequence[Candidates]) -> tuple[list[EncodedItem], int]:
    """Token ids and first scored index of every candidate, by the pipeline's rule.

    Returns the encoded items (``starts[k]`` = first scored token of candidate k) and the length
    of the longest sequence (the pipeline never truncates; the caller reports over-long ones).
    """
    texts = [s for item in items for s in item.sentences]
    if not texts:
        return [], 0
    out = tokenizer(texts, return_offsets_mapping=True)
    at, encoded, longest = 0, [], 0
    for item in items:
        seqs, starts = [], []
        for sentence, completion in zip(item.sentences, item.completions):
            ids, offsets = out["input_ids"][at], out["offset_mapping"][at]
            at += 1
            start_char = len(sentence) - len(completion) + (offsets[0][0] if offsets else 0)
            scored = [i for i, (_, end) in enumerate(offsets) if i > 0 and end > start_char]
            if scored and scored != list(range(scored[0], scored[-1] + 1)):
                raise UserError(f"{item.source}:{item.line}: the completion {completion!r} is not one run of tokens")
            if scored:
                seqs.append(tuple(ids[: scored[-1] + 1]))
                starts.append(scored[0])
            else:  # nothing scored (an empty completion or a one-token sentence): score 0
                seqs.append(tuple(ids[:1]) or (tokenizer.eos_token_id or 0,))
                starts.append(1)
            longest = max(longest, len(seqs[-1]))
        encoded.append(EncodedItem(tuple(seqs), min(starts), tuple(starts)))
    return encoded, longest


def choose(scores: Sequence[Sequence[float]]) -> list[int]:
    """Index of the best candidate per item, the first index winning ties (as torch.max does)."""
    return [int(np.argmax(s)) for s in scores]


def predictions_by_uid(items: Sequence[Candidates], chosen: Sequence[int],
                       pred: Callable[[Candidates, int], object] | None = None,
                       extra: Sequence[dict] | None = None) -> dict[str, dict[str, list[dict]]]:
    """The pipeline's predictions file: ``{uid: {"predictions": [{"id": "<uid>_<k>", "pred": ...}]}}``
    in file order, ``pred`` the chosen completion unless ``pred`` says otherwise."""
    out: dict[str, dict[str, list[dict]]] = {}
    for n, (item, c) in enumerate(zip(items, chosen)):
        rows = out.setdefault(item.uid, {"predictions": []})["predictions"]
        row = {"id": f"{item.uid}_{len(rows)}", "pred": pred(item, c) if pred else item.completions[c]}
        if extra is not None:
            row.update(extra[n])
        rows.append(row)
    return out


def accuracy_by_uid(items: Sequence[Candidates], chosen: Sequence[int]) -> dict[str, dict]:
    """``{uid: {"accuracy": fraction correct, "items": n, "correct": [0/1 per item]}}`` in first-seen order."""
    hits: dict[str, list[int]] = defaultdict(list)
    for item, c in zip(items, chosen):
        hits[item.uid].append(int(c == 0))
    return {uid: {"accuracy": float(np.mean(h)), "items": len(h), "correct": h} for uid, h in hits.items()}


def macro_mean(values: Sequence[float]) -> float:
    """Unweighted mean (NaN for none)."""
    return float(np.mean(values)) if len(values) else float("nan")


@dataclass
class RankingTask:
    """A loaded 2025 ranking task: its decoded lines and how to aggregate their scores.

    ``aggregate(items, scores)`` returns the task's result entry (``score``, ``metric``,
    ``subtasks``, ``fast_metric`` = the per-subset numbers the pipeline's collate reports per
    checkpoint) and its predictions (:func:`predictions_by_uid`).
    """

    task: str
    path: Path
    items: list[Candidates]
    aggregate: Callable[[list[Candidates], list[tuple[float, ...]]], tuple[dict, dict]]
    over_length: int = 0

    def encode(self, tokenizer, max_length: int) -> list[EncodedItem]:
        """Encode every line; sequences longer than ``max_length`` + 1 are counted, not cut (the
        pipeline never truncates)."""
        encoded, _ = encode_candidates(tokenizer, self.items)
        self.over_length = sum(len(seq) - 1 > max_length for enc in encoded for seq in enc.choices)
        return encoded

    def summarise(self, scores: list[tuple[float, ...]]) -> tuple[dict, dict]:
        entry, predictions = self.aggregate(self.items, scores)
        entry.update(items=len(self.items), path=str(self.path), sequences_longer_than_context=self.over_length)
        return entry, predictions


def load_ranking(name: str, folder: Path, keys: dict[str, type],
                 decode: Callable[[Path, int, dict], Candidates], aggregate) -> RankingTask:
    """Decode every line of every file of ``folder`` (sorted by name) with ``decode``."""
    items = [decode(path, number, record) for path in jsonl_files(name, folder)
             for number, record in read_lines(path, list(keys), keys)]
    if not items:
        raise UserError(f"{folder}: no items for task {name!r}")
    return RankingTask(name, folder, items, aggregate)


def accuracy_aggregate(items: list[Candidates], scores: list[tuple[float, ...]],
                       pred: Callable[[Candidates, int], object] | None = None) -> tuple[dict, dict]:
    """Accuracy per uid and their unweighted mean (the pipeline's "AVERAGE")."""
    chosen = choose(scores)
    subtasks = accuracy_by_uid(items, chosen)
    score = macro_mean([s["accuracy"] for s in subtasks.values()])
    entry = {"metric": "accuracy", "score": score, "accuracy": score, "subtasks": subtasks,
             "fast_metric": {uid: s["accuracy"] for uid, s in subtasks.items()}}
    return entry, predictions_by_uid(items, chosen, pred)
