"""Replicated comparisons: run one experiment N times with derived seeds, plus student arms.

``babyllama study EXPERIMENT.yaml --seeds N`` (or a ``study:`` section in the experiment file)
runs the experiment once per replicate into ``STUDY_DIR/rep{r}/`` (``STUDY_DIR`` is the
experiment's ``run_dir``), each a normal run folder that :func:`babyllama.pipeline.run_experiment`
fills and resumes exactly as ``babyllama run`` does, then writes the study report
(:mod:`babyllama.study_report`) to ``STUDY_DIR/report/``.

Seeds. In replicate ``r`` every model of the experiment trains with seed
``base + seed_stride * r`` (default stride 1000), ``base`` being the model's own resolved
``train.seed``. So replicate 0 is the experiment exactly as written, the teachers of one
replicate still differ from each other, and each replicate's student distils from that
replicate's teachers. The corpus, its split, the tokenizer and the evaluation items are the same
in every replicate: the variance a study measures is that of the models' seeds (initialisation
and data order), which is what separates one run of a recipe from another.

Arms. ``study.arms`` maps an arm name to settings that change the student, as dotted keys or
nested mappings over the student's model entry (``{distill.reduction: reference}``,
``{teachers: [teacher1, teacher2, teacher3, teacher4]}``). Each arm becomes one more model,
``{student}_{arm}``, in every replicate, with the student's seed, so it shares the replicate's
teachers and baseline and costs one student per replicate. An arm of a student that learns from a
teacher cache gets its own cache folder when it changes what the cache holds (temperature,
teachers, teacher precision, cache size or offsets).

The ``study:`` section::

    study:
      replicates: 3        # --seeds overrides it
      seed_stride: 1000
      student: student     # the model whose arms these are
      arms:
        kl_reference: {distill.reduction: reference}
        T2: {distill.temperature: 2.0}
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ExperimentConfig, apply_overrides, config_hash, load_yaml, resolve_experiment, to_dict
from .errors import UserError
from .io import atomic_write_json

DEFAULT_STRIDE = 1000
ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# DistillConfig fields whose change makes a teacher cache hold different targets.
CACHE_KEYS = ("temperature", "teacher_precision", "cache_k", "cache_offsets")


@dataclass
class Study:
    """A resolved study: one validated experiment per replicate, and what the report needs."""

    study_dir: Path
    student: str
    arms: dict[str, dict]
    seed_stride: int
    replicates: list[ExperimentConfig] = field(default_factory=list)

    @property
    def arm_models(self) -> dict[str, str]:
        """Arm name -> the model name it trains under."""
        return {arm: arm_model_name(self.student, arm) for arm in self.arms}

    def seeds(self) -> list[dict[str, int]]:
        """Per replicate, each model's training seed."""
        return [{name: stage.train.seed for name, stage in cfg.models.items()} for cfg in self.replicates]


def replicate_seed(base: int, replicate: int, stride: int = DEFAULT_STRIDE) -> int:
    """The seed a model with resolved seed ``base`` trains with in replicate ``replicate``."""
    return base + stride * replicate


def arm_model_name(student: str, arm: str) -> str:
    return f"{student}_{arm}"


def _set_path(entry: dict, parts: list[str], value, where: str) -> None:
    """Set ``entry[parts[0]][parts[1]]... = value``, merging mappings key by key."""
    node = entry
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"{where}: {part!r} is a value, not a section")
        node = child
    last = parts[-1]
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        for key, sub in value.items():
            _set_path(node[last], str(key).split("."), sub, where)
    else:
        node[last] = copy.deepcopy(value)


def _arm_entry(student_entry: dict, settings: dict, where: str) -> dict:
    entry = copy.deepcopy(student_entry)
    for key, value in settings.items():
        parts = str(key).split(".")
        if not all(parts):
            raise UserError(f"{where}: empty key segment in {key!r}")
        _set_path(entry, parts, value, f"{where}.{key}")
    return entry


def _parse_section(section, source: str) -> dict:
    """Validate the ``study:`` section's shape; return it with defaults filled in."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise UserError(f"{source}: study: expected a mapping, got {type(section).__name__}")
    known = {"replicates", "seed_stride", "student", "arms"}
    for key in section:
        if key not in known:
            raise UserError(f"{source}: study: unknown key {key!r} (known: {', '.join(sorted(known))})")
    out = {"replicates": section.get("replicates"), "seed_stride": section.get("seed_stride", DEFAULT_STRIDE),
           "student": section.get("student", "student"), "arms": section.get("arms") or {}}
    for key in ("replicates", "seed_stride"):
        value = out[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"{source}: study.{key}: got {value!r}, expected an integer >= 1")
    if not isinstance(out["student"], str):
        raise UserError(f"{source}: study.student: expected a model name, got {out['student']!r}")
    if not isinstance(out["arms"], dict):
        raise UserError(f"{source}: study.arms: expected a mapping of arm name -> settings")
    for arm, settings in out["arms"].items():
        if not isinstance(arm, str) or not ARM_NAME.match(arm):
            raise UserError(f"{source}: study.arms: arm name {arm!r} must be letters, digits, '_', '.' or '-'")
        if not isinstance(settings, dict) or not settings:
            raise UserError(f"{source}: study.arms.{arm}: expected a non-empty mapping of settings, "
                            f"e.g. {{distill.alpha: 0.9}}")
    return out


def load_study(path: str | Path, overrides: list[str] = (), seeds: int | None = None,
               arms: list[str] | None = None) -> Study:
    """Read an experiment file with an optional ``study:`` section into a validated :class:`Study`.

    ``seeds`` (``--seeds``) overrides ``study.replicates``; ``arms`` (``--arms``) keeps only the
    named arms (an empty list: none). Every replicate's experiment is resolved and validated here,
    before anything is written.
    """
    source = str(path)
    data = apply_overrides(load_yaml(path), list(overrides))
    section = _parse_section(data.pop("study", None), source)
    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds: got {seeds}, expected an integer >= 1")
    replicates = seeds if seeds is not None else section["replicates"]
    if replicates is None:
        raise UserError(f"{source}: how many replicates? give --seeds N or a study: section with replicates: N")
    chosen = dict(section["arms"])
    if arms is not None:
        for arm in arms:
            if arm not in chosen:
                raise UserError(f"--arms {arm}: no such arm in {source} (arms: {', '.join(chosen) or 'none'})")
        chosen = {arm: chosen[arm] for arm in arms}
    student = section["student"]
    models = data.get("models")
    if not isinstance(models, dict) or not isinstance(models.get(student), dict):
        raise UserError(f"{source}: study.student: {student!r} is not a model of the experiment")
    for arm, settings in chosen.items():
        name = arm_model_name(student, arm)
        if name in models:
            raise UserError(f"{source}: study.arms.{arm}: the arm's model name {name!r} is already a model")
        models[name] = _arm_entry(models[student], settings, f"{source}: study.arms.{arm}")
    base = resolve_experiment(data, source)
    if base.models[student].kind != "distill":
        raise UserError(f"{source}: study.student: {student!r} is not a distillation model (kind: distill)")
    _separate_arm_caches(base, data, student, chosen)
    study_dir = Path(base.run_dir)
    study = Study(study_dir=study_dir, student=student, arms=chosen, seed_stride=section["seed_stride"])
    for r in range(replicates):
        rep = copy.deepcopy(data)
        rep["run_dir"] = str(study_dir / f"rep{r}")
        for name, stage in base.models.items():
            train = rep["models"][name].setdefault("train", {}) or {}
            rep["models"][name]["train"] = train
            train["seed"] = replicate_seed(stage.train.seed, r, section["seed_stride"])
        study.replicates.append(resolve_experiment(rep, f"{source} (replicate {r})"))
    return study


def _separate_arm_caches(base: ExperimentConfig, data: dict, student: str, arms: dict) -> None:
    """Give an arm its own teacher-cache folder when it changes what the student's cache holds."""
    ref = base.models[student]
    if ref.distill.teacher_cache is None:
        return
    for arm in arms:
        name = arm_model_name(student, arm)
        stage = base.models[name]
        d = stage.distill
        same = stage.teachers == ref.teachers and all(getattr(d, k) == getattr(ref.distill, k) for k in CACHE_KEYS)
        if d.teacher_cache == ref.distill.teacher_cache and not same:
            own = f"{d.teacher_cache.rstrip('/')}-{arm}"
            data["models"][name].setdefault("distill", {})["teacher_cache"] = own
            d.teacher_cache = own


def write_study_json(study: Study) -> None:
    """``STUDY_DIR/study.json``: the replicates, their folders and seeds, the student and its arms."""
    study.study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(study.study_dir / "study.json", {
        "student": study.student,
        "arms": {arm: {"model": study.arm_models[arm], "settings": to_dict(settings)}
                 for arm, settings in study.arms.items()},
        "seed_stride": study.seed_stride,
        "seed_rule": "replicate r: every model's train.seed = its experiment seed + seed_stride * r",
        "replicates": [{"replicate": r, "run_dir": f"rep{r}", "seeds": seeds,
                        "config_hash": config_hash(cfg.models)}
                       for r, (cfg, seeds) in enumerate(zip(study.replicates, study.seeds()))],
    })


def run_study(study: Study, overwrite: bool = False, progress: bool = True,
              only: list[int] | None = None) -> list[dict[str, dict]]:
    """Run every replicate, or those in ``only`` (resuming finished stages); return each one's metrics.

    ``only`` lets independent replicates run as separate jobs on one study folder (never two jobs
    on the same replicate: a stage folder has one writer).
    """
    from .pipeline import run_experiment

    for r in only or ():
        if not 0 <= r < len(study.replicates):
            raise UserError(f"--replicate {r}: the study has replicates 0..{len(study.replicates) - 1}")
    write_study_json(study)
    results = []
    for r, config in enumerate(study.replicates):
        if only is not None and r not in only:
            continue
        start = time.perf_counter()
        print(f"[babyllama] study: replicate {r} of 0..{len(study.replicates) - 1} -> {config.run_dir}", flush=True)
        results.append(run_experiment(config, overwrite=overwrite, progress=progress))
        print(f"[babyllama] study: replicate {r} done in {time.perf_counter() - start:.0f} s", flush=True)
    return results


# --------------------------------------------------------------------------------------------
# Command line


def cmd_study(args) -> int:
    """Run an experiment as a replicated study (N seeds, optional student arms), then its report."""
    from .study_report import build_study_report

    if args.report_only:
        result = build_study_report(Path(args.experiment), Path(args.out) if args.out else None)
    else:
        study = load_study(args.experiment, args.overrides, seeds=args.seeds, arms=args.arms)
        if args.dry_run:
            for r, seeds in enumerate(study.seeds()):
                print(f"rep{r}: " + ", ".join(f"{name} seed {seed}" for name, seed in seeds.items()))
            return 0
        run_study(study, overwrite=args.overwrite, progress=not args.quiet, only=args.replicate)
        result = build_study_report(study.study_dir, Path(args.out) if args.out else None)
    print(result.summary)
    print(f"study report: {result.report_path}")
    return 0


def add_parser(subparsers) -> None:
    """Add ``babyllama study EXPERIMENT.yaml [--seeds N] [--arms ARM ...]`` to the command line."""
    p = subparsers.add_parser("study", help="replicated comparison: N seeds of an experiment, student arms, "
                              "margins with intervals", description=cmd_study.__doc__ + " Replicate r trains every "
                              "model with seed + 1000*r into STUDY_DIR/rep{r} (STUDY_DIR = the experiment's run_dir); "
                              "rerun the same command to resume.")
    p.add_argument("experiment", metavar="EXPERIMENT", help="experiment YAML (with --report-only: a study folder)")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="number of replicates (overrides study.replicates)")
    p.add_argument("--arms", nargs="*", default=None, metavar="ARM",
                   help="run only these arms of study.arms (none given: no arms; default: all)")
    p.add_argument("--replicate", type=int, action="append", default=None, metavar="R",
                   help="run only replicate R (repeatable), e.g. one job per replicate on one study folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                   help="override a config value (YAML syntax), e.g. --set run_dir=runs/my-study; repeatable")
    p.add_argument("--out", default=None, metavar="DIR", help="report folder (default: STUDY_DIR/report)")
    p.add_argument("--overwrite", action="store_true", help="replace finished stages whose config changed")
    p.add_argument("--dry-run", action="store_true", help="print each replicate's seeds and exit")
    p.add_argument("--report-only", action="store_true", help="rebuild the report of an existing study folder")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_study)
