"""The report of a sweep: ``trials.json``, ``trials.md``, PNG plots and ``best.yaml``.

:func:`write_tables` is cheap and runs after every trial; :func:`write_report` adds the plots
(Optuna's matplotlib figures of a copy of the study that shows the searched values). The best
trial becomes a ready-to-run experiment file with :func:`best_experiment_text`.
"""

from __future__ import annotations

import datetime
import os
import warnings
from pathlib import Path

from .config import dump_yaml
from .errors import UserError
from .io import atomic_write_json, atomic_write_text
from .sweep_file import Sweep, experiment_with
from .sweep_study import import_optuna, log, safe_url, short_value, trial_dir

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
             f"study in `{safe_url(sweep.storage)}`.", "",
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
        params = " | ".join(short_value(r["params"][k]) if k in r["params"] else "" for k in keys)
        reason = (r["reason"] or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['number']} | {r['state'].lower()} | {value} | {duration} | {params} | {reason} |")
    return "\n".join(lines) + "\n"


def write_report(sweep: Sweep, study) -> dict:
    """Tables and PNG plots; return ``{"trials": records, "best": best record or None, "plots": [...]}``."""
    records = write_tables(sweep, study)
    plots = write_plots(sweep, study, sweep.sweep_dir)
    best = _best(records, sweep.direction)
    counts = {s: sum(r["state"] == s for r in records) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    log(f"sweep {sweep.study_name}: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
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
    optuna = import_optuna()
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

    optuna = import_optuna()
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
    config = experiment_with(sweep.experiment_data, sweep.base, sweep.stage, values, sweep.file.apply_best_to)
    config.run_dir = str(sweep.sweep_dir / "best")
    config.name = f"{sweep.base.name}-tuned"
    header = [f"# Best trial {best.number} of sweep {sweep.study_name} ({sweep.path}): "
              f"{sweep.file.metric} = {best.value:.6g} ({sweep.direction})",
              f"# Tuned values, applied to {', '.join(sweep.file.apply_best_to)}:"]
    header += [f"#   {k}: {v}" for k, v in values.items()]
    header += [f"# Run it: babyllama run {sweep.sweep_dir / 'best.yaml'}", ""]
    return "\n".join(header) + dump_yaml(config)
