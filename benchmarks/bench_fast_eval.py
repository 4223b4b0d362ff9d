"""Benchmark: the 2025 fast evaluation of one checkpoint, babyllama against the pipeline's algorithm.

The reference is babylm/evaluation-pipeline-2025's causal scorer as SCORING.md (beside the staged
data) describes it, written here from that description: every candidate sentence tokenised on its
own with offsets, the phrase mask from the completion's character start, batches of 64 items
(one forward pass per candidate index over the batch, right padding), the full-vocabulary
log_softmax at every position, the masked sum, argmax. Ours is ``evaluate_zero_shot`` (shared
prefixes, length-sorted batches, logits only where scored). Both run end to end on the same
model and the same fast sets (load the model, read the data, encode, score) and the per-item
choices are compared. Wall time and the process's CPU time are both reported: on a shared,
oversubscribed machine the CPU time is the steadier measure of the work done.

The model is a small random Llama (hidden 64, 4 layers, 4 heads, 2 KV heads, SwiGLU 172, untied
embeddings, about 2.2M parameters with the 16000-token byte-level BPE tokenizer trained on the
BabyLM 2023 train_10M text), built once in --work-dir. Prints one JSON line per measurement.

    python benchmarks/bench_fast_eval.py                    # the whole fast set
    python benchmarks/bench_fast_eval.py --every 5          # every 5th line of each file
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

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BABYLLAMA_SHARED_DATA", REPO.parent / "shared" / "data"))
FAST = {"blimp_fast": "blimp_fast", "supplement_fast": "supplement_fast", "ewok_fast": "ewok_fast",
        "entity_tracking_fast": "entity_tracking_fast", "wug_adj": "wug_adj_nominalization"}


def build_model(work_dir: Path, text_dir: Path) -> Path:
    """Train the tokenizer and save the random small Llama under ``work_dir/model`` (cached)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    model_dir = work_dir / "model"
    if (model_dir / "model.safetensors").is_file():
        return model_dir
    lines = []
    if not sorted(text_dir.glob("*.gz")):
        raise SystemExit(f"{text_dir}: no *.gz text files to train the benchmark tokenizer on (see --text)")
    for path in sorted(text_dir.glob("*.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines.extend(line for line in f.read().splitlines() if line.strip())
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(
        vocab_size=16000, min_frequency=2, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=172, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    tokenizer.save_pretrained(model_dir)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    return model_dir


def subsample(data: Path, out: Path, every: int) -> Path:
    """Every ``every``-th line of every fast-set file, the same stride everywhere, so that the
    tasks' shares of the work, the lengths and the entity-tracking numops keep their mix
    (``every`` 1: the files as they are)."""
    if every <= 1:
        return data
    for folder in FAST.values():
        (out / folder).mkdir(parents=True, exist_ok=True)
        for path in sorted((data / folder).glob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                lines = [line for line in f if line.strip()][::every]
            (out / folder / path.name.removesuffix(".gz")).write_text("".join(lines), encoding="utf-8")
    return out


def pipeline_reference(model_dir: Path, tasks: dict[str, Path], batch_size: int = 64) -> tuple[float, float, dict, dict]:
    """The pipeline's causal scoring, as SCORING.md section 0 states it; returns (wall seconds, CPU
    seconds, {task: choices}, {task: wall seconds})."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from babyllama.evaluation import tasks as registry

    start, cpu = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="right")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    choices, per_task = {}, {}
    with torch.no_grad():
        for name, folder in tasks.items():
            task_start = time.perf_counter()
            items = registry.load(name, folder).items
            picked = []
            for b in range(0, len(items), batch_size):
                batch = items[b : b + batch_size]
                sums = []
                for k in range(len(batch[0].sentences)):
                    tokens, masks = [], []
                    for item in batch:  # the dataset tokenises one sentence at a time
                        sentence, completion = item.sentences[k], item.completions[k]
                        out = tokenizer(sentence, return_offsets_mapping=True)
                        start_char = len(sentence) - len(completion) + out["offset_mapping"][0][0]
                        tokens.append(torch.tensor(out["input_ids"]))
                        masks.append(torch.tensor([int(end > start_char) for _, end in out["offset_mapping"]]))
                    ids = torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True, padding_value=pad)
                    attn = torch.nn.utils.rnn.pad_sequence([torch.ones_like(t) for t in tokens], batch_first=True)
                    phrase = torch.nn.utils.rnn.pad_sequence(masks, batch_first=True)[:, 1:]
                    logits = model(input_ids=ids[:, :-1], attention_mask=attn[:, :-1]).logits
                    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                    sums.append((logp * phrase).sum(dim=1))
                picked.extend(torch.max(torch.stack(sums, dim=1), dim=1)[1].tolist())
            choices[name] = picked
            per_task[name] = round(time.perf_counter() - task_start, 2)
    return time.perf_counter() - start, time.process_time() - cpu, choices, per_task


def ours(model_dir: Path, tasks: dict[str, Path], out: Path, batch_size: int = 64) -> tuple[float, float, dict]:
    """``evaluate_zero_shot`` end to end; returns (wall seconds, CPU seconds, {task: choices} read
    from its predictions)."""
    from babyllama.evaluation import tasks as registry
    from babyllama.evaluation.zero_shot import evaluate_zero_shot

    start, cpu = time.perf_counter(), time.process_time()
    evaluate_zero_shot(model_dir, tasks, out, batch_size=batch_size, progress=False)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    choices = {}
    for name, folder in tasks.items():
        items = registry.load(name, folder).items
        preds = json.loads((out / "predictions" / f"{name}.json").read_text())
        at: dict[str, int] = {}
        picked = []
        for item in items:
            row = preds[item.uid]["predictions"][at.get(item.uid, 0)]
            at[item.uid] = at.get(item.uid, 0) + 1
            picked.append(item.completions.index(row["pred"]))
        choices[name] = picked
    return elapsed, cpu, choices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA / "babylm_eval_2025", help="the 2025 evaluation data folder")
    parser.add_argument("--text", type=Path, default=DATA / "babylm_text_2023_partial" / "train_10M",
                        help="text to train the benchmark tokenizer on")
    parser.add_argument("--every", type=int, default=1, help="keep every K-th line of each file (1: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--skip-reference", action="store_true", help="time babyllama only")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "babyllama-bench-fast-eval")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = build_model(args.work_dir, args.text)
    data = subsample(args.data, args.work_dir / f"data_every{args.every}", args.every)
    tasks = {name: data / folder for name, folder in FAST.items()}
    common = {"threads": torch.get_num_threads(), "every": args.every, "model": str(model_dir)}

    # Warm-up outside the timings: imports and a first model load (file cache) for both.
    from transformers import AutoModelForCausalLM

    from babyllama.evaluation import zero_shot  # noqa: F401

    AutoModelForCausalLM.from_pretrained(model_dir)
    t_ours, cpu_ours, c_ours = ours(model_dir, tasks, args.work_dir / "ours")
    print(json.dumps({"implementation": "babyllama", "wall_s": round(t_ours, 2), "cpu_s": round(cpu_ours, 2),
                      **common}), flush=True)
    if args.skip_reference:
        return 0
    t_ref, cpu_ref, c_ref, per_task = pipeline_reference(model_dir, tasks)
    agree = {name: int(np.sum(np.array(c_ours[name]) == np.array(c_ref[name]))) for name in tasks}
    print(json.dumps({"implementation": "pipeline algorithm (reference)", "wall_s": round(t_ref, 2), "cpu_s": round(cpu_ref, 2),
                      "per_task_wall_s": per_task,
                      **common}))
    print(json.dumps({"speedup_wall": round(t_ref / t_ours, 2), "speedup_cpu": round(cpu_ref / cpu_ours, 2),
                      "same_choice": agree,
                      "items": {name: len(c) for name, c in c_ref.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
