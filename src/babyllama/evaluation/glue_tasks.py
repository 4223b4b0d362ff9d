"""The (Super)GLUE task table and the finetuning options of ``babyllama evaluate glue``.

A task says how a BabyLM jsonl record becomes the model's input and which metric reports it; the
options (learning rate, batch size, epochs, ...) are the 2024 pipeline's defaults, overridable
globally or per task (``resolve_options``).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Any

from babyllama.errors import UserError


@dataclass(frozen=True)
class GlueTask:
    """One (Super)GLUE task: how a jsonl record becomes the model's input, and how it is scored.

    ``first`` is a ``str.format`` template over the record's keys giving the first text;
    ``second`` names the key of the second text (None for single-sentence tasks); the two are
    given to the tokenizer as a pair, as the pipeline does. ``train_task`` is the task whose
    training file (and finetuned model) this task uses: itself, except ``mnli`` for ``mnli-mm``.
    """

    name: str
    first: str
    second: str | None
    num_labels: int
    metric: str
    train_task: str

    @property
    def keys(self) -> list[str]:
        """The record keys this task reads, the label included."""
        fields = [field for _, field, _, _ in string.Formatter().parse(self.first) if field]
        return fields + ([self.second] if self.second else []) + ["label"]

    def texts(self, record: dict) -> tuple[str, str | None]:
        """The (first, second) input texts of one record (second is None for one-text tasks)."""
        return self.first.format(**record), (record[self.second] if self.second else None)


TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask("boolq", "{question}", "passage", 2, "accuracy", "boolq"),
        GlueTask("cola", "{sentence}", None, 2, "mcc", "cola"),
        GlueTask("mnli", "{premise}", "hypothesis", 3, "accuracy", "mnli"),
        GlueTask("mnli-mm", "{premise}", "hypothesis", 3, "accuracy", "mnli"),
        GlueTask("mrpc", "{sentence1}", "sentence2", 2, "f1", "mrpc"),
        GlueTask("multirc", "Question: {question} Answer: {answer}", "paragraph", 2, "accuracy", "multirc"),
        GlueTask("qnli", "{question}", "sentence", 2, "accuracy", "qnli"),
        GlueTask("qqp", "{question1}", "question2", 2, "f1", "qqp"),
        GlueTask("rte", "{sentence1}", "sentence2", 2, "accuracy", "rte"),
        GlueTask("sst2", "{sentence}", None, 2, "accuracy", "sst2"),
        GlueTask("wsc", 'Does "{span2_text}" refer to "{span1_text}" in this passage?', "text", 2, "accuracy", "wsc"),
    )
}
"""The eleven tasks of the BabyLM 2024 (Super)GLUE evaluation, in the challenge's order."""

TASK_NAMES: tuple[str, ...] = tuple(TASKS)

DEFAULT_OPTIONS: dict[str, Any] = {
    "lr": 5e-5,
    "batch_size": 64,
    "epochs": 10,
    "patience": 3,
    "seed": 12,
    "max_length": 128,
    "select_by": "pipeline",
    "lora": False,
    "lora_r": 8,
    "lora_alpha": 16.0,
    "lora_dropout": 0.1,
}
"""The 2024 pipeline's finetuning defaults, the same for every task."""

LORA_DEFAULTS: dict[str, Any] = {"lr": 3e-4, "epochs": 32}
"""Defaults that change when ``lora`` is on (the pipeline's LoRA script); explicit values win."""

OPTION_HELP: dict[str, str] = {
    "lr": "peak learning rate (AdamW, linear decay, no warmup)",
    "batch_size": "training and evaluation batch size",
    "epochs": "maximum number of epochs",
    "patience": "epochs without a gain above 0.001 before stopping (0: never stop early)",
    "seed": "random seed of the head initialisation and data order",
    "max_length": "maximum tokens per example (pairs truncated longest first)",
    "select_by": "checkpoint selection: 'pipeline' (F1 for two-way tasks, else accuracy) "
    "or 'task' (the reported metric)",
    "lora": "train LoRA adapters (peft) and the head instead of the whole model",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA scaling alpha",
    "lora_dropout": "dropout on the LoRA path",
}


def _check_option(name: str, value: Any, where: str) -> Any:
    """Return ``value`` if it is a valid value of option ``name``, else raise UserError."""
    bad = f"{where}: option '{name}' = {value!r} is invalid; expected "
    if name == "lora":
        if not isinstance(value, bool):
            raise UserError(bad + "true or false")
    elif name == "select_by":
        if value not in ("pipeline", "task"):
            raise UserError(bad + "'pipeline' or 'task'")
    elif name in ("lr", "lora_alpha", "lora_dropout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(bad + "a number")
        if name == "lora_dropout" and not 0 <= value < 1:
            raise UserError(bad + "a number in [0, 1)")
        if name != "lora_dropout" and value <= 0:
            raise UserError(bad + "a positive number")
        value = float(value)
    else:
        lowest = 0 if name in ("patience", "seed") else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise UserError(bad + ("a non-negative integer" if lowest == 0 else "a positive integer"))
    return value


def _check_overrides(overrides: dict | None) -> dict:
    """Validate the shape of ``overrides``: option names, or task names mapping to option dicts."""
    overrides = dict(overrides or {})
    for key, value in overrides.items():
        if key in TASKS:
            if not isinstance(value, dict):
                raise UserError(f"GLUE overrides: '{key}' must map option names to values, got {value!r}")
            if key == "mnli-mm" and value:
                raise UserError("GLUE overrides: mnli-mm is scored with the MNLI model; set its options on 'mnli'")
            for name in value:
                if name not in DEFAULT_OPTIONS:
                    raise UserError(
                        f"GLUE overrides: unknown option '{key}.{name}'; expected one of {', '.join(DEFAULT_OPTIONS)}"
                    )
        elif key not in DEFAULT_OPTIONS:
            raise UserError(
                f"GLUE overrides: unknown option or task '{key}'; expected one of "
                f"{', '.join(DEFAULT_OPTIONS)} or a task ({', '.join(TASK_NAMES)})"
            )
    return overrides


def resolve_options(task: str, overrides: dict | None = None) -> dict[str, Any]:
    """The finetuning options of ``task``: defaults, then global overrides, then per-task ones.

    ``overrides`` maps option names to values (all tasks) and task names to such dicts
    (``{"lr": 1e-4, "rte": {"epochs": 20}}``). When ``lora`` ends up true, the LoRA defaults
    (lr 3e-4, 32 epochs) replace the full-finetuning ones unless set explicitly. ``mnli-mm``
    takes the options of ``mnli``, whose model it is scored with.
    """
    if task not in TASKS:
        raise UserError(f"unknown GLUE task '{task}'; expected one of {', '.join(TASK_NAMES)}")
    overrides = _check_overrides(overrides)
    train_task = TASKS[task].train_task
    explicit = {k: v for k, v in overrides.items() if k not in TASKS}
    explicit.update(overrides.get(train_task, {}))
    where = f"GLUE options of {train_task}"
    explicit = {name: _check_option(name, value, where) for name, value in explicit.items()}
    options = dict(DEFAULT_OPTIONS)
    if explicit.get("lora", False):
        options.update(LORA_DEFAULTS)
    options.update(explicit)
    return options
