"""The word budget of an experiment against a BabyLM track (the 2025 rules).

The 2025 rules limit both the distinct training text (``strict-small``: 10M words, ``strict``:
100M) and the words seen in all, over every model whose training text serves the submission:
teachers count (``strict-small``: 100M words seen, ``strict``: 1000M). An experiment declares its
track with the top-level ``track:`` key (``none``: no limit, only the counts).

- Before training (``run --dry-run``, and at the start of every ``run``): an estimate per model of
  the training split's words x epochs, capped by ``max_steps`` x batch x sequence length (a word
  begins at one token, so a chunk holds at most as many words as tokens). The training split's
  words come from the prepared corpus when it exists, else from the corpus files x
  (1 - ``valid_fraction``) (before cleaning), or ``builtin_words`` for the built-in corpus.
- After training: each model's ``words_seen`` from its ``metrics.json`` (counted per step from the
  token arrays' word starts, :func:`~babyllama.data.token_arrays.chunk_words`), written to
  ``RUN_DIR/word_budget.json`` and shown as one line in the report.

Unique words are the words of the ``*.train`` files of every distinct corpus the experiment's
models train on (train and validation splits both come from them). A teacher given as a folder
outside the experiment counts with the ``words_seen`` of its ``metrics.json``; without one, its
words are unknown and the budget says so.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import CorpusConfig, ExperimentConfig, StageConfig, config_hash
from .errors import UserError
from .io import atomic_write_json

M = 1_000_000

#: Track name -> (unique words allowed, words seen allowed in all); None: no limit.
TRACKS: dict[str, tuple[int | None, int | None]] = {
    "strict-small": (10 * M, 100 * M),
    "strict": (100 * M, 1000 * M),
    "none": (None, None),
}


@dataclass
class ModelWords:
    """Words one model sees: ``measured`` from its metrics.json, else an estimate (``how`` says which)."""

    name: str
    words_seen: int | None
    measured: bool
    how: str


@dataclass
class Budget:
    """An experiment's word use against its track."""

    track: str
    unique_words: int | None
    models: list[ModelWords] = field(default_factory=list)

    @property
    def total_seen(self) -> int:
        return sum(m.words_seen or 0 for m in self.models)

    @property
    def limits(self) -> tuple[int | None, int | None]:
        return TRACKS[self.track]

    def problems(self) -> list[str]:
        """One sentence per limit exceeded (empty when within budget)."""
        unique_limit, seen_limit = self.limits
        out = []
        if unique_limit is not None and self.unique_words is not None and self.unique_words > unique_limit:
            out.append(f"{self.unique_words:,} unique training words exceed the {self.track} track's {unique_limit:,}")
        if seen_limit is not None and self.total_seen > seen_limit:
            out.append(f"{self.total_seen:,} words seen by all models exceed the {self.track} track's {seen_limit:,}")
        return out

    def verdict(self) -> str:
        """``within budget``, the limits exceeded, or why the budget cannot be checked."""
        problems = self.problems()
        unknown = [m.name for m in self.models if m.words_seen is None]
        if unknown:
            problems.append(f"not checked: words unknown for {', '.join(unknown)}")
        return "; ".join(problems) or ("within budget" if self.limits[1] is not None else "no limit declared")

    def lines(self) -> list[str]:
        """Human-readable budget: one line per model, then the totals against the track."""
        unique_limit, seen_limit = self.limits
        head = f"word budget, track {self.track}" + (
            f" ({unique_limit:,} unique words, {seen_limit:,} words seen in all, teachers included)"
            if seen_limit is not None else " (no limit)")
        rows = [head + ":"]
        for m in self.models:
            seen = "unknown" if m.words_seen is None else f"{m.words_seen:,}"
            rows.append(f"  {m.name}: {seen} words seen ({m.how})")
        unique = "unknown" if self.unique_words is None else f"{self.unique_words:,}"
        rows.append(f"  total: {self.total_seen:,} words seen, {unique} unique training words: {self.verdict()}")
        return rows

    def summary(self) -> str:
        """The one line the report shows."""
        unique_limit, seen_limit = self.limits
        seen = f"{self.total_seen:,}" + (f" of {seen_limit:,}" if seen_limit is not None else "")
        unique = ("unknown" if self.unique_words is None else f"{self.unique_words:,}") + (
            f" of {unique_limit:,}" if unique_limit is not None else "")
        return (f"Word budget (track {self.track}): {seen} words seen by {len(self.models)} models "
                f"(teachers included), {unique} unique training words: {self.verdict()}.")

    def to_json(self) -> dict:
        unique_limit, seen_limit = self.limits
        return {"track": self.track, "unique_words": self.unique_words, "unique_limit": unique_limit,
                "words_seen": self.total_seen, "words_seen_limit": seen_limit, "problems": self.problems(),
                "models": [asdict(m) for m in self.models]}


# --------------------------------------------------------------------------------------------
# Corpus words


def _prepared_folder(config: ExperimentConfig, name: str | None) -> Path:
    run_dir = Path(config.run_dir)
    return run_dir / "corpus" if name is None else run_dir / f"corpus-{name}"


def corpus_words(corpus: CorpusConfig, prepared: Path) -> tuple[int | None, int | None, str]:
    """``(train split words, unique words of the *.train files, how they were counted)``; the counts
    are None when the corpus folder does not exist yet."""
    marker, stats_path = prepared / "stage.json", prepared / "prepare.json"
    if marker.is_file() and stats_path.is_file() \
            and json.loads(marker.read_text()).get("config_hash") == config_hash(corpus):
        splits = json.loads(stats_path.read_text())["splits"]
        train = sum(s["words"] for s in splits["train"].values())
        return train, train + sum(s["words"] for s in splits.get("valid", {}).values()), "prepared corpus"
    if corpus.path == "builtin":
        unique = corpus.builtin_words
        how = "built-in corpus size"
    elif not Path(corpus.path).is_dir():
        return None, None, f"corpus folder {corpus.path} not found"
    else:
        from .data.corpus import discover, read_text

        unique = sum(len(read_text(path).split()) for path in discover(corpus.path)["train"].values())
        how = "corpus files before cleaning"
    return round(unique * (1 - corpus.valid_fraction)), unique, how


def _estimate(stage: StageConfig, train_words: int | None, how: str) -> tuple[int | None, str]:
    t = stage.train
    if train_words is None:
        return None, f"unknown: {how}"
    words = round(train_words * t.epochs)
    text = f"estimate: {train_words:,} training words ({how}) x {t.epochs:g} epochs"
    if t.max_steps is not None and t.max_steps * t.batch_size * t.seq_length < words:
        words = t.max_steps * t.batch_size * t.seq_length
        text = f"estimate: at most max_steps {t.max_steps} x {t.batch_size} x {t.seq_length} tokens"
    return words, text


def experiment_budget(config: ExperimentConfig, measured: bool = True) -> Budget:
    """The experiment's budget: measured ``words_seen`` where a model has finished (when ``measured``),
    estimates for the others (:mod:`babyllama.word_budget`)."""
    run_dir = Path(config.run_dir)
    corpora: dict[str, tuple[int, int, str]] = {}
    models: list[ModelWords] = []
    external: set[str] = set()
    for name in config.stage_order():
        stage = config.models[name]
        corpus = stage.corpus or config.corpus
        key = config_hash(corpus)
        if key not in corpora:
            corpora[key] = corpus_words(corpus, _prepared_folder(config, name if stage.corpus else None))
        metrics_path = run_dir / name / "metrics.json"
        seen = _words_seen(metrics_path) if measured else None
        if seen is not None:
            models.append(ModelWords(name, seen, True, "measured"))
        else:
            train_words, _, how = corpora[key]
            words, text = _estimate(stage, train_words, how)
            models.append(ModelWords(name, words, False, text))
        external.update(t for t in stage.teachers if t not in config.models)
    for folder in sorted(external):
        seen = _words_seen(Path(folder) / "metrics.json")
        models.append(ModelWords(folder, seen, seen is not None,
                                 "from its metrics.json" if seen is not None else "outside the experiment, no "
                                 "words_seen in its metrics.json: not counted"))
    uniques = [u for _, u, _ in corpora.values()]
    unique = None if None in uniques else sum(uniques)
    return Budget(track=config.track, unique_words=unique, models=models)


def _words_seen(metrics_path: Path) -> int | None:
    if not metrics_path.is_file():
        return None
    try:
        value = json.loads(metrics_path.read_text()).get("words_seen")
    except (json.JSONDecodeError, AttributeError):
        raise UserError(f"{metrics_path}: not a JSON object of metrics") from None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------------------------
# Enforcement and records


def enforce(budget: Budget, strict: bool) -> None:
    """Print the budget; over budget, warn on stderr, or with ``strict`` raise a one-line :class:`UserError`."""
    print("\n".join(budget.lines()), flush=True)
    problems = budget.problems()
    if not problems:
        return
    if strict:
        raise UserError(f"word budget: {'; '.join(problems)} (--strict-budget; nothing was trained)")
    print(f"warning: word budget: {'; '.join(problems)}", file=sys.stderr, flush=True)


def write_budget(config: ExperimentConfig) -> Budget:
    """Measure the budget after a run and write ``RUN_DIR/word_budget.json``."""
    budget = experiment_budget(config)
    atomic_write_json(Path(config.run_dir) / "word_budget.json", budget.to_json())
    return budget


def report_lines(run_dirs: list[Path]) -> list[str]:
    """The report's word-budget lines, one per run folder holding ``word_budget.json``."""
    lines = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "word_budget.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
            if data["track"] not in TRACKS:
                raise KeyError(data["track"])
            budget = Budget(track=data["track"], unique_words=data["unique_words"],
                            models=[ModelWords(**m) for m in data["models"]])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{path}: not a word budget written by babyllama run") from None
        lines.append(budget.summary())
    return lines
