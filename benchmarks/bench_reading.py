"""Benchmark: the BabyLM 2025 reading task, babyllama vs the 2025 pipeline's algorithm, same model and data.

The pipeline's causal reading scorer (SCORING.md section 6) runs the model once per sub-token of
every target word, at batch size 1, for each row's word and again for its previous word: the
context is tokenised and run, the first sub-token's probability read at the last position; each
further sub-token's context is the context text plus the decoded earlier sub-tokens, re-tokenised
and run again. :func:`pipeline_surprisals` implements exactly that (written from SCORING.md, not
copied). ``babyllama.evaluation.reading`` asks the same probabilities of the same token sequences,
but answers all queries whose sequence is a prefix of another's from one forward pass, batched.

Times the surprisal computation of both on the staged ``reading_data.csv`` (1,726 rows), checks the
largest surprisal difference and that both give the same eye-tracking and self-paced-reading
scores, and prints one JSON line per measurement plus a final line with the speed ratio.

Model: the random ~14M-parameter Llama with a 16000-token BPE tokenizer of
``bench_zero_shot.py`` (built once, cached in --work-dir).

    python benchmarks/bench_reading.py --threads 1
    python benchmarks/bench_reading.py --threads 1 --skip-reading --aoa-words 100   # AoA, one checkpoint
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = next((p for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")) if p.is_dir()), REPO.parent / "shared" / "data")
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pipeline_probability(model, tokenizer, context: str, word: str) -> float:
    """p(word | context) the 2025 pipeline's way: one batch-1 forward pass per sub-token, product of softmaxes."""
    def next_prob(text: str, piece_id: int) -> float:
        inputs = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        return torch.softmax(logits, dim=-1)[piece_id].item()

    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    probs = [next_prob(context, target[0])]
    text = context + tokenizer.decode([target[0]])
    for token in target[1:]:
        piece = tokenizer.decode([token])
        probs.append(next_prob(text, tokenizer(piece, add_special_tokens=False)["input_ids"][0]))
        text += piece
    return float(np.prod(probs))


def pipeline_surprisals(model, tokenizer, df) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``prev_pred`` for every row, row by row as the pipeline loops."""
    pred, prev = [], []
    for item, word, prev_item, prev_word in zip(df["item"], df["word"], df["prev_item"], df["prev_word"]):
        pred.append(-math.log(pipeline_probability(model, tokenizer, item, word)))
        if isinstance(prev_item, str):
            prev.append(-math.log(pipeline_probability(model, tokenizer, prev_item, prev_word)))
        else:
            prev.append(float("nan"))
    return np.array(pred), np.array(prev)


def pipeline_aoa_surprisal(model, tokenizer, context: str, word: str) -> float:
    """The 2025 pipeline's AoA surprisal of ``word`` after ``context`` (SCORING.md section 7): one
    batch-1 pass over the whole text, log-softmax at every position, sum over the word's tokens."""
    text = context.strip() + " " + word.strip()
    start = len(text) - len(word.strip())
    enc = tokenizer(text, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    mask = torch.tensor([[int(end > start) for _, end in enc["offset_mapping"]]])[:, 1:]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids[:, :-1]).logits, dim=-1)
    target = torch.gather(logp, -1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return -float((target * mask).sum())


def bench_aoa(model, tokenizer, data: Path, n_words: int, batch_size: int) -> None:
    """Time one checkpoint's AoA surprisals, ours against the pipeline's loop, on the first ``n_words`` words."""
    from babyllama.evaluation.aoa import checkpoint_surprisals, find_cdi_file, load_contexts

    words = dict(list(load_contexts(find_cdi_file(data)).items())[:n_words])
    start = time.perf_counter()
    ours = checkpoint_surprisals(model, tokenizer, words, batch_size=batch_size)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    ref = [pipeline_aoa_surprisal(model, tokenizer, c, w) for w, cs in words.items() for c in cs]
    ref_s = time.perf_counter() - start
    print(json.dumps({"task": "aoa, one checkpoint", "words": len(words), "contexts": len(ref),
                      "babyllama_seconds": round(ours_s, 2), "pipeline_algorithm_seconds": round(ref_s, 2),
                      "max_abs_surprisal_diff": float(np.max(np.abs(np.array(ours) - np.array(ref)))),
                      "speedup": round(ref_s / ours_s, 1)}), flush=True)


def main() -> None:
    from bench_zero_shot import build_model

    from babyllama.evaluation.reading import find_reading_file, load_reading, reading_scores, surprisals
    from babyllama.evaluation.zero_shot import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/babyllama-bench-zero-shot"))
    parser.add_argument("--data", type=Path, default=DATA / "babylm_eval_2025" / "reading")
    parser.add_argument("--text", type=Path, default=DATA / "babylm_text_2023_partial" / "train_10M")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--aoa-words", type=int, default=0,
                        help="also time one checkpoint of the AoA surprisals on the first N CDI words (0: skip)")
    parser.add_argument("--aoa-data", type=Path, default=DATA / "babylm_eval_2025" / "aoa")
    parser.add_argument("--skip-reading", action="store_true", help="only the AoA timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if not any(args.text.glob("*.gz")):
        raise SystemExit(f"{args.text}: no *.gz text files to train the benchmark tokenizer on")
    model_dir = build_model(args.work_dir, args.text)
    model, tokenizer, _ = load_model(model_dir, device="cpu")
    if args.aoa_words:
        bench_aoa(model, tokenizer, args.aoa_data, args.aoa_words, args.batch_size)
    if args.skip_reading:
        return
    df = load_reading(find_reading_file(args.data))
    has_prev = [isinstance(p, str) for p in df["prev_item"]]
    pairs = list(zip(df["item"], df["word"]))
    prev_pairs = [(p, w) for p, w, h in zip(df["prev_item"], df["prev_word"], has_prev) if h]

    start = time.perf_counter()
    values, passes, queries = surprisals(model, tokenizer, pairs + prev_pairs, batch_size=args.batch_size)
    ours_s = time.perf_counter() - start
    ours_pred = values[: len(pairs)]
    ours_prev = np.full(len(pairs), np.nan)
    ours_prev[np.flatnonzero(has_prev)] = values[len(pairs):]
    print(json.dumps({"impl": "babyllama", "batch_size": args.batch_size, "seconds": round(ours_s, 2),
                      "forward_passes": passes, "model_queries": queries}), flush=True)

    start = time.perf_counter()
    ref_pred, ref_prev = pipeline_surprisals(model, tokenizer, df)
    ref_s = time.perf_counter() - start
    pipeline_passes = sum(  # one pass per sub-token of every scored (context, word)
        len(tokenizer(w, add_special_tokens=False)["input_ids"]) for _, w in pairs + prev_pairs)
    print(json.dumps({"impl": "pipeline algorithm", "batch_size": 1, "seconds": round(ref_s, 2),
                      "forward_passes": pipeline_passes}), flush=True)

    both = np.concatenate([ours_pred, ours_prev[np.array(has_prev)]])
    ref = np.concatenate([ref_pred, ref_prev[np.array(has_prev)]])
    ours_scores = reading_scores(df.assign(pred=ours_pred, prev_pred=ours_prev))
    ref_scores = reading_scores(df.assign(pred=ref_pred, prev_pred=ref_prev))
    print(json.dumps({
        "rows": len(df), "max_abs_surprisal_diff": float(np.max(np.abs(both - ref))),
        "eye_tracking": [round(ours_scores["eye_tracking"], 6), round(ref_scores["eye_tracking"], 6)],
        "self_paced_reading": [round(ours_scores["self_paced_reading"], 6), round(ref_scores["self_paced_reading"], 6)],
        "speedup": round(ref_s / ours_s, 1), "threads": args.threads,
    }), flush=True)


if __name__ == "__main__":
    main()
