"""Learning curves for the report: fast-eval scores against words seen, one line per model.

Reads ``MODEL/fast_eval/summary.json`` (written by ``babyllama evaluate fast``) of each model and
draws one panel per fast task: the score at each word-count checkpoint (``chck_{N}M``) against
the words seen, on a log axis. The final model is drawn too when its words seen are recorded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from matplotlib.figure import Figure

from babyllama.report_plots import _png

TITLES = {"blimp_fast": "BLiMP (fast)", "supplement_fast": "BLiMP supplement (fast)", "ewok_fast": "EWoK (fast)",
          "entity_tracking_fast": "Entity tracking (fast)", "wug_adj": "WUG adjectives (rho)",
          "wug_past": "WUG past tense (rho)", "builtin_pairs": "Built-in minimal pairs",
          "reading_eye_tracking": "Reading: eye tracking (R^2 gain)",
          "reading_self_paced": "Reading: self-paced (R^2 gain)"}


def load_curves(model_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{task: [(words seen, score), ...]}`` by increasing words, from the model's fast-eval summary
    (empty when there is none or it cannot be read)."""
    path = Path(model_dir) / "fast_eval" / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    curves: dict[str, list[tuple[int, float]]] = {}
    for row in summary.get("checkpoints", []) if isinstance(summary, dict) else []:
        words = row.get("words") if isinstance(row, dict) else None
        if not isinstance(words, int) or words <= 0:
            continue
        for task, score in (row.get("scores") or {}).items():
            if isinstance(score, (int, float)) and math.isfinite(score):
                curves.setdefault(task, []).append((words, float(score)))
    return {task: sorted(points) for task, points in curves.items()}


def plot_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], colours: dict[str, tuple]) -> bytes | None:
    """One panel per task, one line per model (``curves[model][task]``); None when nothing to draw."""
    tasks = sorted({task for per_model in curves.values() for task in per_model}, key=lambda t: list(TITLES).index(t)
                   if t in TITLES else len(TITLES))
    if not tasks:
        return None
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        for label, per_model in curves.items():
            points = per_model.get(task)
            if points:
                ax.plot([w for w, _ in points], [s for _, s in points], marker="o", ms=3, label=label,
                        color=colours.get(label))
        ax.set_xscale("log")
        ax.set_title(TITLES.get(task, task), fontsize=10)
        ax.set_xlabel("words seen")
        ax.grid(alpha=0.3)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def curves_section(models, colours: dict[str, tuple], files: dict[str, bytes]) -> list[str]:
    """Markdown lines of the report's "Learning curves" section; adds ``learning_curves.png`` to ``files``."""
    curves = {m.label: load_curves(m.folder) for m in models}
    curves = {label: c for label, c in curves.items() if c}
    png = plot_curves(curves, colours)
    if png is None:
        return ["## Learning curves", "", "No fast-eval results (run `babyllama evaluate fast RUN_DIR --data DIR`).", ""]
    files["learning_curves.png"] = png
    return ["## Learning curves", "",
            "Zero-shot scores at each word-count checkpoint against words seen (the 2025 fast sets after "
            "`babyllama evaluate fast`; the experiment's own tasks with `evaluation.zero_shot.checkpoints`); "
            "accuracies are fractions, WUG panels Spearman's rho.", "", "![learning curves](learning_curves.png)", ""]
