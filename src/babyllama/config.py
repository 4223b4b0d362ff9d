"""Typed, validated configuration for every stage, loaded from YAML with dotted overrides.

An experiment file names the corpus, the tokenizer, default model and training settings, and a
table of models (teachers, baselines, students). Each model entry may override any default; the
merged, validated result is the *resolved* config saved next to every output.

Validation is strict: an unknown key is an error naming the key and the nearest valid one, a
value of the wrong type names the key and the expected type, and out-of-range values are refused
before any work starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from .config_yaml import apply_overrides, check_value as _check, from_dict, load_yaml, suggest as _suggest
from .config_yaml import config_hash, dump_yaml, to_dict  # noqa: F401  (re-exported: stages import them from here)
from .errors import UserError
from .word_checkpoints import DEFAULT_WORD_COUNTS, check_word_counts


# --------------------------------------------------------------------------------------------
# Stage configs


@dataclass
class CorpusConfig:
    """Where the text comes from and how it is split.

    ``path`` is a folder of ``*.train`` / ``*.dev`` / ``*.test`` files (BabyLM 2023 or 2024
    layout); ``builtin`` generates the project's own corpus of ``builtin_words`` words instead.
    """

    path: str = "builtin"
    builtin_words: int = 300_000
    builtin_seed: int = 0
    clean: bool = True
    valid_fraction: float = 0.05
    #: Keep blank lines through the split and in the written splits (the reference's
    #: ``split_dataset.ipynb``); ``False`` (ours) drops them after cleaning (docs/reproduction.md).
    keep_blank_lines: bool = False

    def validate(self, where: str) -> None:
        _check(0.0 < self.valid_fraction < 1.0, where, "valid_fraction", self.valid_fraction, "in (0, 1)")
        _check(self.builtin_words > 0, where, "builtin_words", self.builtin_words, "> 0")


@dataclass
class TokenizerConfig:
    """Byte-level BPE settings (docs/paper-recipe.md); ``path`` reuses an existing tokenizer folder.

    ``encoding``: how text becomes training tokens, and how the saved tokenizer encodes:
    ``per_line_prefix_space`` (ours: each line with a prefix space) or ``reference_whole_file``
    (the authors': each file as one string, no prefix space). ``training_text``: what BPE is
    trained on: ``train_split`` (ours: the training split's lines) or ``whole_train_files`` (the
    authors': every line of the cleaned training files, validation part included, with its
    newline). ``byte_alphabet``: seed the vocabulary with all 256 byte symbols (ours) or learn
    only the bytes seen (the authors'). See docs/reproduction.md.
    """

    vocab_size: int = 16_000
    min_frequency: int = 2
    path: str | None = None
    encoding: str = "per_line_prefix_space"
    training_text: str = "train_split"
    byte_alphabet: bool = True

    def validate(self, where: str) -> None:
        _check(self.vocab_size >= 300, where, "vocab_size", self.vocab_size, ">= 300 (256 bytes + specials)")
        _check(self.vocab_size <= 1 << 20, where, "vocab_size", self.vocab_size, "<= 1048576")
        _check(self.min_frequency >= 1, where, "min_frequency", self.min_frequency, ">= 1")
        _check(self.encoding in ENCODINGS, where, "encoding", self.encoding, f"one of {', '.join(ENCODINGS)}")
        _check(self.training_text in TRAINING_TEXTS, where, "training_text", self.training_text,
               f"one of {', '.join(TRAINING_TEXTS)}")


ENCODINGS = ("per_line_prefix_space", "reference_whole_file")
TRAINING_TEXTS = ("train_split", "whole_train_files")


@dataclass
class ModelConfig:
    """A Llama architecture: a named preset, with any field overridden (``None`` = preset's)."""

    preset: str = "babyllama2-345m"
    hidden_size: int | None = None
    intermediate_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    max_position_embeddings: int | None = None
    rms_norm_eps: float | None = None
    rope_theta: float | None = None
    tie_word_embeddings: bool | None = None
    attention_dropout: float | None = None

    def validate(self, where: str) -> None:
        from .model import PRESETS

        if self.preset not in PRESETS:
            raise UserError(f"{where}.preset: unknown preset {self.preset!r}{_suggest(self.preset, PRESETS)}; "
                            f"choose one of {', '.join(sorted(PRESETS))}")
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "max_position_embeddings"):
            value = getattr(self, name)
            _check(value is None or value > 0, where, name, value, "> 0")
        if self.attention_dropout is not None:
            _check(0.0 <= self.attention_dropout < 1.0, where, "attention_dropout", self.attention_dropout, "in [0, 1)")


@dataclass
class TrainConfig:
    """The training recipe (defaults: the paper's, docs/paper-recipe.md).

    ``batch_size`` is the global batch per optimizer step (sequences), split over
    ``grad_accum`` micro-steps and over processes. ``epochs`` may be fractional; ``max_steps``
    caps the number of optimizer steps (the schedule is laid out over the capped length).
    ``word_checkpoints``: corpus words seen at which a model folder is saved under
    ``word_checkpoints/chck_{N}M`` (default: the BabyLM 2025 schedule 1M..10M, 20M..100M).
    ``precision``: ``no`` (float32), ``bf16``, ``fp16`` (autocast with a gradient scaler; teachers
    keep float32 weights unless ``distill.teacher_precision`` says otherwise, as in the authors'
    code) or ``auto`` (bf16 on a GPU that supports it, else float32).
    """

    seq_length: int = 128
    batch_size: int = 128
    grad_accum: int = 1
    epochs: float = 8.0
    max_steps: int | None = None
    lr: float = 7e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 5.0
    schedule: str = "cosine"
    warmup_steps: int = 600
    grad_clip: float = 1.0
    precision: str = "no"
    compile: bool = False
    eval_every: int = 0
    eval_batch_size: int = 64
    log_every: int = 10
    checkpoint_every: int = 0
    keep_checkpoints: int = 1
    seed: int = 0
    word_checkpoints: list[int] = field(default_factory=lambda: list(DEFAULT_WORD_COUNTS))
    #: Which validation value picks the kept checkpoint: ``val_loss`` (cross-entropy, ours) or
    #: ``val_distill_loss`` (the student's distillation loss, the authors'; students only).
    select_on: str = "val_loss"
    #: ``per_epoch_offset`` (ours: one random offset per epoch, disjoint windows) or
    #: ``per_sample_offset`` (the authors': a fresh offset per chunk, windows may overlap).
    chunk_sampling: str = "per_epoch_offset"

    def validate(self, where: str) -> None:
        _check(self.seq_length > 0, where, "seq_length", self.seq_length, "> 0")
        _check(self.batch_size > 0, where, "batch_size", self.batch_size, "> 0")
        _check(self.grad_accum > 0, where, "grad_accum", self.grad_accum, "> 0")
        _check(self.batch_size % self.grad_accum == 0, where, "batch_size", self.batch_size,
               f"divisible by grad_accum ({self.grad_accum})")
        _check(self.epochs > 0, where, "epochs", self.epochs, "> 0")
        _check(self.max_steps is None or self.max_steps > 0, where, "max_steps", self.max_steps, "> 0")
        _check(self.lr > 0, where, "lr", self.lr, "> 0")
        _check(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), where, "betas", self.betas,
               "two values in [0, 1)")
        _check(self.eps > 0, where, "eps", self.eps, "> 0")
        _check(self.weight_decay >= 0, where, "weight_decay", self.weight_decay, ">= 0")
        _check(self.schedule in SCHEDULES, where, "schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        _check(self.warmup_steps >= 0, where, "warmup_steps", self.warmup_steps, ">= 0")
        _check(self.grad_clip >= 0, where, "grad_clip", self.grad_clip, ">= 0 (0 disables clipping)")
        _check(self.precision in PRECISIONS, where, "precision", self.precision, f"one of {', '.join(PRECISIONS)}")
        for name in ("eval_every", "log_every", "checkpoint_every"):
            _check(getattr(self, name) >= 0, where, name, getattr(self, name), ">= 0")
        _check(self.keep_checkpoints >= 1, where, "keep_checkpoints", self.keep_checkpoints, ">= 1")
        _check(self.log_every > 0, where, "log_every", self.log_every, "> 0")
        _check(self.eval_batch_size > 0, where, "eval_batch_size", self.eval_batch_size, "> 0")
        check_word_counts(self.word_checkpoints, f"{where}.word_checkpoints")
        _check(self.select_on in SELECT_ON, where, "select_on", self.select_on, f"one of {', '.join(SELECT_ON)}")
        _check(self.chunk_sampling in CHUNK_SAMPLINGS, where, "chunk_sampling", self.chunk_sampling,
               f"one of {', '.join(CHUNK_SAMPLINGS)}")


SELECT_ON = ("val_loss", "val_distill_loss")
CHUNK_SAMPLINGS = ("per_epoch_offset", "per_sample_offset")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("no", "bf16", "fp16", "auto")
REDUCTIONS = ("per_token", "reference")


@dataclass
class DistillConfig:
    """Distillation loss: ``alpha * CE + (1 - alpha) * T^2 * KL(ensemble || student)``.

    ``reduction`` is ``per_token`` (KL averaged over predicted tokens) or ``reference`` (the
    authors' code: KL summed over positions and divided by the batch size, about ``seq_length``
    times larger). ``teacher_precision`` is the dtype the frozen teachers run in.

    ``teacher_cache``: a folder built by ``babyllama teach-cache`` (sampled ensemble targets,
    ``cache_k`` draws per position, for chunks starting at the ``cache_offsets``); when set, the
    student learns from it instead of running the teachers, and each epoch's chunks start at one
    of those offsets (docs in :mod:`babyllama.teacher_cache`).
    """

    alpha: float = 0.5
    temperature: float = 1.0
    reduction: str = "per_token"
    teacher_precision: str = "same"
    teacher_cache: str | None = None
    cache_k: int = 32
    cache_offsets: list[int] = field(default_factory=lambda: [0])

    def validate(self, where: str) -> None:
        _check(0.0 <= self.alpha <= 1.0, where, "alpha", self.alpha, "in [0, 1]")
        _check(self.temperature > 0, where, "temperature", self.temperature, "> 0")
        _check(self.reduction in REDUCTIONS, where, "reduction", self.reduction, f"one of {', '.join(REDUCTIONS)}")
        _check(self.teacher_precision in ("same", "float32", "bfloat16", "float16"), where, "teacher_precision",
               self.teacher_precision, "one of same, float32, bfloat16, float16")
        _check(1 <= self.cache_k <= 4096, where, "cache_k", self.cache_k, "in [1, 4096]")
        _check(len(self.cache_offsets) >= 1 and len(set(self.cache_offsets)) == len(self.cache_offsets)
               and all(o >= 0 for o in self.cache_offsets), where, "cache_offsets", self.cache_offsets,
               "a non-empty list of distinct offsets >= 0 (each below train.seq_length)")


@dataclass
class StageConfig:
    """Everything one training stage (a teacher, baseline or student) needs."""

    kind: str = "pretrain"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teachers: list[str] = field(default_factory=list)
    corpus: CorpusConfig | None = None
    tokenizer: TokenizerConfig | None = None

    def validate(self, where: str) -> None:
        _check(self.kind in ("pretrain", "distill"), where, "kind", self.kind, "pretrain or distill")
        self.model.validate(f"{where}.model")
        self.train.validate(f"{where}.train")
        from .model import max_positions

        positions = max_positions(self.model)
        _check(self.train.seq_length <= positions, f"{where}.train", "seq_length", self.train.seq_length,
               f"<= the model's max_position_embeddings ({positions})")
        self.distill.validate(f"{where}.distill")
        if self.kind == "distill":
            _check(len(self.teachers) >= 1, where, "teachers", self.teachers, "at least one teacher for distill")
        else:
            _check(not self.teachers, where, "teachers", self.teachers, "empty for pretrain (use kind: distill)")
            _check(self.train.select_on == "val_loss", f"{where}.train", "select_on", self.train.select_on,
                   "val_loss for kind: pretrain (val_distill_loss needs teachers)")
        _check(self.distill.teacher_cache is None or self.kind != "distill"
               or self.train.chunk_sampling == "per_epoch_offset", f"{where}.train", "chunk_sampling",
               self.train.chunk_sampling, "per_epoch_offset with distill.teacher_cache (the cache holds fixed offsets)")
        if self.corpus is not None:
            self.corpus.validate(f"{where}.corpus")
        if self.tokenizer is not None:
            self.tokenizer.validate(f"{where}.tokenizer")


@dataclass
class ZeroShotConfig:
    """Zero-shot tasks: name -> folder (``builtin`` generates the built-in corpus's pairs).

    ``checkpoints``: also score the tasks on every word-count checkpoint of each model
    (``MODEL/fast_eval/``, as ``evaluate fast`` does), which the report draws as learning curves.
    """

    tasks: dict[str, str] = field(default_factory=lambda: {"builtin_pairs": "builtin"})
    batch_size: int = 64
    pairs_per_phenomenon: int = 200
    checkpoints: bool = False


@dataclass
class GlueConfig:
    """(Super)GLUE finetuning; off unless ``data`` names a folder."""

    data: str | None = None
    tasks: list[str] | None = None
    max_train_examples: int | None = None


@dataclass
class EvaluationConfig:
    """What runs after training: loss / bits per byte always, then zero-shot and GLUE if set."""

    zero_shot: ZeroShotConfig | None = field(default_factory=ZeroShotConfig)
    glue: GlueConfig | None = None


@dataclass
class ExperimentConfig:
    """One experiment file: shared data and defaults, then a table of models.

    ``track``: the BabyLM word budget the experiment declares (:mod:`babyllama.word_budget`).
    """

    name: str = "experiment"
    run_dir: str = "runs/experiment"
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    models: dict[str, StageConfig] = field(default_factory=dict)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    track: str = "none"

    def validate(self) -> None:
        from .word_budget import TRACKS

        _check(self.track in TRACKS, "experiment", "track", self.track, f"one of {', '.join(TRACKS)}")
        self.corpus.validate("corpus")
        self.tokenizer.validate("tokenizer")
        if not self.models:
            raise UserError("models: the experiment names no model to train")
        for name, stage in self.models.items():
            stage.validate(f"models.{name}")
            for teacher in stage.teachers:
                if teacher not in self.models and not Path(teacher).is_dir():
                    raise UserError(f"models.{name}.teachers: {teacher!r} is neither a model of this experiment"
                                    f"{_suggest(teacher, self.models)} nor a model folder")
                if teacher == name:
                    raise UserError(f"models.{name}.teachers: a model cannot be its own teacher")
        self.stage_order()

    def stage_order(self) -> list[str]:
        """Model names in an order where every teacher is trained before its students."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order:
                return
            if name in visiting:
                raise UserError(f"models.{name}.teachers: teachers form a cycle")
            visiting.add(name)
            for teacher in self.models[name].teachers:
                if teacher in self.models:
                    visit(teacher)
            visiting.discard(name)
            order.append(name)

        for name in self.models:
            visit(name)
        return order


#: Experiment-level sections that act as defaults for every entry of ``models``.
MODEL_DEFAULT_SECTIONS = ("model", "train", "distill")


# --------------------------------------------------------------------------------------------
# Loading


def resolve_experiment(data: dict, source: str = "experiment") -> ExperimentConfig:
    """Merge the model defaults into each model entry and validate the whole experiment."""
    data = copy.deepcopy(data)
    defaults = {section: data.pop(section, None) or {} for section in MODEL_DEFAULT_SECTIONS}
    for section, value in defaults.items():
        if not isinstance(value, dict):
            raise UserError(f"{source}: {section}: expected a mapping, got {type(value).__name__}")
    models = data.get("models")
    if models is None:
        raise UserError(f"{source}: models: missing (the table of models to train)")
    if not isinstance(models, dict):
        raise UserError(f"{source}: models: expected a mapping of name -> settings, got {type(models).__name__}")
    merged_models = {}
    for name, entry in models.items():
        if entry is None:  # `--set models.NAME=null` removes a model
            continue
        if not isinstance(entry, dict):
            raise UserError(f"{source}: models.{name}: expected a mapping, got {type(entry).__name__}")
        merged = dict(entry)
        for section, default in defaults.items():
            own = entry.get(section) or {}
            if not isinstance(own, dict):
                raise UserError(f"{source}: models.{name}.{section}: expected a mapping")
            merged[section] = {**default, **own}
        merged_models[str(name)] = merged
    data["models"] = merged_models
    config = from_dict(ExperimentConfig, data, source)
    config.validate()
    return config


def load_experiment(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Load, override and validate an experiment file."""
    original = load_yaml(path)
    data = apply_overrides(original, list(overrides))
    _check_model_overrides(original, data, list(overrides), str(path))
    return resolve_experiment(data, str(path))


def _check_model_overrides(original: dict, data: dict, overrides: list[str], source: str) -> None:
    """Refuse ``--set models.NAME...`` for a model the file does not have, unless the new entry
    names its ``kind`` (a misspelt name would otherwise add a model with the default preset)."""
    known = [str(k) for k in original["models"]] if isinstance(original.get("models"), dict) else []
    models = {str(k): v for k, v in data["models"].items()} if isinstance(data.get("models"), dict) else {}
    for item in overrides:
        parts = item.split("=", 1)[0].strip().split(".")
        if len(parts) < 2 or parts[0] != "models" or parts[1] in known:
            continue
        entry = models.get(parts[1])
        if not (isinstance(entry, dict) and "kind" in entry):
            raise UserError(f"--set {item}: {source} has no model {parts[1]!r}{_suggest(parts[1], known)}; "
                            f"to add one, also set models.{parts[1]}.kind (pretrain or distill)")


# --------------------------------------------------------------------------------------------
# Dataclass <-> dict
