"""Benchmark: zero-shot BLiMP scoring, babyllama vs lm-evaluation-harness, same model and data.

Builds (once, cached in --work-dir) a ~14M-parameter Llama (hidden 256, 8 layers, 8 heads, 4 KV
heads, SwiGLU 704, untied embeddings, random weights) with a 16000-token byte-level BPE tokenizer
trained on the BabyLM 2023 train_10M text, then times on the same BLiMP paradigms:

- ``babyllama`` ``evaluate_zero_shot`` (load, parse, encode, score) at each ``--batch-sizes``;
- lm-evaluation-harness ``simple_evaluate`` (model ``hf``, a task YAML per paradigm pointing at the
  local jsonl.gz file, offline) at each ``--harness-batch-sizes`` (batch 1 is how the BabyLM pipeline
  runs it), and checks that both give the same per-paradigm accuracies.

Prints one JSON line per measurement and a final line with the speed ratios. The harness at batch 1
takes about 7 minutes on full BLiMP on 2 CPU threads, so ``--paradigms N`` measures on the first N
paradigms; ratios on a subset are representative because every paradigm has 1000 pairs of
similar length.

    python benchmarks/bench_zero_shot.py --paradigms 8
    python benchmarks/bench_zero_shot.py --skip-harness          # ours only, full BLiMP
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def build_model(work_dir: Path, text_dir: Path) -> Path:
    """Train the tokenizer and save the random ~14M Llama under ``work_dir/model`` (cached)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    model_dir = work_dir / "model"
    if (model_dir / "model.safetensors").is_file():
        return model_dir
    lines = []
    for path in sorted(text_dir.glob("*.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines.extend(line for line in f.read().splitlines() if line.strip())
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=16000, min_frequency=2, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(lines, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=704, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=256, rms_norm_eps=1e-6,
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    tokenizer.save_pretrained(model_dir)
    model.save_pretrained(model_dir)
    return model_dir


def harness_task_dir(files: list[Path], out: Path) -> list[str]:
    """Write one lm-eval task YAML per BLiMP file (the BabyLM 2024 ``blimp_filtered`` template)."""
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for path in files:
        name = "bench_blimp_" + path.name.removesuffix(".gz").removesuffix(".jsonl")
        (out / f"{name}.yaml").write_text(
            f"task: {name}\n"
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files: {json.dumps(str(path))}\n"
            "output_type: multiple_choice\n"
            "validation_split: train\n"
            'doc_to_text: ""\n'
            "doc_to_target: 0\n"
            'doc_to_choice: "{{[sentence_good, sentence_bad]}}"\n'
            "num_fewshot: 0\n"
            "metric_list:\n  - metric: acc\n"
            "metadata:\n  version: 1.0\n"
        )
        names.append(name)
    return names


def run_harness(model_dir: Path, files: list[Path], work_dir: Path, batch_size: int) -> tuple[float, dict]:
    """Time lm-eval ``simple_evaluate`` on ``files``; returns (seconds, {paradigm: accuracy})."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    names = harness_task_dir(files, work_dir / "harness_tasks")
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype=float32",
        tasks=names,
        task_manager=TaskManager(include_path=str(work_dir / "harness_tasks")),
        batch_size=batch_size,
        device="cpu",
    )
    elapsed = time.perf_counter() - start
    accs = {name.removeprefix("bench_blimp_"): out["results"][name]["acc,none"] for name in names}
    return elapsed, accs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blimp", type=Path, default=DATA / "blimp", help="BLiMP folder (67 jsonl.gz files)")
    parser.add_argument("--text", type=Path, default=DATA / "babylm_text_2023_partial" / "train_10M",
                        help="text to train the benchmark tokenizer on")
    parser.add_argument("--paradigms", type=int, default=0, help="use the first N paradigms (0: all 67)")
    parser.add_argument("--batch-sizes", default="64", help="babyllama batch sizes, comma-separated")
    parser.add_argument("--harness-batch-sizes", default="1,64", help="lm-eval batch sizes, comma-separated")
    parser.add_argument("--skip-harness", action="store_true", help="time babyllama only")
    parser.add_argument("--dtype", default="float32", help="babyllama compute dtype (the harness runs float32)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads for both implementations (0: torch's default)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "babyllama-bench-zero-shot")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_CACHE", str(args.work_dir / "hf_datasets"))
    from babyllama.evaluation.zero_shot import evaluate_zero_shot

    if args.threads:
        torch.set_num_threads(args.threads)

    model_dir = build_model(args.work_dir, args.text)
    files = sorted(args.blimp.glob("*.jsonl*"))
    if args.paradigms:
        files = files[: args.paradigms]
    subset = args.work_dir / f"blimp_{len(files)}"
    subset.mkdir(parents=True, exist_ok=True)
    for path in files:
        link = subset / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    pairs = sum(1 for path in files for line in gzip.open(path, "rt") if line.strip())
    common = {"paradigms": len(files), "pairs": pairs, "threads": torch.get_num_threads(), "load": os.getloadavg()[0]}

    ours: dict[int, float] = {}
    our_accs: dict = {}
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        start = time.perf_counter()
        res = evaluate_zero_shot(model_dir, {"blimp": subset}, None, batch_size=bs, dtype=args.dtype, progress=False)
        ours[bs] = time.perf_counter() - start
        our_accs = {name: sub["accuracy"] for name, sub in res["tasks"]["blimp"]["subtasks"].items()}
        print(json.dumps({"bench": "zero_shot_blimp", "impl": "babyllama", "batch_size": bs, "dtype": args.dtype,
                          "wall_s": round(ours[bs], 2), "scoring_s": round(res["scoring_time_s"], 2),
                          "pairs_per_s": round(pairs / ours[bs], 1), **common}), flush=True)

    harness: dict[int, float] = {}
    if not args.skip_harness:
        for bs in [int(b) for b in args.harness_batch_sizes.split(",")]:
            harness[bs], accs = run_harness(model_dir, files, args.work_dir, bs)
            differ = {name: [our_accs[name], accs[name]] for name in accs if abs(accs[name] - our_accs[name]) >= 1e-12}
            print(json.dumps({"bench": "zero_shot_blimp", "impl": "lm_eval", "batch_size": bs, "dtype": "float32",
                              "wall_s": round(harness[bs], 2), "pairs_per_s": round(pairs / harness[bs], 1),
                              "same_accuracies_as_babyllama": not differ,
                              "differing_paradigms_ours_vs_harness": differ, **common}), flush=True)
    ratios = {f"lm_eval_bs{h}/babyllama_bs{o}": round(harness[h] / ours[o], 2) for h in harness for o in ours}
    print(json.dumps({"bench": "zero_shot_blimp", "speedup": ratios, **common}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
