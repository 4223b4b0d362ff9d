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

This module runs a sweep and adds the command. The sweep file is read and validated by
:mod:`babyllama.sweep_file`; the Optuna study, the shared inputs and one trial are
:mod:`babyllama.sweep_study`; the tables, plots and ``best.yaml`` are :mod:`babyllama.sweep_report`.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import to_dict
from .errors import UserError
from .io import atomic_write_text
from .sweep_file import Sweep, load_sweep
from .sweep_report import best_experiment_text, write_report, write_tables
from .sweep_study import (fail_lost_trials, import_optuna, locked, log, make_objective, open_storage, open_study,
                          prepare_shared, safe_url)


# --------------------------------------------------------------------------------------------
# Running a sweep


def run_sweep(sweep: Sweep, progress: bool = True) -> dict:
    """Run trials until the study holds ``trials`` finished or running ones; write the report.

    Failed trials do not count towards ``trials``; the sweep stops with an error once
    ``max_failures`` trials have failed. Returns a summary ``{"trials": [...], "best": ...}``.
    """
    import_optuna()
    from optuna.trial import TrialState

    sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    with locked(sweep.sweep_dir / ".study.lock"):  # workers starting together would race to create the tables
        storage = open_storage(sweep)
        study = open_study(sweep, storage)
    atomic_write_text(sweep.sweep_dir / "sweep.yaml", _resolved_sweep_yaml(sweep))
    objective = None
    while True:
        lost = fail_lost_trials(study, storage)
        if lost:
            log(f"sweep {sweep.study_name}: trial(s) {', '.join(map(str, lost))} lost their worker: marked failed")
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
            log(f"sweep {sweep.study_name}: {counted} of {sweep.file.trials} trials done or running; "
                 f"study in {safe_url(sweep.storage)}")
        study.optimize(objective, n_trials=1, gc_after_trial=True)
        write_tables(sweep, study)
    return write_report(sweep, study)


def _resolved_sweep_yaml(sweep: Sweep) -> str:
    """The sweep definition as run: the file's settings with defaults, paths and study made explicit."""
    import yaml

    data = to_dict(sweep.file)
    data.update(experiment=str((sweep.path.parent / sweep.file.experiment).resolve()
                               if not Path(sweep.file.experiment).is_absolute() else sweep.file.experiment),
                name=sweep.study_name, sweep_dir=str(sweep.sweep_dir), storage=safe_url(sweep.storage),
                direction=sweep.direction)
    data["overrides"] = sweep.raw.get("overrides") or {}
    data["space"] = sweep.raw["space"]
    return (f"# resolved from {sweep.path}; study {sweep.study_name}\n"
            + yaml.safe_dump(data, sort_keys=False))
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
    log(f"sweep {sweep.study_name}: done in {time.perf_counter() - started:.0f}s; plots: "
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
