"""Item-by-item comparison of babyllama's zero-shot scores with lm-evaluation-harness on full BLiMP.

For one model folder, scores every BLiMP pair with babyllama (``encode_items`` + ``score_encoded``,
the code path of ``babyllama evaluate zero-shot``) and with lm-eval (``simple_evaluate``, model
``hf``, the BabyLM 2024 ``blimp_filtered`` template per paradigm, ``log_samples=True``), then counts:

- items whose choice (good sentence preferred or not) differs between the two;
- for each differing item, the gap ``logp(good) - logp(bad)`` in both implementations;
- the largest absolute difference between the two implementations' sentence log-probabilities.

Prints one JSON summary line (and writes it to ``--out`` if given)::

    python benchmarks/parity_blimp.py --model runs/some_model [--paradigms 0] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zero_shot import DATA, harness_task_dir  # noqa: E402


def harness_scores(model_dir: Path, files: list[Path], work_dir: Path, batch_size: int) -> dict[str, np.ndarray]:
    """lm-eval's (good, bad) log-likelihoods per paradigm: ``{paradigm: array (items, 2)}`` in file order."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    names = harness_task_dir(files, work_dir / "harness_tasks")
    out = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=names,
        task_manager=TaskManager(include_path=str(work_dir / "harness_tasks")),
        batch_size=batch_size, device="cpu", log_samples=True,
    )
    scores = {}
    for name in names:
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        scores[name.removeprefix("bench_blimp_")] = np.array(
            [[float(resp[0]) for resp in s["filtered_resps"]] for s in samples], dtype=np.float64)
    return scores


def our_scores(model_dir: Path, files: list[Path], batch_size: int) -> dict[str, np.ndarray]:
    """babyllama's (good, bad) sentence log-probabilities per paradigm, same layout as the harness's."""
    from babyllama.evaluation.minimal_pair_tasks import load_tasks
    from babyllama.evaluation.logprob_engine import score_encoded
    from babyllama.evaluation.zero_shot import encode_items, load_model, model_max_length

    model, tok, _ = load_model(model_dir, "float32", None)
    folder = Path(tempfile.mkdtemp(prefix="parity_blimp_"))
    for path in files:
        (folder / path.name).symlink_to(path.resolve())
    subtasks = load_tasks({"blimp": folder})["blimp"]
    scores = {}
    for sub in subtasks:
        encoded = encode_items(tok, sub.items, model_max_length(model, tok), sub.path)
        scores[sub.name] = np.array(score_encoded(model, encoded, batch_size, False), dtype=np.float64)
    return scores


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict:
    """Counts of differing choices and score differences; a tie counts as correct in both (argmax of 0)."""
    differing, max_abs, items, ties = [], 0.0, 0, 0
    for name in sorted(theirs):
        a, b = ours[name], theirs[name]
        if a.shape != b.shape:
            raise SystemExit(f"{name}: babyllama has {a.shape[0]} items, lm-eval {b.shape[0]}")
        items += len(a)
        max_abs = max(max_abs, float(np.abs(a - b).max()))
        ours_ok, theirs_ok = np.argmax(a, axis=1) == 0, np.argmax(b, axis=1) == 0
        ties += int((a[:, 0] == a[:, 1]).sum())
        for i in np.flatnonzero(ours_ok != theirs_ok):
            differing.append({"paradigm": name, "item": int(i), "gap_ours": float(a[i, 0] - a[i, 1]),
                              "gap_lm_eval": float(b[i, 0] - b[i, 1])})
    return {"items": items, "differing_items": len(differing), "exact_ties_ours": ties,
            "max_abs_logprob_difference": max_abs, "differing": differing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder (config, weights, tokenizer)")
    parser.add_argument("--blimp", type=Path, default=DATA / "blimp", help="BLiMP folder (67 jsonl.gz files)")
    parser.add_argument("--paradigms", type=int, default=0, help="use the first N paradigms (0: all 67)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of both implementations")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "babyllama-parity-blimp")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_CACHE", str(args.work_dir / "hf_datasets"))
    files = sorted(args.blimp.glob("*.jsonl*"))[: args.paradigms or None]
    start = time.perf_counter()
    ours = our_scores(args.model, files, args.batch_size)
    ours_s = time.perf_counter() - start
    theirs = harness_scores(args.model, files, args.work_dir, args.batch_size)
    summary = {"bench": "parity_blimp", "model": str(args.model), "paradigms": len(files),
               "babyllama_s": round(ours_s, 1), "total_s": round(time.perf_counter() - start, 1),
               **compare(ours, theirs)}
    text = json.dumps(summary)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
