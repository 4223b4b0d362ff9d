"""The (Super)GLUE task table and the finetuning options of ``babyllama evaluate glue``.

A task says how a BabyLM jsonl record becomes the model's input and which metric reports it; the
options (learning rate, batch size, epochs, ...) come from a recipe (``RECIPES``: the 2024
challenge's, the default, and the 2025 pipeline's), overridable globally or per task
(``resolve_options``). The two recipes are rows of one table, run by the same code.
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
"""Every (Super)GLUE task either recipe runs, in the challenge's order."""

TASK_NAMES: tuple[str, ...] = tuple(TASKS)
"""The eleven tasks of the BabyLM 2024 evaluation (the 2024 recipe's tasks)."""

DEFAULT_OPTIONS: dict[str, Any] = {
    "lr": 5e-5,
    "batch_size": 64,
    "epochs": 10,
    "patience": 3,
    "seed": 12,
    "max_length": 128,
    "select_by": "pipeline",
    "weight_decay": 0.0,
    "warmup_ratio": 0.0,
    "schedule": "linear",
    "min_lr_ratio": 0.0,
    "lora": False,
    "lora_r": 8,
    "lora_alpha": 16.0,
    "lora_dropout": 0.1,
}
"""The 2024 pipeline's finetuning defaults, the same for every task (the 2024 recipe)."""

LORA_DEFAULTS: dict[str, Any] = {"lr": 3e-4, "epochs": 32}
"""Defaults that change when ``lora`` is on (the pipeline's LoRA script); explicit values win."""

OPTION_HELP: dict[str, str] = {
    "lr": "peak learning rate (AdamW)",
    "batch_size": "training and evaluation batch size",
    "epochs": "maximum number of epochs",
    "patience": "epochs without a gain above 0.001 before stopping (0: never stop early)",
    "seed": "random seed of the head initialisation and data order",
    "max_length": "maximum tokens per example (pairs truncated longest first), capped at the model's maximum",
    "select_by": "checkpoint selection: 'pipeline' (F1 for two-way tasks, else accuracy) "
    "or 'task' (the reported metric)",
    "weight_decay": "AdamW weight decay",
    "warmup_ratio": "fraction of the training steps with a linear warm-up from 0",
    "schedule": "learning-rate decay after warm-up: 'linear' (to 0) or 'cosine' (to min_lr_ratio x lr)",
    "min_lr_ratio": "floor of the cosine schedule as a fraction of lr (0 with the linear schedule)",
    "lora": "train LoRA adapters (peft) and the head instead of the whole model",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA scaling alpha",
    "lora_dropout": "dropout on the LoRA path",
}


@dataclass(frozen=True)
class Recipe:
    """One finetuning protocol: which tasks, with which options, on which training sets.

    ``defaults`` are the options of every task and ``task_defaults`` the per-task exceptions
    (both below the user's overrides); ``train_sizes`` are the exact example counts the training
    files of some tasks must have (the recipe's subsets); ``not_bundled`` names tasks whose data
    babyllama cannot ship; ``out_dir`` and ``results_file`` say where results go in a model
    folder; ``notes`` state how this implementation differs from the pipeline's, for results.json.
    """

    name: str
    tasks: tuple[str, ...]
    defaults: dict[str, Any]
    task_defaults: dict[str, dict[str, Any]]
    train_sizes: dict[str, int]
    not_bundled: tuple[str, ...]
    out_dir: str
    results_file: str
    notes: tuple[str, ...]

    def settings(self) -> dict[str, Any]:
        """The recipe as written to the results file's ``settings``."""
        return {
            "recipe": self.name,
            "tasks": list(self.tasks),
            "defaults": dict(self.defaults),
            "task_defaults": {task: dict(opts) for task, opts in self.task_defaults.items()},
            "train_sizes": dict(self.train_sizes),
            "data_not_bundled": list(self.not_bundled),
            "pooling": "last attended token (index and position ids from the attention mask; "
            "the same logits under left and right padding)",
            "notes": list(self.notes),
        }


RECIPES: dict[str, Recipe] = {
    "2024": Recipe(
        name="2024",
        tasks=TASK_NAMES,
        defaults=DEFAULT_OPTIONS,
        task_defaults={},
        train_sizes={},
        not_bundled=("boolq", "mnli", "mnli-mm", "multirc", "qnli", "qqp", "sst2"),
        out_dir="glue",
        results_file="glue_results.json",
        notes=(
            "head: a linear score layer on the last attended token, as AutoModelForSequenceClassification",
        ),
    ),
    "2025": Recipe(
        name="2025",
        tasks=("boolq", "mnli", "mrpc", "multirc", "qqp", "rte", "wsc"),
        defaults={
            **DEFAULT_OPTIONS,
            "lr": 3e-5,
            "batch_size": 32,
            "epochs": 10,
            "patience": 0,
            "seed": 42,
            "max_length": 512,
            "select_by": "task",
            "weight_decay": 0.01,
            "warmup_ratio": 0.06,
            "schedule": "cosine",
            "min_lr_ratio": 0.1,
        },
        task_defaults={"boolq": {"batch_size": 16}, "multirc": {"batch_size": 16}, "wsc": {"epochs": 30}},
        train_sizes={"mnli": 10_000, "qqp": 10_000},
        not_bundled=("boolq", "multirc"),
        out_dir="glue_2025",
        results_file="results.json",
        notes=(
            "eval_finetuning.sh: lr 3e-5, batch 32 (16 boolq, multirc), 10 epochs (30 wsc), seed 42, 512 tokens, "
            "best epoch on validation accuracy (F1 for mrpc and qqp), no early stopping, AdamW weight decay 0.01, "
            "6% warm-up then cosine to 0.1 x lr; mnli and qqp train on the pipeline's 10,000-example subsets",
            "head: the pipeline puts LayerNorm-Linear-GELU-LayerNorm-Dropout-Linear on the first token (or the "
            "last with --take_final); here a linear score layer on the last attended token",
            "the pipeline drops the last incomplete training batch; here every example is trained on",
        ),
    ),
}
"""The finetuning recipes by name: the 2024 challenge's (the default) and the 2025 pipeline's."""


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``, or UserError naming the known ones."""
    if name not in RECIPES:
        raise UserError(f"unknown GLUE recipe '{name}'; expected one of {', '.join(RECIPES)}")
    return RECIPES[name]


def _check_option(name: str, value: Any, where: str) -> Any:
    """Return ``value`` if it is a valid value of option ``name``, else raise UserError."""
    bad = f"{where}: option '{name}' = {value!r} is invalid; expected "
    if name == "lora":
        if not isinstance(value, bool):
            raise UserError(bad + "true or false")
    elif name == "select_by":
        if value not in ("pipeline", "task"):
            raise UserError(bad + "'pipeline' or 'task'")
    elif name == "schedule":
        if value not in ("linear", "cosine"):
            raise UserError(bad + "'linear' or 'cosine'")
    elif isinstance(DEFAULT_OPTIONS[name], float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(bad + "a number")
        if name in ("lora_dropout", "warmup_ratio", "min_lr_ratio") and not 0 <= value < 1:
            raise UserError(bad + "a number in [0, 1)")
        if name == "weight_decay" and value < 0:
            raise UserError(bad + "a non-negative number")
        if name in ("lr", "lora_alpha") and value <= 0:
            raise UserError(bad + "a positive number")
        value = float(value)
    else:
        lowest = 0 if name in ("patience", "seed") else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise UserError(bad + ("a non-negative integer" if lowest == 0 else "a positive integer"))
    return value


def _check_overrides(overrides: dict | None, recipe: Recipe) -> dict:
    """Validate the shape of ``overrides``: option names, or task names of ``recipe`` mapping to
    option dicts."""
    overrides = dict(overrides or {})
    for key, value in overrides.items():
        if key in TASKS:
            if key not in recipe.tasks:
                raise UserError(
                    f"GLUE overrides: task '{key}' is not in the {recipe.name} recipe ({', '.join(recipe.tasks)})"
                )
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
                f"{', '.join(DEFAULT_OPTIONS)} or a task ({', '.join(recipe.tasks)})"
            )
    return overrides


def resolve_options(task: str, overrides: dict | None = None, recipe: str = "2024") -> dict[str, Any]:
    """The finetuning options of ``task`` under ``recipe``: the recipe's defaults, its per-task
    defaults, then global overrides, then per-task ones.

    ``overrides`` maps option names to values (all tasks) and task names to such dicts
    (``{"lr": 1e-4, "rte": {"epochs": 20}}``). When ``lora`` ends up true, the LoRA defaults
    (lr 3e-4, 32 epochs) replace the full-finetuning ones unless set explicitly. ``mnli-mm``
    takes the options of ``mnli``, whose model it is scored with. The linear schedule decays to
    0: it sets ``min_lr_ratio`` to 0, and an explicit ``min_lr_ratio`` above 0 is an error.
    """
    chosen = get_recipe(recipe)
    if task not in chosen.tasks:
        raise UserError(f"unknown GLUE task '{task}' for the {recipe} recipe; expected one of {', '.join(chosen.tasks)}")
    overrides = _check_overrides(overrides, chosen)
    train_task = TASKS[task].train_task
    explicit = {k: v for k, v in overrides.items() if k not in TASKS}
    explicit.update(overrides.get(train_task, {}))
    where = f"GLUE options of {train_task}"
    explicit = {name: _check_option(name, value, where) for name, value in explicit.items()}
    options = {**chosen.defaults, **chosen.task_defaults.get(train_task, {})}
    if explicit.get("lora", False):
        options.update(LORA_DEFAULTS)
    options.update(explicit)
    if options["schedule"] == "linear":
        if explicit.get("min_lr_ratio", 0.0) != 0:
            raise UserError(f"{where}: min_lr_ratio {explicit['min_lr_ratio']} needs schedule 'cosine' (linear decays to 0)")
        options["min_lr_ratio"] = 0.0
    return options
