"""The whole-run check: everything a run will read or write, checked before its first stage.

``babyllama run`` (and ``--dry-run``, ``demo`` and ``sweep``) calls :func:`preflight_experiment`
after the experiment file has been validated and before anything is written: the corpus folder
and its files, the tokenizer folders, every teacher folder that is not trained by the run
itself, every zero-shot task and its data, the GLUE data and task list, that the run folder can
be written and that the disk has room for the checkpoints the run keeps. Every problem is
collected and raised together as one :class:`~babyllama.errors.UserErrors` (one line each), so a
user fixes them in one pass instead of finding the last one after hours of training.

The single commands (``prepare``, ``tokenizer``, ``pretrain``, ``distill``, ``teach-cache``,
``evaluate loss``) use the same checks on their own inputs. ``docs/validation.md`` lists what is
checked, and when.
"""

from __future__ import annotations

import difflib
import gzip
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import ExperimentConfig, StageConfig, config_hash
from .errors import UserError, UserErrors

#: Lines read from each data file to check that it parses (the whole file is read when used).
FIRST_LINES = 5
#: Bytes read from the start of each corpus file to check it is UTF-8 text.
CORPUS_PROBE_BYTES = 1 << 16
#: Bytes per parameter of one resume checkpoint: float32 weights and AdamW's two float32 moments.
CHECKPOINT_BYTES_PER_PARAM = 12
#: Bytes per parameter of a finished model folder (float32 safetensors).
MODEL_BYTES_PER_PARAM = 4


class Problems:
    """Collects the one-line messages of the checks run through :meth:`check`."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def check(self, func: Callable, *args, **kwargs):
        """Run ``func``; a ``UserError`` it raises becomes one (or more) collected lines. Returns
        ``func``'s result, or ``None`` when it failed."""
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            self.lines.extend(line for line in str(exc).splitlines() if line not in self.lines)
            return None

    def add(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)

    def raise_if_any(self) -> None:
        if self.lines:
            raise UserErrors(self.lines)


# --------------------------------------------------------------------------------------------
# Single checks; each raises UserError with one line


def check_writable(folder: str | Path, what: str = "output folder") -> Path:
    """Refuse ``folder`` if it, or the nearest existing folder above it, cannot be written; return
    that existing folder.

    Nothing is left behind: the probe is an empty temporary folder, removed at once.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{existing}: is a file, but the {what} {folder} must be a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".babyllama-probe-", dir=existing))
    except OSError as exc:
        raise UserError(f"{folder}: cannot write there ({exc.strerror or exc})") from None
    return existing


def check_corpus(path: str, where: str = "corpus.path") -> None:
    """Refuse a corpus folder that is missing, has no ``*.train`` file, or holds a file whose start
    is not UTF-8 text (plain or gzip)."""
    if path == "builtin":
        return
    from .data.corpus import discover

    try:
        found = discover(path)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    for files in found.values():
        for file in files.values():
            _check_text_start(file)


def _check_text_start(path: Path) -> None:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                head = f.read(CORPUS_PROBE_BYTES)
        else:
            with open(path, "rb") as f:
                head = f.read(CORPUS_PROBE_BYTES)
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if b"\x00" in head:
        raise UserError(f"{path}: binary file (NUL bytes), expected UTF-8 text")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not a character cut by the probe's end
            raise UserError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def check_prepared(folder: str | Path) -> None:
    """Refuse a folder that is not a prepared corpus with non-empty train and valid splits."""
    from .data.corpus import split_files

    for split in ("train", "valid"):
        if not split_files(folder, split):
            raise UserError(f"{folder}/{split}: empty split (no .txt files); run `babyllama prepare` again")


def check_model_folder(folder: str | Path) -> None:
    """Refuse a folder without ``config.json`` and readable weights (safetensors or a PyTorch bin)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: not a model directory (no config.json)")
    if not (list(folder.glob("*.safetensors")) or list(folder.glob("pytorch_model*.bin"))):
        raise UserError(f"{folder}: not a model directory (no model.safetensors)")
    check_weights_readable(folder)


def check_weights_readable(folder: str | Path) -> None:
    """Refuse a folder whose ``*.safetensors`` headers do not read (a truncated or foreign file);
    the header only is read, not the weights."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(path, framework="pt"):
                pass
        except (OSError, SafetensorError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{folder}: cannot load the model ({path.name}: {first[:160]})") from None


def check_teacher(folder: str | Path, student_tokenizer, student_vocab_size: int, seq_length: int | None = None) -> None:
    """A teacher folder: :func:`babyllama.teachers.check_teacher` (a decoder-only causal LM with
    weights, the student's vocabulary and tokenizer, enough positions), then its weights' headers.

    Without ``student_tokenizer`` (the run trains it later) ``student_vocab_size`` is the
    configured size, an upper bound: a trained BPE tokenizer may come out smaller, so only a
    teacher with more tokens is refused here; the pipeline compares the exact vocabulary once the
    tokenizer exists, before the first model trains.
    """
    from .teachers import check_teacher as check_teacher_folder
    from .teachers import check_teacher_config

    if student_tokenizer is not None:
        check_teacher_folder(folder, student_tokenizer, student_vocab_size, seq_length)
    else:
        vocab = getattr(check_teacher_config(folder, None, seq_length).get_text_config(), "vocab_size", None)
        if not isinstance(vocab, int) or vocab > student_vocab_size:
            raise UserError(f"teacher {folder}: vocabulary size {vocab} is larger than the student's tokenizer "
                            f"can be (tokenizer.vocab_size {student_vocab_size})")
    check_weights_readable(folder)


def check_zero_shot_task(name: str, folder: str | Path) -> None:
    """Refuse an unknown zero-shot task name, or a data folder that is missing, holds no task
    files, or whose files' first lines do not parse as the task's items.

    Task names and formats come from the registry (:mod:`babyllama.evaluation.tasks`); ``folder``
    ``builtin`` stands for the pairs the run generates (BLiMP format).
    """
    from .evaluation import tasks
    from .evaluation.minimal_pair_tasks import BLIMP_KEYS

    where = f"evaluation.zero_shot.tasks.{name}"
    names = tasks.task_names()
    if name not in names:
        raise UserError(f"{where}: unknown zero-shot task {name!r}{_suggest(name, names)}; "
                        f"expected one of {', '.join(names)}")
    keys = tuple(tasks.get(name).keys)
    if str(folder) == "builtin":
        if set(keys) != set(BLIMP_KEYS):
            raise UserError(f"{where}: 'builtin' generates BLiMP-style pairs, not {name} items; give a data folder")
        return
    try:
        tasks.check(name, folder)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def _check_jsonl_start(path: Path, keys: tuple[str, ...]) -> None:
    """The first ``FIRST_LINES`` records of a jsonl file parse, hold ``keys``, and all but
    ``label`` are strings."""
    from .io import iter_jsonl_objects

    records = list(itertools.islice(iter_jsonl_objects(path, keys), FIRST_LINES))
    if not records:
        raise UserError(f"{path}: no items")
    for number, record in records:
        for key in keys:
            if key != "label" and not isinstance(record[key], str):
                raise UserError(f"{path}:{number}: key {key!r} must be a string, got {record[key]!r}")


def glue_problems(data: str, tasks: list[str] | None, recipe: str = "2024") -> list[str]:
    """Problems with a GLUE data folder and task list: unknown task names for the ``recipe``,
    missing files for a task named explicitly (``tasks`` None: every task whose files are there,
    at least one), and files whose first lines do not parse."""
    from .evaluation.glue_data import needed_files
    from .evaluation.glue_tasks import TASKS, get_recipe

    where = "evaluation.glue"
    folder = Path(data)
    if not folder.is_dir():
        return [f"{where}.data: {folder}: GLUE data folder not found"]
    problems = Problems()
    chosen = problems.check(get_recipe, recipe)
    if chosen is None:
        return problems.lines
    if tasks is not None and not tasks:
        problems.add(f"{where}.tasks: empty list; leave it out to run every task found")
    for name in tasks or ():
        if name not in chosen.tasks:
            problems.add(f"{where}.tasks: unknown GLUE task {name!r}{_suggest(name, chosen.tasks)} for the "
                         f"{chosen.name} recipe; expected some of {', '.join(chosen.tasks)}")
    runnable = []
    for name in [t for t in chosen.tasks if tasks is None or t in tasks]:
        found, missing = needed_files([folder], TASKS[name])
        if missing is None:
            runnable.append((name, found))
        elif tasks is not None:
            problems.add(f"{where}.tasks: {name}: {missing}")
    if tasks is None and not runnable:
        problems.add(f"{where}.data: {folder}: no GLUE task files (expected e.g. {folder}/boolq.train.jsonl)")
    for name, found in runnable:
        for path in dict.fromkeys(found.values()):
            problems.check(_check_jsonl_start, path, tuple(TASKS[name].keys))
    return problems.lines


def checkpoint_disk_bytes(n_params: int, keep_checkpoints: int) -> int:
    """Peak bytes a training stage of ``n_params`` parameters holds on disk.

    ``keep_checkpoints + 1`` resume checkpoints (a new one is complete before the oldest is
    removed), each ``CHECKPOINT_BYTES_PER_PARAM`` bytes per parameter (float32 weights and
    AdamW's two moments), plus the best model's float32 weights.
    """
    return n_params * (CHECKPOINT_BYTES_PER_PARAM * (keep_checkpoints + 1) + MODEL_BYTES_PER_PARAM)


def check_disk(folder: str | Path, needed: int, what: str) -> None:
    """Refuse when the file system of ``folder`` (or its nearest existing parent) has less than
    ``needed`` bytes free."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise UserError(f"{folder}: {_gib(free)} free on disk, {what} needs about {_gib(needed)}; "
                        f"free space, lower train.keep_checkpoints or choose another folder")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def stage_parameters(stage: StageConfig, vocab_size: int) -> int:
    """Parameter count of a stage's model with a ``vocab_size`` vocabulary (no weights allocated)."""
    from .model import count_parameters, llama_config

    return count_parameters(llama_config(stage.model, vocab_size, 0, 1, 2))


# --------------------------------------------------------------------------------------------
# The whole run


def experiment_problems(config: ExperimentConfig, only: list[str] | None = None,
                        run_dir: str | Path | None = None, disk: DiskNeed | None = None) -> list[str]:
    """Every problem that would stop ``run_experiment(config, only=only)`` after it has started.

    ``run_dir`` replaces ``config.run_dir`` (a sweep trains into its own folder). Models whose
    folder already holds a finished stage are not counted in the disk estimate. With ``disk``,
    the run's estimate is added to it instead of checked (a study checks its replicates' sum).
    """
    from .tokenizer import load_tokenizer

    run_dir = Path(run_dir if run_dir is not None else config.run_dir)
    problems = Problems()
    for name in only or ():
        if name not in config.models:
            problems.add(f"--only {name}: no such model in the experiment{_suggest(name, config.models)} "
                         f"(models: {', '.join(config.models)})")
    writable = problems.check(check_writable, run_dir, "run folder") is not None
    if not _prepared(run_dir / "corpus", config.corpus):
        problems.check(check_corpus, config.corpus.path)
    tokenizer = None
    if config.tokenizer.path:
        tokenizer = problems.check(load_tokenizer, config.tokenizer.path)
    elif (run_dir / "tokenizer" / "stage.json").is_file():
        tokenizer = problems.check(load_tokenizer, run_dir / "tokenizer")
    names = [n for n in config.stage_order() if only is None or n in only]
    finished_bytes, peak_bytes, counted = 0, 0, {}
    for name in names:
        stage = config.models[name]
        tok, vocab = tokenizer, config.tokenizer.vocab_size
        if stage.corpus is not None and not _prepared(run_dir / f"corpus-{name}", stage.corpus):
            problems.check(check_corpus, stage.corpus.path, f"models.{name}.corpus.path")
        if stage.tokenizer is not None:
            tok, vocab = None, stage.tokenizer.vocab_size
            if stage.tokenizer.path:
                tok = problems.check(load_tokenizer, stage.tokenizer.path)
        vocab = len(tok) if tok is not None else vocab
        for teacher in stage.teachers:
            if teacher not in config.models:
                problems.check(check_teacher, teacher, tok, vocab, stage.train.seq_length)
            elif _tokenizer_key(config, config.models[teacher]) != _tokenizer_key(config, stage):
                problems.add(f"models.{name}.teachers: {teacher} is trained with another tokenizer than {name} "
                             f"(their tokenizer or corpus settings differ); a teacher must share the student's")
        if (run_dir / name / "stage.json").is_file():
            continue
        key = (config_hash(stage.model), vocab)
        if key not in counted:
            counted[key] = problems.check(stage_parameters, stage, vocab)
        n_params = counted[key]
        if n_params is not None:
            finished_bytes += n_params * MODEL_BYTES_PER_PARAM
            peak_bytes = max(peak_bytes, checkpoint_disk_bytes(n_params, stage.train.keep_checkpoints))
    if names:
        zs, glue = config.evaluation.zero_shot, config.evaluation.glue
        for task, folder in (zs.tasks.items() if zs is not None else ()):
            problems.check(check_zero_shot_task, task, folder)
        if glue is not None and glue.data:
            for line in glue_problems(glue.data, glue.tasks):
                problems.add(line)
    need = DiskNeed() if disk is None else disk
    need.add(finished_bytes, peak_bytes, len(names), writable)
    if disk is None:
        need.check(problems, run_dir)
    return problems.lines


@dataclass
class DiskNeed:
    """The disk a run (or several, one after another) needs: every finished model's weights stay,
    and the largest training peak (its checkpoints) comes on top."""

    finished_bytes: int = 0
    peak_bytes: int = 0
    models: int = 0
    writable: bool = True

    def add(self, finished_bytes: int, peak_bytes: int, models: int, writable: bool) -> None:
        self.finished_bytes += finished_bytes
        self.peak_bytes = max(self.peak_bytes, peak_bytes)
        self.models += models
        self.writable = self.writable and writable

    def check(self, problems: Problems, folder: Path) -> None:
        if self.peak_bytes and self.writable:
            problems.check(check_disk, folder, self.finished_bytes + self.peak_bytes,
                           f"training {self.models} model(s) with their checkpoints")


def preflight_experiment(config: ExperimentConfig, only: list[str] | None = None,
                         run_dir: str | Path | None = None) -> None:
    """Raise :class:`~babyllama.errors.UserErrors` listing every problem of
    :func:`experiment_problems`; return quietly when there is none."""
    lines = experiment_problems(config, only, run_dir)
    if lines:
        raise UserErrors(lines)


def preflight_sweep(sweep) -> None:
    """The whole-run check of a sweep (a :class:`~babyllama.sweep_file.Sweep`): its base experiment as
    the sweep trains it (the tuned stage and the teachers it trains once, in ``SWEEP_DIR/shared``)
    and the teacher folders the sweep file names instead."""
    config, stage = sweep.base, sweep.base.models[sweep.stage]
    trained = {sweep.stage}

    def visit(model: str) -> None:
        for teacher in config.models[model].teachers:
            if teacher in config.models and teacher not in trained:
                trained.add(teacher)
                visit(teacher)

    for teacher in stage.teachers:
        if teacher in config.models and teacher not in sweep.file.teachers and teacher not in trained:
            trained.add(teacher)
            visit(teacher)
    from .tokenizer import load_tokenizer

    problems = Problems()
    for line in experiment_problems(config, sorted(trained), sweep.sweep_dir / "shared"):
        problems.add(line)
    settings = stage.tokenizer or config.tokenizer
    tokenizer = problems.check(load_tokenizer, settings.path) if settings.path else None
    vocab = len(tokenizer) if tokenizer is not None else settings.vocab_size
    for folder in sweep.file.teachers.values():
        problems.check(check_teacher, folder, tokenizer, vocab, stage.train.seq_length)
    problems.raise_if_any()


def preflight_study(study, replicates: list[int] | None = None) -> None:
    """The whole-run check of a study (a :class:`~babyllama.study.Study`): every replicate that
    will run (``replicates``: their indices, ``None``: all) checked as a run of its own folder.
    The disk estimate covers them together: replicates run one after another, but their finished
    models all stay, so it is the sum of their models plus the largest training peak."""
    problems, disk = Problems(), DiskNeed()
    for r, config in enumerate(study.replicates):
        if replicates is None or r in replicates:
            for line in experiment_problems(config, disk=disk):
                problems.add(line)
    disk.check(problems, study.study_dir)
    problems.raise_if_any()


def _tokenizer_key(config: ExperimentConfig, stage: StageConfig) -> tuple:
    """What decides the tokenizer a model of the run trains with (the pipeline's rule)."""
    if stage.tokenizer is None:
        return ("shared",)
    if stage.tokenizer.path:
        return ("path", stage.tokenizer.path)
    return (config_hash(stage.tokenizer), config_hash(stage.corpus or config.corpus))


def _prepared(folder: Path, corpus) -> bool:
    """True if ``folder`` holds this corpus already prepared (the raw files are then not read)."""
    import json

    marker = folder / "stage.json"
    try:
        return marker.is_file() and json.loads(marker.read_text()).get("config_hash") == config_hash(corpus)
    except (OSError, ValueError):
        return False


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
