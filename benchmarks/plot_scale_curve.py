"""Plot zero-shot accuracy against tokens seen on the 2023 text, one panel per task (issue 13, §3).

    python benchmarks/plot_scale_curve.py docs/findings/scale_curve.json docs/findings/scale_curve.png

The JSON file lists measured points, one per pretrained model: ``{"points": [{"label", "parameters",
"tokens_seen", "source", TASK: accuracy, ...}, ...]}`` with TASK among ``blimp_filtered`` (2024
scoring), ``blimp_fast`` (the 2025 fast set) and ``blimp_supplement``; a panel is drawn for each
task some point has (the BLiMP sets differ, so they are never mixed on one axis). ``source``: the
command or study folder the point came from. Chance (0.5) is drawn as a line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TASKS = {"blimp_filtered": "BLiMP filtered (2024)", "blimp_fast": "BLiMP fast (2025)",
         "blimp_supplement": "BLiMP supplement"}


def plot(points: list[dict], out: Path) -> None:
    tasks = [t for t in TASKS if any(p.get(t) is not None for p in points)]
    if not tasks:
        raise SystemExit(f"no point has any of {', '.join(TASKS)}")
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), sharex=True, sharey=True,
                             squeeze=False)
    labels = list(dict.fromkeys(p["label"] for p in points))
    colours = {label: f"C{i}" for i, label in enumerate(labels)}  # one colour per label in every panel
    for ax, task in zip(axes[0], tasks):
        for label in labels:
            mine = [p for p in points if p["label"] == label and p.get(task) is not None]
            if mine:
                ax.scatter([p["tokens_seen"] / 1e6 for p in mine], [p[task] for p in mine], label=label,
                           color=colours[label], alpha=0.8)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("tokens seen (millions)")
        ax.set_title(TASKS[task])
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("accuracy")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: plot_scale_curve.py POINTS.json OUT.png")
    plot(json.loads(Path(sys.argv[1]).read_text())["points"], Path(sys.argv[2]))
