"""Hyperparameter sweeps: ``babyllama sweep SWEEP.yaml`` tunes one stage of an experiment.

The paper's claim that the distilled student's advantage is not explained by badly tuned
teachers rests on such a sweep. A sweep file names a base experiment, the model (stage) of it to
tune, the metric to optimise and its direction, the number of trials and a search space (see
:mod:`babyllama.sweep_space`). Each trial applies its sampled values to that model's stage
config, validates the result like any experiment, and trains only that model into
``SWEEP_DIR/trial-NNNN/MODEL/``; the corpus, tokenizer, token cache and (for a distillation
stage) the teachers are prepared once in ``SWEEP_DIR/shared/`` and shared by every trial.

Search: Optuna's TPE sampler (seeded) with Hyperband pruning on the validation loss reported at
each evaluation (the resource is the number of training tokens seen, so trials with different
batch sizes are compared at equal compute). Storage: a SQLite file in the sweep folder,
or any database URL Optuna accepts (``--storage``), so several ``babyllama sweep`` processes, on
one machine or many, run trials of one study in parallel. A killed sweep started again continues
its study: trials whose worker died are marked failed (at once when the worker ran on this
machine, after the heartbeat grace period otherwise). A failing trial (NaN loss, a sampled
combination the config refuses) is recorded as failed with its reason and the sweep goes on.

Outputs in the sweep folder: ``sweep.yaml`` (the resolved sweep definition), ``trials.json``
and ``trials.md`` (one row per trial: parameters, metric, state, duration, reason),
``best.yaml`` (the best trial as a ready-to-run experiment, also printed by ``--best``) and PNG
plots (optimisation history, learning curves, parameter importances, slices, parallel
coordinates).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import math
import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import (ExperimentConfig, StageConfig, apply_overrides, config_hash, dump_yaml, from_dict, load_yaml,
                     resolve_experiment, to_dict)
from .errors import UserError
from .io import atomic_write_json, atomic_write_text
from .preemption import Preempted
from .sweep_space import Param, parse_space

#: Metrics of ``metrics.json`` written by training; ``zero_shot.*`` and ``glue.*`` need evaluation.
TRAIN_METRICS = ("val_loss", "val_bpb", "test_loss", "test_bpb", "wall_time_s", "tokens_per_s")
EVALUATED_METRICS = ("zero_shot", "glue")
#: Stage config sections a search space may reach into.
TUNABLE_SECTIONS = ("model", "train", "distill")
HOST = socket.gethostname()


def _log(message: str) -> None:
    print(f"[babyllama] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# The sweep file


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
    """The keys of a sweep file besides ``space`` and ``overrides`` (see the module docstring)."""

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
                _experiment_with(experiment_data, base, file.stage, {param.key: value})
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


def _stage_with(base: ExperimentConfig, model: str, values: dict[str, Any]) -> dict:
    """The resolved stage dict of ``model`` with the searched ``values`` set."""
    stage = to_dict(base.models[model])
    for key, value in values.items():
        _set_path(stage, key, value)
    return stage


def _experiment_with(experiment_data: dict, base: ExperimentConfig, stage: str, values: dict[str, Any],
                     models: list[str] | None = None) -> ExperimentConfig:
    """The base experiment with ``values`` applied to ``models`` (default: the tuned stage), validated."""
    data = copy.deepcopy(experiment_data)
    for model in models or [stage]:
        data["models"][model] = _stage_with(base, model, values)
    return resolve_experiment(data, "sweep trial")


# --------------------------------------------------------------------------------------------
# The study


def _optuna():
    """Import Optuna quietly: its own log lines are replaced by the sweep's."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(sweep: Sweep):
    """The Optuna RDB storage of ``sweep``, with heartbeats so dead workers' trials get failed."""
    optuna = _optuna()
    engine = {"connect_args": {"timeout": 300}} if sweep.storage.startswith("sqlite") else {}
    if sweep.storage.startswith("sqlite:///"):
        Path(sweep.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(sweep.storage, engine_kwargs=engine, heartbeat_interval=sweep.file.heartbeat_s,
                                          grace_period=sweep.file.grace_s or 3 * sweep.file.heartbeat_s)
    except Exception as exc:  # a bad URL, a missing database driver, an unreachable server
        raise UserError(f"--storage {_safe_url(sweep.storage)}: cannot open the study database "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def _safe_url(url: str) -> str:
    """``url`` with any password hidden, for messages and files."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: the message shows it as given
        return url


def open_study(sweep: Sweep, storage, create: bool = True):
    """Create or load the study; refuse one created from a different sweep definition."""
    optuna = _optuna()
    pruner = (optuna.pruners.HyperbandPruner(min_resource=sweep.file.pruner.min_resource,
                                             max_resource=sweep.file.pruner.max_resource or "auto",
                                             reduction_factor=sweep.file.pruner.reduction_factor)
              if sweep.file.pruner is not None else optuna.pruners.NopPruner())
    sampler = _sampler(sweep, 0)
    if create:
        study = optuna.create_study(study_name=sweep.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction=sweep.direction, load_if_exists=True)
    else:
        try:
            study = optuna.load_study(study_name=sweep.study_name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            raise UserError(f"{_safe_url(sweep.storage)}: no study named {sweep.study_name!r}; "
                            f"run `babyllama sweep {sweep.path}` first") from None
    recorded = study.user_attrs.get("sweep_fingerprint")
    if recorded is None and create:
        study.set_user_attr("sweep_fingerprint", sweep.fingerprint())
    elif recorded is not None and recorded != sweep.fingerprint():
        raise UserError(f"{sweep.path}: study {sweep.study_name!r} in {_safe_url(sweep.storage)} was created by a "
                        f"different sweep (base experiment, stage, metric, direction or space differ); use another "
                        f"--study-name or --out, or restore the original sweep file")
    return study


def _sampler(sweep: Sweep, trial_number: int):
    """TPE seeded by the sweep's seed and the trial's number.

    The objective installs it at the start of each trial, before anything is sampled: the
    number is unique in the study, so parallel workers never draw the same random start-up
    values, and a given trial draws the same values given the same history, resumed or not.
    """
    optuna = _optuna()
    return optuna.samplers.TPESampler(seed=sweep.file.seed * 1_000_003 + trial_number,
                                      n_startup_trials=sweep.file.startup_trials)


def fail_lost_trials(study, storage) -> list[int]:
    """Mark failed the RUNNING trials whose worker is gone; return their numbers.

    A worker on this machine is gone when its process no longer exists (known at once); a
    worker elsewhere when its heartbeat is older than the grace period.
    """
    optuna = _optuna()
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in running:
        worker = t.user_attrs.get("worker") or {}
        pid = worker.get("pid")
        if worker.get("host") == HOST and isinstance(pid, int) and pid != os.getpid() and not _alive(pid):
            try:
                # FrozenTrial keeps the storage id only as _trial_id; Optuna has no public getter.
                storage.set_trial_user_attr(t._trial_id, "reason",
                                            f"worker process {pid} on {HOST} ended while the trial was running")
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker failed it first
    optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted({t.number for t in running} - after)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------
# Shared inputs and one trial


@dataclass
class SharedInputs:
    """What every trial reads: the tokenizer, the token arrays and the teacher folders."""

    tokenizer: object
    data: object
    teacher_dirs: list[Path]


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive file lock, so parallel workers prepare the shared inputs once."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_shared(sweep: Sweep, progress: bool) -> SharedInputs:
    """Prepare the corpus, tokenizer and token cache in ``SWEEP_DIR/shared`` (and train the teachers
    of a distillation stage there, unless the sweep file names their folders)."""
    from .pipeline import load_token_data, run_experiment, run_prepare, run_tokenizer

    shared = sweep.sweep_dir / "shared"
    config = sweep.base
    stage = config.models[sweep.stage]
    with _locked(shared / ".lock"):
        ancestors: list[str] = []

        def visit(model: str) -> None:
            for teacher in config.models[model].teachers:
                if teacher in config.models and teacher not in ancestors:
                    visit(teacher)
                    ancestors.append(teacher)

        for teacher in stage.teachers:
            if teacher in config.models and teacher not in sweep.file.teachers and teacher not in ancestors:
                visit(teacher)
                ancestors.append(teacher)
        if ancestors:
            _log(f"sweep {sweep.study_name}: training the teachers once: {', '.join(ancestors)} -> {shared}")
            teachers_only = dataclasses.replace(config, run_dir=str(shared),
                                                models={m: config.models[m] for m in ancestors})
            run_experiment(teachers_only, progress=progress, evaluate=False)
        prepared = run_prepare(config.corpus, shared / "corpus")
        tokenizer = run_tokenizer(config.tokenizer, prepared, shared / "tokenizer")
        own = run_prepare(stage.corpus, shared / f"corpus-{sweep.stage}") if stage.corpus else prepared
        if stage.tokenizer is not None:
            tokenizer = run_tokenizer(stage.tokenizer, own, shared / f"tokenizer-{sweep.stage}")
        data = load_token_data(own, tokenizer, shared / "cache", (stage.tokenizer or config.tokenizer).encoding)
    teacher_dirs = [Path(sweep.file.teachers[t]) if t in sweep.file.teachers
                    else (shared / t if t in config.models else Path(t)) for t in stage.teachers]
    return SharedInputs(tokenizer=tokenizer, data=data, teacher_dirs=teacher_dirs)


def trial_dir(sweep: Sweep, number: int) -> Path:
    return sweep.sweep_dir / f"trial-{number:04d}"


def trial_experiment(sweep: Sweep, values: dict[str, Any], number: int, teacher_dirs: list[Path]) -> ExperimentConfig:
    """The one-model experiment a trial runs: the tuned stage with ``values``, teachers as folders."""
    stage = _stage_with(sweep.base, sweep.stage, values)
    stage["teachers"] = [str(p.resolve()) for p in teacher_dirs]
    stage["train"]["word_checkpoints"] = []  # a trial is a search point, not a submission: no chck_* folders
    data = copy.deepcopy(sweep.experiment_data)
    data.update(name=f"{sweep.study_name}-trial-{number:04d}", run_dir=str(trial_dir(sweep, number)),
                models={sweep.stage: stage})
    return resolve_experiment(data, f"trial {number}")


def _metric_value(metrics: dict, metric: str) -> float:
    node: Any = metrics
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"metrics.json has no {metric}")
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        raise UserError(f"metric {metric} is {node!r}, not a finite number")
    return float(node)


def make_objective(sweep: Sweep, shared: SharedInputs, progress: bool):
    """The Optuna objective: sample, resolve, train (reporting validation loss), read the metric."""
    optuna = _optuna()
    from .train import Stopped, train_stage

    sign = 1.0 if sweep.direction == "minimize" else -1.0

    def objective(trial) -> float:
        trial.set_user_attr("worker", {"host": HOST, "pid": os.getpid()})
        # Trial reads study.sampler at each suggestion (TPE's before_trial hook does nothing).
        trial.study.sampler = _sampler(sweep, trial.number)
        searched, values = {}, {}
        for param in sweep.space:
            searched[param.label], values[param.key] = param.sample(trial)
        trial.set_user_attr("values", values)
        trial.set_user_attr("searched", searched)
        folder = trial_dir(sweep, trial.number)
        shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        _log(f"sweep {sweep.study_name}: trial {trial.number}: {shown}")
        pruned_at: list[int] = []

        def on_eval(step: int, val_loss: float) -> None:
            # Hyperband compares in the study's direction: when maximising, the loss is negated.
            t = config.models[sweep.stage].train
            trial.report(sign * val_loss, step * t.batch_size * t.seq_length)
            if trial.should_prune():
                pruned_at.append(step)
                raise Stopped

        try:
            config = trial_experiment(sweep, values, trial.number, shared.teacher_dirs)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / "experiment.yaml", dump_yaml(config))
            metrics = train_stage(sweep.stage, config.models[sweep.stage], shared.tokenizer, shared.data,
                                  folder / sweep.stage, shared.teacher_dirs, on_eval=on_eval, progress=progress)
            if pruned_at:
                trial.set_user_attr("pruned_at_step", pruned_at[0])
                _log(f"sweep {sweep.study_name}: trial {trial.number} pruned at step {pruned_at[0]} "
                     f"(val_loss {metrics['val_loss']:.4f})")
                raise optuna.TrialPruned(f"pruned at step {pruned_at[0]}")
            if sweep.file.metric.split(".")[0] in EVALUATED_METRICS:
                from .evaluate_stage import evaluate_models

                metrics = evaluate_models(config, [sweep.stage], progress=progress)[sweep.stage]
            value = _metric_value(metrics, sweep.file.metric)
        except (optuna.TrialPruned, Preempted):
            raise  # a signal stops the worker (Optuna marks the trial failed); a rerun continues the study
        except UserError as exc:
            return _failed(trial, sweep, str(exc))
        except Exception as exc:  # a trial's crash must not end the sweep: record it, keep the traceback
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / "error.txt", traceback.format_exc())
            return _failed(trial, sweep, f"{type(exc).__name__}: {exc} (traceback in {folder / 'error.txt'})")
        _log(f"sweep {sweep.study_name}: trial {trial.number} finished: {sweep.file.metric} {value:.4f}")
        return value

    return objective


def _failed(trial, sweep: Sweep, reason: str) -> float:
    """Record why a trial failed; NaN makes Optuna mark it failed and carry on."""
    trial.set_user_attr("reason", reason)
    _log(f"sweep {sweep.study_name}: trial {trial.number} failed: {reason}")
    return float("nan")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------------------------
# Running a sweep


def run_sweep(sweep: Sweep, progress: bool = True) -> dict:
    """Run trials until the study holds ``trials`` finished or running ones; write the report.

    Failed trials do not count towards ``trials``; the sweep stops with an error once
    ``max_failures`` trials have failed. Returns a summary ``{"trials": [...], "best": ...}``.
    """
    _optuna()
    from optuna.trial import TrialState

    sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    with _locked(sweep.sweep_dir / ".study.lock"):  # workers starting together would race to create the tables
        storage = open_storage(sweep)
        study = open_study(sweep, storage)
    atomic_write_text(sweep.sweep_dir / "sweep.yaml", _resolved_sweep_yaml(sweep))
    objective = None
    while True:
        lost = fail_lost_trials(study, storage)
        if lost:
            _log(f"sweep {sweep.study_name}: trial(s) {', '.join(map(str, lost))} lost their worker: marked failed")
        trials = study.get_trials(deepcopy=False)
        counted = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) for t in trials)
        failed = sum(t.state == TrialState.FAIL for t in trials)
        if counted >= sweep.file.trials:
            break
        if failed >= sweep.max_failures:
            write_report(sweep, study)
            raise UserError(f"sweep {sweep.study_name}: {failed} trials failed (max_failures {sweep.max_failures}); "
                            f"reasons in {sweep.sweep_dir / 'trials.md'}")
        if objective is None:
            objective = make_objective(sweep, prepare_shared(sweep, progress), progress)
            _log(f"sweep {sweep.study_name}: {counted} of {sweep.file.trials} trials done or running; "
                 f"study in {_safe_url(sweep.storage)}")
        study.optimize(objective, n_trials=1, gc_after_trial=True)
        write_tables(sweep, study)
    return write_report(sweep, study)


def _resolved_sweep_yaml(sweep: Sweep) -> str:
    """The sweep definition as run: the file's settings with defaults, paths and study made explicit."""
    import yaml

    data = to_dict(sweep.file)
    data.update(experiment=str((sweep.path.parent / sweep.file.experiment).resolve()
                               if not Path(sweep.file.experiment).is_absolute() else sweep.file.experiment),
                name=sweep.study_name, sweep_dir=str(sweep.sweep_dir), storage=_safe_url(sweep.storage),
                direction=sweep.direction)
    data["overrides"] = sweep.raw.get("overrides") or {}
    data["space"] = sweep.raw["space"]
    return (f"# resolved from {sweep.path}; study {sweep.study_name}\n"
            + yaml.safe_dump(data, sort_keys=False))


# --------------------------------------------------------------------------------------------
# Report


def trial_records(sweep: Sweep, study) -> list[dict]:
    """One plain record per trial, as written to ``trials.json``.

    ``value`` is the metric of a completed trial (``null`` otherwise: a pruned trial's last
    validation loss is in ``val_loss_by_tokens``); ``params`` are the config values set.
    """
    from optuna.trial import TrialState

    sign = 1.0 if sweep.direction == "minimize" else -1.0
    records = []
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False):
        end = t.datetime_complete or (now if t.state == TrialState.RUNNING else None)
        duration = (end - t.datetime_start).total_seconds() if end and t.datetime_start else None
        reason = t.user_attrs.get("reason")
        if t.state == TrialState.FAIL and reason is None:
            reason = "the worker stopped before the trial finished (killed, interrupted or lost its heartbeat)"
        if t.state == TrialState.PRUNED:
            reason = f"pruned at step {t.user_attrs.get('pruned_at_step', t.last_step)}"
        records.append({
            "number": t.number, "state": t.state.name,
            "value": t.value if t.state == TrialState.COMPLETE else None,
            "params": t.user_attrs.get("values", dict(t.params)),
            "duration_s": round(duration, 3) if duration is not None else None,
            "reason": reason,
            "val_loss_by_tokens": {str(n): sign * v for n, v in sorted(t.intermediate_values.items())},
            "folder": trial_dir(sweep, t.number).name,
        })
    return records


def write_tables(sweep: Sweep, study) -> list[dict]:
    """Write ``trials.json``, ``trials.md`` and ``best.yaml`` (cheap: after every trial)."""
    records = trial_records(sweep, study)
    atomic_write_json(sweep.sweep_dir / "trials.json", records)
    atomic_write_text(sweep.sweep_dir / "trials.md", format_trials(sweep, records))
    best = _best(records, sweep.direction)
    if best is not None:
        atomic_write_text(sweep.sweep_dir / "best.yaml", best_experiment_text(sweep, study))
    return records


def _best(records: list[dict], direction: str) -> dict | None:
    done = [r for r in records if r["value"] is not None]
    if not done:
        return None
    return (max if direction == "maximize" else min)(done, key=lambda r: r["value"])


def format_trials(sweep: Sweep, records: list[dict]) -> str:
    """Markdown: the sweep's settings, counts by state, the best trial and a table of all trials."""
    keys = [p.key for p in sweep.space]
    states: dict[str, int] = {}
    for r in records:
        states[r["state"]] = states.get(r["state"], 0) + 1
    best = _best(records, sweep.direction)
    lines = [f"# Sweep {sweep.study_name}", "",
             f"Tuning `{sweep.stage}` of `{sweep.file.experiment}` for `{sweep.file.metric}` ({sweep.direction}); "
             f"study in `{_safe_url(sweep.storage)}`.", "",
             "Trials: " + (", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) or "none yet") + ".", ""]
    if best is not None:
        lines += [f"Best: trial {best['number']}, {sweep.file.metric} = {best['value']:.4f}; "
                  f"`babyllama sweep {sweep.path} --best` prints it as an experiment file.", ""]
    lines += ["| Trial | State | " + sweep.file.metric + " | Duration (s) | " + " | ".join(keys) + " | Reason |",
              "|---:|---|---:|---:|" + "---:|" * len(keys) + "---|"]
    for r in records:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        if r is best:
            value = f"**{value}**"
        duration = "" if r["duration_s"] is None else f"{r['duration_s']:.1f}"
        params = " | ".join(_short(r["params"][k]) if k in r["params"] else "" for k in keys)
        reason = (r["reason"] or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['number']} | {r['state'].lower()} | {value} | {duration} | {params} | {reason} |")
    return "\n".join(lines) + "\n"


def write_report(sweep: Sweep, study) -> dict:
    """Tables and PNG plots; return ``{"trials": records, "best": best record or None, "plots": [...]}``."""
    records = write_tables(sweep, study)
    plots = write_plots(sweep, study, sweep.sweep_dir)
    best = _best(records, sweep.direction)
    counts = {s: sum(r["state"] == s for r in records) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    _log(f"sweep {sweep.study_name}: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
         + (f"; best trial {best['number']}: {sweep.file.metric} {best['value']:.4f}" if best else "")
         + f"; report in {sweep.sweep_dir / 'trials.md'}")
    return {"trials": records, "best": best, "plots": [str(p) for p in plots]}


def display_study(sweep: Sweep, study):
    """An in-memory copy of the study whose parameters are the searched values.

    The stored study holds what Optuna sampled (a normal's quantile, an unquantised value); the
    plots should show what was searched (the quantised value, or ``1 - beta`` for a
    ``one_minus`` transform), on a log axis for log distributions. Every trial is copied, in
    order, so trial numbers in the plots match the study's.
    """
    optuna = _optuna()
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    trials = study.get_trials(deepcopy=False)
    distributions = {}
    for p in sweep.space:
        seen = [t.user_attrs["searched"][p.label] for t in trials if p.label in t.user_attrs.get("searched", {})]
        if not seen:
            continue
        if p.type == "categorical":
            distributions[p.label] = CategoricalDistribution(list(p.choices))
        else:
            lo, hi = float(min(seen)), float(max(seen))
            distributions[p.label] = FloatDistribution(lo, hi, log=p.is_log and lo > 0)
    shown = optuna.create_study(direction=sweep.direction)
    for t in trials:
        params = {k: (v if isinstance(distributions[k], CategoricalDistribution) else float(v))
                  for k, v in t.user_attrs.get("searched", {}).items() if k in distributions}
        finished = t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        shown.add_trial(create_trial(state=t.state if finished else TrialState.FAIL,
                                     value=t.value if t.state == TrialState.COMPLETE else None,
                                     params=params, distributions={k: distributions[k] for k in params},
                                     intermediate_values=dict(t.intermediate_values)))
    return shown


def write_plots(sweep: Sweep, study, folder: Path) -> list[Path]:
    """PNG plots of the sweep (matplotlib, Agg): history and learning curves, and with at least
    two completed trials slices, parallel coordinates and parameter importances of the
    parameters that took more than one value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    optuna = _optuna()
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as vis

    shown = display_study(sweep, study)
    complete = [t for t in shown.trials if t.state == TrialState.COMPLETE]
    if not [t for t in shown.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]:
        return []
    target_name = sweep.file.metric
    plots = {"history.png": lambda: vis.plot_optimization_history(shown, target_name=target_name),
             "intermediate.png": lambda: vis.plot_intermediate_values(shown)}
    varied = [p.label for p in sweep.space if len({repr(t.params.get(p.label)) for t in complete}) > 1]
    if len(complete) >= 2 and varied:
        plots["slice.png"] = lambda: vis.plot_slice(shown, params=varied, target_name=target_name)
        plots["parallel.png"] = lambda: vis.plot_parallel_coordinate(shown, params=varied, target_name=target_name)
        plots["importances.png"] = lambda: vis.plot_param_importances(
            shown, params=varied, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
            target_name=target_name)
    written = []
    for name, make in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # matplotlib layout notes on Optuna's figures
            ax = make()
            figure = np.atleast_1d(ax).ravel()[0].figure
            if name == "intermediate.png":
                figure.axes[0].set_xlabel("training tokens")
                figure.axes[0].set_ylabel("validation loss" + (" (negated)" if sweep.direction == "maximize" else ""))
            figure.set_size_inches(max(figure.get_size_inches()[0], 8), max(figure.get_size_inches()[1], 5))
            figure.tight_layout()
            path = folder / name
            tmp = folder / f".{name}.tmp.png"
            figure.savefig(tmp, dpi=100)
        os.replace(tmp, path)
        plt.close(figure)
        written.append(path)
    return written


# --------------------------------------------------------------------------------------------
# The best trial as an experiment


def best_experiment_text(sweep: Sweep, study) -> str:
    """The base experiment with the best trial's values applied to ``apply_best_to``, as YAML.

    The result is resolved (and so validated) before it is written; its ``run_dir`` is
    ``SWEEP_DIR/best`` so running it does not collide with the base experiment's folder.
    """
    try:
        best = study.best_trial
    except ValueError:
        raise UserError(f"sweep {sweep.study_name}: no completed trial yet") from None
    values = best.user_attrs.get("values", dict(best.params))
    config = _experiment_with(sweep.experiment_data, sweep.base, sweep.stage, values, sweep.file.apply_best_to)
    config.run_dir = str(sweep.sweep_dir / "best")
    config.name = f"{sweep.base.name}-tuned"
    header = [f"# Best trial {best.number} of sweep {sweep.study_name} ({sweep.path}): "
              f"{sweep.file.metric} = {best.value:.6g} ({sweep.direction})",
              f"# Tuned values, applied to {', '.join(sweep.file.apply_best_to)}:"]
    header += [f"#   {k}: {v}" for k, v in values.items()]
    header += [f"# Run it: babyllama run {sweep.sweep_dir / 'best.yaml'}", ""]
    return "\n".join(header) + dump_yaml(config)


# --------------------------------------------------------------------------------------------
# Command line


def cmd_sweep(args) -> int:
    """Tune one stage of an experiment with Optuna (TPE + Hyperband); resumable and parallel."""
    sweep = load_sweep(args.sweep, overrides=args.overrides, trials=args.trials, out=args.out,
                       storage=args.storage, study_name=args.study_name)
    if args.best:
        if sweep.storage.startswith("sqlite:///") and not Path(sweep.storage[len("sqlite:///"):]).is_file():
            raise UserError(f"{sweep.storage[len('sqlite:///'):]}: no study database; run `babyllama sweep "
                            f"{args.sweep}` first (or pass --out / --storage of an existing sweep)")
        study = open_study(sweep, open_storage(sweep), create=False)
        print(best_experiment_text(sweep, study), end="")
        return 0
    if sweep.file.trials > 0:
        from .preflight import preflight_sweep

        preflight_sweep(sweep)
    started = time.perf_counter()
    summary = run_sweep(sweep, progress=not args.quiet)
    _log(f"sweep {sweep.study_name}: done in {time.perf_counter() - started:.0f}s; plots: "
         + (", ".join(Path(p).name for p in summary["plots"]) or "none"))
    return 0


def add_parser(subparsers) -> None:
    """Add ``babyllama sweep SWEEP.yaml`` to the command line."""
    p = subparsers.add_parser(
        "sweep", help="hyperparameter search over one stage (Optuna TPE + Hyperband, resumable, parallel)",
        description="Tune one model of an experiment: each trial samples the search space of SWEEP.yaml, trains "
        "the model into SWEEP_DIR/trial-NNNN/ and reports its validation loss for Hyperband pruning. Run the same "
        "command again to resume a killed sweep, or in several shells / machines (with --storage) to run trials "
        "in parallel. Writes trials.json, trials.md, best.yaml and PNG plots to the sweep folder.")
    p.add_argument("sweep", metavar="SWEEP_YAML", help="sweep file (see configs/demo/sweep.yaml)")
    p.add_argument("--storage", metavar="URL", default=None,
                   help="Optuna database URL shared by all workers, e.g. postgresql://user:pw@host/db "
                   "(default: the file's storage, else sqlite:///SWEEP_DIR/study.db)")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="total trials the study should reach (completed, pruned or running; failures do not "
                   "count); overrides the file's trials; 0 only rewrites the report")
    p.add_argument("--best", action="store_true",
                   help="print the best trial as a ready-to-run experiment file and exit")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="sweep folder (default: the file's sweep_dir, else runs/sweep-NAME)")
    p.add_argument("--study-name", default=None, metavar="NAME",
                   help="Optuna study name (default: the file's name, else the file name without .yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                   help="override a key of the sweep file (YAML syntax), e.g. --set trials=5 or "
                   "--set overrides.train.max_steps=40; repeatable")
    p.add_argument("--quiet", action="store_true", help="no training progress lines")
    p.set_defaults(func=cmd_sweep)
