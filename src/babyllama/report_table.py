"""The report's comparison table: one row per model, one column per metric, the best value marked.

``build_table`` picks the columns (losses, bits per byte, zero-shot groups, GLUE) and the best
value of each quality column; ``format_markdown_table`` and ``format_terminal_table`` render it.
The number formatters here are shared by the other report sections. A value a model lacks is
shown as ``missing``, never as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .report_runs import ModelRun

MISSING = "missing"

# Zero-shot groups always shown as columns (missing where absent), then optional ones when present.
ZERO_SHOT_ALWAYS = ("blimp", "blimp_supplement", "ewok")
ZERO_SHOT_TITLES = {"blimp": "BLiMP", "blimp_filtered": "BLiMP filt.", "blimp_supplement": "BLiMP suppl.",
                    "ewok": "EWoK", "builtin_pairs": "Built-in pairs"}
ROLE_ORDER = {"teacher": 0, "student": 1, "baseline": 2}


@dataclass
class Column:
    """One table column: ``get`` reads the value from a model (``None`` = missing), ``better`` is
    "lower", "higher" or ``None`` (descriptive columns are never marked best)."""

    key: str
    title: str
    get: Callable[[ModelRun], float | None]
    fmt: Callable[[float], str]
    better: str | None = None
    zero_shot_group: str | None = None


@dataclass
class Table:
    """The comparison table: columns, models (rows, in display order) and each column's best value."""

    columns: list[Column]
    models: list[ModelRun]
    best: dict[str, float]

    def cell(self, model: ModelRun, column: Column) -> tuple[str, bool]:
        """The formatted cell and whether it holds the column's best value."""
        value = column.get(model)
        if value is None:
            return MISSING, False
        return column.fmt(value), column.key in self.best and value == self.best[column.key]


def _metric(key: str) -> Callable[[ModelRun], float | None]:
    return lambda m: None if m.metrics.get(key) is None else float(m.metrics[key])


def _zero_shot_group(group: str) -> Callable[[ModelRun], float | None]:
    return lambda m: None if m.zero_shot is None else m.zero_shot.groups.get(group)


def _glue_task(task: str) -> Callable[[ModelRun], float | None]:
    return lambda m: None if m.glue is None or task not in m.glue.tasks else m.glue.tasks[task]["value"]


def _glue_average(m: ModelRun) -> float | None:
    return None if m.glue is None else m.glue.average


def _count(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f}h"
    if value >= 60:
        return f"{value / 60:.1f}min"
    return f"{value:.1f}s"


def _fixed3(value: float) -> str:
    return f"{value:.3f}"


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _or_missing(value: float | None, fmt: Callable[[float], str]) -> str:
    return MISSING if value is None else fmt(value)


def build_table(models: list[ModelRun]) -> Table:
    """The comparison table of ``models``: rows ordered teachers, students, baselines (input order
    within a role); zero-shot columns for BLiMP, supplement and EWoK always (plus any other group
    some model has), GLUE average and one column per task any model has."""
    columns = [
        Column("parameters", "Params", _metric("parameters"), _count),
        Column("tokens_seen", "Tokens", _metric("tokens_seen"), _count),
        Column("val_loss", "Val loss", _metric("val_loss"), _fixed3, "lower"),
        Column("test_loss", "Test loss", _metric("test_loss"), _fixed3, "lower"),
        Column("val_bpb", "Val bpb", _metric("val_bpb"), _fixed3, "lower"),
        Column("test_bpb", "Test bpb", _metric("test_bpb"), _fixed3, "lower"),
    ]
    present = [g for m in models if m.zero_shot for g in m.zero_shot.groups]
    groups = list(ZERO_SHOT_ALWAYS) + [g for g in dict.fromkeys(present) if g not in ZERO_SHOT_ALWAYS]
    for g in groups:
        columns.append(Column(f"zero_shot.{g}", ZERO_SHOT_TITLES.get(g, g), _zero_shot_group(g), _fixed3,
                              "higher", zero_shot_group=g))
    columns.append(Column("glue.glue_average", "GLUE avg", _glue_average, _fixed3, "higher"))
    metrics_of: dict[str, str] = {}
    for m in models:
        for task, entry in (m.glue.tasks.items() if m.glue else ()):
            if entry["metric"] or task not in metrics_of:
                metrics_of[task] = entry["metric"]
    for task, metric in metrics_of.items():
        title = f"{task} ({metric})" if metric else task
        columns.append(Column(f"glue.{task}", title, _glue_task(task), _fixed3, "higher"))
    columns.append(Column("wall_time_s", "Train time", _metric("wall_time_s"), _seconds))
    ordered = sorted(models, key=lambda m: ROLE_ORDER.get(m.role, 3))
    best = {}
    for col in columns:
        values = [v for v in (col.get(m) for m in ordered) if v is not None and math.isfinite(v)]
        if col.better and len(values) >= 2:
            best[col.key] = min(values) if col.better == "lower" else max(values)
    return Table(columns=columns, models=ordered, best=best)


def format_terminal_table(table: Table) -> str:
    """The table as aligned plain text for a terminal; the best value per column ends in ``*``."""
    header = ["Model", "Role"] + [c.title for c in table.columns]
    rows = []
    for m in table.models:
        row = [m.label, m.role]
        for col in table.columns:
            text, best = table.cell(m, col)
            row.append(text + ("*" if best else ""))
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    lines.append("* best in column (lower loss and bpb, higher accuracy and GLUE); 'missing' = no result in the run folder")
    return "\n".join(lines)


def format_markdown_table(table: Table) -> str:
    """The table as GitHub markdown; the best value per column is bold."""
    header = ["Model", "Role"] + [c.title for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["---:"] * len(table.columns)) + "|"]
    for m in table.models:
        cells = [m.label, m.role]
        for col in table.columns:
            text, best = table.cell(m, col)
            cells.append(f"**{text}**" if best else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
