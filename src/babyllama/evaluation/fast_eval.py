"""``babyllama evaluate fast``: the 2025 fast sets on every word-count checkpoint of a model.

For a model directory (or every model directory of a run folder) the fast tasks of the registry
(``blimp_fast``, ``supplement_fast``, ``ewok_fast``, ``entity_tracking_fast``, ``wug_adj``,
``wug_past``) and, when ``--data`` has a ``reading`` folder, the reading task are scored on each
``word_checkpoints/chck_{N}M`` folder and on the final model, with the same rules as
``evaluate zero-shot`` and ``evaluate reading``. A fast task whose data folder is not under
``--data`` (``wug_past``: not bundled) is skipped and listed. Output per model:

- ``MODEL/fast_eval/<chck_NM | final>/results.json`` (as ``evaluate zero-shot`` writes it) and
  ``predictions/<task>.json`` (the pipeline's predictions files);
- ``MODEL/fast_eval/summary.json``: ``{"checkpoints": [{"name", "words", "scores": {task: score},
  "fast_metric": {task: {subset: value}}}], "skipped": {task: reason}, "settings": ...}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from babyllama.errors import UserError
from babyllama.evaluation import tasks as registry
from babyllama.evaluation.cli_options import add_scoring_options
from babyllama.evaluation.zero_shot import evaluate_zero_shot
from babyllama.io import atomic_write_json
from babyllama.word_checkpoints import list_word_checkpoints

FINAL = "final"
#: The reading data's folder under ``--data`` (scored on every checkpoint when present).
READING_DIR = "reading"


def fast_tasks(data: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """``({task: folder}, {skipped task: reason})`` for the registry's fast tasks under ``data``;
    present folders are checked up front (``tasks.check``)."""
    found, skipped = {}, {}
    for task in registry.TASKS.values():
        if not task.fast:
            continue
        folder = data / task.staged
        if not folder.is_dir():
            skipped[task.name] = f"no folder {folder}" + ("" if task.bundled else " (data not bundled)")
            continue
        registry.check(task.name, folder)
        found[task.name] = folder
    if not found:
        raise UserError(f"{data}: holds none of the fast-eval folders "
                        f"({', '.join(t.staged for t in registry.TASKS.values() if t.fast)})")
    return found, skipped


def model_dirs(path: Path) -> list[Path]:
    """``path`` itself when it is a model directory, else its model subfolders (run folder)."""
    if (path / "config.json").is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: not a folder")
    found = sorted(p for p in path.iterdir() if (p / "config.json").is_file())
    if not found:
        raise UserError(f"{path}: neither a model directory (config.json) nor a run folder holding model directories")
    return found


def checkpoints(model_dir: Path) -> list[tuple[str, int | None, Path]]:
    """``[(name, words seen or None, folder)]``: the word-count checkpoints, then the final model."""
    return [(folder.name, words, folder) for words, folder in list_word_checkpoints(model_dir)] + \
        [(FINAL, _final_words(model_dir), model_dir)]


def _final_words(model_dir: Path) -> int | None:
    import json

    metrics = model_dir / "metrics.json"
    if metrics.is_file():
        try:
            words = json.loads(metrics.read_text(encoding="utf-8")).get("words_seen")
        except (OSError, ValueError):
            return None
        return words if isinstance(words, int) else None
    return None


def evaluate_fast(path: Path, data: Path, batch_size: int = 64, dtype: str = "float32", device: str | None = None,
                  progress: bool = True, overwrite: bool = False) -> dict[Path, dict]:
    """Run the fast sets on every checkpoint of every model under ``path``; returns {model dir: summary}.

    A checkpoint whose ``results.json`` already exists for the same tasks is not scored again
    unless ``overwrite``.
    """
    tasks, skipped = fast_tasks(Path(data))
    reading = Path(data) / READING_DIR
    if reading.is_dir():
        from babyllama.evaluation.reading import find_reading_file

        find_reading_file(reading)  # a broken reading folder fails here, before any scoring
    else:
        skipped["reading"] = f"no folder {reading}"
        reading = None
    return {model_dir: score_checkpoints(model_dir, tasks, skipped, str(data), batch_size, dtype, device,
                                         progress, overwrite, reading)
            for model_dir in model_dirs(Path(path))}


def score_checkpoints(model_dir: Path, tasks: dict[str, Path], skipped: dict[str, str] | None = None,
                      data: str = "", batch_size: int = 64, dtype: str = "float32", device: str | None = None,
                      progress: bool = True, overwrite: bool = False, reading: Path | None = None,
                      final_results: Path | None = None) -> dict:
    """Score ``tasks`` ({name: folder}, any registry tasks) on every word-count checkpoint of one
    model and on the final model; writes and returns ``MODEL/fast_eval/summary.json``.

    ``reading``: the reading data folder, scored too on each checkpoint (``evaluate reading``; its
    per-checkpoint metric is the pipeline's ``{"spr", "rt"}``: the self-paced-reading and
    eye-tracking relative R^2 gains as fractions).

    ``final_results``: a folder already holding the final model's ``results.json`` for ``tasks``
    (a run's ``MODEL/zero_shot``); it is read instead of scoring the final model a second time.

    ``evaluate fast`` calls it with the fast sets; a run calls it with the experiment's zero-shot
    tasks when ``evaluation.zero_shot.checkpoints`` is on (the report's learning curves).
    """
    rows = []
    for name, words, folder in checkpoints(model_dir):
        out = model_dir / "fast_eval" / name
        started = time.perf_counter()
        results = None
        if name == FINAL and final_results is not None:
            results = _cached(final_results, tasks)
        if results is None and not overwrite:
            results = _cached(out, tasks)
        if results is None:
            results = evaluate_zero_shot(folder, tasks, out, batch_size=batch_size, dtype=dtype, device=device,
                                         progress=progress)
        row = {"name": name, "words": words, "folder": str(folder), "scores": dict(results["summary"]),
               "fast_metric": {t: e["fast_metric"] for t, e in results["tasks"].items() if "fast_metric" in e},
               "scoring_time_s": results["scoring_time_s"]}
        if reading is not None:
            read = _reading(folder, reading, out / READING_DIR, batch_size, dtype, device, overwrite)
            row["scores"].update(reading_eye_tracking=read["eye_tracking"] / 100,
                                 reading_self_paced=read["self_paced_reading"] / 100)
            row["fast_metric"]["reading"] = {"spr": read["self_paced_reading"] / 100, "rt": read["eye_tracking"] / 100}
        rows.append({**row, "wall_time_s": time.perf_counter() - started})
        if progress:
            scores = ", ".join(f"{t} {v:.3f}" for t, v in results["summary"].items())
            print(f"{model_dir.name}/{name}: {scores}")
    summary = {"model": str(model_dir), "data": data, "tasks": {t: str(f) for t, f in tasks.items()},
               "skipped": skipped or {}, "checkpoints": rows,
               "settings": {"scores": "as evaluate zero-shot (2025 rules, see each results.json settings.rules); "
                            "accuracies are fractions, wug tasks Spearman's rho",
                            "fast_metric": "per subset, what the 2025 pipeline's collate reports per checkpoint "
                            "(fractions; raw rho for wug)",
                            "batch_size": batch_size, "dtype": dtype}}
    atomic_write_json(model_dir / "fast_eval" / "summary.json", summary)
    return summary


def _reading(folder: Path, data: Path, out: Path, batch_size: int, dtype: str, device: str | None,
             overwrite: bool) -> dict:
    """One checkpoint's reading results (``evaluate reading``), reused when already written for ``data``."""
    import json

    from babyllama.evaluation.reading import evaluate_reading, find_reading_file

    path = out / "results.json"
    if path.is_file() and not overwrite:
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
            if results.get("data") == str(find_reading_file(data)):
                return results
        except (OSError, ValueError):
            pass
    return evaluate_reading(folder, data, out, batch_size=batch_size, dtype=dtype, device=device, progress=False)


def _cached(out: Path, tasks: dict[str, Path]) -> dict | None:
    import json

    path = out / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = {t: e.get("path") for t, e in results.get("tasks", {}).items()} == {t: str(f) for t, f in tasks.items()}
    return results if same else None


def _run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    summaries = evaluate_fast(Path(args.path), Path(args.data), args.batch_size, args.dtype, args.device,
                              progress=not args.quiet, overwrite=args.overwrite)
    for model_dir, summary in summaries.items():
        for task, reason in summary["skipped"].items():
            print(f"skipped {task}: {reason}")
        print(f"wrote {model_dir / 'fast_eval' / 'summary.json'} ({len(summary['checkpoints'])} checkpoints)")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate fast RUN_OR_MODEL_DIR --data DIR``."""
    from babyllama.evaluation.zero_shot import task_help

    parser = subparsers.add_parser(
        "fast", help="the 2025 fast sets on every word-count checkpoint (chck_{N}M) and the final model",
        description=__doc__.split("\n\n", 1)[1].split("Output per model")[0].strip() + " Scores follow the 2025 "
        "pipeline's rules below; accuracies are fractions (the pipeline prints x100), WUG scores Spearman's rho.",
        epilog=task_help(registry, fast_only=True), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="RUN_OR_MODEL_DIR", help="a model directory, or a run folder of them")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="the 2025 evaluation data folder holding blimp_fast/, supplement_fast/, ewok_fast/, "
                        "entity_tracking_fast/, wug_adj_nominalization/ and (if you have it) wug_past_tense/")
    add_scoring_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="score again checkpoints that already have results")
    parser.set_defaults(func=_run)
    return parser
