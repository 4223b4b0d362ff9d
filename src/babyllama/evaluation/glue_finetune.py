"""One (Super)GLUE finetuning run: a sequence-classification head on the pretrained model,
trained with the Hugging Face ``Trainer``, the best epoch's checkpoint scored on validation sets.

The head (``AutoModelForSequenceClassification``: a linear ``score`` layer on the hidden state of
the last non-padding token) is freshly initialised; the validation file is scored after every
epoch; training stops early when the selection metric has not improved by more than 0.001 for
``patience`` epochs; the best epoch is chosen by F1 for two-way tasks and accuracy for MNLI
(``select_by="pipeline"``, the 2024 pipeline's choice) or by the reported metric
(``select_by="task"``).
"""

from __future__ import annotations

import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from babyllama.errors import UserError
from babyllama.evaluation.glue_data import Examples, encode
from babyllama.evaluation.glue_metrics import classification_scores
from babyllama.evaluation.glue_tasks import GlueTask

EARLY_STOPPING_THRESHOLD = 0.001
"""Smallest gain of the selection metric that resets the patience counter (as in the pipeline)."""



def load_tokenizer(model_dir: Path):
    """The model directory's tokenizer, with a padding token (the EOS token if it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"{model_dir}: cannot load a tokenizer ({str(e).splitlines()[0]})") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise UserError(f"{model_dir}: the tokenizer has neither a padding nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_classifier(model_dir: Path, num_labels: int, tokenizer, options: dict):
    """A ``num_labels``-way sequence classifier on the pretrained model, in float32.

    The ``score`` head (hidden -> num_labels) is freshly initialised from ``options["seed"]``;
    with ``options["lora"]`` the model is wrapped by peft so that only LoRA adapters on the
    attention projections and the head are trained.
    """
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.set_seed(options["seed"])
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=num_labels, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{model_dir}: cannot load a sequence classifier ({str(e).splitlines()[0]})") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    if options["lora"]:
        try:
            import peft
        except ImportError:
            raise UserError("LoRA finetuning needs the peft package: pip install 'babyllama[lora]'") from None
        lora = peft.LoraConfig(
            task_type=peft.TaskType.SEQ_CLS,
            r=options["lora_r"],
            lora_alpha=options["lora_alpha"],
            lora_dropout=options["lora_dropout"],
        )
        model = peft.get_peft_model(model, lora)
    return model


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
    best checkpoint, all scores there, epochs run and the best epoch.
    """
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    started = time.perf_counter()
    max_length = min(options["max_length"], tokenizer.model_max_length)
    train_set = encode(data["train"], tokenizer, max_length)
    select_set = encode(data["select"], tokenizer, max_length)
    model = _load_classifier(model_dir, train_task.num_labels, tokenizer, options)
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
        metrics = trainer.evaluate(eval_dataset=valid_set)
        scores = {k[5:]: float(v) for k, v in metrics.items() if k[5:] in ("accuracy", "f1", "mcc")}
        results[task.name] = {
            "metric": task.metric,
            "value": scores[task.metric],
            "scores": scores,
            "epochs_run": len(evals),
            "best_epoch": best_epoch,
            "selected_by": metric,
        }
    seconds = round(time.perf_counter() - started, 2)
    for entry in results.values():
        entry["seconds"] = seconds
    return results
