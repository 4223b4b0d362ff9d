"""The BabyLM 2024 tasks (``blimp``, ``blimp_filtered``, ``blimp_supplement``, ``ewok``,
``builtin_pairs``), scored as lm-evaluation-harness scores them (see
:mod:`babyllama.evaluation.zero_shot` and :mod:`babyllama.evaluation.minimal_pair_tasks`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from babyllama.evaluation.minimal_pair_tasks import TASK_FORMATS, Subtask, load_task
from babyllama.evaluation.logprob_engine import EncodedItem
from babyllama.evaluation.zero_shot import encode_items, summarise

RULES = (
    "harness-2024: choice score = sum of log P(choice tokens | context), no length normalisation",
    "empty context (BLiMP): the BOS token (else EOS) is the context, so every word is scored",
    "context + ' ' + choice (EWoK) encoded with default special tokens; choice tokens follow the context tokens",
    "correct when the gold choice (0) scores highest; ties count as correct (numpy.argmax)",
    "task score = unweighted mean of subtask (file) accuracies",
)


@dataclass
class HarnessTask:
    """A loaded 2024 task: its subtasks (one per file) and, after encoding, each one's item span."""

    task: str
    path: Path
    subtasks: list[Subtask]
    spans: list[tuple[int, int]] = field(default_factory=list)

    def encode(self, tokenizer, max_length: int) -> list[EncodedItem]:
        encoded: list[EncodedItem] = []
        self.spans = []
        for sub in self.subtasks:
            start = len(encoded)
            encoded.extend(encode_items(tokenizer, sub.items, max_length, sub.path))
            self.spans.append((start, len(encoded)))
        return encoded

    def summarise(self, scores) -> tuple[dict, None]:
        correct = {}
        for sub, (a, b) in zip(self.subtasks, self.spans):
            correct[(self.task, sub.name)] = [int(np.argmax(s)) == g for s, g in
                                              zip(scores[a:b], (item.gold for item in sub.items))]
        entry = summarise({self.task: self.subtasks}, correct)[self.task]
        entry["score"] = entry["accuracy"]
        entry["metric"] = "accuracy"
        return entry, None


def _load(name: str, folder: Path) -> HarnessTask:
    return HarnessTask(name, folder, load_task(name, folder))


_HELP = {
    "blimp": "BLiMP, 67 paradigms (2024 harness scoring)",
    "blimp_filtered": "BabyLM 2024 filtered BLiMP (2024 harness scoring)",
    "blimp_supplement": "BabyLM BLiMP supplement (2024 harness scoring)",
    "ewok": "EWoK filtered, Target1 vs Target2 after Context1 (2024 harness scoring)",
    "builtin_pairs": "the built-in generated minimal pairs (2024 harness scoring)",
}

TASKS = [dict(name=name, help=_HELP[name], scorer="harness-2024", rules=RULES,
              keys={key: str for key in keys}, load=_load) for name, keys in TASK_FORMATS.items()]
