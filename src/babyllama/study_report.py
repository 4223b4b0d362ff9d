"""The report of a replicated study: spread across seeds, margins with hierarchical intervals.

Read from ``STUDY_DIR/study.json`` and the replicate run folders (``rep{r}/``), nothing
recomputed from models. Per metric (validation and test loss, each zero-shot group) it gives:

- each model's mean, standard deviation (ddof 1), minimum and maximum across replicates, and the
  same for "best teacher" (the better of each replicate's teachers on that metric);
- for the student and each arm, its *advantage* (positive = the student is better: lower loss,
  higher accuracy) over its own replicate's best teacher, over that replicate's best baseline, and
  (arms) over the replicate's plain student; the mean over replicates, a 95% interval, and the
  number of replicates in which it wins (advantage > 0). The reference is always the one of the
  same replicate: no seed is ever picked as "the best" across replicates.

Intervals. Zero-shot accuracies are scored per item, so their interval is a hierarchical
bootstrap (:func:`hierarchical_bootstrap_ci`): resample the replicates with replacement, then,
within every drawn replicate, resample its items in pairs (student and reference on the same
item), stratified by subtask with subtasks weighted equally as in the group score; the statistic
is the mean over the drawn replicates. It therefore carries both the seed variance and the item
variance. The best teacher is chosen per replicate on the observed score and kept fixed within
the resamples (which, if anything, favours the teacher). With few replicates the outer level sees
few distinct replicate sets and can understate the seed variance, so the report shows the
per-replicate values and the win count beside it. Losses are recorded per model, not per item, so
their interval is a Student-t interval over the per-replicate advantages
(:func:`replicate_t_interval`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
import numpy as np
from scipy import stats

from . import report_plots as rp
from .errors import UserError
from .io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from .report_margins import best_model, paired_items
from .report_runs import ModelRun, assign_roles, load_runs

RESAMPLES = 10_000
LEVEL = 0.95
LOSS_METRICS = ("val_loss", "test_loss")


# --------------------------------------------------------------------------------------------
# Bootstraps


def _stratum_resamples(a: np.ndarray, b: np.ndarray, strata: np.ndarray, size: int,
                       rng: np.random.Generator) -> np.ndarray:
    """``size`` item resamples of the stratum-averaged ``mean(a) - mean(b)``, shape (size,).

    Each per-item difference is -1, 0 or +1, so resampling a stratum's n items with replacement is
    a multinomial draw of how many of each (as in :func:`babyllama.report_margins.paired_bootstrap_ci`).
    """
    diff = a.astype(np.int64) - b.astype(np.int64)
    labels = np.unique(strata)
    total = np.zeros(size)
    for label in labels:
        d = diff[strata == label]
        probs = np.array([(d == 1).sum(), (d == -1).sum(), (d == 0).sum()], dtype=np.float64) / d.size
        counts = rng.multinomial(d.size, probs, size=size)
        total += (counts[:, 0] - counts[:, 1]) / d.size
    return total / labels.size


def hierarchical_bootstrap_ci(replicates: list[tuple[np.ndarray, np.ndarray, np.ndarray]], *,
                              n_resamples: int = RESAMPLES, level: float = LEVEL,
                              seed: int = 0) -> tuple[float, float]:
    """Percentile interval for the mean over replicates of ``accuracy(a) - accuracy(b)``.

    ``replicates``: one ``(a, b, strata)`` per replicate, ``a`` and ``b`` 0/1 arrays of shape
    (n_items,) scoring the same items (the student's and the reference's), ``strata`` the subtask
    label of each item. One resample draws R replicates with replacement and, for each draw, an
    independent stratified resample of that replicate's items; the statistic is the mean of the R
    stratum-averaged differences. Returns ``(low, high)``.
    """
    if not replicates:
        raise ValueError("hierarchical_bootstrap_ci needs at least one replicate")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    n = len(replicates)
    # inner[r, i, k]: resample i's k-th draw, had it drawn replicate r (independent item resamples).
    inner = np.empty((n, n_resamples, n))
    for r, (a, b, strata) in enumerate(replicates):
        a, b, strata = np.asarray(a), np.asarray(b), np.asarray(strata)
        if a.shape != b.shape or a.shape != strata.shape or a.ndim != 1 or a.size == 0:
            raise ValueError(f"replicate {r}: a, b and strata must be non-empty 1-d arrays of one length")
        if not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
            raise ValueError(f"replicate {r}: a and b must be 0/1 correctness arrays")
        inner[r] = _stratum_resamples(a, b, strata, n_resamples * n, rng).reshape(n_resamples, n)
    drawn = rng.integers(n, size=(n_resamples, n))
    stats = inner[drawn, np.arange(n_resamples)[:, None], np.arange(n)[None, :]].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return float(low), float(high)


def replicate_t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float] | None:
    """Student-t interval for the mean of per-replicate ``values`` (``None`` for one replicate).

    Used where only one number per model and replicate exists (losses): the replicates are then
    the sample, and the t quantile keeps a 3-replicate interval as wide as 3 numbers warrant.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("replicate_t_interval needs a non-empty list of values")
    if x.size < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return float(x.mean()) - half, float(x.mean()) + half


# --------------------------------------------------------------------------------------------
# Reading a study


@dataclass
class Metric:
    """One compared quantity: ``key`` (``val_loss`` or a zero-shot group), higher or lower better."""

    key: str
    better: str
    zero_shot_group: str | None

    def get(self, m: ModelRun) -> float | None:
        if self.zero_shot_group is None:
            value = m.metrics.get(self.key)
            return float(value) if isinstance(value, (int, float)) else None
        if m.zero_shot is None:
            return None
        return m.zero_shot.groups.get(self.zero_shot_group)

    def advantage(self, student: float, reference: float) -> float:
        """Positive when the student is better."""
        return reference - student if self.better == "lower" else student - reference


@dataclass
class Replicate:
    index: int
    folder: Path
    models: dict[str, ModelRun]


def load_study_folder(study_dir: Path) -> tuple[dict, list[Replicate], list[str]]:
    """``study.json`` and every replicate's models (roles assigned); notes on what is missing."""
    meta_path = study_dir / "study.json"
    if not meta_path.is_file():
        raise UserError(f"{study_dir}: no study.json (expected a folder written by `babyllama study`)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{meta_path}: invalid JSON ({exc.msg})") from None
    entries = meta.get("replicates") if isinstance(meta, dict) else None
    if (not isinstance(entries, list) or not isinstance(meta.get("student"), str)
            or not all(isinstance(e, dict) and isinstance(e.get("replicate"), int)
                       and isinstance(e.get("run_dir"), str) for e in entries)):
        raise UserError(f"{meta_path}: expected 'student' and a list 'replicates' of {{replicate, run_dir}} entries")
    reps, notes = [], []
    for entry in entries:
        folder = study_dir / entry["run_dir"]
        if not folder.is_dir():
            notes.append(f"{folder}: replicate not started")
            continue
        try:
            models, _, more = load_runs([folder])
        except UserError as exc:
            notes.append(f"{folder}: no finished model ({exc})")
            continue
        notes += more + assign_roles(models)
        reps.append(Replicate(entry["replicate"], folder, {m.name: m for m in models}))
    if not reps:
        raise UserError(f"{study_dir}: no replicate has a finished model yet")
    return meta, reps, notes


def study_metrics(reps: list[Replicate]) -> list[Metric]:
    """The losses, then every zero-shot group some model was scored on."""
    out = [Metric(k, "lower", None) for k in LOSS_METRICS
           if any(isinstance(m.metrics.get(k), (int, float)) for r in reps for m in r.models.values())]
    groups = sorted({g for r in reps for m in r.models.values() if m.zero_shot for g in m.zero_shot.groups})
    return out + [Metric(g, "higher", g) for g in groups]


def _references(rep: Replicate, contender: ModelRun, student: str) -> dict[str, list[ModelRun]]:
    """Candidate references of one contender in its replicate, by comparison kind."""
    refs = {"best teacher": [rep.models[t] for t in contender.teacher_labels if t in rep.models],
            "best baseline": [m for m in rep.models.values() if m.role == "baseline"]}
    if contender.name != student and student in rep.models:
        refs["student"] = [rep.models[student]]
    return refs


@dataclass
class Margin:
    """A contender's advantage over one kind of reference on one metric, across replicates."""

    contender: str
    reference: str
    metric: Metric
    per_replicate: list[float]
    references: list[str]
    interval: tuple[float, float] | None
    method: str

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_replicate))

    @property
    def wins(self) -> int:
        return sum(1 for a in self.per_replicate if a > 0)


def contender_margins(reps: list[Replicate], contender: str, student: str, metrics: list[Metric],
                      seed: int = 0) -> list[Margin]:
    """The contender's margins over each reference kind on each metric (replicates that have both)."""
    out = []
    kinds = ("best teacher", "best baseline") + (("student",) if contender != student else ())
    for metric in metrics:
        for kind in kinds:
            adv, names, items = [], [], []
            for rep in reps:
                c = rep.models.get(contender)
                if c is None or metric.get(c) is None:
                    continue
                ref = best_model(_references(rep, c, student).get(kind, []), metric)
                if ref is None:
                    continue
                adv.append(metric.advantage(metric.get(c), metric.get(ref)))
                names.append(f"rep{rep.index}/{ref.name}")
                if metric.zero_shot_group is not None:
                    pairs = paired_items(c, ref, metric.zero_shot_group)
                    items.append(pairs)
            if not adv:
                continue
            if metric.zero_shot_group is not None and items and all(not isinstance(p, str) for p in items):
                interval = hierarchical_bootstrap_ci(items, seed=seed)
                method = "hierarchical (replicates, then items)"
            else:
                interval = replicate_t_interval(adv)
                reason = ("no per-item losses" if metric.better == "lower"
                          else next((p for p in items if isinstance(p, str)), "no per-item results"))
                method = f"t over replicates ({reason})"
            out.append(Margin(contender, kind, metric, adv, names, interval, method))
    return out


# --------------------------------------------------------------------------------------------
# The report


@dataclass
class StudyReportResult:
    out_dir: Path
    report_path: Path
    markdown: str
    summary: str
    plots: list[Path]


def _fmt(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _spread_rows(reps: list[Replicate], names: list[str], metric: Metric) -> list[tuple[str, list[float]]]:
    rows = []
    for name in names:
        values = [metric.get(r.models[name]) for r in reps if name in r.models]
        rows.append((name, [v for v in values if v is not None]))
    best = []
    for rep in reps:
        teachers = [m for m in rep.models.values() if m.role == "teacher"]
        b = best_model(teachers, metric)
        if b is not None:
            best.append(metric.get(b))
    if best:
        rows.append(("best teacher (per replicate)", best))
    return rows


def _model_order(reps: list[Replicate], student: str, arm_models: list[str]) -> list[str]:
    names: list[str] = []
    for role in ("teacher", "baseline"):
        for rep in reps:
            names += [n for n, m in rep.models.items() if m.role == role and n not in names]
    return names + [n for n in [student] + arm_models if any(n in r.models for r in reps)]


def build_study_report(study_dir: Path, out_dir: Path | None = None, *, seed: int = 0) -> StudyReportResult:
    """Write ``report.md``, ``report.json`` and one loss plot per role to ``out_dir``
    (default ``STUDY_DIR/report``)."""
    study_dir = Path(study_dir)
    out_dir = Path(out_dir) if out_dir else study_dir / "report"
    meta, reps, notes = load_study_folder(study_dir)
    student = meta["student"]
    arm_models = [a["model"] for a in meta.get("arms", {}).values()]
    metrics = study_metrics(reps)
    names = _model_order(reps, student, arm_models)
    contenders = [n for n in [student] + arm_models if any(n in r.models for r in reps)]

    md = [f"# Study report: {study_dir}", "",
          f"{len(reps)} replicate(s) of {len(meta.get('replicates', []))}; seeds: {meta.get('seed_rule', '')} "
          f"(seed_stride {meta.get('seed_stride')}). Arms: "
          + (", ".join(f"`{a}` = {json.dumps(v['settings'])}" for a, v in meta.get("arms", {}).items()) or "none")
          + ".", ""]
    md += ["## Method", "",
           f"Advantage = how much better the contender is (reference minus contender for losses, contender "
           f"minus reference for accuracies), always against references of the *same* replicate: its own best "
           f"teacher (best of that replicate's teachers on that metric), the replicate's best baseline and, for "
           f"arms, the replicate's plain student. Mean = mean over replicates; wins = replicates with "
           f"advantage > 0. {int(LEVEL * 100)}% percentile intervals, {RESAMPLES} resamples. Zero-shot "
           f"accuracies: hierarchical bootstrap, resampling replicates with replacement, then each drawn "
           f"replicate's items in pairs, stratified by subtask (subtasks weighted equally as in the group "
           f"score), so the interval holds seed and item variance; the best teacher is chosen per replicate on "
           f"the observed score and kept fixed. With few replicates the outer resampling sees few distinct "
           f"replicate sets (3 replicates: 10), so this interval can understate the seed variance: read it "
           f"together with the win count and the per-replicate values. Losses are recorded per model, not "
           f"per item, so their interval is a Student-t interval over the per-replicate advantages. No seed "
           f"is ever picked as the best one.", ""]

    report_json: dict = {"study_dir": str(study_dir), "replicates": [r.index for r in reps], "spread": {},
                         "margins": [], "notes": notes, "wall_time_s": {}}
    md += ["## Spread across replicates", ""]
    for metric in metrics:
        md += [f"### {metric.key} ({metric.better} is better)", "",
               "| Model | n | Mean | SD | Min | Max | Per replicate |", "|---|---:|---:|---:|---:|---:|---|"]
        for name, values in _spread_rows(reps, names, metric):
            if not values:
                continue
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            md.append(f"| {name} | {len(values)} | {_fmt(float(np.mean(values)))} | "
                      f"{'-' if np.isnan(sd) else _fmt(sd)} | {_fmt(min(values))} | {_fmt(max(values))} | "
                      f"{', '.join(_fmt(v) for v in values)} |")
            report_json["spread"].setdefault(metric.key, {})[name] = {
                "values": values, "mean": float(np.mean(values)), "sd": None if np.isnan(sd) else sd}
        md.append("")

    md += ["## Margins", ""]
    summary = ["contender      reference      metric                  mean adv.   95% interval          wins"]
    for name in contenders:
        margins = contender_margins(reps, name, student, metrics, seed=seed)
        md += [f"### {name}", "",
               "| Metric | Against | Mean advantage | 95% interval | Excludes 0? | Wins | Per replicate | "
               "Interval method |", "|---|---|---:|---|---|---:|---|---|"]
        for m in margins:
            if m.interval is None:
                lo = hi = float("nan")
                verdict, ci = "-", "one replicate: none"
            else:
                lo, hi = m.interval
                verdict = "yes, better" if lo > 0 else ("yes, worse" if hi < 0 else "no")
                ci = f"[{_signed(lo)}, {_signed(hi)}]"
            md.append(f"| {m.metric.key} | {m.reference} | {_signed(m.mean)} | {ci} | "
                      f"{verdict} | {m.wins}/{len(m.per_replicate)} | "
                      f"{', '.join(_signed(a) for a in m.per_replicate)} | {m.method} |")
            summary.append(f"{name[:14]:<14} {m.reference[:14]:<14} {m.metric.key[:22]:<22} {m.mean:+.4f}     "
                           f"[{lo:+.4f}, {hi:+.4f}]   {m.wins}/{len(m.per_replicate)}")
            report_json["margins"].append({
                "contender": name, "reference": m.reference, "metric": m.metric.key, "better": m.metric.better,
                "mean_advantage": m.mean, "interval": None if m.interval is None else [lo, hi], "wins": m.wins,
                "replicates": len(m.per_replicate), "per_replicate": m.per_replicate,
                "references": m.references, "method": m.method})
        md.append("")

    md += ["## Wall time (training, from metrics.json)", "", "| Replicate | Models | Seconds |", "|---|---:|---:|"]
    for rep in reps:
        secs = sum(float(m.metrics.get("wall_time_s") or 0.0) for m in rep.models.values())
        report_json["wall_time_s"][f"rep{rep.index}"] = secs
        md.append(f"| rep{rep.index} | {len(rep.models)} | {secs:.0f} |")
    md.append("")

    files: dict[str, bytes] = {}
    md += ["## Loss curves (all replicates, one plot per role)", ""]
    for role, members in _roles(reps, student, arm_models).items():
        logs = {f"{n} rep{r.index}": r.models[n].log for r in reps for n in members if n in r.models}
        png = rp.plot_losses(logs, rp.model_colours(list(logs)))
        if png:
            fname = f"losses_{role}.png"
            files[fname] = png
            md += [f"### {role}", "", f"![{role}]({fname})", ""]
    md += ["## Notes", ""] + ([f"- {n}" for n in notes] or ["Nothing missing."])
    markdown = "\n".join(md).rstrip() + "\n"

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        atomic_write_text(tmp / "report.md", markdown)
        atomic_write_json(tmp / "report.json", report_json)
        for fname, data in files.items():
            atomic_write_bytes(tmp / fname, data)
    return StudyReportResult(out_dir=out_dir, report_path=out_dir / "report.md", markdown=markdown,
                             summary="\n".join(summary), plots=[out_dir / f for f in files])


def _roles(reps: list[Replicate], student: str, arm_models: list[str]) -> dict[str, list[str]]:
    """Role -> model names: teachers together, baselines together, the student and each arm alone."""
    out: dict[str, list[str]] = {}
    for role in ("teacher", "baseline"):
        members = sorted({n for r in reps for n, m in r.models.items() if m.role == role})
        if members:
            out[role] = members
    for name in [student] + arm_models:
        if any(name in r.models for r in reps):
            out[name] = [name]
    return out

