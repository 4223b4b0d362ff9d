"""The sweep file of ``babyllama sweep``: its keys, their validation, and the base experiment
with searched values applied.

:func:`load_sweep` reads a sweep file (described in :mod:`babyllama.sweep`), checks every
search-space key against the stage config and every parameter's bounds (or choices) against the
base experiment, and returns a :class:`Sweep`; :func:`stage_with` and :func:`experiment_with`
set searched values in a stage or in the whole experiment, for a trial and for the best one.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import (ExperimentConfig, StageConfig, apply_overrides, config_hash, from_dict, load_yaml,
                     resolve_experiment, to_dict)
from .errors import UserError
from .sweep_space import Param, parse_space

#: Metrics of ``metrics.json`` written by training; ``zero_shot.*`` and ``glue.*`` need evaluation.
TRAIN_METRICS = ("val_loss", "val_bpb", "test_loss", "test_bpb", "wall_time_s", "tokens_per_s")
EVALUATED_METRICS = ("zero_shot", "glue")
#: Stage config sections a search space may reach into.
TUNABLE_SECTIONS = ("model", "train", "distill")


@dataclass
class PrunerConfig:
    """Hyperband over training tokens: the first rung at ``min_resource`` tokens seen, the last
    at ``max_resource`` (``null``: the length of the first finished trial), each rung keeping
    about ``1 / reduction_factor`` of the trials that reach it. A rung is judged at the first
    evaluation at or past it, so put ``min_resource`` at (or just below) the tokens of the first
    evaluation: ``eval_every * batch_size * seq_length`` (or one epoch with ``eval_every: 0``)."""

    min_resource: int = 1
    max_resource: int | None = None
    reduction_factor: int = 3


@dataclass
class SweepFile:
    """The keys of a sweep file besides ``space`` and ``overrides`` (see :mod:`babyllama.sweep`)."""

    experiment: str = ""
    stage: str = ""
    name: str | None = None
    sweep_dir: str | None = None
    metric: str = "val_loss"
    direction: str | None = None
    trials: int = 20
    max_failures: int | None = None
    seed: int = 0
    startup_trials: int = 10
    pruner: PrunerConfig | None = field(default_factory=PrunerConfig)
    heartbeat_s: int = 60
    grace_s: int | None = None
    teachers: dict[str, str] = field(default_factory=dict)
    apply_best_to: list[str] = field(default_factory=list)
    storage: str | None = None


@dataclass
class Sweep:
    """A validated sweep: its file's settings, the resolved base experiment and the space."""

    path: Path
    file: SweepFile
    experiment_data: dict
    base: ExperimentConfig
    space: list[Param]
    sweep_dir: Path
    study_name: str
    storage: str
    direction: str
    raw: dict

    @property
    def stage(self) -> str:
        return self.file.stage

    @property
    def max_failures(self) -> int:
        return self.file.max_failures if self.file.max_failures is not None else max(self.file.trials, 1)

    def fingerprint(self) -> str:
        """Hash of what makes trials comparable; a study refuses workers with another one."""
        return config_hash({"experiment": self.experiment_data, "stage": self.stage, "metric": self.file.metric,
                            "direction": self.direction, "teachers": self.file.teachers,
                            "space": [dataclasses.asdict(p) for p in self.space]})


def load_sweep(path: str | Path, overrides: list[str] = (), trials: int | None = None, out: str | None = None,
               storage: str | None = None, study_name: str | None = None) -> Sweep:
    """Read, override (``--set`` applies to the sweep file) and validate a sweep file.

    Every search-space key is checked against the stage config, and each parameter's bounds (or
    choices) are applied to the base experiment and validated, before any trial starts.
    """
    path = Path(path)
    raw = apply_overrides(load_yaml(path), list(overrides))
    where = str(path)
    data = dict(raw)
    space_raw = data.pop("space", None)
    experiment_overrides = data.pop("overrides", None) or {}
    if not isinstance(experiment_overrides, dict):
        raise UserError(f"{where}: overrides: expected a mapping shaped like an experiment file")
    file = from_dict(SweepFile, data, where)
    if trials is not None:
        file.trials = trials
    if not file.experiment:
        raise UserError(f"{where}: experiment: missing (the base experiment file, relative to the sweep file)")
    if not file.stage:
        raise UserError(f"{where}: stage: missing (the model of the experiment to tune, e.g. teacher1)")
    for name, value, ok, expected in (("trials", file.trials, file.trials >= 0, ">= 0 (0 only rewrites the report)"),
                                      ("seed", file.seed, file.seed >= 0, ">= 0"),
                                      ("startup_trials", file.startup_trials, file.startup_trials >= 0, ">= 0"),
                                      ("heartbeat_s", file.heartbeat_s, file.heartbeat_s > 0, "> 0"),
                                      ("grace_s", file.grace_s, file.grace_s is None or file.grace_s > 0, "> 0"),
                                      ("max_failures", file.max_failures,
                                       file.max_failures is None or file.max_failures > 0, "> 0")):
        if not ok:
            raise UserError(f"{where}: {name}: got {value!r}, expected {expected}")
    if file.pruner is not None:
        p = file.pruner
        if p.min_resource < 1 or p.reduction_factor < 2 or (p.max_resource is not None and p.max_resource <= p.min_resource):
            raise UserError(f"{where}: pruner: expected min_resource >= 1, max_resource > min_resource (or null) "
                            f"and reduction_factor >= 2, got {to_dict(p)}")

    experiment_path = (path.parent / file.experiment) if not Path(file.experiment).is_absolute() else Path(file.experiment)
    experiment_data = _deep_merge(load_yaml(experiment_path), experiment_overrides)
    base = resolve_experiment(experiment_data, str(experiment_path))
    if file.stage not in base.models:
        raise UserError(f"{where}: stage: {file.stage!r} is not a model of {experiment_path} "
                        f"(models: {', '.join(base.models)})")
    stage = base.models[file.stage]
    for teacher, folder in file.teachers.items():
        if teacher not in stage.teachers:
            raise UserError(f"{where}: teachers.{teacher}: not a teacher of {file.stage} "
                            f"(teachers: {', '.join(stage.teachers) or 'none'})")
        if not Path(folder).is_dir():
            raise UserError(f"{where}: teachers.{teacher}: {folder} is not a model folder")
    for name in file.apply_best_to:
        if name not in base.models:
            raise UserError(f"{where}: apply_best_to: {name!r} is not a model of {experiment_path}")
    file.apply_best_to = file.apply_best_to or [file.stage]

    file.direction = file.direction or ("maximize" if file.metric.split(".")[0] in EVALUATED_METRICS else "minimize")
    if file.direction not in ("minimize", "maximize"):
        raise UserError(f"{where}: direction: got {file.direction!r}, expected minimize or maximize")
    _check_metric(file.metric, base, where)

    space = parse_space(space_raw, f"{where}: space")
    for param in space:
        check_key(param.key, f"{where}: space.{param.key}")
        for value in param.representatives():
            try:
                experiment_with(experiment_data, base, file.stage, {param.key: value})
            except UserError as exc:
                raise UserError(f"{where}: space.{param.key}: value {value!r} is refused: {exc}") from None

    name = study_name or file.name or path.stem
    sweep_dir = Path(out or file.sweep_dir or f"runs/sweep-{name}")
    url = storage or file.storage or f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
    return Sweep(path=path, file=file, experiment_data=experiment_data, base=base, space=space, sweep_dir=sweep_dir,
                 study_name=name, storage=url, direction=file.direction, raw=raw)


def _deep_merge(base: dict, extra: dict) -> dict:
    """``base`` with the nested mapping ``extra`` merged in (``extra`` wins on leaves)."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_metric(metric: str, base: ExperimentConfig, where: str) -> None:
    top = metric.split(".")[0]
    if top in EVALUATED_METRICS:
        if "." not in metric:
            raise UserError(f"{where}: metric: {metric!r} names a group; use {top}.TASK (e.g. zero_shot.blimp)")
        section = getattr(base.evaluation, top)
        if section is None or (top == "glue" and not section.data):
            raise UserError(f"{where}: metric: {metric} needs evaluation.{top} in the experiment")
    elif metric not in TRAIN_METRICS:
        raise UserError(f"{where}: metric: got {metric!r}, expected one of {', '.join(TRAIN_METRICS)}, "
                        f"zero_shot.TASK or glue.TASK")


def check_key(key: str, where: str) -> None:
    """Refuse a search-space key that does not name a single value of a stage config."""
    parts = key.split(".")
    if parts[0] not in TUNABLE_SECTIONS:
        raise UserError(f"{where}: unknown key; a searched key starts with one of {', '.join(TUNABLE_SECTIONS)}")
    node: Any = StageConfig()
    for i, part in enumerate(parts):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"{where}: {'.'.join(parts[:i])} is a list of {len(node)}; "
                                f"expected an index 0..{len(node) - 1}, got {part!r}")
            node = node[int(part)]
        elif dataclasses.is_dataclass(node):
            names = [f.name for f in dataclasses.fields(node)]
            if part not in names:
                raise UserError(f"{where}: unknown key {part!r} in {'.'.join(parts[:i])} "
                                f"(keys: {', '.join(names)})")
            node = getattr(node, part)
        else:
            raise UserError(f"{where}: {'.'.join(parts[:i])} is a value, not a section")
    if dataclasses.is_dataclass(node) or isinstance(node, (list, dict)):
        raise UserError(f"{where}: names a section, not a value")


def _set_path(data: dict, key: str, value: Any) -> None:
    """Set dotted ``key`` (integer parts index lists) in a stage dict."""
    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def stage_with(base: ExperimentConfig, model: str, values: dict[str, Any]) -> dict:
    """The resolved stage dict of ``model`` with the searched ``values`` set."""
    stage = to_dict(base.models[model])
    for key, value in values.items():
        _set_path(stage, key, value)
    return stage


def experiment_with(experiment_data: dict, base: ExperimentConfig, stage: str, values: dict[str, Any],
                     models: list[str] | None = None) -> ExperimentConfig:
    """The base experiment with ``values`` applied to ``models`` (default: the tuned stage), validated."""
    data = copy.deepcopy(experiment_data)
    for model in models or [stage]:
        data["models"][model] = stage_with(base, model, values)
    return resolve_experiment(data, "sweep trial")
