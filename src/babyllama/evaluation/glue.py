"""(Super)GLUE finetuning evaluation, run the way the BabyLM 2024 challenge runs it.

For each task a sequence-classification head (``AutoModelForSequenceClassification``: a linear
``score`` layer on the hidden state of the last non-padding token) is put on the pretrained model,
the whole model is finetuned with the Hugging Face ``Trainer`` on the task's training file, the
validation file is scored after every epoch, training stops early when the selection metric has
not improved by more than 0.001 for ``patience`` epochs, and the best epoch's checkpoint is
scored on the validation file. That is the recipe of the 2024 pipeline's
``finetune_classification.py`` (lr 5e-5, batch 64, up to 10 epochs, patience 3, seed 12, 128
tokens), including its choice of checkpoint: F1 for two-way tasks and accuracy for MNLI
(``select_by="pipeline"``); ``select_by="task"`` selects on the reported metric instead.

Data are BabyLM jsonl files ``{task}.train.jsonl`` and ``{task}.valid.jsonl`` (``.jsonl.gz`` too)
in one folder. MNLI-mismatched has no training file: it is the MNLI model scored on
``mnli-mm.valid.jsonl``, so ``mnli`` and ``mnli-mm`` share one finetuning run.

Results go to ``OUT/glue_results.json`` after every task, so a killed run resumes: a task already
there with the same options, data files and model is not run again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import string
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babyllama.errors import UserError
from babyllama.evaluation.glue_metrics import classification_scores
from babyllama.io import atomic_write_json, iter_jsonl_objects

RESULTS_FILE = "glue_results.json"
SCRATCH_DIR = "scratch"
EARLY_STOPPING_THRESHOLD = 0.001
"""Smallest gain of the selection metric that resets the patience counter (as in the pipeline)."""


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

_OPTION_HELP: dict[str, str] = {
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


# ----------------------------------------------------------------------------------------------
# data


@dataclass
class Examples:
    """The texts and labels of one task file; ``labels`` is int64 of shape ``(n,)``."""

    path: Path
    first: list[str]
    second: list[str] | None
    labels: np.ndarray


def task_file(data_dir: str | os.PathLike, name: str, split: str) -> Path | None:
    """The file ``{name}.{split}.jsonl`` (or ``.jsonl.gz``) in ``data_dir``, None if absent."""
    for suffix in (".jsonl", ".jsonl.gz"):
        path = Path(data_dir) / f"{name}.{split}{suffix}"
        if path.is_file():
            return path
    return None


def _needed_files(data_dir: Path, task: GlueTask) -> tuple[dict[str, Path], str | None]:
    """The files a task needs, by role, and a reason it cannot run (None when all exist).

    Roles: ``train`` (the training task's training file), ``select`` (the training task's
    validation file, used to pick the checkpoint) and ``valid`` (the file the task is scored on).
    """
    wanted = {
        "train": (task.train_task, "train"),
        "select": (task.train_task, "valid"),
        "valid": (task.name, "valid"),
    }
    files = {}
    for role, (name, split) in wanted.items():
        path = task_file(data_dir, name, split)
        if path is None:
            why = f" (needed to score {task.name})" if name != task.name else ""
            return {}, f"no {split} file {data_dir / f'{name}.{split}.jsonl'}[.gz]{why}"
        files[role] = path
    return files, None


def load_examples(path: Path, task: GlueTask, limit: int | None = None) -> Examples:
    """Read a BabyLM jsonl file of ``task``, checking every record; keep the first ``limit``.

    Raises UserError naming the file (and line) for unreadable JSON, a missing key, a text that
    is not a string, a label the task's ``num_labels``-way head does not fit, or no records.
    """
    first: list[str] = []
    second: list[str] = []
    labels: list[int] = []
    for lineno, record in iter_jsonl_objects(path, task.keys):
        for key in task.keys:
            if key != "label" and not isinstance(record[key], str):
                raise UserError(f"{path}:{lineno}: '{key}' must be a string, got {record[key]!r}")
        label = record["label"]
        if isinstance(label, bool):
            label = int(label)
        if not isinstance(label, int) or not 0 <= label < task.num_labels:
            raise UserError(
                f"{path}:{lineno}: label {record['label']!r} does not fit the {task.num_labels}-way "
                f"{task.name} head (expected an integer 0..{task.num_labels - 1})"
            )
        if limit is not None and len(labels) >= limit:
            continue
        text_a, text_b = task.texts(record)
        first.append(text_a)
        if text_b is not None:
            second.append(text_b)
        labels.append(label)
    if not labels:
        raise UserError(f"{path}: no {task.name} examples in the file")
    return Examples(path, first, second if task.second else None, np.asarray(labels, dtype=np.int64))


def _encode(examples: Examples, tokenizer, max_length: int) -> list[dict[str, Any]]:
    """Tokenize examples into Trainer features: ``input_ids`` and ``attention_mask`` (lists of
    at most ``max_length`` ints) and ``labels`` (int); padding is left to the collator."""
    args = (examples.first,) if examples.second is None else (examples.first, examples.second)
    encoded = tokenizer(*args, truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": int(label)}
        for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], examples.labels)
    ]


# ----------------------------------------------------------------------------------------------
# model and finetuning


def _load_tokenizer(model_dir: Path):
    """The model directory's tokenizer, with a padding token (the EOS token if it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"{model_dir}: cannot load a tokenizer ({str(e).splitlines()[0]})") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise UserError(f"{model_dir}: the tokenizer has neither a padding nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_classifier(model_dir: Path, num_labels: int, tokenizer, options: dict):
    """A ``num_labels``-way sequence classifier on the pretrained model, in float32.

    The ``score`` head (hidden -> num_labels) is freshly initialised from ``options["seed"]``;
    with ``options["lora"]`` the model is wrapped by peft so that only LoRA adapters on the
    attention projections and the head are trained.
    """
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.set_seed(options["seed"])
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=num_labels, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{model_dir}: cannot load a sequence classifier ({str(e).splitlines()[0]})") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    if options["lora"]:
        try:
            import peft
        except ImportError:
            raise UserError("LoRA finetuning needs the peft package: pip install 'babyllama[lora]'") from None
        lora = peft.LoraConfig(
            task_type=peft.TaskType.SEQ_CLS,
            r=options["lora_r"],
            lora_alpha=options["lora_alpha"],
            lora_dropout=options["lora_dropout"],
        )
        model = peft.get_peft_model(model, lora)
    return model


@contextmanager
def _quiet_transformers():
    """Silence transformers' warnings, deprecation notices and weight loading/saving bars.

    Finetuning loads a model whose ``score`` head is new (an expected "newly initialised"
    notice) and saves a checkpoint every epoch (a bar each time); our own lines say what matters.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations peft triggers inside transformers
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _selection_metric(task: GlueTask, options: dict) -> str:
    """Name of the metric the best checkpoint is chosen by (see the module docstring)."""
    if options["select_by"] == "task":
        return task.metric
    return "f1" if task.num_labels == 2 else "accuracy"


def _epoch_lines_callback(label: str, metric: str, epochs: int):
    """A Trainer callback printing one plain line per epoch: train loss, validation scores,
    elapsed time and the time left if every remaining epoch runs (early stopping may cut it)."""
    from transformers import TrainerCallback

    class EpochLines(TrainerCallback):
        def __init__(self):
            self.loss = float("nan")
            self.started = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = logs["loss"]

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            epoch = max(state.epoch or 0.0, 1e-9)
            elapsed = time.perf_counter() - self.started
            scores = " ".join(
                f"{k[5:]} {v:.4f}" for k, v in (metrics or {}).items() if k[5:] in ("accuracy", "f1", "mcc")
            )
            _say(
                f"{label}: epoch {round(epoch)}/{epochs} train loss {self.loss:.4f} | valid {scores} "
                f"(selecting on {metric}) | {elapsed:.0f} s, at most {elapsed / epoch * (epochs - epoch):.0f} s left"
            )

    return EpochLines()


def _say(message: str) -> None:
    """Print a progress line to stderr."""
    print(f"glue {message}", file=sys.stderr, flush=True)


def _finetune(
    model_dir: Path,
    tokenizer,
    train_task: GlueTask,
    scored: list[GlueTask],
    data: dict[str, Examples],
    options: dict,
    scratch: Path,
    progress: bool,
) -> dict[str, dict]:
    """Finetune one classifier on ``train_task`` and score it on the validation set of every
    task in ``scored`` (``mnli`` and/or ``mnli-mm`` share one run).

    ``data`` holds ``"train"`` and ``"select"`` (the training task's validation set, used for
    early stopping and the checkpoint choice) and one entry per scored task name. Checkpoints
    are written under ``scratch``. Returns per scored task: the metric's name and value at the
    best checkpoint, all scores there, epochs run and the best epoch.
    """
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    started = time.perf_counter()
    max_length = min(options["max_length"], tokenizer.model_max_length)
    train_set = _encode(data["train"], tokenizer, max_length)
    select_set = _encode(data["select"], tokenizer, max_length)
    model = _load_classifier(model_dir, train_task.num_labels, tokenizer, options)
    metric = _selection_metric(train_task, options)
    show_bars = progress and sys.stderr.isatty()

    def compute_metrics(prediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_scores(np.argmax(logits, axis=-1), prediction.label_ids, train_task.num_labels)

    args = TrainingArguments(
        output_dir=str(scratch),
        learning_rate=options["lr"],
        per_device_train_batch_size=options["batch_size"],
        per_device_eval_batch_size=options["batch_size"],
        num_train_epochs=options["epochs"],
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=True,
        save_total_limit=1,
        save_only_model=True,
        seed=options["seed"],
        report_to="none",
        disable_tqdm=not show_bars,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    callbacks = []
    if options["patience"] > 0:
        callbacks.append(EarlyStoppingCallback(options["patience"], EARLY_STOPPING_THRESHOLD))
    # On a terminal the Trainer's bars show progress; elsewhere one plain line per epoch does.
    epoch_lines = None
    if progress and not show_bars:
        epoch_lines = _epoch_lines_callback(train_task.name, metric, options["epochs"])
        callbacks.append(epoch_lines)
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=DataCollatorWithPadding(tokenizer),
        train_dataset=train_set,
        eval_dataset=select_set,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    if epoch_lines is not None:
        trainer.remove_callback(epoch_lines)

    evals = [entry for entry in trainer.state.log_history if f"eval_{metric}" in entry]
    best_step = trainer.state.best_global_step
    best_epoch = next((round(e["epoch"]) for e in evals if e["step"] == best_step), None)
    results = {}
    for task in scored:
        valid_set = select_set if task.name == train_task.name else _encode(data[task.name], tokenizer, max_length)
        metrics = trainer.evaluate(eval_dataset=valid_set)
        scores = {k[5:]: float(v) for k, v in metrics.items() if k[5:] in ("accuracy", "f1", "mcc")}
        results[task.name] = {
            "metric": task.metric,
            "value": scores[task.metric],
            "scores": scores,
            "epochs_run": len(evals),
            "best_epoch": best_epoch,
            "selected_by": metric,
        }
    seconds = round(time.perf_counter() - started, 2)
    for entry in results.values():
        entry["seconds"] = seconds
    return results


# ----------------------------------------------------------------------------------------------
# the whole suite


def _parse_tasks(tasks: list[str] | None) -> list[str]:
    """The requested task names in the challenge's order (all eleven for None)."""
    if tasks is None:
        return list(TASK_NAMES)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise UserError(f"unknown GLUE task(s) {', '.join(unknown)}; expected some of {', '.join(TASK_NAMES)}")
    if not tasks:
        raise UserError("no GLUE task selected")
    return [t for t in TASK_NAMES if t in tasks]


def _read_previous(path: Path, model_dir: Path) -> dict[str, dict]:
    """Task entries of an earlier results file for the same model (empty when there is none)."""
    if not path.is_file():
        return {}
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable earlier results ({e}); move it away to start afresh") from None
    if not isinstance(previous, dict) or not isinstance(previous.get("tasks"), dict):
        raise UserError(f"{path}: not a GLUE results file; move it away or choose another output folder")
    if previous.get("model_dir") != str(model_dir):
        raise UserError(
            f"{path}: holds results of {previous.get('model_dir')}, not {model_dir}; choose another output folder"
        )
    return {name: entry for name, entry in previous["tasks"].items() if name in TASKS}


def summarize(task_results: dict[str, dict], reasons: dict[str, str], model_dir: Path) -> dict:
    """The results document: per-task entries, their plain mean and the tasks not evaluated.

    ``glue_average`` is the mean of every task's ``value`` (None when no task was evaluated);
    ``missing`` maps each task absent from ``tasks`` to the reason (``reasons``, else
    "not requested").
    """
    tasks = {name: task_results[name] for name in TASK_NAMES if name in task_results}
    values = [entry["value"] for entry in tasks.values()]
    return {
        "model_dir": str(model_dir),
        "tasks": tasks,
        "glue_average": float(np.mean(values)) if values else None,
        "evaluated": list(tasks),
        "missing": {name: reasons.get(name, "not requested") for name in TASK_NAMES if name not in tasks},
    }


def glue_summary(results: dict) -> dict:
    """Group scores for a model's ``metrics.json``: each task's value, ``glue_average`` and the
    list of ``missing`` task names (the reasons stay in ``glue_results.json``)."""
    summary: dict[str, Any] = {name: entry["value"] for name, entry in results["tasks"].items()}
    summary["glue_average"] = results["glue_average"]
    summary["missing"] = list(results["missing"])
    return summary


def evaluate_glue(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    tasks: list[str] | None = None,
    max_train_examples: int | None = None,
    overrides: dict | None = None,
    progress: bool = True,
) -> dict:
    """Finetune ``model_dir`` on each (Super)GLUE task in turn and write ``out_dir/glue_results.json``.

    ``tasks`` None means all eleven: tasks whose files are absent from ``data_dir`` are then
    reported under ``missing`` with the reason; a task named explicitly whose file is absent is
    an error, raised before anything runs. ``max_train_examples`` keeps the first N training
    examples (validation sets are always whole). ``overrides`` sets options globally or per task
    (see ``resolve_options``). Tasks already in an earlier results file with the same options,
    files, model and ``max_train_examples`` are kept and not rerun; the file is rewritten after
    every finetuning run. Checkpoints live in ``out_dir/scratch/TASK`` until the task is done.
    Returns the results document written (see ``summarize``).
    """
    model_dir = Path(model_dir).resolve()
    data_dir = Path(data_dir).resolve()
    out_dir = Path(out_dir).resolve()
    requested = _parse_tasks(tasks)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model directory (no config.json)")
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: GLUE data folder not found")
    if max_train_examples is not None and (isinstance(max_train_examples, bool) or max_train_examples < 1):
        raise UserError(f"max_train_examples must be a positive integer, got {max_train_examples!r}")

    options = {name: resolve_options(name, overrides) for name in requested}
    reasons: dict[str, str] = {}
    files: dict[str, dict[str, Path]] = {}
    for name in requested:
        found, problem = _needed_files(data_dir, TASKS[name])
        if problem is None:
            files[name] = found
        elif tasks is None:
            reasons[name] = problem
        else:
            raise UserError(problem)

    results_path = out_dir / RESULTS_FILE
    task_results = _read_previous(results_path, model_dir)
    todo = []
    for name, found in files.items():
        key = {
            "options": options[name],
            "max_train_examples": max_train_examples,
            "train_file": str(found["train"]),
            "valid_file": str(found["valid"]),
        }
        previous = task_results.get(name)
        if previous is not None and all(previous.get(k) == v for k, v in key.items()):
            if progress:
                _say(f"{name}: already done ({previous['metric']} {previous['value']:.4f}), kept")
            continue
        todo.append((name, key))

    # Read and check every file first, so bad data stops the run before hours of finetuning.
    groups: dict[str, list[str]] = {}
    data: dict[str, dict[str, Examples]] = {}
    for name, _ in todo:
        train_task = TASKS[name].train_task
        groups.setdefault(train_task, []).append(name)
        group_data = data.setdefault(train_task, {})
        if "train" not in group_data:
            group_data["train"] = load_examples(files[name]["train"], TASKS[train_task], max_train_examples)
            group_data["select"] = load_examples(files[name]["select"], TASKS[train_task])
        group_data[name] = load_examples(files[name]["valid"], TASKS[name])
    keys = dict(todo)

    tokenizer = _load_tokenizer(model_dir) if todo else None
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, (train_task, names) in enumerate(groups.items(), 1):
        group_data = data[train_task]
        if progress:
            scored = ", ".join(names)
            _say(
                f"[{index}/{len(groups)}] {train_task}: finetuning on {len(group_data['train'].labels)} examples, "
                f"scoring {scored}"
            )
        scratch = out_dir / SCRATCH_DIR / train_task
        shutil.rmtree(scratch, ignore_errors=True)
        with _quiet_transformers():
            run = _finetune(
                model_dir,
                tokenizer,
                TASKS[train_task],
                [TASKS[n] for n in names],
                group_data,
                options[names[0]],
                scratch,
                progress,
            )
        for name in names:
            task_results[name] = {
                **run[name],
                "trained_on": train_task,
                "train_examples": int(len(group_data["train"].labels)),
                "valid_examples": int(len(group_data[name].labels)),
                **keys[name],
            }
            if progress:
                entry = task_results[name]
                _say(
                    f"{name}: {entry['metric']} {entry['value']:.4f} (best epoch {entry['best_epoch']} of "
                    f"{entry['epochs_run']}, {entry['seconds']:.0f} s)"
                )
        atomic_write_json(results_path, summarize(task_results, reasons, model_dir))
        shutil.rmtree(scratch, ignore_errors=True)
    if (out_dir / SCRATCH_DIR).is_dir() and not any((out_dir / SCRATCH_DIR).iterdir()):
        (out_dir / SCRATCH_DIR).rmdir()

    results = summarize(task_results, reasons, model_dir)
    atomic_write_json(results_path, results)
    if progress:
        average = "n/a" if results["glue_average"] is None else f"{results['glue_average']:.4f}"
        missing = ", ".join(results["missing"]) or "none"
        _say(f"average {average} over {len(results['evaluated'])} task(s); missing: {missing}")
    return results


# ----------------------------------------------------------------------------------------------
# command line

_CLI_OPTIONS = ("lr", "batch_size", "epochs", "patience", "seed", "max_length", "select_by")


def _parse_value(name: str, text: str) -> Any:
    """Convert the command-line text of option ``name`` to its type (validated later)."""
    default = DEFAULT_OPTIONS[name]
    try:
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise UserError(f"--set {name}={text}: not a valid {type(default).__name__}") from None
    return text


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The ``overrides`` dict of the parsed ``glue`` command line: the global options given
    (``--lr`` ...) and every ``--set TASK.OPTION=VALUE``."""
    overrides: dict[str, Any] = {name: getattr(args, name) for name in _CLI_OPTIONS if getattr(args, name) is not None}
    if args.lora:
        overrides["lora"] = True
    for item in args.set or []:
        target, sep, text = item.partition("=")
        task, dot, name = target.partition(".")
        if not sep or not dot or task not in TASKS or name not in DEFAULT_OPTIONS:
            raise UserError(
                f"--set {item}: expected TASK.OPTION=VALUE with TASK in {', '.join(TASK_NAMES)} "
                f"and OPTION in {', '.join(DEFAULT_OPTIONS)}"
            )
        overrides.setdefault(task, {})[name] = _parse_value(name, text)
    return overrides


def run_glue_command(args: argparse.Namespace) -> int:
    """Run ``babyllama evaluate glue`` from parsed arguments; returns the exit code."""
    data = args.data or os.environ.get("BABYLLAMA_GLUE_DATA")
    if not data:
        raise UserError("no GLUE data folder: pass --data DIR or set BABYLLAMA_GLUE_DATA")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    out = args.out or Path(args.model_dir) / "glue"
    results = evaluate_glue(
        args.model_dir,
        data,
        out,
        tasks=tasks,
        max_train_examples=args.max_train_examples,
        overrides=overrides_from_args(args),
        progress=True,
    )
    print(json.dumps(glue_summary(results)))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``glue`` subcommand (under ``babyllama evaluate``) to ``subparsers``."""
    parser = subparsers.add_parser(
        "glue",
        help="finetune a model on each (Super)GLUE task and report the BabyLM 2024 scores",
        description=(
            "Finetune MODEL_DIR with a sequence-classification head on each (Super)GLUE task of the "
            "BabyLM 2024 evaluation (" + ", ".join(TASK_NAMES) + "), one after another, and write "
            "OUT/glue_results.json (per task: metric, value, epochs run, best epoch, seconds; the "
            "plain mean; the tasks missing and why). Metrics: Matthews correlation for cola, F1 for "
            "mrpc and qqp, accuracy for the rest. Defaults are the 2024 pipeline's; finished tasks "
            "are not rerun."
        ),
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory (model and tokenizer)")
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="folder of BabyLM jsonl files TASK.train.jsonl / TASK.valid.jsonl (.jsonl.gz too); "
        "default: $BABYLLAMA_GLUE_DATA",
    )
    parser.add_argument(
        "--tasks",
        metavar="T1,T2",
        help="comma-separated tasks to run (default: all eleven; absent files are then reported as "
        "missing, while a named task with absent files is an error)",
    )
    parser.add_argument(
        "--max-train-examples",
        type=int,
        metavar="N",
        help="finetune on the first N training examples only (a quick CPU check; validation sets stay whole)",
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: MODEL_DIR/glue)")
    for name in _CLI_OPTIONS:
        default = DEFAULT_OPTIONS[name]
        kwargs: dict[str, Any] = {"type": type(default)}
        if name == "select_by":
            kwargs = {"choices": ("pipeline", "task")}
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar=None if name == "select_by" else name.upper(),
            help=f"{_OPTION_HELP[name]} (default {default}; all tasks)",
            **kwargs,
        )
    parser.add_argument(
        "--lora",
        action="store_true",
        help="LoRA finetuning via peft (r 8, alpha 16, dropout 0.1; lr 3e-4 and 32 epochs unless given)",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="TASK.OPTION=VALUE",
        help="per-task option, repeatable (e.g. --set rte.lr=1e-4 --set wsc.epochs=20); OPTION is one of "
        + ", ".join(DEFAULT_OPTIONS),
    )
    parser.set_defaults(func=run_glue_command)
    return parser
