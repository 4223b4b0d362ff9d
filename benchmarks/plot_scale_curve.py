"""Plot BLiMP filtered and the supplement against tokens seen on the 2023 text (issue 13, §3).

    python benchmarks/plot_scale_curve.py docs/findings/scale_curve.json docs/findings/scale_curve.png

The JSON file lists measured points, one per pretrained model: ``{"points": [{"label", "parameters",
"tokens_seen", "blimp_filtered", "blimp_supplement", "source"}, ...]}`` (``source``: the command
or study folder it came from). Chance (0.5) is drawn as a line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(points: list[dict], out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, task, title in zip(axes, ("blimp_filtered", "blimp_supplement"), ("BLiMP filtered", "BLiMP supplement")):
        for label in dict.fromkeys(p["label"] for p in points):
            mine = [p for p in points if p["label"] == label and p.get(task) is not None]
            ax.scatter([p["tokens_seen"] / 1e6 for p in mine], [p[task] for p in mine], label=label, alpha=0.8)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("tokens seen (millions)")
        ax.set_title(title)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: plot_scale_curve.py POINTS.json OUT.png")
    plot(json.loads(Path(sys.argv[1]).read_text())["points"], Path(sys.argv[2]))
