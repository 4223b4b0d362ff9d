"""The one training loop, for pretraining and distillation (they differ only by the loss).

Runs on Hugging Face Accelerate, so one process, DDP, FSDP or DeepSpeed come from
``accelerate launch`` unchanged. ``train_stage`` trains one model into ``out_dir`` and leaves a
Hugging Face model directory there (the best-validation weights), with ``metrics.jsonl``,
``metrics.json`` and ``resolved_config.yaml`` (docs/run-layout.md).

Resume: a checkpoint (model, optimizer, scheduler, RNG states, step) is written at every
evaluation and every ``checkpoint_every`` steps, to a temporary folder renamed into place with
a ``COMPLETE`` marker. The data position needs no state: the chunk order of an epoch is a pure
function of ``(seed, epoch)``, so step ``k`` always trains on the same chunks.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from transformers import get_scheduler

from .config import StageConfig, config_hash, dump_yaml
from .data.token_arrays import (TokenSplit, chunk_words, epoch_chunk_starts, gather_chunks, require_tokens,
                                chunks_per_epoch)
from .errors import UserError
from .evaluation.distill_validation import evaluate_distill_loss
from .evaluation.perplexity import evaluate_loss
from . import checkpoints
from .io import append_jsonl, atomic_path, atomic_write_json, atomic_write_text, ensure_writable, read_jsonl
from .losses import LossParts, chunked_lm_loss
from .model import build_model, llama_config
from .preemption import Preempted, stop_on_signals
from .progress import Progress
from .teacher_cache import cache_epoch_starts, load_teacher_cache
from .teachers import DTYPES, ensemble_targets, load_teachers, teacher_dtype
from .word_checkpoint_saver import WordCheckpointSaver

SCHEDULER_NAMES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


@dataclass
class TrainData:
    """Token arrays of one corpus: ``test`` may be ``None`` when the corpus has no test files."""

    train: TokenSplit
    valid: TokenSplit
    test: TokenSplit | None


class Stopped(Exception):
    """Raised by an ``on_eval`` callback to end training early (e.g. an Optuna pruning decision)."""


def mixed_precision(precision: str) -> str:
    """Accelerate's ``mixed_precision`` for a config value (``auto``: bf16 on a capable GPU)."""
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return precision


def plan_steps(stage: StageConfig, n_train_tokens: int) -> tuple[int, int]:
    """``(steps_per_epoch, total_steps)`` for a training split of ``n_train_tokens`` tokens."""
    t = stage.train
    steps_per_epoch = chunks_per_epoch(n_train_tokens, t.seq_length) // t.batch_size
    total = max(1, math.ceil(t.epochs * steps_per_epoch))
    if t.max_steps is not None:
        total = min(total, t.max_steps)
    return steps_per_epoch, total


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only; norms (and biases, if any) are exempt, as in the HF Trainer."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class StageLoss:
    """A stage's loss and the chunk offsets its targets allow.

    ``fn(model, input_ids, labels, starts)`` runs the student ``model`` on ``input_ids``
    ``(b, S)`` and returns its :class:`~babyllama.losses.LossParts` for ``labels`` ``(b, S)``;
    ``starts`` ``(b,)`` are the chunks' token offsets in the training array (a teacher cache is
    keyed by them). ``offsets``: ``None`` lets chunks start at random offsets (``train.chunk_sampling``);
    a teacher cache restricts them to the offsets it holds. ``teachers``: the frozen ensemble of
    online distillation (empty otherwise).
    """

    fn: Callable[..., LossParts]
    offsets: tuple[int, ...] | None = None
    teachers: tuple[torch.nn.Module, ...] = ()

    def epoch_starts(self, n_tokens: int, seq_length: int, seed: int, epoch: int,
                     sampling: str = "per_epoch_offset") -> np.ndarray:
        """Chunk starts ``(chunks_per_epoch,)`` of epoch ``epoch``, in visiting order."""
        if self.offsets is None:
            return epoch_chunk_starts(n_tokens, seq_length, seed, epoch, sampling)
        return cache_epoch_starts(n_tokens, seq_length, seed, epoch, self.offsets)


def build_loss(stage: StageConfig, teacher_dirs: list[Path], tokenizer, vocab_size: int,
               accelerator: Accelerator, train_tokens: np.ndarray | None = None) -> StageLoss:
    """The stage's loss (see :class:`StageLoss`).

    The student's full ``(b, S, V)`` logits are never formed: its decoder's final hidden states go
    to :func:`~babyllama.losses.chunked_lm_loss` with its output projection (under FSDP or
    DeepSpeed, whose sharded projection cannot be called outside the model's forward, the logits
    are formed and passed instead). Pretraining: cross-entropy. Distillation: from the frozen
    teachers run on the same inputs (in :func:`~babyllama.teachers.teacher_dtype`), or, with
    ``distill.teacher_cache``, from the sampled targets of that cache (checked against
    ``teacher_dirs`` and ``train_tokens``, the training array).
    """
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    no_logits = torch.zeros(0, dtype=torch.long, device=accelerator.device)

    def student(model, input_ids):
        """``(features (b*S, H), projection (V, H))``, or ``(logits (b*S, V), None)`` when sharded."""
        if sharded:
            return model(input_ids=input_ids).logits.flatten(0, 1), None
        out = model(input_ids=input_ids, output_hidden_states=True, logits_to_keep=no_logits)
        weight = accelerator.unwrap_model(model, keep_torch_compile=False).get_output_embeddings().weight
        return out.hidden_states[-1].flatten(0, 1), weight

    if stage.kind != "distill":
        def ce_loss(model, input_ids, labels, starts):
            return chunked_lm_loss(*student(model, input_ids), labels.flatten())

        return StageLoss(ce_loss)
    d = stage.distill

    def distill(features, weight, labels, targets):
        return chunked_lm_loss(features, weight, labels.flatten(), targets, d.alpha, d.temperature, d.reduction,
                               batch_size=labels.shape[0])

    if d.teacher_cache is not None:
        cache = load_teacher_cache(d.teacher_cache, teacher_dirs, train_tokens, stage.train.seq_length,
                                   d.temperature, d.cache_k, tuple(d.cache_offsets), vocab_size)

        def cached_loss(model, input_ids, labels, starts):
            return distill(*student(model, input_ids), labels, cache.targets(starts, accelerator.device))

        return StageLoss(cached_loss, cache.offsets)
    teachers = load_teachers(teacher_dirs, tokenizer, vocab_size,
                             teacher_dtype(d.teacher_precision, accelerator.mixed_precision), accelerator.device,
                             seq_length=stage.train.seq_length)

    def online_loss(model, input_ids, labels, starts):
        features, weight = student(model, input_ids)
        return distill(features, weight, labels, ensemble_targets(teachers, input_ids))

    return StageLoss(online_loss, teachers=tuple(teachers))


def train_stage(name: str, stage: StageConfig, tokenizer, data: TrainData, out_dir: str | Path,
                teacher_dirs: list[Path] = (), on_eval: Callable[[int, float], None] | None = None,
                progress: bool = True, overwrite: bool = False) -> dict:
    """Train one model as ``stage`` says; return its final metrics (also in ``metrics.json``).

    A checkpoint in ``out_dir`` of the same config is resumed; one of another config is refused,
    or discarded when ``overwrite`` is set.

    ``on_eval(step, val_loss)`` is called after each validation; raising :class:`Stopped` ends
    the run early, keeping the best model so far.
    """
    t = stage.train
    out_dir = Path(out_dir)
    accelerator = Accelerator(mixed_precision=mixed_precision(t.precision))
    main = accelerator.is_main_process
    set_seed(t.seed)
    config = llama_config(stage.model, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                          tokenizer.eos_token_id)
    if t.seq_length > config.max_position_embeddings:
        raise UserError(f"models.{name}.train.seq_length: {t.seq_length} exceeds the model's "
                        f"max_position_embeddings {config.max_position_embeddings}")
    world = accelerator.num_processes
    if t.batch_size % (t.grad_accum * world):
        raise UserError(f"models.{name}.train.batch_size: {t.batch_size} is not divisible by grad_accum x processes "
                        f"({t.grad_accum} x {world})")
    require_tokens(data.train, f"models.{name}: training split", t.seq_length, t.batch_size)
    steps_per_epoch, total_steps = plan_steps(stage, len(data.train))

    model = build_model(config, seed=t.seed)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.lr, betas=tuple(t.betas), eps=t.eps)
    scheduler = get_scheduler(SCHEDULER_NAMES[t.schedule], optimizer, num_warmup_steps=t.warmup_steps,
                              num_training_steps=total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    forward = torch.compile(model) if t.compile else model

    loss_fn = build_loss(stage, teacher_dirs, tokenizer, config.vocab_size, accelerator, data.train.tokens)
    # students are validated against their teachers too (val_kd, val_distill_loss; train.select_on)
    val_teachers = list(loss_fn.teachers)
    if stage.kind == "distill" and not val_teachers:
        val_teachers = load_teachers(teacher_dirs, tokenizer, config.vocab_size,
                                     teacher_dtype(stage.distill.teacher_precision, accelerator.mixed_precision),
                                     accelerator.device, seq_length=t.seq_length)
    select_key = "distill_loss" if t.select_on == "val_distill_loss" else "loss"

    # ---- files and resume state
    ckpt_root = out_dir / "checkpoints"
    best_dir = ckpt_root / "best"
    log_path = out_dir / "metrics.jsonl"
    chash = config_hash({"stage": stage, "vocab": config.vocab_size, "tokens": len(data.train)})
    state = {"step": 0, "tokens": 0, "words": 0, "best_val": float("inf"), "best_step": -1, "train_time_s": 0.0,
             "config_hash": chash}
    resume_from = checkpoints.latest(ckpt_root)
    if resume_from is not None and checkpoints.read_state(resume_from).get("config_hash") != chash:
        if not overwrite:
            raise UserError(f"{resume_from}: checkpoint was written by a different config; "
                            f"rerun with --overwrite to start again")
        if main:
            shutil.rmtree(ckpt_root)
        accelerator.wait_for_everyone()
        resume_from = None
    if resume_from is not None:
        saved = checkpoints.read_state(resume_from)
        accelerator.load_state(str(resume_from))
        state.update(saved)
        if main and log_path.is_file():
            kept = [r for r in read_jsonl(log_path) if r.get("step", 0) <= state["step"]]
            atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in kept))
        if main:
            append_jsonl(log_path, {"event": "resume", "step": state["step"], "tokens": state["tokens"],
                                    "words_seen": state["words"],
                                    "checkpoint": str(resume_from), "time_s": state["train_time_s"]})
    elif main:
        ensure_writable(out_dir)
        if log_path.exists():
            log_path.unlink()
    if main:
        atomic_write_text(out_dir / "resolved_config.yaml", dump_yaml(stage))

    def save_current_weights(folder: Path | None) -> None:
        weights = accelerator.get_state_dict(model)  # collective under FSDP / ZeRO-3
        if folder is not None:
            accelerator.unwrap_model(model).save_pretrained(folder, state_dict=weights)

    word_saver = WordCheckpointSaver(out_dir, t.word_checkpoints if data.train.word_starts is not None else [],
                                     tokenizer, dump_yaml(stage), save_current_weights, main, log_path)
    word_saver.start(fresh=resume_from is None, words_seen=state["words"])
    accelerator.wait_for_everyone()

    micro = t.batch_size // (t.grad_accum * world)
    tokens_per_step = t.batch_size * t.seq_length
    bar = Progress(total_steps, f"{name} ({stage.kind}, {n_params / 1e6:.2f}M params)", enabled=progress and main,
                   log_every_s=30.0)
    if state["step"]:
        bar.message(f"{name}: resuming at step {state['step']} of {total_steps} from {resume_from}")
    log_sums = torch.zeros(4, device=accelerator.device)  # loss, ce, kd, grad_norm
    log_count, log_start = 0, time.perf_counter()
    autocast = accelerator.autocast
    epoch_starts: tuple[int, np.ndarray] | None = None

    def evaluate(split: TokenSplit, net, with_teachers: bool = False) -> dict:
        common = dict(rank=accelerator.process_index, world_size=world,
                      reduce=lambda x: accelerator.reduce(x, reduction="sum"), autocast=autocast)
        if with_teachers and val_teachers:
            d = stage.distill
            return evaluate_distill_loss(net, val_teachers, split, t.seq_length, t.eval_batch_size,
                                         tokenizer.pad_token_id, accelerator.device, d.alpha, d.temperature,
                                         d.reduction, **common)
        return evaluate_loss(net, split, t.seq_length, t.eval_batch_size, tokenizer.pad_token_id,
                             accelerator.device, **common)

    def checkpoint() -> Path | None:
        accelerator.wait_for_everyone()
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise UserError(f"models.{name}: weights became NaN or infinite by step {state['step']}; the last good "
                            f"checkpoint is kept in {ckpt_root}")
        saved = None
        if main:
            saved = checkpoints.save(ckpt_root, state["step"], state, lambda d: accelerator.save_state(str(d)),
                                     t.keep_checkpoints)
        accelerator.wait_for_everyone()
        return saved

    def stop_requested(flag) -> bool:
        """Every process stops at the same step if any one of them got a signal."""
        if world == 1:
            return bool(flag)
        return bool(accelerator.reduce(torch.tensor(float(bool(flag)), device=accelerator.device), "sum").item())

    model.train()
    stopped = False
    step_start = time.perf_counter()
    with stop_on_signals() as signalled:
        while state["step"] < total_steps and not stopped:
            step = state["step"]
            epoch, index = divmod(step, steps_per_epoch)
            if epoch_starts is None or epoch_starts[0] != epoch:
                epoch_starts = (epoch, loss_fn.epoch_starts(len(data.train), t.seq_length, t.seed, epoch,
                                                            t.chunk_sampling))
            batch = epoch_starts[1][index * t.batch_size:(index + 1) * t.batch_size]
            mine = batch[accelerator.process_index * micro * t.grad_accum:(accelerator.process_index + 1) * micro * t.grad_accum]
            for m in range(t.grad_accum):
                starts = mine[m * micro:(m + 1) * micro]
                inputs, labels = gather_chunks(data.train.tokens, starts, t.seq_length)
                inputs, labels = inputs.to(accelerator.device), labels.to(accelerator.device)
                sync = m == t.grad_accum - 1
                with (nullcontext() if sync else accelerator.no_sync(model)), autocast():
                    parts = loss_fn.fn(forward, inputs, labels, starts)
                accelerator.backward(parts.loss / t.grad_accum)
                log_sums[0] += parts.loss.detach() / t.grad_accum
                log_sums[1] += parts.ce.detach() / t.grad_accum
                if parts.kd is not None:
                    log_sums[2] += parts.kd.detach() / t.grad_accum
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), t.grad_clip if t.grad_clip > 0 else float("inf"))
            log_sums[3] += grad_norm.detach().float()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] = step = step + 1
            state["tokens"] += tokens_per_step
            if data.train.word_starts is not None:
                state["words"] += chunk_words(data.train.word_starts, batch, t.seq_length)
                for folder in word_saver.after_step(state["words"], state["tokens"], step):
                    bar.message(f"{name}: {state['words']:,} words seen, saved {folder}")
            log_count += 1
            stop_now = stop_requested(signalled)

            if step % t.log_every == 0 or step == total_steps:
                sums = accelerator.reduce(log_sums, reduction="mean").cpu() / log_count
                if not torch.isfinite(sums[0]):
                    raise UserError(f"models.{name}: loss became {sums[0].item()} at step {step}; the last good "
                                    f"checkpoint is kept in {ckpt_root}")
                elapsed = time.perf_counter() - log_start
                record = {"event": "train", "step": step, "epoch": round(step / steps_per_epoch, 4),
                          "tokens": state["tokens"], "words_seen": state["words"], "loss": sums[0].item(),
                          "ce": sums[1].item()}
                if stage.kind == "distill":
                    record["kd"] = sums[2].item()
                record.update(lr=scheduler.get_last_lr()[0], grad_norm=sums[3].item(),
                              tokens_per_s=log_count * tokens_per_step / elapsed,
                              time_s=state["train_time_s"] + time.perf_counter() - step_start)
                if main:
                    append_jsonl(log_path, record)
                bar.update(step, loss=record["loss"], tok_s=round(record["tokens_per_s"]))
                log_sums.zero_()
                log_count, log_start = 0, time.perf_counter()

            end_of_epoch = step % steps_per_epoch == 0
            do_eval = (t.eval_every and step % t.eval_every == 0) or (not t.eval_every and end_of_epoch) \
                or step == total_steps
            if do_eval:
                state["train_time_s"] += time.perf_counter() - step_start
                result = evaluate(data.valid, model, with_teachers=True)
                best = result[select_key] < state["best_val"]
                if not math.isfinite(result["loss"]):
                    raise UserError(f"models.{name}: validation loss is {result['loss']} at step {step}; "
                                    f"the last good checkpoint is kept in {ckpt_root}")
                if best:
                    state["best_val"], state["best_step"] = result[select_key], step
                    weights = accelerator.get_state_dict(model)  # gathers shards under FSDP / ZeRO-3
                    if main:
                        with atomic_path(best_dir) as tmp:
                            accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=weights)
                if main:
                    record = {"event": "eval", "step": step, "epoch": round(step / steps_per_epoch, 4),
                              "tokens": state["tokens"], "words_seen": state["words"],
                              "val_loss": result["loss"], "val_bpb": result["bpb"]}
                    if "kd" in result:
                        record.update(val_kd=result["kd"], val_distill_loss=result["distill_loss"])
                    append_jsonl(log_path, {**record, "best": best, "time_s": state["train_time_s"]})
                bar.message(f"{name}: step {step} val_loss {result['loss']:.4f} bpb {result['bpb']:.4f}"
                            + (" (best)" if best else ""))
                checkpoint()
                step_start = time.perf_counter()
                if on_eval is not None:
                    try:
                        on_eval(step, result["loss"])
                    except Stopped:
                        stopped = True
            elif (t.checkpoint_every and step % t.checkpoint_every == 0) or stop_now:
                state["train_time_s"] += time.perf_counter() - step_start
                checkpoint()
                step_start = time.perf_counter()
            if stop_now:
                raise Preempted(f"{name}: stopped by signal at step {step}; checkpoint saved in {ckpt_root}; "
                                f"rerun the same command to resume")

    # ---- final model: best weights, scored on valid and test
    accelerator.wait_for_everyone()
    best_model = type(accelerator.unwrap_model(model)).from_pretrained(best_dir).to(accelerator.device)
    valid = evaluate(data.valid, best_model, with_teachers=True)
    test = evaluate(data.test, best_model) if data.test is not None and len(data.test) > 1 else None
    metrics = {"name": name, "kind": stage.kind, "teachers": [str(x) for x in stage.teachers],
               "parameters": n_params, "tokens_seen": state["tokens"],
               "words_seen": state["words"] if data.train.word_starts is not None else None, "steps": state["step"],
               "best_step": state["best_step"], "stopped_early": stopped,
               "val_loss": valid["loss"], "val_bpb": valid["bpb"],
               **({"val_kd": valid["kd"], "val_distill_loss": valid["distill_loss"]} if "kd" in valid else {}),
               "test_loss": test["loss"] if test else None, "test_bpb": test["bpb"] if test else None,
               "wall_time_s": state["train_time_s"],
               "tokens_per_s": state["tokens"] / state["train_time_s"] if state["train_time_s"] else None}
    if main:
        save_model_dir(best_dir, tokenizer, out_dir)
        atomic_write_json(out_dir / "metrics.json", metrics)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()
    return metrics


def save_model_dir(weights_dir: Path, tokenizer, out_dir: Path) -> None:
    """Add the tokenizer to ``weights_dir`` and move its files into ``out_dir``.

    Each file lands by an atomic rename, so ``out_dir`` never holds a half-written weight file.
    """
    tokenizer.save_pretrained(weights_dir)
    for path in weights_dir.iterdir():
        os.replace(path, out_dir / path.name)
