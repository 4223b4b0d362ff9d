"""Loading run folders for the report: the model folders, their results files and sweeps.

``load_runs`` reads what the run folders hold (docs/run-layout.md: ``metrics.json``,
``metrics.jsonl``, ``zero_shot/results.json``, ``glue/glue_results.json``, and a sweep's
``trials.json``) into small dataclasses, and ``assign_roles`` marks each model as teacher,
student or baseline. Unreadable or malformed files end in a :class:`UserError` naming the file
and key; results that are absent stay ``None``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .io import read_jsonl


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
