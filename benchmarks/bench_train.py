"""Training throughput, distillation overhead, MFU and peak memory (issue 6), as JSON lines.

    python benchmarks/bench_train.py                                  # the full table (tens of minutes on 2 cores)
    python benchmarks/bench_train.py --configs cpu-14m --precisions fp32 --teachers 2 --steps 3
    python benchmarks/bench_train.py --write benchmarks/RESULTS.md    # regenerate RESULTS.md
    python benchmarks/bench_train.py --quality builtin --quality /path/to/babylm_text_2023_partial

The whole of ``benchmarks/RESULTS.md`` in one command (``REGENERATE`` below; a BabyLM folder must
hold one release, so the shared data's raw ``train_10M`` and ``dev`` are linked into one folder first).

Each measurement runs in its own process (so peak RSS is that mode's own) on random tokens,
``--batch`` sequences of ``--seq`` tokens, vocabulary ``--vocab``, student and teachers of the same
preset (random weights: speed does not depend on them). A step is what ``train_stage`` does per
optimizer step: forward, loss, backward, gradient clipping, AdamW. Modes:

- ``plain-ref``: our reimplementation of the authors' pretraining recipe (HF forward with ``labels``: full logits, HF loss).
- ``plain``: babyllama's pretraining (decoder hidden states, chunked cross-entropy).
- ``distill-ref``: our reimplementation of the authors' distillation recipe (teachers' full fp32 logits stacked and averaged,
  ``KLDivLoss(batchmean)`` on ``log_softmax`` / ``softmax`` of full logits).
- ``distill``: babyllama online distillation, teachers in the compute dtype.
- ``distill-bf16t``: the same with ``distill.teacher_precision: bfloat16``.
- ``distill-cache``: distillation from a teacher cache (``--k`` sampled ids per position).

Reported per line: median (and minimum) step time over ``--steps`` steps after ``--warmup``, tokens/s, user and
system CPU seconds per step, peak RSS, ``overhead`` = step time / ``plain-ref`` step time (same
config, precision and run), and ``mfu`` = FLOPs/s against the matmul peak measured in the same run
(``6N`` per token for the student plus ``2N`` per teacher run, ``N`` all parameters, embeddings
included, as in the issue's figures). ``--quality`` trains teachers and students on a corpus and
compares the students' validation losses (online fp32, online with bf16 teachers, cache with one
offset, cache with four offsets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("plain-ref", "plain", "distill-ref", "distill", "distill-bf16t", "distill-cache")
REFERENCE_ISSUE = {  # the issue's figures for the authors' code on this machine (batch 32, seq 128, fp32, 2 teachers)
    "cpu-14m": {"plain_tok_s": "1,800-2,200", "distill_tok_s": "430-700", "overhead": "3.0-3.2x",
                "mem_gib": "2.1 / 4.1"},
    "cpu-52m": {"plain_tok_s": "510-530", "distill_tok_s": "225-230", "overhead": "2.25x", "mem_gib": "4.4 / 7.0",
                "mfu_plain": "83%", "mfu_distill": "61%"},
}


# --------------------------------------------------------------------------------------------
# One measurement (runs in a child process)


def _word_tokenizer(vocab: int):
    """A transformers fast tokenizer with exactly ``vocab`` ids (build_loss checks vocabularies)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)},
                                                                               unk_token="t0")))


def _matmul_peak(threads: int, dtype_name: str, seconds: float = 5.0) -> float:
    """Best GFLOP/s of a 2048^3 matmul in ``dtype_name`` over about ``seconds``."""
    import torch

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = 8192 if device == "cuda" else 2048
    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, dtype=dtype, device=device)
    best, end = 0.0, time.perf_counter() + seconds
    torch.mm(a, b, out=out)
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def run_case(case: dict) -> dict:
    """Time one (config, precision, mode, teachers) case; return its measurements."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator

    from babyllama.config import StageConfig, from_dict
    from babyllama.model import build_model, llama_config
    from babyllama.train import build_loss

    torch.set_num_threads(case["threads"])
    batch, seq, vocab, mode = case["batch"], case["seq"], case["vocab"], case["mode"]
    steps = case["warmup"] + case["steps"]
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab, size=steps * batch * seq + seq + 1).astype(np.uint16)
    all_starts = np.arange(steps * batch, dtype=np.int64) * seq
    from babyllama.data.token_arrays import gather_chunks

    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision="bf16" if case["precision"] == "bf16" else "no")
    tokenizer = _word_tokenizer(vocab)
    config = llama_config(from_dict(StageConfig, {"model": {"preset": case["config"]}}, "bench").model, vocab, 0, 1, 2)
    model = build_model(config, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    teacher_dirs = [Path(d) for d in case["teacher_dirs"]]
    distill = {"teacher_precision": "bfloat16" if mode == "distill-bf16t" else "same", "cache_k": case["k"]}
    if mode == "distill-cache":
        distill["teacher_cache"] = case["cache_dir"]
    stage = from_dict(StageConfig, {"kind": "pretrain" if mode.startswith("plain") else "distill",
                                    "teachers": [str(d) for d in teacher_dirs] if mode.startswith("distill") else [],
                                    "model": {"preset": case["config"]}, "train": {"seq_length": seq},
                                    "distill": distill}, "bench")
    if mode in ("plain-ref", "distill-ref"):
        from babyllama.teachers import load_teachers

        teachers = load_teachers(teacher_dirs, tokenizer, vocab, torch.float32, accelerator.device) \
            if mode == "distill-ref" else []

        def step_loss(inputs, labels, starts):
            """The authors' ``compute_loss``, reimplemented: HF shifts ``labels=input_ids`` itself."""
            out = model(input_ids=inputs, labels=inputs)
            if not teachers:
                return out.loss
            with torch.no_grad():
                avg = torch.stack([t(input_ids=inputs, labels=inputs).logits for t in teachers]).mean(dim=0)
            kd = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(out.logits, dim=-1), F.softmax(avg, dim=-1))
            return 0.5 * out.loss + 0.5 * kd
    else:
        loss = build_loss(stage, teacher_dirs, tokenizer, vocab, accelerator, tokens)

        def step_loss(inputs, labels, starts):
            return loss.fn(model, inputs, labels, starts).loss

    times, cpu_user, cpu_sys = [], [], []
    for step in range(steps):
        starts = all_starts[step * batch:(step + 1) * batch]
        inputs, labels = (x.to(accelerator.device) for x in gather_chunks(tokens, starts, seq))
        before, t0 = os.times(), time.perf_counter()
        with accelerator.autocast():
            value = step_loss(inputs, labels, starts)
        accelerator.backward(value)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        elapsed, after = time.perf_counter() - t0, os.times()
        if step >= case["warmup"]:
            times.append(elapsed)
            cpu_user.append(after.user - before.user)
            cpu_sys.append(after.system - before.system)
        if not torch.isfinite(value):
            raise SystemExit(f"non-finite loss in {case}")
    step_s = statistics.median(times)
    n_teachers = len(teacher_dirs) if mode.startswith("distill") and mode != "distill-cache" else 0
    return {"step_s": round(step_s, 4), "tokens_per_s": round(batch * seq / step_s, 1),
            "step_s_min": round(min(times), 4),
            "user_s_per_step": round(statistics.median(cpu_user), 3),
            "sys_s_per_step": round(statistics.median(cpu_sys), 3),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 3) if torch.cuda.is_available() else None,
            "params": n_params, "flops_per_token": (6 + 2 * n_teachers) * n_params}


# --------------------------------------------------------------------------------------------
# The driver


def _child(args: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if result.returncode:
        raise SystemExit(f"benchmark case {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _prepare_teachers(config_name: str, vocab: int, n: int, folder: Path) -> list[str]:
    import torch

    from babyllama.config import ModelConfig
    from babyllama.model import build_model, llama_config

    dirs = []
    for i in range(n):
        d = folder / f"{config_name}-teacher{i}"
        if not (d / "config.json").is_file():
            torch.set_num_threads(1)
            build_model(llama_config(ModelConfig(preset=config_name), vocab, 0, 1, 2), seed=100 + i).save_pretrained(d)
        dirs.append(str(d))
    return dirs


def _build_cache(case: dict, n_teachers: int) -> dict:
    """Teacher cache for the benchmark's token array (built in a child; returns its metadata)."""
    import numpy as np

    from babyllama.teacher_cache import build_teacher_cache

    import torch
    torch.set_num_threads(case["threads"])
    steps = case["warmup"] + case["steps"]
    tokens = np.random.default_rng(0).integers(0, case["vocab"], size=steps * case["batch"] * case["seq"]
                                               + case["seq"] + 1).astype(np.uint16)
    return build_teacher_cache(case["teacher_dirs"][:n_teachers], tokens, case["seq"], case["cache_dir"], k=case["k"],
                               tokenizer=_word_tokenizer(case["vocab"]), dtype=torch.float32,
                               batch_size=case["batch"], progress=False)


def _machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def speed(opts) -> list[dict]:
    """All requested cases, one JSON line each (also returned)."""
    import torch

    base = [sys.executable, "benchmarks/bench_train.py"]
    rows = []
    peaks = {p: _child(["--_peak", p, "--threads", str(opts.threads)], opts.threads)["gflops"]
             for p in ("float32", "bfloat16")}
    row = {"event": "matmul_peak", "threads": opts.threads, "float32": round(peaks["float32"], 1),
           "bfloat16": round(peaks["bfloat16"], 1), "load_avg": [round(x, 2) for x in os.getloadavg()],
           "command": shlex.join(base + ["--threads", str(opts.threads), "--configs", "cpu-14m", "--precisions",
                                         "fp32", "--modes", "plain-ref", "--steps", "1", "--warmup", "0"])}
    print(json.dumps(row), flush=True)
    rows.append(row)
    work = Path(opts.work or tempfile.mkdtemp(prefix="bench_train_"))
    for config_name in opts.configs:
        teacher_dirs = _prepare_teachers(config_name, opts.vocab, max(opts.teachers), work)
        for precision in opts.precisions:
            if precision == "bf16" and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()
                                            or torch.ops.mkldnn._is_mkldnn_bf16_supported()):
                continue
            plain_ref = None
            for mode in opts.modes:
                counts = [None] if mode.startswith("plain") else \
                    ([opts.ref_teachers] if mode == "distill-ref" else opts.teachers)
                if mode == "distill-cache":
                    counts = [opts.ref_teachers]
                for n in counts:
                    case = {"config": config_name, "precision": precision, "mode": mode, "threads": opts.threads,
                            "batch": opts.batch, "seq": opts.seq, "vocab": opts.vocab, "steps": opts.steps,
                            "warmup": opts.warmup, "k": opts.k, "teacher_dirs": teacher_dirs[:n or 0],
                            "cache_dir": str(work / f"{config_name}-cache-{n}-k{opts.k}")}
                    extra = {}
                    if mode == "distill-cache":
                        meta = _child(["--_cache", json.dumps(case), "--n-teachers", str(n)], opts.threads)
                        extra = {"cache_bytes_per_token": meta["bytes_per_token"], "cache_k": meta["k"],
                                 "cache_build_tokens_per_s": round(meta["n_chunks"] * opts.seq / meta["build_time_s"], 1)}
                    load = os.getloadavg()
                    result = _child(["--_case", json.dumps(case)], opts.threads)
                    peak = peaks["bfloat16" if precision == "bf16" else "float32"]
                    row = {"event": "train_step", "config": config_name, "precision": precision, "mode": mode,
                           "teachers": n or 0, "batch": opts.batch, "seq": opts.seq, "threads": opts.threads,
                           **result, **extra,
                           "mfu": round(result["tokens_per_s"] * result["flops_per_token"] / (peak * 1e9), 3),
                           "load_avg_before": [round(x, 2) for x in load],
                           "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
                    if mode == "plain-ref":
                        plain_ref = result["step_s"]
                    if plain_ref:
                        row["overhead_vs_plain_ref"] = round(result["step_s"] / plain_ref, 3)
                    row["command"] = shlex.join(base + [
                        "--configs", config_name, "--precisions", precision,
                        "--modes", "plain-ref" if mode == "plain-ref" else f"plain-ref,{mode}",
                        "--teachers", str(n or 1), "--ref-teachers", str(n or 2), "--steps", str(opts.steps),
                        "--warmup", str(opts.warmup), "--threads", str(opts.threads), "--k", str(opts.k)])
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Quality: does the student learn the same from bf16 teachers and from the cache?


def quality(corpus: str, opts) -> list[dict]:
    """Train two teachers, then four students (online fp32, online bf16 teachers, caches) on ``corpus``."""
    from babyllama.config import resolve_experiment
    from babyllama.pipeline import load_token_data, run_experiment
    from babyllama.teacher_cache import build_teacher_cache
    from babyllama.tokenizer import load_tokenizer

    run_dir = Path(opts.work or tempfile.mkdtemp(prefix="bench_quality_")) / f"quality-{Path(corpus).name}"
    offsets = {"cached": [0], "cached_4offsets": [0, 32, 64, 96]}
    offsets = {name: o for name, o in offsets.items() if len(o) in opts.quality_offsets}
    cache_dirs = {name: run_dir / f"teacher_cache_{len(o)}" for name, o in offsets.items()}
    train = {"seq_length": 128, "batch_size": 32, "epochs": 1000, "max_steps": opts.quality_steps, "lr": 3e-3,
             "warmup_steps": 30, "weight_decay": 0.1, "log_every": 10, "eval_every": 0}
    student = {"kind": "distill", "teachers": ["teacher1", "teacher2"], "train": {"seed": 3}}
    data = {"name": "quality", "run_dir": str(run_dir),
            "corpus": {"path": corpus, **({"builtin_words": 300_000} if corpus == "builtin" else {})},
            "tokenizer": {"vocab_size": opts.quality_vocab}, "model": {"preset": opts.quality_preset},
            "train": train, "evaluation": {"zero_shot": None},
            "models": {"teacher1": {"train": {"seed": 1}}, "teacher2": {"train": {"seed": 2}},
                       "online": student,
                       "online_bf16t": {**student, "distill": {"teacher_precision": "bfloat16"}},
                       **{name: {**student, "distill": {"teacher_cache": str(cache_dirs[name]), "cache_k": opts.k,
                                                         "cache_offsets": offsets[name]}} for name in offsets}}}
    config = resolve_experiment(data, "quality")
    run_experiment(config, progress=False, only=["teacher1", "teacher2"], evaluate=False)
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    tokens = load_token_data(run_dir / "corpus", tokenizer, run_dir / "cache").train.tokens
    meta = {}
    for name, cache_dir in cache_dirs.items():
        if not (cache_dir / "meta.json").is_file():
            build_teacher_cache([run_dir / "teacher1", run_dir / "teacher2"], tokens, 128, cache_dir, k=opts.k,
                                tokenizer=tokenizer, offsets=tuple(offsets[name]), progress=False)
        meta[name] = json.loads((cache_dir / "meta.json").read_text())
    rows = []
    results = {}
    for name in ("online", "online_bf16t", *offsets):
        t0 = time.perf_counter()
        results[name] = run_experiment(config, progress=False, only=[name], evaluate=False)[name]
        results[name]["wall_s"] = time.perf_counter() - t0
    for name, m in results.items():
        row = {"event": "quality", "corpus": corpus, "preset": opts.quality_preset, "vocab": opts.quality_vocab,
               "student": name, "steps": m["steps"], "val_loss": round(m["val_loss"], 4),
               "val_loss_vs_online": round(m["val_loss"] / results["online"]["val_loss"] - 1, 4),
               "tokens_per_s": round(m["tokens_per_s"], 1),
               "epochs": round(m["tokens_seen"] / len(tokens), 2),
               "cache_offsets": offsets.get(name), "cache_bytes_per_token": meta[name]["bytes_per_token"]
               if name in meta else None, "cache_build_s": meta[name]["build_time_s"] if name in meta else None,
               "load_avg": [round(x, 2) for x in os.getloadavg()],
               "command": shlex.join([sys.executable, "benchmarks/bench_train.py", "--modes", "none", "--quality",
                                      corpus, "--quality-steps", str(opts.quality_steps), "--k", str(opts.k)])}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# RESULTS.md


REGENERATE = ("mkdir -p /tmp/babylm_partial/train_10M /tmp/babylm_partial/dev && "
              "ln -sf $PWD/../shared/data/babylm_text_2023_partial/train_10M/* /tmp/babylm_partial/train_10M/ && "
              "ln -sf $PWD/../shared/data/babylm_text_2023_partial/dev/* /tmp/babylm_partial/dev/ && "
              "python benchmarks/bench_train.py --quality builtin --quality /tmp/babylm_partial "
              "--write benchmarks/RESULTS.md")
QUOTED_DISTILL_TOK_S = {"cpu-14m": 565.0, "cpu-52m": 227.5}  # midpoints of the issue's ranges


def _targets(rows: list[dict]) -> list[str]:
    """The issue's targets, each with the value this run reached (fp32 student, 2 teachers)."""

    def find(config, mode, teachers=2, precision="fp32"):
        return next((r for r in rows if r["event"] == "train_step" and r["config"] == config
                     and r["mode"] == mode and r["precision"] == precision
                     and (r["teachers"] == teachers or mode.startswith("plain"))), None)

    out = ["| target | reached | |", "|---|---|---|"]

    def add(target, value, ok):
        out.append(f"| {target} | {value} | {'met' if ok else 'not met'} |")

    for config in ("cpu-14m", "cpu-52m"):
        ref, plain, ref_d = find(config, "plain-ref"), find(config, "plain"), find(config, "distill-ref")
        online, bf16t, cache = find(config, "distill"), find(config, "distill-bf16t"), find(config, "distill-cache")
        if online and config == "cpu-52m":
            add(f"{config}: online fp32 distillation MFU >= 85% (reference 61%)", f"{100 * online['mfu']:.0f}%",
                online["mfu"] >= 0.85)
        if online and ref_d and config == "cpu-52m":
            x = online["tokens_per_s"] / ref_d["tokens_per_s"]
            add(f"{config}: online fp32 distillation ~1.4x the reimplemented recipe's tokens/s",
                f"{x:.2f}x measured reimplementation, {online['tokens_per_s'] / QUOTED_DISTILL_TOK_S[config]:.2f}x quoted",
                x >= 1.4)
        if bf16t and ref_d and config == "cpu-14m":
            x = bf16t["tokens_per_s"] / ref_d["tokens_per_s"]
            add(f"{config}: bf16 teachers, 2x the reimplemented recipe's tokens/s",
                f"{x:.2f}x measured reimplementation, {bf16t['tokens_per_s'] / QUOTED_DISTILL_TOK_S[config]:.2f}x quoted",
                x >= 2.0)
        if cache and ref:
            x = cache["step_s"] / ref["step_s"]
            mine = f", {cache['step_s'] / plain['step_s']:.2f}x babyllama plain" if plain else ""
            add(f"{config}: cached distillation step <= 1.15x plain step", f"{x:.2f}x plain-ref{mine}", x <= 1.15)
        if cache and ref_d:
            x = cache["tokens_per_s"] / ref_d["tokens_per_s"]
            add(f"{config}: cached distillation ~3x the reimplemented recipe's distillation tokens/s", f"{x:.2f}x", x >= 3.0)
        mems = [r for r in rows if r["event"] == "train_step" and r["config"] == config and r["precision"] == "fp32"
                and r["mode"] in ("distill", "distill-bf16t", "distill-cache")]
        if mems and ref:
            worst = max(mems, key=lambda r: r["peak_rss_gib"])
            x = worst["peak_rss_gib"] / ref["peak_rss_gib"]
            mine = f", {worst['peak_rss_gib'] / plain['peak_rss_gib']:.2f}x babyllama plain" if plain else ""
            add(f"{config}: peak memory <= 1.3x plain, any number of teachers",
                f"{x:.2f}x plain-ref{mine} (worst: {worst['mode']}, {worst['teachers']} teachers)", x <= 1.3)
    for r in rows:
        if r["event"] == "quality" and r["student"] != "online":
            add(f"{Path(r['corpus']).name}: {r['student']} val loss within 1% of online",
                f"{100 * r['val_loss_vs_online']:+.2f}%", abs(r["val_loss_vs_online"]) <= 0.01)
    return out + [""]


NOTES = """## How to read these numbers

- Modes: `plain-ref` / `distill-ref` are our reimplementation of the authors' training recipe, not
  their code ("the reference" below means this reimplementation): HF forward with labels, full
  `(32, 128, 16000)` logits; teachers' full fp32 logits stacked and averaged, `KLDivLoss(batchmean)` on
  `log_softmax` / `softmax` copies. `plain` / `distill*` are babyllama's `build_loss`: the student's
  logits are never materialised (hidden states, then the output projection a chunk of 262 positions at
  a time with the CE + KL gradient computed in the same pass); teachers run their decoder once under
  `inference_mode` and are projected per chunk too, so no `(B, S, V)` tensor exists for any teacher
  count. Chunk temporaries are 16 MiB, below glibc's mmap threshold, so freed memory is reused instead
  of being zeroed again by the kernel (compare the `sys s/step` column).
- MFU counts 6N (student) + 2N per teacher FLOPs per token with N including the input embedding table,
  as the issue's figures do; the embedding lookup is not a matmul, so these "MFU" values can exceed
  what the matmuls alone reach and even 100%.
- Teacher cache (`distill-cache`): `babyllama teach-cache` stores k ids drawn from the ensemble
  distribution per position (uint16) with their float16 log-probs; distillation reads them instead of
  running the teachers (an unbiased estimate of the KL and its gradient). A cached context belongs to one
  chunking of the token array, so cached training starts each epoch's chunks at one of the cached offsets
  (`distill.cache_offsets`, default `[0]`) instead of a fresh random offset: less augmentation across
  epochs, compared in the quality table (one offset vs four). Each offset costs one teacher pass at build
  time and 4k bytes per token on disk.
- Timings on a shared machine: the load average is recorded per row; `best step s` is the fastest timed
  step, the least disturbed by other jobs.
""".splitlines() + [""]


def write_results(path: Path, rows: list[dict], commands: list[str]) -> None:
    from babyllama.io import atomic_write_text

    peak = next((r for r in rows if r["event"] == "matmul_peak"), None)
    steps = [r for r in rows if r["event"] == "train_step"]
    loads = [x for r in steps for x in (r["load_avg_before"][0], r["load_avg_after"][0])]
    lines = ["# Training benchmarks (issue 6)", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} on {_machine()} by:", "",
             "```", *commands, "```", "", "Everything (all configs, precisions, teacher counts, both quality corpora) "
             "in one command, from the repository root:", "", "```", REGENERATE, "```", ""]
    if peak:
        lines += [f"Matmul peak measured in the same run: fp32 {peak['float32']:.0f} GFLOP/s, "
                  f"bf16 {peak['bfloat16']:.0f} GFLOP/s.", ""]
    if loads:
        threads = max(r["threads"] for r in steps)
        busy = max(loads) > threads + 0.5
        lines += [f"1-minute load average during the measurements: {min(loads):.2f} to {max(loads):.2f} on "
                  f"{os.cpu_count()} logical CPUs, the benchmark's own {threads} threads included. "
                  + ("Other jobs were running: these numbers were measured under load and are only indicative; "
                     "rerun the command on a quiet machine." if busy else
                     "Little else was running, but the machine is shared: compare `best step s` too."), ""]
        lines += ["Step time is the median over the timed steps; `overhead` = step time / `plain-ref` step time in "
                  "the same run; MFU counts 6N FLOPs per token for the student plus 2N per teacher run "
                  "(N = all parameters), against the measured peak of the student's precision.", "",
                  "| config | prec | mode | teachers | tokens/s | step s | overhead | MFU | user s/step | "
                  "sys s/step | best step s | peak mem GiB | mem vs plain-ref / plain | load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        mem_key = "peak_gpu_gib" if steps and steps[0].get("peak_gpu_gib") is not None else "peak_rss_gib"
        plain_mem = {(r["config"], r["precision"]): r[mem_key] for r in steps if r["mode"] == "plain-ref"}
        own_mem = {(r["config"], r["precision"]): r[mem_key] for r in steps if r["mode"] == "plain"}
        for r in steps:
            ref_mem = plain_mem.get((r["config"], r["precision"]), float("nan"))
            mine = own_mem.get((r["config"], r["precision"]), float("nan"))
            lines.append(f"| {r['config']} | {r['precision']} | {r['mode']} | {r['teachers']} | {r['tokens_per_s']:,.0f} | "
                         f"{r['step_s']:.3f} | {r.get('overhead_vs_plain_ref', float('nan')):.2f}x | "
                         f"{100 * r['mfu']:.0f}% | {r['user_s_per_step']:.2f} | {r['sys_s_per_step']:.2f} | "
                         f"{r['step_s_min']:.3f} | {r[mem_key]:.2f} | {r[mem_key] / ref_mem:.2f}x / {r[mem_key] / mine:.2f}x | "
                         f"{r['load_avg_before'][0]:.1f} |")
        lines += ["", "Reference figures quoted in the issue (authors' code, this machine, batch 32, seq 128, fp32, "
                  "two teachers):", "", "| config | plain tokens/s | distill tokens/s | overhead | peak GiB plain / "
                  "distill |", "|---|---|---|---|---|"]
        for name, ref in REFERENCE_ISSUE.items():
            lines.append(f"| {name} | {ref['plain_tok_s']} | {ref['distill_tok_s']} | {ref['overhead']} | "
                         f"{ref['mem_gib']} |")
        lines.append("")
        caches = [r for r in steps if r["mode"] == "distill-cache"]
        for r in caches:
            lines.append(f"Teacher cache ({r['config']}): k = {r['cache_k']} sampled ids per position, "
                         f"{r['cache_bytes_per_token']} bytes per token, built at "
                         f"{r['cache_build_tokens_per_s']:,.0f} tokens/s ({r['teachers']} fp32 teachers).")
        lines.append("")
    lines += ["## Targets of issue 6", ""] + _targets(rows) + NOTES
    quality_rows = [r for r in rows if r["event"] == "quality"]
    if quality_rows:
        lines += ["## Student quality: online vs bf16 teachers vs cache", "",
                  "Same steps and seed; `vs online` is the relative difference of the final validation loss.", "",
                  "| corpus | preset / vocab | student | steps (epochs) | val loss | vs online | tokens/s | "
                  "cache | load |", "|---|---|---|---|---|---|---|---|---|"]
        for r in quality_rows:
            cache = (f"offsets {r['cache_offsets']}, {r['cache_bytes_per_token']} B/token, built in "
                     f"{r['cache_build_s']:.0f} s") if r["cache_offsets"] else ""
            lines.append(f"| {r['corpus']} | {r['preset']} / {r['vocab']} | {r['student']} | {r['steps']} "
                         f"({r['epochs']}) | "
                         f"{r['val_loss']:.4f} | {100 * r['val_loss_vs_online']:+.2f}% | {r['tokens_per_s']:,.0f} | {cache} | "
                         f"{r['load_avg'][0]:.1f} |")
        lines.append("")
    atomic_write_text(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--configs", default=None, help="model presets (default cpu-14m,cpu-52m, plus babyllama2-345m "
                   "when a GPU is at hand)")
    p.add_argument("--precisions", default="fp32,bf16", help="student precisions: fp32, bf16 (default both)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated of {', '.join(MODES)} (or none)")
    p.add_argument("--teachers", default="1,2,4", help="teacher counts for distill modes (default 1,2,4)")
    p.add_argument("--ref-teachers", type=int, default=2, help="teachers for distill-ref and distill-cache (default 2)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per case (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--vocab", type=int, default=16000)
    p.add_argument("--k", type=int, default=32, help="teacher cache draws per position (default 32)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all CPUs)")
    p.add_argument("--quality", action="append", default=[], metavar="CORPUS",
                   help="also compare students trained for --quality-steps on CORPUS ('builtin' or a BabyLM folder)")
    p.add_argument("--quality-steps", type=int, default=200, help="steps of every teacher and student (default 200)")
    p.add_argument("--quality-offsets", default="1,4", help="cached students with 1 and/or 4 cached chunk offsets "
                   "(default 1,4)")
    p.add_argument("--quality-preset", default="demo", help="preset of the quality runs' models (default demo)")
    p.add_argument("--quality-vocab", type=int, default=4000, help="their tokenizer's vocabulary (default 4000)")
    p.add_argument("--work", help="folder for teachers, caches and runs (default: a fresh temporary folder)")
    p.add_argument("--write", help="write the results table to this Markdown file")
    p.add_argument("--include", action="append", default=[], metavar="JSONL",
                   help="add the rows printed by earlier runs (saved stdout) to the --write table")
    p.add_argument("--_case", help=argparse.SUPPRESS)
    p.add_argument("--_cache", help=argparse.SUPPRESS)
    p.add_argument("--_peak", help=argparse.SUPPRESS)
    p.add_argument("--n-teachers", type=int, default=2, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts._case:
        print(json.dumps(run_case(json.loads(opts._case))))
        return 0
    if opts._cache:
        print(json.dumps(_build_cache(json.loads(opts._cache), opts.n_teachers)))
        return 0
    if opts._peak:
        print(json.dumps({"gflops": _matmul_peak(opts.threads, opts._peak)}))
        return 0
    if opts.configs is None:
        import torch

        opts.configs = "cpu-14m,cpu-52m" + (",babyllama2-345m" if torch.cuda.is_available() else "")
    opts.configs = opts.configs.split(",")
    opts.precisions = opts.precisions.split(",")
    opts.modes = [] if opts.modes == "none" else opts.modes.split(",")
    opts.teachers = [int(x) for x in opts.teachers.split(",")]
    opts.quality_offsets = [int(x) for x in opts.quality_offsets.split(",")]
    for mode in opts.modes:
        if mode not in MODES:
            p.error(f"--modes: unknown mode {mode!r}")
    rows = speed(opts) if opts.modes else []
    for corpus in opts.quality:
        rows += quality(corpus, opts)
    commands = [shlex.join(["python", "benchmarks/bench_train.py", *argv])]
    for saved in opts.include:
        lines = Path(saved).read_text().splitlines()
        rows += [json.loads(line) for line in lines if line.startswith("{")]
        commands += [line[2:] for line in lines if line.startswith("# ")]
    if opts.write:
        write_results(Path(opts.write), rows, commands)
    return 0


if __name__ == "__main__":
    sys.exit(main())
