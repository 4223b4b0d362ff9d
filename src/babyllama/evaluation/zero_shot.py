"""Zero-shot evaluation (BLiMP, supplement, EWoK, built-in pairs; the 2025 tasks through the registry).

The 2024 tasks are scored as lm-evaluation-harness ``multiple_choice`` tasks with the ``acc``
metric, as the BabyLM 2024 pipeline runs them:

- a choice's score is ``sum log P(choice tokens | context tokens)``, with no length normalisation;
- the harness scores ``context`` + ``" " + choice`` (target delimiter one space). With an empty
  context the choice is encoded without special tokens and the context is the prefix token (BOS,
  else EOS). With a context, ``context + " " + choice`` and ``context`` are encoded with the
  tokenizer's default special tokens and the choice tokens are what follows the context tokens;
- an item is correct when the gold choice (index 0) has the highest score, the first index
  winning ties (``numpy.argmax``);
- a subtask's accuracy is the mean over its items; a group (task) or field score is the unweighted
  mean of its subtasks' accuracies.

The 2025 pipeline's tasks (entity tracking, WUG, COMPS, the fast sets) come from the task
registry (:mod:`babyllama.evaluation.tasks`); every task is scored by the one engine in
:mod:`babyllama.evaluation.logprob_engine` (shared prefixes, length-sorted batches, each distinct
item once). This module holds the 2024 harness encoding, the evaluation driver and the command line.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Sequence

import torch

from babyllama.errors import UserError
from babyllama.evaluation.logprob_engine import EncodedItem, score_encoded
from babyllama.evaluation.minimal_pair_tasks import TASK_FORMATS, Item, Subtask
from babyllama.io import atomic_write_json

TARGET_DELIMITER = " "
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_MAX_LENGTH = 2048  # the harness's fallback when neither config nor tokenizer gives one


def prefix_token_id(tokenizer) -> int:
    """The token that stands in for an empty context: BOS, else EOS (as the harness chooses)."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise UserError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has neither a BOS nor an EOS token; "
            "one is needed to score sentences with an empty context"
        )
    return token


def model_max_length(model, tokenizer) -> int:
    """The longest input the model takes: config ``n_positions`` / ``max_position_embeddings`` /
    ``n_ctx``, else the tokenizer's ``model_max_length``, else 2048 (the harness's order)."""
    config = getattr(model.config, "text_config", None) or model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**9:
        return value
    return DEFAULT_MAX_LENGTH


def encode_items(tokenizer, items: Sequence[Item], max_length: int, source: str | Path = "") -> list[EncodedItem]:
    """Encode ``items`` exactly as lm-evaluation-harness (``HFLM.loglikelihood``) does.

    Raises ``UserError`` (naming ``source`` and the item's line) when a sequence is longer than
    ``max_length`` + 1 tokens, where the harness would silently cut its start.
    """
    prefix = prefix_token_id(tokenizer)
    bos_text = tokenizer.decode([prefix])
    encoded: list[EncodedItem | None] = [None] * len(items)

    bare = [i for i, item in enumerate(items) if item.context == ""]
    texts = [TARGET_DELIMITER + choice for i in bare for choice in items[i].choices]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    at = 0
    for i in bare:
        seqs = []
        for cont in ids[at : at + len(items[i].choices)]:
            # The harness uses the first choice token as context when it already is the prefix token.
            ctx, cont = ([prefix], cont) if cont[0] != prefix else (cont[:1], cont[1:])
            seqs.append(tuple(ctx + cont))
        at += len(items[i].choices)
        encoded[i] = EncodedItem(tuple(seqs), 1)

    for special in (True, False):
        # Strings that already start with the prefix token's text get no special tokens (harness rule).
        group = [i for i, item in enumerate(items) if item.context and (not item.context.startswith(bos_text)) == special]
        if not group:
            continue
        contexts, wholes = [], []
        for i in group:
            context = items[i].context
            stripped = context.rstrip()
            spaces = context[len(stripped) :]  # trailing spaces move to the continuation
            contexts.append(stripped)
            wholes.extend(stripped + spaces + TARGET_DELIMITER + choice for choice in items[i].choices)
        context_ids = tokenizer(contexts, add_special_tokens=special)["input_ids"]
        whole_ids = tokenizer(wholes, add_special_tokens=special)["input_ids"]
        at = 0
        for i, ctx in zip(group, context_ids):
            n = len(items[i].choices)
            seqs = tuple(tuple(ctx) + tuple(whole[len(ctx) :]) for whole in whole_ids[at : at + n])
            at += n
            encoded[i] = EncodedItem(seqs, len(ctx))

    for item, enc in zip(items, encoded):
        longest = max(len(seq) for seq in enc.choices)
        if longest - 1 > max_length:
            raise UserError(
                f"{source}:{item.line}: item is {longest} tokens long, more than the model's context of {max_length} + 1"
            )
    return encoded


def load_model(model_dir: str | Path, dtype: str = "float32", device: str | None = None):
    """Load a causal LM directory (ours or any Hugging Face one) and its tokenizer for scoring.

    Returns ``(model, tokenizer, device)``; the model is in ``eval()`` mode, in ``dtype``, on ``device``
    (default: CUDA when available, else CPU).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; expected one of: {', '.join(DTYPES)}")
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model directory (no config.json)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=DTYPES[dtype])
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{model_dir}: cannot load model or tokenizer ({first_line})") from None
    model.to(device).eval()
    return model, tokenizer, device


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def summarise(subtasks: dict[str, list[Subtask]], correct: dict[tuple[str, str], list[bool]]) -> dict:
    """Per-subtask, per-field and group accuracies from per-item correctness.

    ``correct[(task, subtask)]`` holds one bool per item. Group and field scores are unweighted
    means over subtasks, as the harness aggregates groups (``weight_by_size: false``).
    """
    tasks = {}
    for task, subs in subtasks.items():
        table = {}
        by_field: dict[str, list[str]] = {}
        for sub in subs:
            hits = correct[(task, sub.name)]
            table[sub.name] = {"accuracy": _mean(hits), "items": len(hits), "field": sub.field, "path": str(sub.path),
                               "correct": [int(h) for h in hits]}
            if sub.field is not None:
                by_field.setdefault(sub.field, []).append(sub.name)
        fields = {
            field: {
                "accuracy": _mean([table[name]["accuracy"] for name in names]),
                "subtasks": len(names),
                "items": sum(table[name]["items"] for name in names),
            }
            for field, names in sorted(by_field.items())
        }
        tasks[task] = {
            "accuracy": _mean([entry["accuracy"] for entry in table.values()]),
            "items": sum(entry["items"] for entry in table.values()),
            "subtasks": table,
            "fields": fields,
        }
    return tasks


def score_tasks(model, tokenizer, loaded: dict, batch_size: int = 64, progress: bool = True,
                desc: str = "zero-shot") -> tuple[dict, dict, dict]:
    """Score loaded registry tasks (``{name: loaded task}``, see :mod:`babyllama.evaluation.tasks`)
    in one pass of the engine, so items shared between tasks are scored once.

    Returns ``(task results {name: entry}, predictions {name: pipeline predictions dict}, stats)``;
    tasks without a predictions file (the 2024 ones) are absent from the second dict.
    """
    max_length = model_max_length(model, tokenizer)
    encoded: list[EncodedItem] = []
    spans: dict[str, tuple[int, int]] = {}
    for name, task in loaded.items():
        start = len(encoded)
        encoded.extend(task.encode(tokenizer, max_length))
        spans[name] = (start, len(encoded))
    started = time.perf_counter()
    scores = score_encoded(model, encoded, batch_size, progress, desc=desc)
    elapsed = time.perf_counter() - started
    results, predictions = {}, {}
    for name, task in loaded.items():
        a, b = spans[name]
        entry, preds = task.summarise(scores[a:b])
        results[name] = entry
        if preds is not None:
            predictions[name] = preds
    stats = {"sequences": sum(len(enc.choices) for enc in encoded), "unique_items": len(set(encoded)),
             "scoring_time_s": elapsed, "max_length": max_length}
    return results, predictions, stats


def settings_for(tasks: dict[str, Path], tokenizer, batch_size: int, dtype: str, device, max_length: int) -> dict:
    """The exact scoring rules of ``tasks`` (per task, from the registry) and the run's settings."""
    from babyllama.evaluation import tasks as registry

    specs = {name: registry.get(name) for name in tasks}
    settings = {}
    if any(spec.scorer == "harness-2024" for spec in specs.values()):
        settings.update({
            "metric": "acc (lm-evaluation-harness multiple_choice): argmax over choices of the choice score",
            "choice_score": "sum of log P(choice token | preceding tokens) over the choice tokens, no length normalisation",
            "gold_choice": 0,
            "ties": "first choice wins (numpy.argmax), so a tie counts as correct",
            "target_delimiter": TARGET_DELIMITER,
            "empty_context": "prefix token (BOS, else EOS); choice encoded without special tokens",
            "context_encoding": "context + delimiter + choice encoded with the tokenizer's default special tokens; "
            "choice tokens are those after the encoded context",
            "prefix_token_id": prefix_token_id(tokenizer),
            "group_score": "unweighted mean of subtask accuracies",
            "field_score": "unweighted mean of the field's subtask accuracies",
            "task_formats": {name: list(TASK_FORMATS[name]) for name in tasks if name in TASK_FORMATS},
        })
    settings.update({
        "scorer": {name: spec.scorer for name, spec in specs.items()},
        "rules": {name: list(spec.rules) for name, spec in specs.items()},
        "tokenizer_adds_bos": _adds_bos(tokenizer),
        "temperature": 1.0,
        "batch_size": batch_size,
        "dtype": dtype,
        "device": str(device),
        "max_length": max_length,
        "torch": torch.__version__,
        "python": platform.python_version(),
    })
    return settings


def _adds_bos(tokenizer) -> bool:
    """Whether encoding a text with default special tokens puts the BOS token first."""
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id


def evaluate_zero_shot(
    model_dir: str | Path,
    tasks: dict[str, Path],
    out_dir: Path | None = None,
    batch_size: int = 64,
    dtype: str = "float32",
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Score the causal LM in ``model_dir`` on registry ``tasks`` ({task name: data folder}).

    All task files are parsed (and all items encoded) before anything is scored, so a malformed
    line stops the run early. Returns the results dict (written to ``out_dir/results.json`` when
    ``out_dir`` is given, with each 2025 task's pipeline predictions in
    ``out_dir/predictions/<task>.json``): ``tasks`` (per task: score, metric, items, ``subtasks``),
    ``summary`` ({task: score}), ``settings`` (the exact scoring rules) and timings.
    """
    from babyllama.evaluation import tasks as registry

    if not tasks:
        raise UserError("no zero-shot tasks given; pass at least one NAME=PATH")
    loaded = {name: registry.load(name, folder) for name, folder in tasks.items()}
    model, tokenizer, device = load_model(model_dir, dtype, device)
    task_results, predictions, stats = score_tasks(model, tokenizer, loaded, batch_size, progress,
                                                   desc=f"zero-shot {Path(model_dir).name}")
    for name, folder in tasks.items():
        task_results[name]["path"] = str(folder)
    results = {
        "model": str(model_dir),
        "tasks": task_results,
        "summary": {name: entry["score"] for name, entry in task_results.items()},
        "settings": settings_for(tasks, tokenizer, batch_size, dtype, device, stats["max_length"]),
        "sequences": stats["sequences"],
        "unique_items": stats["unique_items"],
        "scoring_time_s": stats["scoring_time_s"],
    }
    if out_dir is not None:
        write_predictions(Path(out_dir), predictions)
        atomic_write_json(Path(out_dir) / "results.json", results)
    return results


def write_predictions(out_dir: Path, predictions: dict) -> None:
    """``out_dir/predictions/<task>.json``: the 2025 pipeline's predictions file of each task."""
    for name, preds in predictions.items():
        atomic_write_json(out_dir / "predictions" / f"{name}.json", preds)


def _percent_or_rho(entry: dict, value: float) -> str:
    return f"{value:>9.3f}" if entry.get("metric") == "spearman_rho" else f"{100 * value:>8.2f}%"


def format_table(results: dict) -> str:
    """A plain-text table of one results dict: task scores, fields, splits, then every subtask."""
    lines = [f"model: {results['model']}"]
    lines.append(f"{'task':<58} {'items':>7} {'score':>9}")
    for task, entry in results["tasks"].items():
        lines.append(f"{task:<58} {entry['items']:>7} {_percent_or_rho(entry, entry['score'])}")
        for field, f in entry.get("fields", {}).items():
            label = f"  field {field} ({f['subtasks']} subtasks)"
            lines.append(f"{label:<58} {f['items']:>7} {100 * f['accuracy']:>8.2f}%")
        for split, value in entry.get("splits", {}).items():
            lines.append(f"{'  split ' + split:<58} {'':>7} {100 * value:>8.2f}%")
        for name, sub in entry["subtasks"].items():
            value = sub.get("accuracy", sub.get("spearman_rho"))
            lines.append(f"{'    ' + name:<58} {sub['items']:>7} {_percent_or_rho(entry, value)}")
    lines.append("summary: " + ", ".join(
        f"{t} {_percent_or_rho(results['tasks'][t], a).strip()}" for t, a in results["summary"].items()))
    return "\n".join(lines)


def _parse_task(text: str) -> tuple[str, Path]:
    from babyllama.evaluation import tasks as registry

    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    if name not in registry.TASKS:
        raise argparse.ArgumentTypeError(f"unknown task {name!r}; expected one of: {', '.join(registry.TASKS)}")
    return name, Path(path)


def _run(args: argparse.Namespace) -> int:
    from babyllama.preflight import Problems, check_writable

    tasks: dict[str, Path] = {}
    for name, path in args.task or []:
        if name in tasks:
            raise UserError(f"--task {name} given twice")
        tasks[name] = path
    if not tasks:
        raise UserError("no zero-shot tasks given; pass --task NAME=PATH (e.g. --task blimp_filtered=data/blimp_filtered)")
    from babyllama.evaluation import tasks as registry

    for name, folder in tasks.items():
        registry.check(name, folder)
    for model_dir in args.model_dir:
        if not (Path(model_dir) / "config.json").is_file():
            raise UserError(f"{model_dir}: not a model directory (no config.json)")
    names = [Path(m).name for m in args.model_dir]
    if args.out is not None and len(set(names)) < len(names):
        raise UserError("model directories share a folder name; evaluate them one at a time with --out")
    outs = [Path(m) / "zero_shot" if args.out is None else
            (Path(args.out) if len(args.model_dir) == 1 else Path(args.out) / Path(m).name) for m in args.model_dir]
    problems = Problems()
    for out in outs:
        problems.check(check_writable, out)
    problems.raise_if_any()
    for model_dir, out in zip(args.model_dir, outs):
        results = evaluate_zero_shot(
            model_dir, tasks, out, batch_size=args.batch_size, dtype=args.dtype, device=args.device,
            progress=not args.quiet,
        )
        print(format_table(results))
        print(f"wrote {out / 'results.json'}")
    return 0


def task_help(registry, fast_only: bool = False) -> str:
    """The tasks and their scoring rules, for ``--help``; rules shared by all 2025 tasks are printed once."""
    from babyllama.evaluation.tasks.ranking_2025 import COMMON_RULES

    chosen = [t for t in registry.TASKS.values() if t.fast or not fast_only]
    lines, seen = ["tasks:"], {}
    for task in chosen:
        bundled = "" if task.bundled else " [data not bundled]"
        lines.append(f"  {task.name:<22} {task.help}{bundled}")
        own = task.rules[len(COMMON_RULES):] if task.rules[: len(COMMON_RULES)] == COMMON_RULES else task.rules
        seen.setdefault(own, []).append(task.name)
    lines += ["", "scoring rules of every 2025 task:"] + [f"  - {rule}" for rule in COMMON_RULES]
    lines += ["", "and per task:"]
    for rules, names in seen.items():
        lines.append(f"  {', '.join(names)}:")
        lines.extend(f"    - {rule}" for rule in rules)
    return "\n".join(lines)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``zero-shot`` subcommand to ``subparsers`` (under ``babyllama evaluate``)."""
    from babyllama.evaluation import tasks as registry

    parser = subparsers.add_parser(
        "zero-shot",
        help="score causal LMs on zero-shot tasks (BLiMP, supplement, EWoK, entity tracking, WUG, COMPS; 2024 or 2025 rules)",
        description=(
            "Score one or more causal LM directories (ours or any Hugging Face model directory with its "
            "tokenizer) on zero-shot ranking tasks. The 2024 tasks are scored as lm-evaluation-harness scores them in "
            "the BabyLM 2024 pipeline; the 2025 tasks as babylm/evaluation-pipeline-2025's local scorer does (where "
            "its prediction scorer differs, the local one is followed). Writes results.json per model (the rules "
            "of every task under settings.rules), the 2025 tasks' pipeline predictions under predictions/, and "
            "prints a table."
        ),
        epilog=task_help(registry),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model_dir", nargs="+", metavar="MODEL_DIR", help="model directory (config.json, weights, tokenizer)")
    parser.add_argument(
        "--task",
        action="append",
        type=_parse_task,
        metavar="NAME=PATH",
        help=(
            "task name and its data folder of .jsonl/.jsonl.gz files, one file per subtask; repeatable. "
            f"NAME is one of: {', '.join(registry.TASKS)}"
        ),
    )
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass (default: 64)")
    parser.add_argument(
        "--dtype", choices=list(DTYPES), default="float32", help="compute dtype of the model (default: float32)"
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=(
            "output folder: OUT/results.json for one model, OUT/<model folder name>/results.json for several "
            "(default: MODEL_DIR/zero_shot/results.json)"
        ),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress log lines")
    parser.set_defaults(func=_run)
    return parser
