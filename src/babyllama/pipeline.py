"""Run an experiment's stages in order, each into its own folder, skipping finished ones.

Stages: prepare the corpus, train the tokenizer, encode token arrays, train every model
(teachers before their students), evaluate every model, write the report. A stage is finished
when its folder holds ``stage.json`` with the hash of the stage's resolved inputs; a re-run
skips it, a killed training stage resumes from its last checkpoint, and a finished stage whose
config changed is refused unless ``overwrite`` is set (nothing is deleted silently).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .config import CorpusConfig, ExperimentConfig, StageConfig, TokenizerConfig, config_hash, dump_yaml
from .data.corpus import iter_lines, prepare_corpus, split_files, whole_file_lines
from .data.token_arrays import encode_split
from .errors import UserError
from .io import atomic_write_json, atomic_write_text
from .stage_lock import clear_folder, stage_lock
from .tokenizer import for_encoding, load_tokenizer, save_tokenizer, tokenizer_hash, train_tokenizer
from .train import TrainData, train_stage


def _log(message: str) -> None:
    print(f"[babyllama] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Stage markers


def stage_done(folder: Path, chash: str, overwrite: bool) -> bool:
    """True if ``folder`` holds a finished stage with hash ``chash``.

    A finished stage with another hash is refused (or cleared when ``overwrite``).
    """
    marker = folder / "stage.json"
    if not marker.is_file():
        return False
    recorded = json.loads(marker.read_text()).get("config_hash")
    if recorded == chash:
        return True
    if not overwrite:
        raise UserError(f"{folder}: holds a finished stage with a different config; rerun with --overwrite "
                        f"to replace it, or choose another run_dir")
    clear_folder(folder)
    return False


def mark_done(folder: Path, stage: str, chash: str) -> None:
    """Write the completion marker last, after every other output of the stage."""
    atomic_write_json(folder / "stage.json", {"stage": stage, "config_hash": chash,
                                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


# --------------------------------------------------------------------------------------------
# Data stages


def run_prepare(config: CorpusConfig, out_dir: Path, overwrite: bool = False) -> Path:
    """Prepare (clean + split) a corpus into ``out_dir`` unless already done."""
    chash = config_hash(config)
    if stage_done(out_dir, chash, overwrite):
        _log(f"prepare: {out_dir} is up to date")
        return out_dir
    _log(f"prepare: {config.path} -> {out_dir}")
    stats = prepare_corpus(config, out_dir)
    for split, sources in stats["splits"].items():
        words = sum(s["words"] for s in sources.values())
        _log(f"prepare:   {split}: {len(sources)} source(s), {words:,} words")
    mark_done(out_dir, "prepare", chash)
    return out_dir


def run_tokenizer(config: TokenizerConfig, prepared: Path, out_dir: Path, overwrite: bool = False):
    """Train the tokenizer on ``config.training_text`` (or load ``config.path``), made to encode
    as ``config.encoding`` says; return it."""
    if config.path:
        return for_encoding(load_tokenizer(config.path), config.encoding, f"tokenizer.path {config.path}")
    chash = config_hash({"tokenizer": config, "corpus": (prepared / "stage.json").read_text()
                         if (prepared / "stage.json").is_file() else str(prepared)})
    if stage_done(out_dir, chash, overwrite):
        _log(f"tokenizer: {out_dir} is up to date")
        return load_tokenizer(out_dir)
    whole = config.training_text == "whole_train_files"
    _log(f"tokenizer: training byte-level BPE, vocab {config.vocab_size}, on "
         f"{prepared / 'train'}{' and ' + str(prepared / 'valid') if whole else ''}")
    text = whole_file_lines(prepared) if whole else iter_lines(split_files(prepared, "train"))
    tokenizer = train_tokenizer(text, config.vocab_size, config.min_frequency, config.byte_alphabet)
    save_tokenizer(for_encoding(tokenizer, config.encoding), out_dir)
    mark_done(out_dir, "tokenizer", chash)
    _log(f"tokenizer: {len(tokenizer)} tokens -> {out_dir}")
    return load_tokenizer(out_dir)


def load_token_data(prepared: Path, tokenizer, cache_dir: Path, encoding: str = "per_line_prefix_space") -> TrainData:
    """Token arrays of the three splits (encoded once as ``encoding`` says, then read from the cache)."""
    splits = {}
    for split in ("train", "valid", "test"):
        files = split_files(prepared, split)
        if not files and split != "test":
            raise UserError(f"{prepared}/{split}: empty split")
        splits[split] = encode_split(tokenizer, files, cache_dir, encoding) if files else None
    return TrainData(**splits)


# --------------------------------------------------------------------------------------------
# The experiment


@dataclass
class ModelInputs:
    """What one model's training stage reads: its corpus, tokenizer and teacher folders."""

    data: TrainData
    tokenizer: object
    teacher_dirs: list[Path]
    chash: str


def run_experiment(config: ExperimentConfig, overwrite: bool = False, progress: bool = True,
                   only: list[str] | None = None, evaluate: bool = True) -> dict[str, dict]:
    """Run every stage of ``config``; return each model's final metrics by name.

    ``only`` restricts training and evaluation to the named models (an empty list: data stages
    only), so independent models can run as separate jobs sharing one run folder.
    """
    for name in only or ():
        if name not in config.models:
            raise UserError(f"--only {name}: no such model in the experiment (models: {', '.join(config.models)})")
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "experiment.yaml", dump_yaml(config))
    prepared = run_prepare(config.corpus, run_dir / "corpus", overwrite)
    tokenizer = run_tokenizer(config.tokenizer, prepared, run_dir / "tokenizer", overwrite)
    shared = load_token_data(prepared, tokenizer, run_dir / "cache", config.tokenizer.encoding)
    hashes: dict[str, str] = {}
    results: dict[str, dict] = {}
    for name in config.stage_order():
        if only is not None and name not in only:
            continue
        stage = config.models[name]
        inputs = _model_inputs(config, name, stage, run_dir, prepared, tokenizer, shared, hashes, overwrite)
        hashes[name] = inputs.chash
        out = run_dir / name
        with stage_lock(out):  # another live job on this stage: refused here, before anything is touched
            if stage_done(out, inputs.chash, overwrite):
                _log(f"{name}: finished earlier, skipped ({out})")
            else:
                _log(f"{name}: {stage.kind} -> {out}")
                if stage.kind == "distill" and stage.distill.teacher_cache is not None:
                    _ensure_teacher_cache(stage, inputs, run_dir, progress)
                train_stage(name, stage, inputs.tokenizer, inputs.data, out, inputs.teacher_dirs, progress=progress,
                            overwrite=overwrite)
                mark_done(out, stage.kind, inputs.chash)
            results[name] = json.loads((out / "metrics.json").read_text())
    if evaluate:
        from .evaluate_stage import evaluate_models

        evaluated = {}
        for name in results:
            with stage_lock(run_dir / name):
                evaluated.update(evaluate_models(config, [name], overwrite=overwrite, progress=progress))
        results = evaluated
    return results


def _ensure_teacher_cache(stage: StageConfig, inputs: ModelInputs, run_dir: Path, progress: bool) -> None:
    """Build the stage's offline teacher cache if it does not exist yet (a relative path is taken
    inside the run folder); ``stage.distill.teacher_cache`` is set to the resolved path."""
    import torch

    from .teacher_cache import build_teacher_cache
    from .teachers import DTYPES

    d = stage.distill
    path = Path(d.teacher_cache)
    path = path if path.is_absolute() else run_dir / path
    d.teacher_cache = str(path)
    if (path / "meta.json").is_file():
        return
    _log(f"teacher cache: k={d.cache_k}, offsets {d.cache_offsets} -> {path}")
    build_teacher_cache(inputs.teacher_dirs, inputs.data.train.tokens, stage.train.seq_length, path, k=d.cache_k,
                        tokenizer=inputs.tokenizer, temperature=d.temperature, offsets=tuple(d.cache_offsets),
                        dtype=DTYPES.get(d.teacher_precision, torch.float32), seed=stage.train.seed,
                        device="cuda" if torch.cuda.is_available() else "cpu", progress=progress)


def _model_inputs(config: ExperimentConfig, name: str, stage: StageConfig, run_dir: Path, prepared: Path,
                  tokenizer, shared: TrainData, hashes: dict[str, str], overwrite: bool) -> ModelInputs:
    """Resolve a model's own corpus/tokenizer (if it names them) and its teachers."""
    data, tok, corpus_key = shared, tokenizer, config_hash(config.corpus)
    if stage.tokenizer is not None or stage.corpus is not None:
        own_prepared = prepared
        if stage.corpus is not None:
            own_prepared = run_prepare(stage.corpus, run_dir / f"corpus-{name}", overwrite)
            corpus_key = config_hash(stage.corpus)
        encoding = config.tokenizer.encoding
        if stage.tokenizer is not None:
            tok = run_tokenizer(stage.tokenizer, own_prepared, run_dir / f"tokenizer-{name}", overwrite)
            encoding = stage.tokenizer.encoding
        data = load_token_data(own_prepared, tok, run_dir / "cache", encoding)
    teacher_dirs = []
    for teacher in stage.teachers:
        folder = run_dir / teacher if teacher in config.models else Path(teacher)
        teacher_dirs.append(folder)
    chash = config_hash({"stage": stage, "corpus": corpus_key, "tokenizer": tokenizer_hash(tok),
                         "teachers": [hashes.get(t, t) for t in stage.teachers]})
    return ModelInputs(data=data, tokenizer=tok, teacher_dirs=teacher_dirs, chash=chash)
