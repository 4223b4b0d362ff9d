"""The report's plots, as PNG bytes, from plain data (no file reading here).

Each function takes what it draws (training logs, {model: {name: score}} tables, sweep trials)
and returns the PNG bytes, or ``None`` when there is nothing to draw, so the report decides what
to write and where. Figures are built with :class:`matplotlib.figure.Figure` and rendered by Agg,
which needs no display and leaves pyplot's global state (and the user's backend) untouched.
Every model keeps one colour across all plots (:func:`model_colours`).
"""

from __future__ import annotations

import io
import math

import matplotlib
from matplotlib.figure import Figure

DPI = 110


def model_colours(labels: list[str]) -> dict[str, tuple]:
    """One distinct colour per model label, in the given order (tab10, then tab20 beyond 10)."""
    palette = list(matplotlib.colormaps["tab10"].colors)
    if len(labels) > len(palette):
        palette = list(matplotlib.colormaps["tab20"].colors)
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _series(log: list[dict], event: str, key: str) -> tuple[list[float], list[float]]:
    """(tokens, values) of ``key`` over the ``event`` records of a training log, finite values only."""
    xs, ys = [], []
    for record in log:
        if record.get("event") != event:
            continue
        x, y = record.get("tokens"), record.get(key)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(y):
            xs.append(float(x))
            ys.append(float(y))
    return xs, ys


def plot_losses(logs: dict[str, list[dict]], colours: dict[str, tuple]) -> bytes | None:
    """Training cross-entropy (left) and validation loss (right) against tokens seen, one line per model.

    The left panel plots ``ce`` (the next-token cross-entropy, which a distilled student logs next
    to its combined loss) so that every model's curve is on the same scale.
    """
    fig = Figure(figsize=(11, 4.2))
    train_ax, val_ax = fig.subplots(1, 2)
    drawn = False
    for label, log in logs.items():
        xs, ys = _series(log, "train", "ce")
        if not xs:
            xs, ys = _series(log, "train", "loss")
        if xs:
            train_ax.plot(xs, ys, color=colours[label], linewidth=1.2, label=label)
            drawn = True
        xs, ys = _series(log, "eval", "val_loss")
        if xs:
            val_ax.plot(xs, ys, color=colours[label], marker="o", markersize=4, linewidth=1.6, label=label)
            drawn = True
    if not drawn:
        return None
    for ax, title in ((train_ax, "training cross-entropy"), (val_ax, "validation loss")):
        ax.set_title(title)
        ax.set_xlabel("tokens seen")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    return _png(fig)


def plot_distill_parts(logs: dict[str, list[dict]], colours: dict[str, tuple]) -> bytes | None:
    """For each distillation model: the CE part (solid), the KD part (dashed) and the total loss
    (dotted) against tokens seen."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    for label, log in logs.items():
        if not _series(log, "train", "kd")[0]:
            continue
        for key, style in (("ce", "-"), ("kd", "--"), ("loss", ":")):
            xs, ys = _series(log, "train", key)
            ax.plot(xs, ys, color=colours[label], linestyle=style, linewidth=1.4, label=f"{label} {key}")
    if not ax.has_data():
        return None
    ax.set_title("distillation loss parts")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_bars(series: dict[str, dict[str, float]], colours: dict[str, tuple], title: str,
              ylabel: str) -> bytes | None:
    """Grouped bars: one group per category (a field, a GLUE task), one bar per model."""
    series = {label: values for label, values in series.items() if values}
    categories = sorted(set().union(*series.values())) if series else []
    if not categories:
        return None
    fig = Figure(figsize=(max(6.0, 1.0 + 0.9 * len(categories) * max(1, len(series)) / 3), 4.2))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j, c in enumerate(categories) if c in values]
        ys = [values[c] for c in categories if c in values]
        ax.bar(xs, ys, width=width, color=colours[label], label=label)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, rotation=30 if len(categories) > 5 else 0, ha="right" if len(categories) > 5 else "center")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_paradigms(series: dict[str, dict[str, float]], colours: dict[str, tuple], title: str) -> bytes | None:
    """One row per paradigm, one marker per model, rows sorted by the first model's accuracy
    (the first model, the student, is drawn on top with a diamond so ties stay visible)."""
    series = {label: values for label, values in series.items() if values}
    if not series:
        return None
    first = next(iter(series.values()))
    names = sorted(set().union(*series.values()), key=lambda n: (first.get(n, -1.0), n))
    fig = Figure(figsize=(7.5, max(3.0, 0.6 + 0.22 * len(names))))
    ax = fig.subplots()
    markers = ["D", "o", "s", "^", "v"]
    for i, (label, values) in enumerate(series.items()):
        ys = [j for j, n in enumerate(names) if n in values]
        ax.scatter([values[n] for n in names if n in values], ys, color=colours[label], s=30 if i == 0 else 22,
                   marker=markers[i % len(markers)], alpha=0.85, label=label, zorder=5 - min(i, 4))
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_ylim(-0.8, len(names) - 0.2)
    ax.set_xlabel("accuracy")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def plot_scatter(student: dict[str, float], teacher: dict[str, float], fields: dict[str, str | None],
                 student_label: str, teacher_label: str, title: str) -> bytes | None:
    """Per-paradigm accuracy of the student (y) against the teacher (x), coloured by field; points
    above the diagonal are paradigms where the student beats the teacher."""
    names = sorted(set(student) & set(teacher))
    if not names:
        return None
    fig = Figure(figsize=(5.6, 5.2))
    ax = fig.subplots()
    field_names = sorted({fields.get(n) or "other" for n in names})
    palette = matplotlib.colormaps["Set2"].colors
    for i, f in enumerate(field_names):
        chosen = [n for n in names if (fields.get(n) or "other") == f]
        ax.scatter([teacher[n] for n in chosen], [student[n] for n in chosen], s=26,
                   color=palette[i % len(palette)], label=f, edgecolor="black", linewidth=0.4, zorder=3)
    values = [teacher[n] for n in names] + [student[n] for n in names]
    low, high = min(values + [0.5]) - 0.02, max(values + [1.0]) + 0.02
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(f"{teacher_label} accuracy")
    ax.set_ylabel(f"{student_label} accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="field", title_fontsize=8)
    return _png(fig)


def plot_sweep(trials: list[dict], direction: str, title: str) -> bytes | None:
    """Each finished trial's value against its number, and the best value so far as a step line."""
    done = sorted((t for t in trials if isinstance(t.get("value"), (int, float)) and isinstance(t.get("number"), int)),
                  key=lambda t: t["number"])
    if not done:
        return None
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    complete = [t for t in done if t.get("state", "COMPLETE") == "COMPLETE"]
    other = [t for t in done if t not in complete]
    ax.scatter([t["number"] for t in complete], [t["value"] for t in complete], color="tab:blue", s=22, label="complete")
    if other:
        ax.scatter([t["number"] for t in other], [t["value"] for t in other], color="grey", marker="x", s=22,
                   label="pruned / other")
    best, xs, ys = None, [], []
    for t in complete:
        if best is None or (t["value"] > best if direction == "maximize" else t["value"] < best):
            best = t["value"]
        xs.append(t["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:red", linewidth=1.6, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"objective ({direction})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
