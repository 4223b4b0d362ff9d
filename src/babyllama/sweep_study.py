"""The Optuna study of a sweep and its trials: storage, sampler, lost workers, shared inputs and
the objective that trains one trial.

The study lives in an RDB storage with heartbeats (:func:`open_storage`, :func:`open_study`);
:func:`fail_lost_trials` fails the trials of dead workers. :func:`prepare_shared` prepares what
every trial reads once, in ``SWEEP_DIR/shared``, and :func:`make_objective` is the function
Optuna calls per trial: it samples, trains into ``SWEEP_DIR/trial-NNNN/`` reporting the
validation loss for pruning, and records a failing trial's reason instead of ending the sweep.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import socket
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ExperimentConfig, dump_yaml, resolve_experiment
from .errors import UserError
from .io import atomic_write_text
from .preemption import Preempted
from .sweep_file import EVALUATED_METRICS, Sweep, stage_with

HOST = socket.gethostname()


def log(message: str) -> None:
    print(f"[babyllama] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# The study


def import_optuna():
    """Import Optuna quietly: its own log lines are replaced by the sweep's."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(sweep: Sweep):
    """The Optuna RDB storage of ``sweep``, with heartbeats so dead workers' trials get failed."""
    optuna = import_optuna()
    engine = {"connect_args": {"timeout": 300}} if sweep.storage.startswith("sqlite") else {}
    if sweep.storage.startswith("sqlite:///"):
        Path(sweep.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(sweep.storage, engine_kwargs=engine, heartbeat_interval=sweep.file.heartbeat_s,
                                          grace_period=sweep.file.grace_s or 3 * sweep.file.heartbeat_s)
    except Exception as exc:  # a bad URL, a missing database driver, an unreachable server
        raise UserError(f"--storage {safe_url(sweep.storage)}: cannot open the study database "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def safe_url(url: str) -> str:
    """``url`` with any password hidden, for messages and files."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: the message shows it as given
        return url


def open_study(sweep: Sweep, storage, create: bool = True):
    """Create or load the study; refuse one created from a different sweep definition."""
    optuna = import_optuna()
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
            raise UserError(f"{safe_url(sweep.storage)}: no study named {sweep.study_name!r}; "
                            f"run `babyllama sweep {sweep.path}` first") from None
    recorded = study.user_attrs.get("sweep_fingerprint")
    if recorded is None and create:
        study.set_user_attr("sweep_fingerprint", sweep.fingerprint())
    elif recorded is not None and recorded != sweep.fingerprint():
        raise UserError(f"{sweep.path}: study {sweep.study_name!r} in {safe_url(sweep.storage)} was created by a "
                        f"different sweep (base experiment, stage, metric, direction or space differ); use another "
                        f"--study-name or --out, or restore the original sweep file")
    return study


def _sampler(sweep: Sweep, trial_number: int):
    """TPE seeded by the sweep's seed and the trial's number.

    The objective installs it at the start of each trial, before anything is sampled: the
    number is unique in the study, so parallel workers never draw the same random start-up
    values, and a given trial draws the same values given the same history, resumed or not.
    """
    optuna = import_optuna()
    return optuna.samplers.TPESampler(seed=sweep.file.seed * 1_000_003 + trial_number,
                                      n_startup_trials=sweep.file.startup_trials)


def fail_lost_trials(study, storage) -> list[int]:
    """Mark failed the RUNNING trials whose worker is gone; return their numbers.

    A worker on this machine is gone when its process no longer exists (known at once); a
    worker elsewhere when its heartbeat is older than the grace period.
    """
    optuna = import_optuna()
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
def locked(path: Path):
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
    with locked(shared / ".lock"):
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
            log(f"sweep {sweep.study_name}: training the teachers once: {', '.join(ancestors)} -> {shared}")
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
    stage = stage_with(sweep.base, sweep.stage, values)
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
    optuna = import_optuna()
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
        shown = ", ".join(f"{k}={short_value(v)}" for k, v in values.items())
        log(f"sweep {sweep.study_name}: trial {trial.number}: {shown}")
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
                log(f"sweep {sweep.study_name}: trial {trial.number} pruned at step {pruned_at[0]} "
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
        log(f"sweep {sweep.study_name}: trial {trial.number} finished: {sweep.file.metric} {value:.4f}")
        return value

    return objective


def _failed(trial, sweep: Sweep, reason: str) -> float:
    """Record why a trial failed; NaN makes Optuna mark it failed and carry on."""
    trial.set_user_attr("reason", reason)
    log(f"sweep {sweep.study_name}: trial {trial.number} failed: {reason}")
    return float("nan")


def short_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
