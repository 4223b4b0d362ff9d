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
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import UserError
from .io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text, read_jsonl
from .word_budget import report_lines

MISSING = "missing"

# Zero-shot groups always shown as columns (missing where absent), then optional ones when present.
ZERO_SHOT_ALWAYS = ("blimp", "blimp_supplement", "ewok")
ZERO_SHOT_TITLES = {"blimp": "BLiMP", "blimp_filtered": "BLiMP filt.", "blimp_supplement": "BLiMP suppl.",
                    "ewok": "EWoK", "builtin_pairs": "Built-in pairs"}
# Groups whose subtasks are the "phenomena" of the per-paradigm section, in order of preference.
PHENOMENON_GROUPS = ("blimp", "blimp_filtered", "blimp_supplement", "builtin_pairs", "ewok")
ROLE_ORDER = {"teacher": 0, "student": 1, "baseline": 2}
BOOTSTRAP_RESAMPLES = 10_000


# --------------------------------------------------------------------------------------------
# What the run folders hold


@dataclass
class Subtask:
    """One zero-shot subtask (a BLiMP paradigm, an EWoK domain) of one model.

    ``correct`` holds the per-item 0/1 correctness in the evaluator's fixed item order, or
    ``None`` when the results file does not record it (no paired interval is possible then).
    """

    accuracy: float
    field: str | None
    correct: np.ndarray | None


@dataclass
class ZeroShot:
    """A model's zero-shot scores: ``groups`` {task: accuracy}, ``subtasks`` {"task/name": Subtask},
    ``fields`` {"task/field": accuracy}."""

    groups: dict[str, float]
    subtasks: dict[str, Subtask]
    fields: dict[str, float]


@dataclass
class Glue:
    """A model's (Super)GLUE scores: per task ``{"metric", "value"}``, the average, and the tasks
    not evaluated with their reasons."""

    tasks: dict[str, dict]
    average: float | None
    missing: dict[str, str]


@dataclass
class ModelRun:
    """One trained model folder and everything the report reads from it.

    ``group`` is the experiment folder the model belongs to (its parent folder when the model
    folder itself was given, ``given_alone``); teachers and baselines are matched within a group. ``role`` is "teacher", "student" or
    "baseline" (set by :func:`assign_roles`); ``teacher_labels`` lists the labels of a student's
    teachers found among the loaded models.
    """

    label: str
    name: str
    folder: Path
    group: Path
    metrics: dict
    log: list[dict]
    zero_shot: ZeroShot | None
    glue: Glue | None
    given_alone: bool = False
    role: str = "baseline"
    teacher_labels: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.metrics.get("kind", "pretrain"))


@dataclass
class Sweep:
    """A hyperparameter-search folder: its trials (from ``trials.json``) and search direction."""

    name: str
    folder: Path
    trials: list[dict]
    direction: str


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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None


def _number(value: Any, path: Path, key: str) -> float | None:
    """``value`` as a float; ``None`` stays ``None`` (missing); anything else is a UserError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{path}: key {key!r} must be a number, got {value!r}")
    return float(value)


def _dict(value: Any, path: Path, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{path}: key {key!r} must be an object, got {type(value).__name__}")
    return value


def load_zero_shot(path: Path) -> ZeroShot:
    """Read a zero-shot ``results.json``.

    The documented shape is ``groups`` {task: acc}, ``subtasks`` {"task/name": {"accuracy",
    "field", "correct"}}, ``fields`` {"task/field": acc}; the evaluator's nested shape (``tasks``
    {task: {"accuracy", "subtasks", "fields"}}) is read as well, so either version renders.
    """
    data = _dict(_read_json(path), path, "<top level>")
    groups: dict[str, float] = {}
    subtasks: dict[str, Subtask] = {}
    fields: dict[str, float] = {}
    if "groups" in data or "subtasks" in data:
        for task, value in _dict(data.get("groups"), path, "groups").items():
            number = _number(value, path, f"groups.{task}")
            if number is not None:
                groups[task] = number
        for key, entry in _dict(data.get("subtasks"), path, "subtasks").items():
            subtasks[key] = _subtask(_dict(entry, path, f"subtasks.{key}"), path, f"subtasks.{key}")
        for key, value in _dict(data.get("fields"), path, "fields").items():
            number = _number(value.get("accuracy") if isinstance(value, dict) else value, path, f"fields.{key}")
            if number is not None:
                fields[key] = number
    else:
        for task, entry in _dict(data.get("tasks"), path, "tasks").items():
            entry = _dict(entry, path, f"tasks.{task}")
            number = _number(entry.get("accuracy"), path, f"tasks.{task}.accuracy")
            if number is not None:
                groups[task] = number
            for name, sub in _dict(entry.get("subtasks"), path, f"tasks.{task}.subtasks").items():
                subtasks[f"{task}/{name}"] = _subtask(_dict(sub, path, f"tasks.{task}.subtasks.{name}"), path,
                                                      f"tasks.{task}.subtasks.{name}")
            for name, value in _dict(entry.get("fields"), path, f"tasks.{task}.fields").items():
                acc = value.get("accuracy") if isinstance(value, dict) else value
                number = _number(acc, path, f"tasks.{task}.fields.{name}")
                if number is not None:
                    fields[f"{task}/{name}"] = number
    if not fields:
        fields = _fields_from_subtasks(subtasks)
    return ZeroShot(groups=groups, subtasks=subtasks, fields=fields)


def _subtask(entry: dict, path: Path, key: str) -> Subtask:
    accuracy = _number(entry.get("accuracy"), path, f"{key}.accuracy")
    if accuracy is None:
        raise UserError(f"{path}: key {key!r} has no accuracy")
    correct = entry.get("correct")
    if correct is not None:
        if not isinstance(correct, list) or not all(c in (0, 1) for c in correct):
            raise UserError(f"{path}: key {key}.correct must be a list of 0/1 values")
        correct = np.asarray(correct, dtype=np.int8)
    field_name = entry.get("field")
    return Subtask(accuracy=accuracy, field=field_name if isinstance(field_name, str) else None, correct=correct)


def _fields_from_subtasks(subtasks: dict[str, Subtask]) -> dict[str, float]:
    """Field scores as the unweighted mean of the field's subtask accuracies (the evaluator's rule)."""
    by_field: dict[str, list[float]] = {}
    for key, sub in subtasks.items():
        if sub.field is not None:
            by_field.setdefault(f"{key.split('/')[0]}/{sub.field}", []).append(sub.accuracy)
    return {key: float(np.mean(values)) for key, values in sorted(by_field.items())}


def load_glue(path: Path) -> Glue:
    """Read ``glue/glue_results.json``: ``tasks`` {task: {"metric", "value", ...}}, ``glue_average``, ``missing``."""
    data = _dict(_read_json(path), path, "<top level>")
    tasks = {}
    for task, entry in _dict(data.get("tasks"), path, "tasks").items():
        entry = _dict(entry, path, f"tasks.{task}")
        value = _number(entry.get("value"), path, f"tasks.{task}.value")
        if value is not None:
            tasks[task] = {"metric": str(entry.get("metric", "")), "value": value}
    missing = data.get("missing") or {}
    if isinstance(missing, list):
        missing = {task: "not evaluated" for task in missing}
    missing = {str(k): str(v) for k, v in _dict(missing, path, "missing").items()}
    return Glue(tasks=tasks, average=_number(data.get("glue_average"), path, "glue_average"), missing=missing)


def _glue_from_metrics(metrics: dict, path: Path) -> Glue | None:
    """GLUE group scores from ``metrics.json`` (used when ``glue/glue_results.json`` is absent)."""
    glue = _dict(metrics.get("glue"), path, "glue")
    if not glue:
        return None
    missing = glue.get("missing") or []
    missing = {task: "not evaluated" for task in missing} if isinstance(missing, list) else dict(missing)
    tasks = {task: {"metric": "", "value": _number(v, path, f"glue.{task}")}
             for task, v in glue.items() if task not in ("glue_average", "missing") and v is not None}
    return Glue(tasks=tasks, average=_number(glue.get("glue_average"), path, "glue.glue_average"), missing=missing)


def load_model(folder: Path, group: Path) -> ModelRun:
    """Read one model folder (it must hold ``metrics.json``)."""
    metrics_path = folder / "metrics.json"
    metrics = _dict(_read_json(metrics_path), metrics_path, "<top level>")
    for key in ("parameters", "tokens_seen", "val_loss", "val_bpb", "test_loss", "test_bpb", "wall_time_s"):
        _number(metrics.get(key), metrics_path, key)
    teachers = metrics.get("teachers") or []
    if not isinstance(teachers, list) or not all(isinstance(t, str) for t in teachers):
        raise UserError(f"{metrics_path}: key 'teachers' must be a list of names")
    log_path = folder / "metrics.jsonl"
    try:
        log = read_jsonl(log_path) if log_path.is_file() else []
    except json.JSONDecodeError as exc:
        raise UserError(f"{log_path}: invalid JSON line ({exc.msg})") from None
    zs_path = folder / "zero_shot" / "results.json"
    zero_shot = load_zero_shot(zs_path) if zs_path.is_file() else None
    if zero_shot is None and metrics.get("zero_shot"):
        groups = {k: _number(v, metrics_path, f"zero_shot.{k}")
                  for k, v in _dict(metrics["zero_shot"], metrics_path, "zero_shot").items()}
        zero_shot = ZeroShot(groups={k: v for k, v in groups.items() if v is not None}, subtasks={}, fields={})
    glue_path = folder / "glue" / "glue_results.json"
    glue = load_glue(glue_path) if glue_path.is_file() else _glue_from_metrics(metrics, metrics_path)
    name = str(metrics.get("name") or folder.name)
    return ModelRun(label=name, name=name, folder=folder, group=group, metrics=metrics, log=log,
                    zero_shot=zero_shot, glue=glue)


def load_sweep(folder: Path) -> Sweep:
    """Read a sweep folder's ``trials.json`` (list of {number, state, value, params, duration_s}) and
    its direction from ``sweep.yaml`` (``direction: minimize|maximize``, default minimize)."""
    direction = "minimize"
    spec = folder / "sweep.yaml"
    if spec.is_file():
        import yaml

        try:
            config = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{spec}: invalid YAML ({exc})") from None
        if isinstance(config, dict) and config.get("direction") in ("minimize", "maximize"):
            direction = config["direction"]
    trials_path = folder / "trials.json"
    trials = _read_json(trials_path) if trials_path.is_file() else []
    if not isinstance(trials, list) or not all(isinstance(t, dict) for t in trials):
        raise UserError(f"{trials_path}: expected a list of trial objects")
    for t in trials:
        _number(t.get("value"), trials_path, f"trial {t.get('number')}.value")
    return Sweep(name=folder.name, folder=folder, trials=trials, direction=direction)


def _is_sweep(folder: Path) -> bool:
    return (folder / "trials.json").is_file() or (folder / "sweep.yaml").is_file()


def load_runs(run_dirs: list[Path]) -> tuple[list[ModelRun], list[Sweep], list[str]]:
    """Models and sweeps found in ``run_dirs``, and notes on what could not be read.

    Each argument may be an experiment folder (one subfolder per model), a single model folder
    (holding ``metrics.json``) or a sweep folder (``trials.json`` / ``sweep.yaml``). Labels are
    the model names, prefixed with the experiment folder's name when the models come from more
    than one experiment (the full folder path where that still leaves two alike).
    """
    models: list[ModelRun] = []
    sweeps: list[Sweep] = []
    notes: list[str] = []
    seen: set[Path] = set()
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: not a folder (expected a run folder, a model folder or a sweep folder)")
        found = False
        if (run_dir / "metrics.json").is_file():
            if run_dir.resolve() not in seen:
                seen.add(run_dir.resolve())
                models.append(load_model(run_dir, run_dir.parent))
                models[-1].given_alone = True
            found = True
        if _is_sweep(run_dir):
            sweeps.append(load_sweep(run_dir))
            found = True
        if not found:
            for sub in sorted(p for p in run_dir.iterdir() if p.is_dir()):
                if (sub / "metrics.json").is_file():
                    if sub.resolve() not in seen:
                        seen.add(sub.resolve())
                        models.append(load_model(sub, run_dir))
                    found = True
                elif (sub / "metrics.jsonl").is_file():
                    notes.append(f"{sub}: training not finished (no metrics.json); left out")
                elif _is_sweep(sub):
                    sweeps.append(load_sweep(sub))
                    found = True
        if not found:
            raise UserError(f"{run_dir}: holds no metrics.json, no model folders with metrics.json and no sweep "
                            f"(trials.json); expected a run folder from `babyllama run`")
    if len({m.group.resolve() for m in models}) > 1:
        for m in models:
            m.label = f"{m.group.name}/{m.name}"
    labels = [m.label for m in models]
    for m in models:
        if labels.count(m.label) > 1:
            m.label = str(m.folder)
    return models, sweeps, notes


def assign_roles(models: list[ModelRun]) -> list[str]:
    """Set each model's role and each student's teachers; return notes on teachers not found.

    A distillation model is a student. A teacher reference (a model name or a folder path, as the
    student's ``metrics.json`` records it) is matched to a loaded model by folder, then by name
    within the student's experiment, then by name anywhere. Pretraining models named as someone's
    teacher are teachers; the other pretraining models are baselines.
    """
    notes = []
    by_folder = {m.folder.resolve(): m for m in models}
    for student in models:
        if student.kind != "distill":
            continue
        student.role = "student"
        for ref in student.metrics.get("teachers") or []:
            match = by_folder.get((student.group / ref).resolve()) or by_folder.get(Path(ref).resolve())
            if match is None:
                same_name = [m for m in models if m.name == Path(ref).name]
                local = [m for m in same_name if m.group == student.group]
                match = (local or same_name or [None])[0]
            if match is None:
                notes.append(f"{student.label}: teacher {ref!r} is not among the given runs")
                continue
            student.teacher_labels.append(match.label)
    teachers = {label for m in models for label in m.teacher_labels}
    for m in models:
        if m.kind != "distill":
            m.role = "teacher" if m.label in teachers else "baseline"
    return notes


# --------------------------------------------------------------------------------------------
# Paired bootstrap


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, strata: np.ndarray | None = None, *,
                        n_resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile interval for ``accuracy(a) - accuracy(b)`` on the same items, resampled in pairs.

    ``a`` and ``b`` are 0/1 arrays of shape (n_items,), item i of ``a`` and of ``b`` being the
    same item scored by two models; resampling whole items keeps the pairing, so the interval
    reflects only the disagreements. With ``strata`` (one label per item, e.g. the paradigm), the
    difference is the unweighted mean over strata of the per-stratum differences (how group
    scores average subtasks) and items are resampled within their stratum.

    Because each per-item difference is -1, 0 or +1, a resample of a stratum's n items is fully
    described by how many of each it draws: a multinomial draw with the observed proportions.
    That gives exactly the distribution of the usual index resampling in O(n_resamples) per
    stratum instead of O(n_resamples * n), so all of BLiMP takes milliseconds.
    Returns ``(low, high)``; identical arrays give ``(0.0, 0.0)``.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_bootstrap_ci needs two non-empty 1-d arrays of equal length, got {a.shape} and {b.shape}")
    if not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
        raise ValueError("paired_bootstrap_ci needs 0/1 correctness arrays")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    strata = np.zeros(a.size, dtype=np.int64) if strata is None else np.asarray(strata)
    if strata.shape != a.shape:
        raise ValueError(f"strata must have one label per item, got shape {strata.shape} for {a.shape[0]} items")
    diff = a.astype(np.int64) - b.astype(np.int64)
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    labels = np.unique(strata)
    for label in labels:
        d = diff[strata == label]
        n = d.size
        probs = np.array([(d == 1).sum(), (d == -1).sum(), (d == 0).sum()], dtype=np.float64) / n
        counts = rng.multinomial(n, probs, size=n_resamples)
        total += (counts[:, 0] - counts[:, 1]) / n
    total /= labels.size
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(total, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_items(x: ModelRun, y: ModelRun, group: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """The per-item correctness of ``x`` and ``y`` on ``group``'s subtasks, concatenated in the same
    order with the subtask index as stratum; or a reason why they cannot be paired."""
    if x.zero_shot is None or y.zero_shot is None:
        return "no zero-shot results"
    keys_x = sorted(k for k in x.zero_shot.subtasks if k.split("/")[0] == group)
    keys_y = sorted(k for k in y.zero_shot.subtasks if k.split("/")[0] == group)
    if not keys_x or not keys_y:
        return "no per-subtask results"
    if keys_x != keys_y:
        return "the two models were scored on different subtasks"
    a, b, strata = [], [], []
    for i, key in enumerate(keys_x):
        cx, cy = x.zero_shot.subtasks[key].correct, y.zero_shot.subtasks[key].correct
        if cx is None or cy is None:
            return "no per-item results (results.json lacks 'correct')"
        if cx.size != cy.size or cx.size == 0:
            return f"{key} has {cx.size} items for one model and {cy.size} for the other"
        a.append(cx)
        b.append(cy)
        strata.append(np.full(cx.size, i))
    return np.concatenate(a), np.concatenate(b), np.concatenate(strata)


# --------------------------------------------------------------------------------------------
# The table


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


# --------------------------------------------------------------------------------------------
# Margins


@dataclass
class Margin:
    """The student's difference to one reference model on one column, with its interval if any."""

    column: Column
    student: float | None
    reference: ModelRun | None
    reference_value: float | None
    interval: tuple[float, float] | None
    interval_note: str


def _best_model(models: list[ModelRun], col: Column) -> ModelRun | None:
    scored = [(col.get(m), m) for m in models if col.get(m) is not None]
    if not scored:
        return None
    pick = min if col.better == "lower" else max
    return pick(scored, key=lambda pair: pair[0])[1]


def baselines_for(student: ModelRun, models: list[ModelRun]) -> list[ModelRun]:
    """The baselines a student is compared with: those of its own experiment; failing that, the
    baselines given as single model folders (a user naming one folder means it as a comparison).
    A baseline of another experiment is not picked silently: scale and data may differ there."""
    baselines = [m for m in models if m.role == "baseline"]
    return [m for m in baselines if m.group == student.group] or [m for m in baselines if m.given_alone]


def student_margins(student: ModelRun, models: list[ModelRun], table: Table) -> dict[str, list[Margin]]:
    """The student's margins on every quality column over its best teacher and its best baseline
    (best chosen per column), keyed "teacher" and "baseline"."""
    by_label = {m.label: m for m in models}
    refs = {"teacher": [by_label[t] for t in student.teacher_labels], "baseline": baselines_for(student, models)}
    out: dict[str, list[Margin]] = {}
    for kind, candidates in refs.items():
        rows = []
        for col in table.columns:
            if col.better is None:
                continue
            ref = _best_model(candidates, col)
            value = col.get(student)
            interval, note = None, ""
            if col.zero_shot_group is not None and ref is not None and value is not None:
                pairs = paired_items(student, ref, col.zero_shot_group)
                if isinstance(pairs, str):
                    note = f"interval unavailable: {pairs}"
                else:
                    interval = paired_bootstrap_ci(*pairs[:2], pairs[2])
            rows.append(Margin(col, value, ref, None if ref is None else col.get(ref), interval, note))
        out[kind] = rows
    return out


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def format_margins(student: ModelRun, margins: dict[str, list[Margin]]) -> str:
    """Markdown table of a student's margins: difference = student minus reference, with the
    paired 95% interval and whether it excludes zero."""
    lines = [f"### {student.label}", "",
             "Difference = student minus reference; for loss and bpb lower is better, so a negative "
             "difference favours the student. Interval (zero-shot accuracies only, which are scored per "
             f"item): paired bootstrap over items, 95%, {BOOTSTRAP_RESAMPLES} resamples, subtasks weighted "
             "equally as in the group score; 'real' = the interval excludes zero.", ""]
    for kind, rows in margins.items():
        title = "best teacher" if kind == "teacher" else "best baseline"
        lines += [f"Against the {title} (per column):", "",
                  "| Metric | Student | Reference | Ref. value | Difference | 95% interval | Real? |",
                  "|---|---:|---|---:|---:|---|---|"]
        for r in rows:
            if r.reference is None or r.student is None or r.reference_value is None:
                who = r.reference.label if r.reference else f"no {kind}"
                lines.append(f"| {r.column.title} | {_or_missing(r.student, r.column.fmt)} | {who} | "
                             f"{_or_missing(r.reference_value, r.column.fmt)} | {MISSING} | | |")
                continue
            diff = r.student - r.reference_value
            if r.interval is not None:
                ci = f"[{_signed(r.interval[0])}, {_signed(r.interval[1])}]"
                real = "yes" if r.interval[0] > 0 or r.interval[1] < 0 else "no"
            else:
                ci, real = r.interval_note, ""
            lines.append(f"| {r.column.title} | {r.column.fmt(r.student)} | {r.reference.label} | "
                         f"{r.column.fmt(r.reference_value)} | {_signed(diff)} | {ci} | {real} |")
        lines.append("")
    return "\n".join(lines)


def _or_missing(value: float | None, fmt: Callable[[float], str]) -> str:
    return MISSING if value is None else fmt(value)


# --------------------------------------------------------------------------------------------
# Phenomena (per field, per paradigm)


def phenomenon_group(models: list[ModelRun]) -> str | None:
    """The zero-shot group whose subtasks the per-phenomenon section shows: BLiMP when some model
    has its subtasks, else the next group in ``PHENOMENON_GROUPS`` that some model has."""
    have = {k.split("/")[0] for m in models if m.zero_shot for k in m.zero_shot.subtasks}
    return next((g for g in PHENOMENON_GROUPS if g in have), None)


def comparison_set(student: ModelRun, models: list[ModelRun], group: str) -> list[ModelRun]:
    """The student, its best teacher and its best baseline on ``group`` (those that have it)."""
    col = Column(group, group, _zero_shot_group(group), _fixed3, "higher")
    by_label = {m.label: m for m in models}
    teacher = _best_model([by_label[t] for t in student.teacher_labels], col)
    baseline = _best_model(baselines_for(student, models), col)
    return [m for m in (student, teacher, baseline) if m is not None]


def _scores(m: ModelRun, group: str, what: str) -> dict[str, float]:
    """``what`` = "fields" or "subtasks": {name: accuracy} of ``m`` within ``group``."""
    if m.zero_shot is None:
        return {}
    if what == "fields":
        items = m.zero_shot.fields.items()
    else:
        items = ((k, s.accuracy) for k, s in m.zero_shot.subtasks.items())
    return {k.split("/", 1)[1]: v for k, v in items if k.split("/", 1)[0] == group}


def format_phenomena(trio: list[ModelRun], group: str) -> str:
    """Markdown tables of accuracy per field and per subtask for the student, best teacher and
    baseline, with the student's difference to each."""
    lines = []
    for what, title in (("fields", "Per field"), ("subtasks", "Per paradigm")):
        scores = [_scores(m, group, what) for m in trio]
        names = sorted(set().union(*scores))
        if not names:
            continue
        header = [title.split()[1].capitalize()] + [m.label for m in trio] + [f"Δ vs {m.label}" for m in trio[1:]]
        lines += [f"{title} ({ZERO_SHOT_TITLES.get(group, group)}):", "",
                  "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        for name in names:
            cells = [name] + [_or_missing(s.get(name), _fixed3) for s in scores]
            for s in scores[1:]:
                own, ref = scores[0].get(name), s.get(name)
                cells.append(MISSING if own is None or ref is None else _signed(own - ref))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


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
