"""The student against its best teacher and best baseline: margins with paired intervals, phenomena.

``student_margins`` gives the student's difference to the best teacher and the best baseline on
every quality column of the table; for zero-shot accuracies it comes with a paired bootstrap 95%
interval (``paired_bootstrap_ci`` over the items both models scored, ``paired_items``), so a
reader can tell a real gap from noise. ``format_phenomena`` breaks a zero-shot group down per
field and per paradigm for the same three models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .report_runs import ModelRun
from .report_table import MISSING, ZERO_SHOT_TITLES, Column, Table, _fixed3, _or_missing, _signed, _zero_shot_group

# Groups whose subtasks are the "phenomena" of the per-paradigm section, in order of preference.
PHENOMENON_GROUPS = ("blimp", "blimp_filtered", "blimp_supplement", "builtin_pairs", "ewok")
BOOTSTRAP_RESAMPLES = 10_000


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


def best_model(models: list[ModelRun], measure) -> ModelRun | None:
    """The best of ``models`` by ``measure`` (a table :class:`Column` or a study metric: anything
    with ``get(model) -> float | None`` and ``better``, "lower" or "higher"); models without a
    value are passed over, ``None`` when none has one."""
    scored = [(measure.get(m), m) for m in models if measure.get(m) is not None]
    if not scored:
        return None
    pick = min if measure.better == "lower" else max
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
            ref = best_model(candidates, col)
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
    teacher = best_model([by_label[t] for t in student.teacher_labels], col)
    baseline = best_model(baselines_for(student, models), col)
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
