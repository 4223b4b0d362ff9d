"""(Super)GLUE finetuning evaluation, run the way a BabyLM challenge runs it (its *recipe*).

For each task a classifier (``glue_classifier``: a linear ``score`` head on the hidden state of
the last attended token) is put on the pretrained model, the whole model is finetuned with the
Hugging Face ``Trainer`` on the task's training file (``glue_finetune``), the validation file is
scored after every epoch and the best epoch's checkpoint is scored on the validation file.

Two recipes (``glue_tasks.RECIPES``), the same code:

- ``2024`` (default): the 2024 pipeline's ``finetune_classification.py``: eleven tasks, lr 5e-5,
  batch 64, up to 10 epochs, patience 3, seed 12, 128 tokens, linear decay without warm-up, and
  its choice of checkpoint: F1 for two-way tasks and accuracy for MNLI (``select_by="pipeline"``).
  Results: ``OUT/glue_results.json`` (``OUT`` defaults to ``MODEL/glue``).
- ``2025``: the 2025 pipeline's ``eval_finetuning.sh``: boolq, mnli, mrpc, multirc, qqp, rte,
  wsc; lr 3e-5, batch 32 (16 for boolq and multirc), 10 epochs (30 for wsc), no early stopping,
  seed 42, 512 tokens (capped at the model's maximum), weight decay 0.01, 6% warm-up then cosine
  to 0.1 x lr, the best epoch by validation accuracy (F1 for mrpc and qqp), and mnli and qqp
  trained on the pipeline's 10,000-example subsets. Results: ``OUT/results.json`` (``OUT``
  defaults to ``MODEL/glue_2025``).

Data are BabyLM jsonl files ``{task}.train.jsonl`` and ``{task}.valid.jsonl`` (``.jsonl.gz`` too)
in one or more folders, searched in order. MNLI-mismatched (2024 only) has no training file: it
is the MNLI model scored on ``mnli-mm.valid.jsonl``, so ``mnli`` and ``mnli-mm`` share one run.

The results file is rewritten after every task, so a killed run resumes: a task already there
with the same recipe, options, data files and model is not run again. ``OUT/predictions.json``
holds every evaluated task's validation predictions in the 2025 pipeline's format:
``{task: {"predictions": [{"id": "<task>_<i>", "pred": <class>}, ...]}}`` in file order.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from babyllama.errors import UserError
from babyllama.evaluation.glue_classifier import load_tokenizer
from babyllama.evaluation.glue_data import Examples, load_examples, needed_files, task_file
from babyllama.evaluation.glue_finetune import finetune as _finetune  # tests replace it here
from babyllama.evaluation.glue_finetune import quiet_transformers, say
from babyllama.evaluation.glue_tasks import (
    DEFAULT_OPTIONS,
    OPTION_HELP,
    RECIPES,
    TASK_NAMES,
    TASKS,
    Recipe,
    get_recipe,
    resolve_options,
)
from babyllama.io import atomic_write_json
from babyllama.preflight import check_writable

__all__ = [
    "DEFAULT_OPTIONS",
    "RECIPES",
    "TASKS",
    "TASK_NAMES",
    "add_parser",
    "evaluate_glue",
    "glue_summary",
    "load_examples",
    "overrides_from_args",
    "resolve_options",
    "summarize",
    "task_file",
]

PREDICTIONS_FILE = "predictions.json"
SCRATCH_DIR = "scratch"


# ----------------------------------------------------------------------------------------------
# the whole suite


def _parse_tasks(tasks: list[str] | None, recipe: Recipe) -> list[str]:
    """The requested task names in the challenge's order (all the recipe's tasks for None)."""
    if tasks is None:
        return list(recipe.tasks)
    unknown = [t for t in tasks if t not in recipe.tasks]
    if unknown:
        raise UserError(
            f"unknown GLUE task(s) {', '.join(unknown)} for the {recipe.name} recipe; "
            f"expected some of {', '.join(recipe.tasks)}"
        )
    if not tasks:
        raise UserError("no GLUE task selected")
    return [t for t in recipe.tasks if t in tasks]


def _data_dirs(data_dir) -> list[Path]:
    """``data_dir`` (one folder or a sequence of folders) as resolved paths, each checked to exist."""
    folders = [data_dir] if isinstance(data_dir, (str, os.PathLike)) else list(data_dir)
    if not folders:
        raise UserError("no GLUE data folder given")
    resolved = [Path(folder).resolve() for folder in folders]
    for folder in resolved:
        if not folder.is_dir():
            raise UserError(f"{folder}: GLUE data folder not found")
    return resolved


def _read_previous(path: Path, model_dir: Path, recipe: Recipe) -> dict[str, dict]:
    """Task entries of ``recipe``'s tasks in an earlier results file for the same model (empty
    when there is none)."""
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
    return {name: entry for name, entry in previous["tasks"].items() if name in recipe.tasks}


def summarize(task_results: dict[str, dict], reasons: dict[str, str], model_dir: Path, recipe: str = "2024") -> dict:
    """The results document: the recipe and its settings, per-task entries, their plain means
    and the tasks not evaluated.

    ``glue_average`` is the mean of every task's ``value`` (its reported metric: the 2025 README's
    rule; None when no task was evaluated); ``accuracy_average`` the mean of the accuracies (the
    2025 prediction scorer's rule); ``missing`` maps each of the recipe's tasks absent from
    ``tasks`` to the reason (``reasons``, else "not requested").
    """
    chosen = get_recipe(recipe)
    tasks = {name: task_results[name] for name in chosen.tasks if name in task_results}
    values = [entry["value"] for entry in tasks.values()]
    accuracies = [entry["scores"]["accuracy"] for entry in tasks.values()]
    return {
        "model_dir": str(model_dir),
        "recipe": chosen.name,
        "settings": chosen.settings(),
        "tasks": tasks,
        "glue_average": float(np.mean(values)) if values else None,
        "accuracy_average": float(np.mean(accuracies)) if accuracies else None,
        "evaluated": list(tasks),
        "missing": {name: reasons.get(name, "not requested") for name in chosen.tasks if name not in tasks},
    }


def predictions_document(results: dict) -> dict:
    """The 2025 pipeline's ``predictions.json`` of every evaluated task that has predictions:
    ``{task: {"predictions": [{"id": "<task>_<i>", "pred": <class>}, ...]}}``, in file order."""
    return {
        name: {"predictions": [{"id": f"{name}_{i}", "pred": pred} for i, pred in enumerate(entry["predictions"])]}
        for name, entry in results["tasks"].items()
        if "predictions" in entry
    }


def glue_summary(results: dict) -> dict:
    """Group scores for a model's ``metrics.json``: each task's value, ``glue_average`` and the
    list of ``missing`` task names (the reasons stay in the results file)."""
    summary: dict[str, Any] = {name: entry["value"] for name, entry in results["tasks"].items()}
    summary["glue_average"] = results["glue_average"]
    summary["missing"] = list(results["missing"])
    return summary


def _write(out_dir: Path, recipe: Recipe, results: dict) -> None:
    """Write the results file and ``predictions.json`` (atomically)."""
    atomic_write_json(out_dir / recipe.results_file, results)
    atomic_write_json(out_dir / PREDICTIONS_FILE, predictions_document(results))


def evaluate_glue(
    model_dir: str | os.PathLike,
    data_dir,
    out_dir: str | os.PathLike,
    tasks: list[str] | None = None,
    max_train_examples: int | None = None,
    overrides: dict | None = None,
    progress: bool = True,
    recipe: str = "2024",
) -> dict:
    """Finetune ``model_dir`` on each (Super)GLUE task of ``recipe`` in turn and write the
    recipe's results file and ``predictions.json`` in ``out_dir``.

    ``data_dir`` is one folder or a sequence of folders, searched in order for each file.
    ``tasks`` None means all the recipe's tasks: tasks whose files are absent are then reported
    under ``missing`` with the reason; a task named explicitly whose file is absent is an error,
    raised before anything runs, as is a training file whose size differs from the recipe's
    ``train_sizes``. ``max_train_examples`` keeps the first N training examples (validation sets
    are always whole). ``overrides`` sets options globally or per task (see
    ``resolve_options``). Tasks already in an earlier results file with the same recipe,
    options, files, model and ``max_train_examples`` are kept and not rerun; the files are
    rewritten after every finetuning run. Checkpoints live in ``out_dir/scratch/TASK`` until the
    task is done. Returns the results document written (see ``summarize``).
    """
    chosen = get_recipe(recipe)
    model_dir = Path(model_dir).resolve()
    out_dir = Path(out_dir).resolve()
    requested = _parse_tasks(tasks, chosen)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model directory (no config.json)")
    check_writable(out_dir, "GLUE output folder")
    data_dirs = _data_dirs(data_dir)
    if max_train_examples is not None and (isinstance(max_train_examples, bool) or max_train_examples < 1):
        raise UserError(f"max_train_examples must be a positive integer, got {max_train_examples!r}")

    options = {name: resolve_options(name, overrides, recipe) for name in requested}
    reasons: dict[str, str] = {}
    files: dict[str, dict[str, Path]] = {}
    for name in requested:
        found, problem = needed_files(data_dirs, TASKS[name])
        if problem is None:
            files[name] = found
            continue
        if TASKS[name].train_task in chosen.not_bundled:
            problem += f" (data not bundled: supply {TASKS[name].train_task}.train.jsonl in the BabyLM format)"
        if tasks is None:
            reasons[name] = problem
        else:
            raise UserError(problem)

    for other in RECIPES.values():
        if other.results_file != chosen.results_file and (out_dir / other.results_file).is_file():
            raise UserError(
                f"{out_dir / other.results_file}: results of the {other.name} recipe are in this folder; "
                f"choose another output folder for the {chosen.name} recipe (they would share {PREDICTIONS_FILE})"
            )
    task_results = _read_previous(out_dir / chosen.results_file, model_dir, chosen)
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
                say(f"{name}: already done ({previous['metric']} {previous['value']:.4f}), kept")
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
            size = chosen.train_sizes.get(train_task)
            if size is not None and group_data["train"].records != size:
                raise UserError(
                    f"{files[name]['train']}: {group_data['train'].records} {train_task} training examples, but the "
                    f"{chosen.name} recipe trains on the pipeline's {size}-example subset (staged in "
                    f"babylm_eval_2025_glue_subsampled/); give its folder first with --data"
                )
        group_data[name] = load_examples(files[name]["valid"], TASKS[name])
    keys = dict(todo)

    tokenizer = load_tokenizer(model_dir) if todo else None
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, (train_task, names) in enumerate(groups.items(), 1):
        group_data = data[train_task]
        if progress:
            scored = ", ".join(names)
            say(
                f"[{index}/{len(groups)}] {train_task}: finetuning on {len(group_data['train'].labels)} examples, "
                f"scoring {scored}"
            )
        scratch = out_dir / SCRATCH_DIR / train_task
        shutil.rmtree(scratch, ignore_errors=True)
        with quiet_transformers():
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
                say(
                    f"{name}: {entry['metric']} {entry['value']:.4f} (best epoch {entry['best_epoch']} of "
                    f"{entry['epochs_run']}, {entry['seconds']:.0f} s)"
                )
        _write(out_dir, chosen, summarize(task_results, reasons, model_dir, recipe))
        shutil.rmtree(scratch, ignore_errors=True)
    if (out_dir / SCRATCH_DIR).is_dir() and not any((out_dir / SCRATCH_DIR).iterdir()):
        (out_dir / SCRATCH_DIR).rmdir()

    results = summarize(task_results, reasons, model_dir, recipe)
    _write(out_dir, chosen, results)
    if progress:
        average = "n/a" if results["glue_average"] is None else f"{results['glue_average']:.4f}"
        missing = ", ".join(results["missing"]) or "none"
        say(f"average {average} over {len(results['evaluated'])} task(s); missing: {missing}")
    return results


# ----------------------------------------------------------------------------------------------
# command line

_CLI_OPTIONS = (
    "lr",
    "batch_size",
    "epochs",
    "patience",
    "seed",
    "max_length",
    "select_by",
    "weight_decay",
    "warmup_ratio",
    "schedule",
    "min_lr_ratio",
)
_CLI_CHOICES = {"select_by": ("pipeline", "task"), "schedule": ("linear", "cosine")}


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
    environment = os.environ.get("BABYLLAMA_GLUE_DATA", "")
    data = args.data or [folder for folder in environment.split(os.pathsep) if folder]
    if not data:
        raise UserError("no GLUE data folder: pass --data DIR or set BABYLLAMA_GLUE_DATA")
    recipe = get_recipe(args.recipe)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    out = args.out or Path(args.model_dir) / recipe.out_dir
    results = evaluate_glue(
        args.model_dir,
        data,
        out,
        tasks=tasks,
        max_train_examples=args.max_train_examples,
        overrides=overrides_from_args(args),
        progress=True,
        recipe=recipe.name,
    )
    print(json.dumps(glue_summary(results)))
    return 0


def _default_text(name: str) -> str:
    """The defaults of option ``name`` under each recipe, for --help."""
    parts = []
    for recipe in RECIPES.values():
        exceptions = [f"{task} {opts[name]}" for task, opts in recipe.task_defaults.items() if name in opts]
        parts.append(f"{recipe.defaults[name]}" + (f" ({', '.join(exceptions)})" if exceptions else ""))
    if len(set(parts)) == 1:
        return f"default {parts[0]}"
    return "default " + ", ".join(f"{part} in {recipe}" for part, recipe in zip(parts, RECIPES))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``glue`` subcommand (under ``babyllama evaluate``) to ``subparsers``."""
    new = RECIPES["2025"]
    parser = subparsers.add_parser(
        "glue",
        help="finetune a model on each (Super)GLUE task and report the BabyLM 2024 or 2025 scores",
        description=(
            "Finetune MODEL_DIR with a sequence-classification head (on the last attended token, whatever "
            "the padding side) on each (Super)GLUE task of a BabyLM recipe, one after another. "
            "--recipe 2024 (default): " + ", ".join(TASK_NAMES) + "; writes OUT/glue_results.json "
            "(OUT: MODEL_DIR/glue). --recipe 2025: " + ", ".join(new.tasks) + "; lr 3e-5, batch 32 (16 "
            "for boolq and multirc), 10 epochs (30 for wsc), 512 tokens (capped at the model's maximum), "
            "weight decay 0.01, 6%% warm-up then cosine to 0.1 x lr, best epoch by accuracy (F1 for mrpc and "
            "qqp), mnli and qqp trained on the pipeline's 10,000-example subsets "
            "(babylm_eval_2025_glue_subsampled/; give that folder first with --data); boolq and multirc "
            "training files are not bundled (data not bundled: supply them in the BabyLM jsonl format); "
            "writes OUT/results.json (OUT: MODEL_DIR/glue_2025). Both write, per task, metric, value, "
            "epochs run, best epoch and seconds, the plain means and the tasks missing and why, and "
            "OUT/predictions.json in the 2025 pipeline's format. Metrics: Matthews correlation for cola, "
            "F1 for mrpc and qqp, accuracy for the rest. Finished tasks are not rerun."
        ),
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face model directory (model and tokenizer)")
    parser.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default="2024",
        help="finetuning recipe: the BabyLM 2024 challenge's (default) or the 2025 pipeline's",
    )
    parser.add_argument(
        "--data",
        action="append",
        metavar="DIR",
        help="folder of BabyLM jsonl files TASK.train.jsonl / TASK.valid.jsonl (.jsonl.gz too); repeatable, "
        "searched in order; default: $BABYLLAMA_GLUE_DATA (folders separated by '" + os.pathsep + "')",
    )
    parser.add_argument(
        "--tasks",
        metavar="T1,T2",
        help="comma-separated tasks to run (default: all the recipe's; absent files are then reported as "
        "missing, while a named task with absent files is an error)",
    )
    parser.add_argument(
        "--max-train-examples",
        type=int,
        metavar="N",
        help="finetune on the first N training examples only (a quick CPU check; validation sets stay whole)",
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: MODEL_DIR/glue, or glue_2025)")
    for name in _CLI_OPTIONS:
        kwargs: dict[str, Any] = {"type": type(DEFAULT_OPTIONS[name])}
        if name in _CLI_CHOICES:
            kwargs = {"choices": _CLI_CHOICES[name]}
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar=None if name in _CLI_CHOICES else name.upper(),
            help=f"{OPTION_HELP[name]} ({_default_text(name)}; all tasks)".replace("%", "%%"),
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
