"""One (Super)GLUE finetuning run: a classifier on the pretrained model (``glue_classifier``),
trained with the Hugging Face ``Trainer``, the best epoch's checkpoint scored on validation sets.

AdamW with the recipe's learning rate, weight decay, warm-up and schedule (linear to 0, or
cosine to ``min_lr_ratio`` x lr); the validation file is scored after every epoch; with
``patience`` > 0 training stops when the selection metric has not improved by more than 0.001 for
that many epochs; the best epoch is chosen by F1 for two-way tasks and accuracy for MNLI
(``select_by="pipeline"``, the 2024 pipeline's choice) or by the reported metric
(``select_by="task"``, the 2025 pipeline's choice).
"""

from __future__ import annotations

import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from babyllama.evaluation.glue_classifier import load_classifier, model_max_length
from babyllama.evaluation.glue_data import Examples, encode
from babyllama.evaluation.glue_metrics import classification_scores
from babyllama.evaluation.glue_tasks import GlueTask

EARLY_STOPPING_THRESHOLD = 0.001
"""Smallest gain of the selection metric that resets the patience counter (as in the pipeline)."""



@contextmanager
def quiet_transformers():
    """Silence transformers' warnings, deprecation notices and weight loading/saving bars.

    Finetuning loads a model whose ``score`` head is new (an expected "newly initialised"
    notice) and saves a checkpoint every epoch (a bar each time); our own lines say what matters.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations peft triggers inside transformers
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _selection_metric(task: GlueTask, options: dict) -> str:
    """Name of the metric the best checkpoint is chosen by (see the module docstring)."""
    if options["select_by"] == "task":
        return task.metric
    return "f1" if task.num_labels == 2 else "accuracy"


def _epoch_lines_callback(label: str, metric: str, epochs: int):
    """A Trainer callback printing one plain line per epoch: train loss, validation scores,
    elapsed time and the time left if every remaining epoch runs (early stopping may cut it)."""
    from transformers import TrainerCallback

    class EpochLines(TrainerCallback):
        def __init__(self):
            self.loss = float("nan")
            self.started = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = logs["loss"]

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            epoch = max(state.epoch or 0.0, 1e-9)
            elapsed = time.perf_counter() - self.started
            scores = " ".join(
                f"{k[5:]} {v:.4f}" for k, v in (metrics or {}).items() if k[5:] in ("accuracy", "f1", "mcc")
            )
            say(
                f"{label}: epoch {round(epoch)}/{epochs} train loss {self.loss:.4f} | valid {scores} "
                f"(selecting on {metric}) | {elapsed:.0f} s, at most {elapsed / epoch * (epochs - epoch):.0f} s left"
            )

    return EpochLines()


def say(message: str) -> None:
    """Print a progress line to stderr."""
    print(f"glue {message}", file=sys.stderr, flush=True)


def finetune(
    model_dir: Path,
    tokenizer,
    train_task: GlueTask,
    scored: list[GlueTask],
    data: dict[str, Examples],
    options: dict,
    scratch: Path,
    progress: bool,
) -> dict[str, dict]:
    """Finetune one classifier on ``train_task`` and score it on the validation set of every
    task in ``scored`` (``mnli`` and/or ``mnli-mm`` share one run).

    ``data`` holds ``"train"`` and ``"select"`` (the training task's validation set, used for
    early stopping and the checkpoint choice) and one entry per scored task name. Checkpoints
    are written under ``scratch``. Returns per scored task: the metric's name and value at the
    best checkpoint, all scores there, epochs run, the best epoch, the sequence length used
    (``options["max_length"]`` capped at what the model takes) and the predicted class of every
    validation example in file order (``predictions``).
    """
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    started = time.perf_counter()
    limit = model_max_length(model_dir, tokenizer)
    max_length = options["max_length"] if limit is None else min(options["max_length"], limit)
    train_set = encode(data["train"], tokenizer, max_length)
    select_set = encode(data["select"], tokenizer, max_length)
    model = load_classifier(model_dir, train_task.num_labels, tokenizer, options)
    metric = _selection_metric(train_task, options)
    show_bars = progress and sys.stderr.isatty()

    def compute_metrics(prediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_scores(np.argmax(logits, axis=-1), prediction.label_ids, train_task.num_labels)

    args = TrainingArguments(
        output_dir=str(scratch),
        learning_rate=options["lr"],
        per_device_train_batch_size=options["batch_size"],
        per_device_eval_batch_size=options["batch_size"],
        num_train_epochs=options["epochs"],
        weight_decay=options["weight_decay"],
        warmup_steps=options["warmup_ratio"],
        lr_scheduler_type="linear" if options["schedule"] == "linear" else "cosine_with_min_lr",
        lr_scheduler_kwargs={} if options["schedule"] == "linear" else {"min_lr_rate": options["min_lr_ratio"]},
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=True,
        save_total_limit=1,
        save_only_model=True,
        seed=options["seed"],
        report_to="none",
        disable_tqdm=not show_bars,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    callbacks = []
    if options["patience"] > 0:
        callbacks.append(EarlyStoppingCallback(options["patience"], EARLY_STOPPING_THRESHOLD))
    # On a terminal the Trainer's bars show progress; elsewhere one plain line per epoch does.
    epoch_lines = None
    if progress and not show_bars:
        epoch_lines = _epoch_lines_callback(train_task.name, metric, options["epochs"])
        callbacks.append(epoch_lines)
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=DataCollatorWithPadding(tokenizer),
        train_dataset=train_set,
        eval_dataset=select_set,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    if epoch_lines is not None:
        trainer.remove_callback(epoch_lines)

    evals = [entry for entry in trainer.state.log_history if f"eval_{metric}" in entry]
    best_step = trainer.state.best_global_step
    best_epoch = next((round(e["epoch"]) for e in evals if e["step"] == best_step), None)
    results = {}
    for task in scored:
        valid_set = select_set if task.name == train_task.name else encode(data[task.name], tokenizer, max_length)
        output = trainer.predict(valid_set, metric_key_prefix="eval")
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        scores = {k[5:]: float(v) for k, v in output.metrics.items() if k[5:] in ("accuracy", "f1", "mcc")}
        results[task.name] = {
            "metric": task.metric,
            "value": scores[task.metric],
            "scores": scores,
            "epochs_run": len(evals),
            "best_epoch": best_epoch,
            "selected_by": metric,
            "max_length_used": max_length,
            "predictions": np.argmax(logits, axis=-1).astype(int).tolist(),
        }
    seconds = round(time.perf_counter() - started, 2)
    for entry in results.values():
        entry["seconds"] = seconds
    return results
