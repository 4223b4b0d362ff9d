"""The comparison report: tables and plots built only from the files in run folders.

A distillation run is judged by comparing it: the student against each teacher and against the
baseline, per benchmark and per phenomenon, along training. ``babyllama report RUN_DIR ...``
reads what the run folders hold (docs/run-layout.md: ``metrics.json``, ``metrics.jsonl``,
``zero_shot/results.json``, ``glue/glue_results.json``, and a sweep's ``trials.json``) and
writes ``report.md``, ``report.json`` (the table's exact numbers) and PNG plots. Nothing is
recomputed from models, so the report can be regenerated at any time, for any mix of runs, and
a result that is absent is shown as ``missing`` (never as zero) and listed with its reason.

For the student, the margin over its best teacher and over the best baseline comes with a paired
bootstrap 95% interval for zero-shot accuracy differences (the same items scored by both models),
so a reader can tell a real gap from noise.

This module builds the report and adds ``babyllama report`` to the command line; the run folders
are read by :mod:`babyllama.report_runs`, the table is :mod:`babyllama.report_table`, margins,
intervals and phenomena are :mod:`babyllama.report_margins`, plots :mod:`babyllama.report_plots`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from .report_margins import _scores, comparison_set, format_margins, format_phenomena, phenomenon_group, student_margins
from .report_runs import ModelRun, Sweep, assign_roles, load_runs
from .report_table import (MISSING, ZERO_SHOT_ALWAYS, ZERO_SHOT_TITLES, Table, _seconds, build_table,
                           format_markdown_table, format_terminal_table)
from .word_budget import report_lines


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: the folder, the markdown text, the terminal table, the
    ``report.md`` path, the plot paths and the missing-result notes."""

    out_dir: Path
    markdown: str
    table: str
    report_path: Path
    plots: list[Path]
    missing: list[str]


# --------------------------------------------------------------------------------------------
# Missing results, sweeps


def missing_results(models: list[ModelRun]) -> list[str]:
    """One line per result a model lacks, naming the file that would hold it."""
    notes = []
    for m in models:
        if not m.log:
            notes.append(f"{m.label}: no training log ({m.folder / 'metrics.jsonl'}); no loss curves")
        if m.metrics.get("test_loss") is None:
            notes.append(f"{m.label}: no test loss in {m.folder / 'metrics.json'}")
        if m.zero_shot is None:
            notes.append(f"{m.label}: zero-shot results missing ({m.folder / 'zero_shot' / 'results.json'})")
        else:
            absent = [g for g in ZERO_SHOT_ALWAYS if g not in m.zero_shot.groups]
            if absent:
                notes.append(f"{m.label}: zero-shot groups not evaluated: {', '.join(absent)}")
            if m.zero_shot.subtasks and any(s.correct is None for s in m.zero_shot.subtasks.values()):
                notes.append(f"{m.label}: zero_shot/results.json lacks per-item 'correct' lists; "
                             f"no paired intervals")
        if m.glue is None:
            notes.append(f"{m.label}: GLUE results missing ({m.folder / 'glue' / 'glue_results.json'})")
        else:
            for task, reason in m.glue.missing.items():
                notes.append(f"{m.label}: GLUE task {task} missing ({reason})")
    return notes


def _best_trial(sweep: Sweep) -> dict | None:
    done = [t for t in sweep.trials if t.get("value") is not None]
    if not done:
        return None
    pick = max if sweep.direction == "maximize" else min
    return pick(done, key=lambda t: t["value"])


def format_sweep(sweep: Sweep) -> str:
    """Markdown table of a sweep's trials, the best one in bold."""
    best = _best_trial(sweep)
    lines = [f"### {sweep.name} ({sweep.folder})", "",
             f"{len(sweep.trials)} trials, direction {sweep.direction}"
             + (f", best value {best['value']:.4f} (trial {best.get('number')})" if best else ", no finished trial"),
             "", "| Trial | State | Value | Duration | Params |", "|---:|---|---:|---:|---|"]
    for t in sorted(sweep.trials, key=lambda t: (t.get("number") is None, t.get("number"))):
        value = "" if t.get("value") is None else f"{t['value']:.4f}"
        if t is best:
            value = f"**{value}**"
        duration = t.get("duration_s")
        params = ", ".join(f"{k}={_short(v)}" for k, v in (t.get("params") or {}).items())
        lines.append(f"| {t.get('number', '')} | {t.get('state', '')} | {value} | "
                     f"{_seconds(float(duration)) if isinstance(duration, (int, float)) else ''} | {params} |")
    lines.append("")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------------------------
# Building the report


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def _table_json(table: Table) -> dict:
    """The table's exact values (``None`` = missing), for scripts and for checking the markdown."""
    return {
        "columns": [{"key": c.key, "title": c.title, "better": c.better} for c in table.columns],
        "models": [{"label": m.label, "role": m.role, "folder": str(m.folder), "teachers": m.teacher_labels,
                    "values": {c.key: c.get(m) for c in table.columns}} for m in table.models],
        "best": table.best,
    }


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier report (the report folder is swapped whole)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "report.md").is_file():
        raise UserError(f"{out_dir}: exists, is not empty and holds no report.md; choose another --out "
                        f"(the report folder is replaced as a whole)")


def build_report(run_dirs: list[Path], out_dir: Path) -> ReportResult:
    """Write ``report.md``, ``report.json`` and the plots for the runs in ``run_dirs`` into ``out_dir``.

    The folder is built beside ``out_dir`` and swapped in whole, so a regenerated report never
    mixes plots of an earlier set of runs and a crash leaves the previous report intact.
    """
    from . import report_plots as rp

    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    models, sweeps, notes = load_runs([Path(d) for d in run_dirs])
    notes += assign_roles(models)
    table = build_table(models)
    colours = rp.model_colours([m.label for m in table.models])
    missing = notes + missing_results(models)
    students = [m for m in table.models if m.role == "student"]
    group = phenomenon_group(models)

    files: dict[str, bytes] = {}
    md = ["# Comparison report", "",
          "Built from the files in: " + ", ".join(f"`{d}`" for d in run_dirs) + ".",
          "Regenerate with `babyllama report " + " ".join(str(d) for d in run_dirs) + "`.", ""]

    md += ["## Models", ""]
    if table.models:
        md += [format_markdown_table(table), "",
               "Bold: best in column (lower loss and bits per byte, higher accuracy and GLUE score). "
               f"`{MISSING}`: the run folder holds no such result (see Missing results). "
               "Train time: training wall time.", ""]
    else:
        md += ["No model folders given.", ""]
    md += [line for budget in report_lines([Path(d) for d in run_dirs]) for line in (budget, "")]

    md += ["## Student margins", ""]
    if not students:
        md += ["No distillation model among the runs.", ""]
    for student in students:
        md.append(format_margins(student, student_margins(student, models, table)))

    md += ["## Training curves", ""]
    loss_png = rp.plot_losses({m.label: m.log for m in table.models}, colours)
    if loss_png:
        files["loss.png"] = loss_png
        md += ["Training cross-entropy (left; for a student its CE part, not the combined loss) and validation loss (right) against tokens seen.", "", "![loss](loss.png)", ""]
    else:
        md += ["No training logs (metrics.jsonl) to plot.", ""]
    kd_png = rp.plot_distill_parts({m.label: m.log for m in students}, colours)
    if kd_png:
        files["distill_loss.png"] = kd_png
        md += ["Distillation: the cross-entropy (CE) and distillation (KD) parts of the student's loss.", "",
               "![distillation loss](distill_loss.png)", ""]

    from .report_curves import curves_section

    md += curves_section(table.models, colours, files)

    md += ["## Phenomena", ""]
    if not students:
        md += ["No distillation model among the runs; nothing to break down.", ""]
    elif group is None:
        md += ["No per-subtask zero-shot results among the runs; nothing to break down.", ""]
    for student in students if group else []:
        if not _scores(student, group, "subtasks"):
            md += [f"{student.label}: no per-subtask {ZERO_SHOT_TITLES.get(group, group)} results.", ""]
            continue
        trio = comparison_set(student, models, group)
        slug = _slug(student.label)
        md += [f"### {student.label} ({ZERO_SHOT_TITLES.get(group, group)})", "", format_phenomena(trio, group)]
        series = {m.label: _scores(m, group, "fields") for m in trio}
        png = rp.plot_bars(series, colours, f"{ZERO_SHOT_TITLES.get(group, group)} accuracy per field", "accuracy")
        if png:
            files[f"fields_{slug}.png"] = png
            md += [f"![fields](fields_{slug}.png)", ""]
        paradigms = {m.label: _scores(m, group, "subtasks") for m in trio}
        png = rp.plot_paradigms(paradigms, colours, f"{ZERO_SHOT_TITLES.get(group, group)} accuracy per paradigm")
        if png:
            files[f"paradigms_{slug}.png"] = png
            md += [f"![paradigms](paradigms_{slug}.png)", ""]
        if len(trio) > 1 and trio[1].role == "teacher":
            fields_of = {k.split("/", 1)[1]: s.field for k, s in student.zero_shot.subtasks.items()
                         if k.split("/", 1)[0] == group}
            png = rp.plot_scatter(paradigms[student.label], paradigms[trio[1].label], fields_of,
                                  student.label, trio[1].label,
                                  f"{ZERO_SHOT_TITLES.get(group, group)} per paradigm: student against best teacher")
            if png:
                files[f"scatter_{slug}.png"] = png
                md += [f"![scatter](scatter_{slug}.png)", ""]

    md += ["## GLUE", ""]
    glue_series = {m.label: {t: e["value"] for t, e in m.glue.tasks.items()} for m in table.models if m.glue}
    glue_png = rp.plot_bars(glue_series, colours, "(Super)GLUE, per task", "score (task metric)")
    if glue_png:
        files["glue.png"] = glue_png
        md += ["Per-task scores are in the Models table (metric in the column title).", "", "![glue](glue.png)", ""]
    else:
        md += ["No GLUE results among the runs.", ""]

    if sweeps:
        md += ["## Sweeps", ""]
        for sweep in sweeps:
            md.append(format_sweep(sweep))
            png = rp.plot_sweep(sweep.trials, sweep.direction, f"sweep {sweep.name}")
            if png:
                files[f"sweep_{_slug(sweep.name)}.png"] = png
                md += [f"![sweep](sweep_{_slug(sweep.name)}.png)", ""]

    md += ["## Missing results", ""]
    md += [f"- {line}" for line in missing] or ["Nothing missing."]
    markdown = "\n".join(md).rstrip() + "\n"

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        atomic_write_text(tmp / "report.md", markdown)
        atomic_write_json(tmp / "report.json", {"table": _table_json(table), "missing": missing})
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
    return ReportResult(out_dir=out_dir, markdown=markdown, table=format_terminal_table(table),
                        report_path=out_dir / "report.md", plots=[out_dir / name for name in files],
                        missing=missing)


# --------------------------------------------------------------------------------------------
# Command line


def cmd_report(args) -> int:
    """Compare the models of one or more run folders: table, margins, plots (written to --out)."""
    run_dirs = [Path(d) for d in args.run_dirs]
    out = Path(args.out) if args.out else run_dirs[0] / "report"
    result = build_report(run_dirs, out)
    print(result.table)
    for line in result.missing:
        print(f"missing: {line}")
    print(f"report written to {result.report_path} ({len(result.plots)} plots)")
    return 0


def add_parser(subparsers) -> None:
    """Add ``babyllama report RUN_DIR [RUN_DIR ...] [--out DIR]`` to the command line."""
    p = subparsers.add_parser("report", help="compare runs: table, student margins, plots",
                              description=cmd_report.__doc__ + " Each RUN_DIR is an experiment folder, a model "
                              "folder (holding metrics.json) or a sweep folder (trials.json).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run, model or sweep folder(s)")
    p.add_argument("--out", default=None, metavar="DIR", help="report folder (default: FIRST_RUN_DIR/report)")
    p.set_defaults(func=cmd_report)
