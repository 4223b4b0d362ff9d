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
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from babyllama.errors import UserError
from babyllama.evaluation.glue_data import Examples, load_examples, needed_files, task_file
from babyllama.evaluation.glue_finetune import finetune as _finetune  # tests replace it here
from babyllama.evaluation.glue_finetune import load_tokenizer, quiet_transformers, say
from babyllama.evaluation.glue_tasks import DEFAULT_OPTIONS, OPTION_HELP, TASK_NAMES, TASKS, resolve_options
from babyllama.io import atomic_write_json

__all__ = [
    "DEFAULT_OPTIONS",
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

RESULTS_FILE = "glue_results.json"
SCRATCH_DIR = "scratch"


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
        found, problem = needed_files(data_dir, TASKS[name])
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
        atomic_write_json(results_path, summarize(task_results, reasons, model_dir))
        shutil.rmtree(scratch, ignore_errors=True)
    if (out_dir / SCRATCH_DIR).is_dir() and not any((out_dir / SCRATCH_DIR).iterdir()):
        (out_dir / SCRATCH_DIR).rmdir()

    results = summarize(task_results, reasons, model_dir)
    atomic_write_json(results_path, results)
    if progress:
        average = "n/a" if results["glue_average"] is None else f"{results['glue_average']:.4f}"
        missing = ", ".join(results["missing"]) or "none"
        say(f"average {average} over {len(results['evaluated'])} task(s); missing: {missing}")
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
            help=f"{OPTION_HELP[name]} (default {default}; all tasks)",
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
