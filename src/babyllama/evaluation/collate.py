"""``babyllama collate``: the BabyLM 2025 submission file of one model.

The file has the shape of the 2025 pipeline's ``collate_preds.py`` output: per task the
pipeline's predictions (``{subset: {"predictions": [{"id", "pred", ...}]}}`` in its order), then
``fast_eval_results``: per task a list with one entry per checkpoint chck_1M..chck_9M,
chck_10M..chck_100M (strict-small) of the per-subset fast metrics. Where each part is read from:

- zero-shot: ``MODEL/zero_shot/predictions/<task>.json`` (``evaluate zero-shot`` with the 2025 tasks
  ``blimp_2025``, ``supplement_2025``, ``ewok_2025``, ``entity_tracking``, ``wug_adj``, ``wug_past``, ``comps``);
- reading: ``MODEL/reading/predictions.json``; AoA: ``MODEL/aoa/surprisal.json``;
- GLUE: ``MODEL/glue_2025/predictions.json`` (``{task: {"predictions": [...]}}``, the 7 tasks);
- fast: ``MODEL/fast_eval/summary.json`` and each checkpoint's ``predictions/`` (``evaluate fast``),
  the per-checkpoint reading metrics ``{"spr", "rt"}`` included.

Every subset's item count is checked against the pipeline's expected sizes (``collate_preds.py``;
keys compared lower-cased as it does). Anything missing or of the wrong size is an error naming
all of them, unless ``--partial``: then what exists is written and the rest listed under ``missing``.
AoA is checked for presence only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from babyllama.errors import UserError
from babyllama.evaluation import tasks as registry
from babyllama.io import atomic_write_json

#: Submission key -> our task name (full evaluation).
FULL_TASKS = {"blimp": "blimp_2025", "blimp_supplement": "supplement_2025", "ewok": "ewok_2025",
              "entity_tracking": "entity_tracking", "wug_adj": "wug_adj", "wug_past": "wug_past", "comps": "comps"}
#: Submission key -> our task name (fast evaluation, per checkpoint).
FAST_TASKS = {"blimp": "blimp_fast", "blimp_supplement": "supplement_fast", "ewok": "ewok_fast",
              "entity_tracking": "entity_tracking_fast", "wug_adj": "wug_adj", "wug_past": "wug_past",
              "reading": "reading"}
GLUE_SIZES = {"boolq": 1635, "mnli": 4908, "mrpc": 204, "multirc": 2424, "qqp": 20215, "rte": 139, "wsc": 52}
READING_SIZE = 1726
STRICT_SMALL_REVISIONS = [f"chck_{i}M" for i in range(1, 10)] + [f"chck_{i * 10}M" for i in range(1, 11)]


def _read(path: Path, problems: list[str]) -> dict | None:
    if not path.is_file():
        problems.append(f"{path} missing")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path} unreadable ({exc})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a JSON object")
        return None
    return data


def check_sizes(label: str, predictions: dict, expected: dict[str, int] | int, problems: list[str]) -> None:
    """Append a problem for every subset whose prediction count differs from ``expected``."""
    have = {}
    for key, entry in predictions.items():
        rows = entry.get("predictions") if isinstance(entry, dict) else None
        if not isinstance(rows, list):
            problems.append(f"{label}/{key}: no 'predictions' list")
            continue
        have[key.lower()] = len(rows)
    wanted = expected if isinstance(expected, dict) else {key.lower(): expected for key in predictions}
    wrong = [f"{key} missing (expected {n} items)" if key not in have else f"{key} has {have[key]} items, expected {n}"
             for key, n in wanted.items() if have.get(key) != n]
    if wrong:
        more = f", and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        problems.append(f"{label}: {len(wrong)} of {len(wanted)} subsets wrong ({', '.join(wrong[:3])}{more})")


def collate(model_dir: Path, partial: bool = False) -> dict:
    """The submission dict of ``model_dir`` (see the module docstring); ``UserError`` naming every
    missing or wrong-sized part unless ``partial``."""
    problems: list[str] = []
    out: dict = {}
    for key, task in FULL_TASKS.items():
        preds = _read(model_dir / "zero_shot" / "predictions" / f"{task}.json", problems)
        if preds is not None:
            check_sizes(key, preds, registry.get(task).expected, problems)
            out[key] = preds
    reading = _read(model_dir / "reading" / "predictions.json", problems)
    if reading is not None:
        check_sizes("reading", reading, {"reading": READING_SIZE}, problems)
        out["reading"] = reading
    aoa = _read(model_dir / "aoa" / "surprisal.json", problems)
    if aoa is not None:
        out["aoa"] = aoa
    glue = _read(model_dir / "glue_2025" / "predictions.json", problems)
    if glue is not None:
        check_sizes("glue", glue, GLUE_SIZES, problems)
        out["glue"] = glue
    out["fast_eval_results"] = _fast_results(model_dir, problems)
    if problems and not partial:
        raise UserError(f"collate {model_dir}: {len(problems)} missing or incomplete: " + "; ".join(problems)
                        + " (use --partial to write what exists)")
    if problems:
        out["missing"] = problems
    return out


def _fast_results(model_dir: Path, problems: list[str]) -> dict[str, list]:
    """Per task, one dict of per-subset fast metrics per strict-small checkpoint, in checkpoint order."""
    results: dict[str, list] = {key: [] for key in FAST_TASKS}
    summary = _read(model_dir / "fast_eval" / "summary.json", problems)
    if summary is None:
        return results
    rows = {row.get("name"): row for row in summary.get("checkpoints", []) if isinstance(row, dict)}
    for revision in STRICT_SMALL_REVISIONS:
        row = rows.get(revision)
        if row is None:
            problems.append(f"fast_eval/{revision} missing")
            continue
        for key, task in FAST_TASKS.items():
            if task not in row.get("fast_metric", {}):
                problems.append(f"fast_eval/{revision}/{key} missing (no {task!r} in fast_eval/summary.json)")
                continue
            spec = registry.TASKS.get(task)
            if spec is not None and spec.expected is not None:
                preds = _read(model_dir / "fast_eval" / revision / "predictions" / f"{task}.json", problems)
                if preds is None:
                    continue
                check_sizes(f"fast_eval/{revision}/{key}", preds, spec.expected, problems)
            results[key].append(row["fast_metric"][task])
    return results


def _model_dir(path: Path, model: str | None) -> Path:
    if model is not None:
        path = path / model
    if (path / "config.json").is_file():
        return path
    if not path.is_dir():
        raise UserError(f"{path}: not a folder")
    found = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file())
    if len(found) == 1:
        return path / found[0]
    raise UserError(f"{path}: not a model directory; name one with --model ({', '.join(found) or 'none found'})")


def _run(args: argparse.Namespace) -> int:
    model_dir = _model_dir(Path(args.run_dir), args.model)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out}: already exists; use --overwrite to replace it")
    submission = collate(model_dir, partial=args.partial)
    atomic_write_json(out, submission)
    for line in submission.get("missing", []):
        print(f"missing: {line}")
    print(f"wrote {out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``babyllama collate RUN_DIR --out predictions.json``."""
    parser = subparsers.add_parser("collate", help="the BabyLM 2025 submission file of one model",
                                   description=__doc__.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a model directory, or a run folder (with --model)")
    parser.add_argument("--model", default=None, help="model folder name inside RUN_DIR (needed when it holds several)")
    parser.add_argument("--out", required=True, help="output file, e.g. predictions.json")
    parser.add_argument("--partial", action="store_true", help="write what exists and list what is missing")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(func=_run)
    return parser
