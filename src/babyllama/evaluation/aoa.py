"""``babyllama evaluate aoa``: the BabyLM 2025 age-of-acquisition task, on word-count checkpoints.

The 2025 pipeline's causal AoA scorer (``AoA_word/``, ``utils.py:AoAEvaluator``; SCORING.md
section 7), rule for rule:

- data: ``cdi_childes.json`` maps each CDI word to a list of ``{"context": ...}``; words of one
  character are dropped, and words with fewer than ``--min-context`` contexts (default 0, as the
  pipeline runs it: its script sets 20 but never passes it). Staged file: 504 words, 8,005 contexts;
- surprisal at every checkpoint: the text ``context.strip() + " " + word.strip()`` is tokenised
  with the tokenizer's default special tokens and character offsets; the word's tokens are those
  whose span ends after the word's first character; surprisal = minus the summed natural-log
  probability of those tokens, each predicted from the tokens before it (a token at position 0 is
  never predicted, so it adds nothing);
- model AoA per word: every (checkpoint, context) point of the word pooled; a sigmoid
  ``a / (1 + exp(-b (x - c))) + d`` fitted to minus the surprisal against ``x = log10(words + 1)``
  (``scipy.optimize.curve_fit``, start ``[max-min, 1, mean x, min]``, no bounds, 1000 evaluations);
  the threshold is halfway between a chance surprisal of ``log2(300000)`` (bits, against
  surprisals in nats: the pipeline's quirk, kept) and the word's lowest surprisal; the AoA is the
  ``x`` where the curve crosses it, kept only when ``a, b > 0``, the threshold lies inside the
  curve's range and the step lies within the observed words;
- child AoA per word (needs the Wordbank table ``cdi_human.csv``, columns ``word`` and ``16`` ..
  ``30``, production proportions; not bundled): the same sigmoid on months, start ``[1, 0.1, mean
  age, 0]``, bounds ``a in [0, 2], b in [0, 1], c in the age range, d in [-0.5, 0.5]``, at least 3
  ages; the age where it reaches 0.5, inside the observed ages;
- score (``curve_fitness``): Pearson r between model and child AoA over the words that have both,
  0 when fewer than 3 do; printed as r, not x 100. Spearman's rho is reported beside it.

Every probability is a next-token query on the pipeline's exact token sequence
(:mod:`babyllama.evaluation.next_token`): one forward pass per (word, context), batched by length,
instead of the pipeline's batch of one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from babyllama.errors import UserError
from babyllama.evaluation.cli_options import add_scoring_options, wrapped
from babyllama.evaluation.next_token import Query, next_token_logprobs
from babyllama.io import atomic_write_json
from babyllama.word_checkpoints import WORD_CHECKPOINTS_DIR, list_word_checkpoints

FILE_NAMES = ("cdi_childes.json", "cdi_childes.json.gz")
CHANCE_VOCAB = 300_000
AGES = tuple(range(16, 31))
MIN_POINTS = 3

SETTINGS = {
    "pipeline": "babylm/evaluation-pipeline-2025 AoA_word/ (causal backend) and utils.py AoAEvaluator",
    "words": "cdi_childes.json words longer than one character with at least min_context contexts",
    "surprisal": "-sum ln p of the word's tokens after context.strip() + ' ' (full context, use_bos_only false); "
                 "word tokens = tokens whose offset span ends after the word's first character; default special tokens",
    "checkpoints": "every MODEL_DIR/word_checkpoints/chck_{N}M folder; step = N * 1e6 words",
    "model_aoa": "sigmoid a/(1+exp(-b(x-c)))+d fitted to -surprisal vs x = log10(words + 1) over all (checkpoint, "
                 "context) points; threshold halfway between log2(300000) (bits, the pipeline's quirk) and the "
                 "lowest surprisal (nats); AoA = log10 step where the curve crosses it, kept if inside the observed steps",
    "child_aoa": "sigmoid on months 16-30 (>= 3 ages), bounds a [0,2], b [0,1], c [first, last age], d [-0.5, 0.5]; "
                 "age at proportion 0.5, kept if inside the observed ages",
    "score": "curve_fitness = Pearson r(model AoA, child AoA) over words with both; 0 when fewer than 3 words",
}


def sigmoid(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """``a / (1 + exp(-b (x - c))) + d``, computed without overflow (``scipy.special.expit``)."""
    from scipy.special import expit

    return a * expit(b * (np.asarray(x, dtype=np.float64) - c)) + d


def _fit(x: np.ndarray, y: np.ndarray, p0: list[float], bounds=None) -> np.ndarray | None:
    """``curve_fit`` of :func:`sigmoid` with 1000 evaluations; None when the fit fails (the pipeline's rule)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    kwargs = {} if bounds is None else {"bounds": bounds}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)  # covariance not estimable: the fit itself stands
        try:
            popt, _ = curve_fit(sigmoid, x, y, p0=p0, maxfev=1000, **kwargs)
        except (RuntimeError, ValueError, TypeError):  # no convergence, non-finite values, fewer points than 4
            return None
    return popt


def _crossing(popt: np.ndarray, level: float) -> float | None:
    """The ``x`` where the fitted sigmoid equals ``level``, or None when it never does (or a, b <= 0)."""
    a, b, c, d = popt
    if b <= 0 or a <= 0 or level <= d or level >= a + d:
        return None
    return float(c - np.log(a / (level - d) - 1) / b)


def model_aoa(words_seen: np.ndarray, surprisal: np.ndarray) -> float | None:
    """The model's AoA of one word, as log10 words seen, from its pooled (words seen, surprisal) points.

    ``words_seen`` and ``surprisal`` are float arrays (N,) in increasing order of words seen; NaN
    surprisals are dropped. None when fewer than 3 points, the fit fails or the crossing lies
    outside the observed words.
    """
    if len(surprisal) < MIN_POINTS:
        return None
    valid = ~np.isnan(surprisal)
    if not valid.any():
        return None
    steps, values = words_seen[valid], surprisal[valid]
    chance = math.log2(CHANCE_VOCAB)
    threshold = chance - 0.5 * (chance - values.min())
    neg = -values
    x = np.log10(steps + 1)
    popt = _fit(x, neg, [neg.max() - neg.min(), 1.0, x.mean(), neg.min()])
    if popt is None:
        return None
    log_step = _crossing(popt, -threshold)
    if log_step is None:
        return None
    step = 10**log_step - 1
    if step < steps[0] or step > steps[-1]:
        return None
    return log_step


def child_aoa(ages: np.ndarray, proportions: np.ndarray) -> float | None:
    """Children's AoA of one word in months: where a bounded sigmoid fit of the proportions reaches 0.5."""
    valid = ~np.isnan(proportions)
    if valid.sum() < MIN_POINTS:
        return None
    x, y = ages[valid].astype(np.float64), proportions[valid]
    popt = _fit(x, y, [1.0, 0.1, x.mean(), 0.0], bounds=([0, 0, x[0], -0.5], [2.0, 1.0, x[-1], 0.5]))
    if popt is None:
        return None
    age = _crossing(popt, 0.5)
    if age is None or age < x[0] or age > x[-1]:
        return None
    return age


# --------------------------------------------------------------------------------------------
# Data


def find_cdi_file(data: str | Path) -> Path:
    """``data`` itself when it is a file, else ``cdi_childes.json[.gz]`` inside it."""
    data = Path(data)
    if data.is_file():
        return data
    if not data.is_dir():
        raise UserError(f"{data}: no such AoA data folder or file")
    for name in FILE_NAMES:
        if (data / name).is_file():
            return data / name
    raise UserError(f"{data}: no {' or '.join(FILE_NAMES)} in this folder")


def load_contexts(path: str | Path, min_context: int = 0) -> dict[str, list[str]]:
    """``{word: [context, ...]}`` from ``cdi_childes.json``, filtered as the pipeline filters."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({str(exc).strip().splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object mapping each word to a list of {{'context': ...}}")
    words: dict[str, list[str]] = {}
    for word, entries in raw.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("context"), str)
                                                    for e in entries):
            raise UserError(f"{path}: word {word!r}: expected a list of objects with a string 'context'")
        if len(word) > 1 and len(entries) >= min_context:
            words[word] = [e["context"] for e in entries]
    if not words:
        raise UserError(f"{path}: no word longer than one character with at least {min_context} contexts")
    return words


def load_human_aoa(path: str | Path) -> dict[str, float]:
    """Children's AoA per word from a Wordbank CDI table (CSV, ``word`` and month columns ``16``..``30``)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such human AoA table")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{path}: not a readable CSV file ({str(exc).strip().splitlines()[0]})") from None
    columns = [str(a) for a in AGES if str(a) in table.columns]
    if "word" not in table.columns or not columns:
        raise UserError(f"{path}: expected a 'word' column and month columns 16..30")
    values = table[columns].apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & table[columns].notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise UserError(f"{path}: data row {row + 1}, column {columns[col]}: expected a proportion, "
                        f"got {table[columns[col]].iloc[row]!r}")
    ages = np.array([int(c) for c in columns])
    out: dict[str, float] = {}
    for word, row in zip(table["word"], values.to_numpy(dtype=np.float64)):
        if word in out or not isinstance(word, str):  # the pipeline uses a word's first row
            continue
        aoa = child_aoa(ages, row)
        out[word] = float("nan") if aoa is None else aoa
    return out


# --------------------------------------------------------------------------------------------
# Surprisal


def context_queries(tokenizer, context: str, word: str) -> list[Query]:
    """Next-token queries for the word's tokens after ``context.strip() + " "`` (the pipeline's input)."""
    text = context.strip() + " " + word.strip()
    start = len(text) - len(word.strip())
    enc = tokenizer(text, return_offsets_mapping=True)
    ids = enc["input_ids"]
    return [(tuple(ids[:i]), ids[i]) for i, (_, end) in enumerate(enc["offset_mapping"]) if end > start and i > 0]


def checkpoint_surprisals(model, tokenizer, words: dict[str, list[str]], batch_size: int = 64,
                          progress: bool = False, desc: str = "aoa") -> list[float]:
    """Surprisal (nats) of every (word, context) pair, in ``words`` order, for one model."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"{getattr(tokenizer, 'name_or_path', 'tokenizer')}: AoA needs a fast tokenizer (character offsets)")
    queries: list[Query] = []
    spans = []
    for word, contexts in words.items():
        for context in contexts:
            qs = context_queries(tokenizer, context, word)
            spans.append((len(queries), len(queries) + len(qs)))
            queries.extend(qs)
    logp = next_token_logprobs(model, queries, batch_size=batch_size, progress=progress, desc=desc)
    return [-float(logp[a:b].sum()) for a, b in spans]


def _model_dirs(path: Path) -> list[Path]:
    """The model folders with word-count checkpoints: ``path`` itself, else its subfolders (a run folder)."""
    if list_word_checkpoints(path):
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and list_word_checkpoints(p)) if path.is_dir() else []
    if not found:
        raise UserError(f"{path}: no word-count checkpoints ({WORD_CHECKPOINTS_DIR}/chck_{{N}}M folders) in this "
                        "model folder or in the model folders of this run folder; train with word checkpoints first")
    return found


def summarise(entries: list[dict], human: dict[str, float] | None) -> dict:
    """Model AoA per word from the surprisal entries, and the curve-fitness score when ``human`` is given."""
    from scipy.stats import pearsonr, spearmanr

    points: dict[str, list[tuple[int, float]]] = {}
    for e in entries:
        points.setdefault(e["target_word"], []).append((e["word_count"], e["surprisal"]))
    model = {}
    for word, pts in points.items():
        pts.sort(key=lambda p: p[0])  # stable: contexts keep their order within a checkpoint
        steps = np.array([p[0] for p in pts], dtype=np.float64)
        values = np.array([np.nan if p[1] is None else p[1] for p in pts], dtype=np.float64)
        model[word] = model_aoa(steps, values)
    out: dict = {"model_aoa": model, "words_with_model_aoa": sum(v is not None for v in model.values())}
    if human is None:
        out["curve_fitness"] = None
        out["message"] = ("no human AoA table given (--human-aoa cdi_human.csv: Wordbank CDI production proportions, "
                          "columns word,16..30; not bundled with the 2025 data): model AoA only, no score")
        return out
    both = [(w, a, human[w]) for w, a in model.items() if a is not None and not math.isnan(human.get(w, math.nan))]
    out["n_words"] = len(both)
    out["scored_words"] = [w for w, _, _ in both]
    if len(both) < MIN_POINTS:
        out["curve_fitness"] = 0.0
        out["message"] = f"only {len(both)} words have both a model and a child AoA; the pipeline scores this 0"
        return out
    m = [a for _, a, _ in both]
    c = [h for _, _, h in both]
    r, p = pearsonr(m, c)
    out.update(curve_fitness=float(r), p_value=float(p), spearman=float(spearmanr(m, c)[0]),
               child_aoa={w: h for w, _, h in both})
    return out


def evaluate_aoa(model_dir: str | Path, data: str | Path, human_aoa: str | Path | None = None,
                 out_dir: str | Path | None = None, min_context: int = 0, batch_size: int = 64,
                 dtype: str = "float32", device: str | None = None, progress: bool = True) -> dict:
    """Surprisal of the CDI words at every word-count checkpoint of one model, then the AoA fits.

    Writes ``surprisal.json`` (the pipeline's file: ``{"metadata", "results": [{step, word_count,
    target_word, context_id, context, surprisal}]}``) and ``results.json`` under ``out_dir``
    (default ``MODEL_DIR/aoa``). Returns the results dict.
    """
    from babyllama.evaluation.zero_shot import load_model

    model_dir = Path(model_dir)
    checkpoints = list_word_checkpoints(model_dir)
    if not checkpoints:
        raise UserError(f"{model_dir}: no word-count checkpoints under {WORD_CHECKPOINTS_DIR}/")
    path = find_cdi_file(data)
    words = load_contexts(path, min_context)
    human = load_human_aoa(human_aoa) if human_aoa is not None else None

    entries: list[dict] = []
    start = time.perf_counter()
    for count, folder in checkpoints:
        model, tokenizer, _ = load_model(folder, dtype=dtype, device=device)
        values = checkpoint_surprisals(model, tokenizer, words, batch_size=batch_size, progress=progress,
                                       desc=f"aoa {folder.name}")
        del model
        it = iter(values)
        for word, contexts in words.items():
            for k, context in enumerate(contexts):
                s = next(it)
                entries.append({"step": folder.name, "word_count": count, "target_word": word, "context_id": k,
                                "context": context, "surprisal": None if math.isnan(s) else s})
    elapsed = time.perf_counter() - start
    summary = summarise(entries, human)
    out = Path(out_dir) if out_dir is not None else model_dir / "aoa"
    contexts = sum(len(c) for c in words.values())
    atomic_write_json(out / "surprisal.json", {
        "metadata": {"model_name": str(model_dir), "use_bos_only": False, "total_steps": len(checkpoints),
                     "completed_steps": len(checkpoints)},
        "results": entries,
    })
    results = {
        "model": str(model_dir), "data": str(path), "human_aoa": None if human_aoa is None else str(human_aoa),
        "checkpoints": [folder.name for _, folder in checkpoints], "words": len(words),
        "contexts_per_checkpoint": contexts, **summary,
        "settings": {**SETTINGS, "min_context": min_context, "batch_size": batch_size, "dtype": dtype},
        "scoring_time_s": elapsed,
    }
    atomic_write_json(out / "results.json", results)
    return results


def _run(args: argparse.Namespace) -> int:
    if args.human_aoa is not None and not Path(args.human_aoa).is_file():
        raise UserError(f"{args.human_aoa}: no such human AoA table")
    models = _model_dirs(Path(args.model_or_run))
    find_cdi_file(args.data)
    if args.out is not None and len(models) > 1:
        raise UserError("--out takes one model; this run folder holds several models with checkpoints")
    for model_dir in models:
        r = evaluate_aoa(model_dir, args.data, args.human_aoa, args.out, min_context=args.min_context,
                         batch_size=args.batch_size, dtype=args.dtype, device=args.device, progress=not args.quiet)
        out = Path(args.out) if args.out is not None else model_dir / "aoa"
        print(f"{model_dir}: {len(r['checkpoints'])} checkpoints, {r['words']} words, {r['contexts_per_checkpoint']} "
              f"contexts; model AoA for {r['words_with_model_aoa']} words")
        if r["curve_fitness"] is None:
            print(r["message"])
        else:
            print(f"AoA curve fitness (Pearson r): {r['curve_fitness']:.3f} over {r['n_words']} words")
        print(f"wrote {out / 'surprisal.json'} and {out / 'results.json'}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``aoa`` subcommand to ``subparsers`` (under ``babyllama evaluate``)."""
    parser = subparsers.add_parser(
        "aoa",
        help="BabyLM 2025 age of acquisition: word surprisal over the word-count checkpoints",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=wrapped(
            "Surprisal of the CDI words in their contexts at every word-count checkpoint "
            "(MODEL_DIR/word_checkpoints/chck_{N}M) of a model, or of every model of a run folder, then the 2025 "
            "pipeline's AoA fits.\n\n"
            "Surprisal: -sum ln p of the word's tokens after context.strip() + ' ' (default special tokens; tokens "
            "whose span ends after the word's start). Words longer than one character with at least --min-context "
            "contexts (default 0, as the pipeline runs).\n"
            "Model AoA: sigmoid fit of -surprisal against log10(words seen + 1) over all (checkpoint, context) "
            "points; the threshold is halfway between log2(300000) (bits, against nats: the pipeline's quirk, kept) "
            "and the word's lowest surprisal; AoA = log10 words where the fit crosses it, within the observed range.\n"
            "Child AoA (--human-aoa): bounded sigmoid over months 16-30, age at proportion 0.5. Score: Pearson r "
            "between model and child AoA (0 with fewer than 3 words), printed as r. Without the table (not bundled "
            "with the 2025 data) only the model AoAs are written.\n\n"
            "Writes OUT/surprisal.json (the pipeline's file) and OUT/results.json (default OUT: MODEL_DIR/aoa)."
        ),
    )
    parser.add_argument("model_or_run", metavar="MODEL_OR_RUN",
                        help="a model folder with word_checkpoints/, or a run folder whose model folders have them")
    parser.add_argument("--data", required=True, type=Path,
                        help="folder holding cdi_childes.json or cdi_childes.json.gz (or the file itself)")
    parser.add_argument("--human-aoa", type=Path, default=None, metavar="FILE",
                        help="Wordbank CDI table cdi_human.csv (columns word, 16..30): children's production proportions")
    parser.add_argument("--min-context", type=int, default=0, help="keep words with at least this many contexts (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="output folder for one model (default: MODEL_DIR/aoa)")
    add_scoring_options(parser)
    parser.set_defaults(func=_run)
    return parser
