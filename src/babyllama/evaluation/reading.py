"""``babyllama evaluate reading``: the BabyLM 2025 reading task (eye tracking and self-paced reading).

The 2025 pipeline's causal scorer (``reading/run.py``, ``reading/evaluation_functions.py``), rule
for rule (see SCORING.md section 6):

- data: ``reading_data.csv``, one row per target word. pandas reads the context ``None`` (row 320)
  as missing and it is refilled with the string ``"None"``; ``prev_item`` is not refilled, so a
  missing previous context means "no previous word";
- ``p(word | item)``: the context is tokenised with the tokenizer's default special tokens and the
  model's distribution is read at its last position, for the first sub-token of the word tokenised
  on its own (no special tokens, no leading space added by the code; a tokenizer with
  ``add_prefix_space`` adds its own). For each further sub-token the pipeline appends the decoded
  earlier sub-tokens to the context *string*, re-tokenises it, and takes the first token of the
  decoded sub-token re-tokenised on its own. p is the product; ``pred = -ln p`` (nats), and
  ``prev_pred`` the same for ``(prev_item, prev_word)`` (NaN without a previous item);
- scores: for each of RTfirstfix, RTfirstpass, RTgopast and RTrightbound an OLS baseline
  ``Subtlex_log10 + length + context_length`` with their pairwise interactions and the same model
  plus ``pred``; the gain is ``100 * (R2_model - R2_base) / (1 - R2_base)``, the eye-tracking score
  the mean over the four. Self-paced reading: baseline ``Subtlex_log10, length, context_length,
  prev_length, prev_pred`` with all ten pairwise interactions, plus ``pred``, same gain for
  ``self_paced_reading_time``. Each fit drops the rows with a missing value in its own variables
  (so the baseline and the model may see different rows, and sentence-initial words drop out of
  the self-paced fits).

What differs is the speed only: every probability is phrased as a next-token query on the exact
token sequence the pipeline builds (:mod:`babyllama.evaluation.next_token`), so the sub-tokens of
a word, the previous word and usually all words of a sentence share one forward pass, and pairs
that occur twice (a row's previous word is another row's word) are scored once.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from babyllama.errors import UserError
from babyllama.evaluation.cli_options import add_scoring_options, wrapped
from babyllama.evaluation.next_token import Query, forward_passes, next_token_logprobs
from babyllama.io import atomic_write_json

FILE_NAMES = ("reading_data.csv", "reading_data.csv.gz")
EYE_TRACKING = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")
SELF_PACED = "self_paced_reading_time"
ET_PREDICTORS = ("Subtlex_log10", "length", "context_length")
SPR_PREDICTORS = ("Subtlex_log10", "length", "context_length", "prev_length", "prev_pred")
NUMERIC = ("Subtlex_log10", "length", "context_length", "prev_length", *EYE_TRACKING, SELF_PACED)
REQUIRED = ("item", "word", "prev_item", "prev_word", *NUMERIC)

SETTINGS = {
    "pipeline": "babylm/evaluation-pipeline-2025 reading/run.py, causal backend",
    "surprisal": "-ln p(word | item) in nats; p = product over the word's sub-tokens as the pipeline builds "
                 "them (context re-tokenised with the decoded earlier sub-tokens appended as text)",
    "context_tokens": "tokenizer(item) with the tokenizer's default special tokens; prediction read at its last position",
    "word_tokens": "tokenizer(word, add_special_tokens=False); no leading space added",
    "missing_context": "item read as missing by pandas (the word 'None', row 320) is refilled with 'None'; prev_item is not, so a previous context 'None' counts as no previous word (prev_pred NaN)",
    "prev_pred": "surprisal of (prev_item, prev_word); NaN (null in predictions.json) without a previous item",
    "eye_tracking_score": "mean over RTfirstfix, RTfirstpass, RTgopast, RTrightbound of "
                          "100 * (R2_model - R2_base) / (1 - R2_base); base: Subtlex_log10 + length + context_length "
                          "+ pairwise interactions; model: base + pred (statsmodels OLS)",
    "self_paced_reading_score": "100 * (R2_model - R2_base) / (1 - R2_base) for self_paced_reading_time; base: "
                                "Subtlex_log10, length, context_length, prev_length, prev_pred + all 10 pairwise "
                                "interactions; model: base + pred",
    "missing_rows": "each fit drops rows with a missing value in its own variables (dropna per fit)",
    "precision": "log-probabilities in float32 from the model, summed in float64 (the pipeline multiplies "
                 "float32 probabilities); differences are rounding only",
    "not_reported": "the EEG measures (ELAN, LAN, N400, P600, EPNP, PNP), fitted but not reported by the pipeline, are skipped",
}


def find_reading_file(data: str | Path) -> Path:
    """The reading CSV: ``data`` itself when it is a file, else ``reading_data.csv[.gz]`` inside it."""
    data = Path(data)
    if data.is_file():
        return data
    if not data.is_dir():
        raise UserError(f"{data}: no such reading data folder or file")
    for name in FILE_NAMES:
        if (data / name).is_file():
            return data / name
    raise UserError(f"{data}: no {' or '.join(FILE_NAMES)} in this folder")


def load_reading(path: str | Path):
    """Read the reading CSV as the pipeline does; check columns and types. Returns a pandas DataFrame."""
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"item": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable CSV file ({str(exc).strip().splitlines()[0]})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; expected the 2025 reading_data.csv columns")
    if len(df) == 0:
        raise UserError(f"{path}: no rows")
    for column in NUMERIC:
        if not pd.api.types.is_numeric_dtype(df[column]):
            bad = pd.to_numeric(df[column], errors="coerce").isna() & df[column].notna()
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"{path}: column {column!r}, data row {row + 1}: expected a number, got {df[column].iloc[row]!r}")
    df["item"] = df["item"].fillna("None")
    bad_word = [i for i, w in enumerate(df["word"]) if not isinstance(w, str) or not w]
    if bad_word:
        raise UserError(f"{path}: data row {bad_word[0] + 1}: empty target word")
    for i, (item, word) in enumerate(zip(df["prev_item"], df["prev_word"])):
        if isinstance(item, str) and not (isinstance(word, str) and word):
            raise UserError(f"{path}: data row {i + 1}: prev_item {item!r} without a prev_word")
    return df


def word_queries(tokenizer, context: str, word: str) -> list[Query]:
    """The next-token queries whose probabilities multiply to the pipeline's ``p(word | context)``.

    Query k is ``(tokens of context + decoded sub-tokens 0..k-1, first token of sub-token k decoded
    and re-tokenised)``, the exact input and target of the pipeline's k-th model call.
    """
    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not target:
        raise UserError(f"target word {word!r} tokenises to no tokens")
    queries = [(tuple(tokenizer(context)["input_ids"]), target[0])]
    text = context + tokenizer.decode([target[0]])
    for token in target[1:]:
        piece = tokenizer.decode([token])
        piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        if not piece_ids:
            raise UserError(f"sub-token {piece!r} of target word {word!r} re-tokenises to no tokens")
        queries.append((tuple(tokenizer(text)["input_ids"]), piece_ids[0]))
        text += piece
    return queries


def surprisals(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 64, progress: bool = False):
    """``-ln p(word | context)`` (float64, len(pairs)) for each ``(context, word)``, and the forward passes run."""
    unique = list(dict.fromkeys(pairs))
    queries: list[Query] = []
    spans = []
    for context, word in unique:
        qs = word_queries(tokenizer, context, word)
        spans.append((len(queries), len(queries) + len(qs)))
        queries.extend(qs)
    logp = next_token_logprobs(model, queries, batch_size=batch_size, progress=progress, desc="reading")
    value = {pair: -float(logp[a:b].sum()) for pair, (a, b) in zip(unique, spans)}
    return np.array([value[p] for p in pairs], dtype=np.float64), forward_passes(queries), len(queries)


def relative_r2_gain(df, dv: str, predictors: tuple[str, ...], added: str = "pred") -> dict:
    """OLS of ``dv`` on ``predictors`` + their pairwise interactions, without and with ``added``.

    Returns the two R^2, the gain ``100 * (R2_model - R2_base) / (1 - R2_base)``, the rows of each
    fit, and the coefficient, t value and p value of ``added``. Rows with a missing value in a
    fit's variables are dropped for that fit (the pipeline's ``dropna``).
    """
    import statsmodels.formula.api as smf

    pairs = [f"{a}:{b}" for i, a in enumerate(predictors) for b in predictors[i + 1 :]]
    base_formula = f"{dv} ~ " + " + ".join([*predictors, *pairs])
    base_data = df[[dv, *predictors]].dropna()
    model_data = df[[added, dv, *predictors]].dropna()
    base = smf.ols(base_formula, data=base_data).fit()
    full = smf.ols(f"{base_formula} + {added}", data=model_data).fit()
    r2_base, r2_model = float(base.rsquared), float(full.rsquared)
    return {
        "r2_base": r2_base, "r2_model": r2_model,
        "gain": 100.0 * (r2_model - r2_base) / (1.0 - r2_base),
        "rows_base": int(base.nobs), "rows_model": int(full.nobs),
        "coefficient": float(full.params[added]), "t_value": float(full.tvalues[added]),
        "p_value": float(full.pvalues[added]),
    }


def reading_scores(df) -> dict:
    """The eye-tracking and self-paced-reading scores of a frame with ``pred`` and ``prev_pred`` columns."""
    et = {dv: relative_r2_gain(df, dv, ET_PREDICTORS) for dv in EYE_TRACKING}
    spr = relative_r2_gain(df, SELF_PACED, SPR_PREDICTORS)
    return {
        "eye_tracking": float(np.mean([et[dv]["gain"] for dv in EYE_TRACKING])),
        "self_paced_reading": spr["gain"],
        "measures": {**et, SELF_PACED: spr},
    }


def evaluate_reading(model_dir: str | Path, data: str | Path, out_dir: str | Path | None = None,
                     batch_size: int = 64, dtype: str = "float32", device: str | None = None,
                     progress: bool = True) -> dict:
    """Score one causal LM directory on the reading task; write ``results.json`` and ``predictions.json``.

    ``out_dir`` defaults to ``MODEL_DIR/reading``. Returns the results dict.
    """
    from babyllama.evaluation.zero_shot import load_model

    path = find_reading_file(data)
    df = load_reading(path)
    if not (Path(model_dir) / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model directory (no config.json)")
    model, tokenizer, device = load_model(model_dir, dtype=dtype, device=device)

    has_prev = [isinstance(p, str) for p in df["prev_item"]]
    pairs = list(zip(df["item"], df["word"]))
    prev_pairs = [(p, w) for p, w, h in zip(df["prev_item"], df["prev_word"], has_prev) if h]
    start = time.perf_counter()
    values, passes, queries = surprisals(model, tokenizer, pairs + prev_pairs, batch_size=batch_size, progress=progress)
    elapsed = time.perf_counter() - start
    pred = values[: len(pairs)]
    prev_pred = np.full(len(pairs), np.nan)
    prev_pred[np.flatnonzero(has_prev)] = values[len(pairs):]
    df["pred"], df["prev_pred"] = pred, prev_pred
    scores = reading_scores(df)

    results = {
        "model": str(model_dir), "data": str(path), "rows": len(df),
        "eye_tracking": scores["eye_tracking"], "self_paced_reading": scores["self_paced_reading"],
        "measures": scores["measures"],
        "settings": {**SETTINGS, "batch_size": batch_size, "dtype": dtype, "device": str(device)},
        "surprisal": {"mean": float(np.mean(pred)), "max": float(np.max(pred))},
        "model_queries": queries, "forward_passes": passes, "scoring_time_s": elapsed,
        "torch": torch.__version__, "python": platform.python_version(),
    }
    out = Path(out_dir) if out_dir is not None else Path(model_dir) / "reading"
    predictions = {"reading": {"predictions": [
        {"id": int(i), "pred": float(p), "prev_pred": None if math.isnan(q) else float(q)}
        for i, p, q in zip(df.index, pred, prev_pred)
    ]}}
    atomic_write_json(out / "predictions.json", predictions)
    atomic_write_json(out / "results.json", results)
    return results


def format_table(results: dict) -> str:
    """Plain-text summary: the two scores and each measure's R^2 gain."""
    lines = [f"model: {results['model']}  ({results['rows']} words, {results['forward_passes']} forward passes)",
             f"{'measure':<26} {'R2 base':>9} {'R2 model':>9} {'gain %':>8}"]
    for name, m in results["measures"].items():
        lines.append(f"{name:<26} {m['r2_base']:>9.4f} {m['r2_model']:>9.4f} {m['gain']:>8.3f}")
    lines.append(f"EYE TRACKING SCORE: {results['eye_tracking']:.2f}")
    lines.append(f"SELF-PACED READING SCORE: {results['self_paced_reading']:.2f}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    results = evaluate_reading(args.model_dir, args.data, args.out, batch_size=args.batch_size, dtype=args.dtype,
                               device=args.device, progress=not args.quiet)
    print(format_table(results))
    out = Path(args.out) if args.out is not None else Path(args.model_dir) / "reading"
    print(f"wrote {out / 'results.json'} and {out / 'predictions.json'}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``reading`` subcommand to ``subparsers`` (under ``babyllama evaluate``)."""
    parser = subparsers.add_parser(
        "reading",
        help="BabyLM 2025 reading task: surprisal vs eye-tracking and self-paced reading times",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=wrapped(
            "Score a causal LM directory on the BabyLM 2025 reading task exactly as the 2025 pipeline's causal "
            "scorer does, in fewer forward passes.\n\n"
            "Surprisal = -ln p(word | context) in nats, the product over the word's sub-tokens as the pipeline builds "
            "them: context tokenised with default special tokens, prediction read at its last position; the word "
            "tokenised alone without special tokens and without an added space; each further sub-token scored after "
            "appending the decoded earlier ones to the context text and re-tokenising. The context 'None' (read as "
            "missing by pandas) is refilled with 'None'.\n"
            "Eye-tracking score: mean over RTfirstfix, RTfirstpass, RTgopast, RTrightbound of 100 * (R2_model - "
            "R2_base) / (1 - R2_base), OLS base Subtlex_log10 + length + context_length + pairwise interactions, "
            "model base + surprisal. Self-paced-reading score: the same gain for self_paced_reading_time with "
            "prev_length and the previous word's surprisal added to the base (all 10 pairwise interactions). "
            "Each fit drops rows with missing values in its own variables.\n\n"
            "Writes OUT/results.json (scores, per-measure fits, settings) and OUT/predictions.json "
            "({'reading': {'predictions': [{'id', 'pred', 'prev_pred'}]}}, the pipeline's file; prev_pred null "
            "where the pipeline writes NaN)."
        ),
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="model directory (config.json, weights, tokenizer)")
    parser.add_argument("--data", required=True, type=Path,
                        help="folder holding reading_data.csv or reading_data.csv.gz (or the CSV file itself)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: MODEL_DIR/reading)")
    add_scoring_options(parser)
    parser.set_defaults(func=_run)
    return parser
