"""The ``babyllama`` command line: one table of subcommands, each a plain function.

Every command turns a :class:`~babyllama.errors.UserError` into one line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path

from .errors import UserError
from .preemption import EXIT_PREEMPTED, Preempted

EXIT_USER_ERROR = 2


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose errors (unknown option, bad value) are a :class:`UserError`:
    one ``error: ...`` line and exit code 2 like every other error; the usage is on ``--help``.

    Subparsers are made with the parser's own class, so every subcommand behaves the same.
    """

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                   help="override a config value (YAML syntax), e.g. --set models.student.train.lr=1e-3; repeatable")


def _add_strict_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict-budget", action="store_true",
                   help="refuse to train (exit 2) when the estimated words exceed the experiment's track "
                   "(track: strict-small, 10M unique / 100M seen; strict, 100M / 1000M); default: a warning")


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress output")


def shipped_config(name: str) -> Path:
    """Path of a shipped experiment file, e.g. ``demo/experiment.yaml``."""
    return Path(str(resources.files("babyllama") / "configs" / name))


# --------------------------------------------------------------------------------------------
# Commands


def cmd_demo(args) -> int:
    """The whole pipeline on the built-in corpus, then the comparison table."""
    from .config import load_experiment

    overrides = [f"run_dir={args.out}"] + args.overrides
    config = load_experiment(shipped_config("demo/experiment.yaml"), overrides)
    _preflight(config, args)
    return _run(config, args)


def cmd_run(args) -> int:
    """Every stage of an experiment file, resuming where a previous run stopped."""
    from .config import load_experiment

    config = load_experiment(args.experiment, args.overrides)
    _preflight(config, args)
    if args.dry_run:
        from .word_budget import enforce, experiment_budget

        _describe(config)
        enforce(experiment_budget(config), args.strict_budget)
        return 0
    return _run(config, args)


def _only(args) -> list[str] | None:
    return [] if args.prepare_only else (args.only or None)


def _preflight(config, args) -> None:
    """Check everything the run will need before its first stage (all problems at once)."""
    from .preflight import preflight_experiment

    preflight_experiment(config, only=_only(args))


def _run(config, args) -> int:
    from .pipeline import run_experiment
    from .report import build_report
    from .word_budget import enforce, experiment_budget, write_budget

    enforce(experiment_budget(config), args.strict_budget)
    only = _only(args)
    run_experiment(config, overwrite=args.overwrite, progress=not args.quiet, only=only)
    if args.prepare_only:
        return 0
    print(write_budget(config).summary())
    run_dir = Path(config.run_dir)
    report = build_report([run_dir], run_dir / "report")
    print(report.table)
    print(f"report: {report.report_path}")
    return 0


def _describe(config) -> int:
    """Print each model's architecture and parameter count without training anything."""
    from .model import count_parameters, llama_config

    print(f"experiment {config.name}: run_dir {config.run_dir}, corpus {config.corpus.path}, "
          f"vocab {config.tokenizer.vocab_size}")
    for name in config.stage_order():
        stage = config.models[name]
        llama = llama_config(stage.model, config.tokenizer.vocab_size, 0, 1, 2)
        n = count_parameters(llama)
        teachers = f" from {', '.join(stage.teachers)}" if stage.teachers else ""
        print(f"  {name}: {stage.kind}{teachers}, preset {stage.model.preset}, hidden {llama.hidden_size}, "
              f"layers {llama.num_hidden_layers}, heads {llama.num_attention_heads}/{llama.num_key_value_heads}, "
              f"{n:,} parameters ({n / 1e6:.1f}M), lr {stage.train.lr}, batch {stage.train.batch_size}, "
              f"epochs {stage.train.epochs:g}")
    return 0


def cmd_prepare(args) -> int:
    """Clean and split a corpus folder (or the built-in corpus)."""
    from .config import CorpusConfig
    from .pipeline import run_prepare
    from .preflight import Problems, check_corpus, check_writable

    config = CorpusConfig(path=args.corpus, builtin_words=args.builtin_words, clean=not args.no_clean,
                          valid_fraction=args.valid_fraction)
    config.validate("prepare")
    problems = Problems()
    problems.check(check_corpus, config.path, "--corpus")
    problems.check(check_writable, args.out)
    problems.raise_if_any()
    run_prepare(config, Path(args.out), overwrite=args.overwrite)
    return 0


def cmd_tokenizer(args) -> int:
    """Train the byte-level BPE tokenizer on a prepared corpus's training split."""
    from .config import TokenizerConfig
    from .pipeline import run_tokenizer
    from .preflight import Problems, check_prepared, check_writable

    config = TokenizerConfig(vocab_size=args.vocab_size, min_frequency=args.min_frequency)
    config.validate("tokenizer")
    problems = Problems()
    problems.check(check_prepared, args.data)
    problems.check(check_writable, args.out)
    problems.raise_if_any()
    run_tokenizer(config, Path(args.data), Path(args.out), overwrite=args.overwrite)
    return 0


def _cmd_train(args, kind: str) -> int:
    from .config import StageConfig, apply_overrides, config_hash, from_dict, load_yaml
    from .pipeline import load_token_data, mark_done
    from .preflight import (Problems, check_disk, check_prepared, check_teacher, check_writable,
                            checkpoint_disk_bytes, stage_parameters)
    from .stage_lock import clear_folder, stage_lock
    from .tokenizer import for_encoding, load_tokenizer, tokenizer_hash
    from .train import train_stage

    data = load_yaml(args.config) if args.config else {}
    data = apply_overrides(data, [f"kind={kind}"] + ([f"model.preset={args.preset}"] if args.preset else [])
                           + args.overrides)
    teachers = [t for t in (getattr(args, "teachers", "") or "").split(",") if t]
    if teachers:
        data["teachers"] = teachers
    stage = from_dict(StageConfig, data, args.config or kind)
    stage.validate(kind)
    out = Path(args.out)
    problems = Problems()
    if (out / "stage.json").is_file() and not args.overwrite:
        problems.add(f"{out}: already holds a finished run; use --overwrite to replace it")
    writable = problems.check(check_writable, out) is not None
    encoding = stage.tokenizer.encoding if stage.tokenizer is not None else "per_line_prefix_space"
    tokenizer = problems.check(load_tokenizer, args.tokenizer)
    if tokenizer is not None:
        tokenizer = problems.check(for_encoding, tokenizer, encoding, f"--tokenizer {args.tokenizer}")
    problems.check(check_prepared, args.data)
    vocab = len(tokenizer) if tokenizer is not None else None
    if vocab is not None:
        for teacher in teachers:
            problems.check(check_teacher, teacher, tokenizer, vocab, stage.train.seq_length)
        n_params = problems.check(stage_parameters, stage, vocab)
        if n_params is not None and writable:
            problems.check(check_disk, out, checkpoint_disk_bytes(n_params, stage.train.keep_checkpoints),
                           f"training with {stage.train.keep_checkpoints} kept checkpoint(s)")
    if stage.distill.teacher_cache is not None and not (Path(stage.distill.teacher_cache) / "meta.json").is_file():
        problems.add(f"distill.teacher_cache: {stage.distill.teacher_cache} is not a teacher cache (no meta.json); "
                     f"build it with `babyllama teach-cache`")
    problems.raise_if_any()
    with stage_lock(out):  # a second live job on OUT is refused here, before anything is touched
        if (out / "stage.json").is_file():
            clear_folder(out)
        token_data = load_token_data(Path(args.data), tokenizer, Path(args.cache or Path(args.data) / "cache"),
                                     encoding)
        metrics = train_stage(out.name, stage, tokenizer, token_data, out, [Path(t) for t in teachers],
                              progress=not args.quiet, overwrite=args.overwrite)
        mark_done(out, kind, config_hash({"stage": stage, "tokenizer": tokenizer_hash(tokenizer)}))
    test = "none" if metrics["test_loss"] is None else f"{metrics['test_loss']:.4f}"
    print(f"{out}: val_loss {metrics['val_loss']:.4f}, test_loss {test}")
    return 0


def cmd_pretrain(args) -> int:
    """Pretrain one model (teacher or baseline) on a prepared corpus."""
    return _cmd_train(args, "pretrain")


def cmd_distill(args) -> int:
    """Distil a student from one or more teacher model folders."""
    return _cmd_train(args, "distill")


def cmd_teach_cache(args) -> int:
    """Run the teacher ensemble once over the training tokens and store sampled targets for distillation."""
    import torch

    from .pipeline import load_token_data
    from .preflight import Problems, check_prepared, check_teacher, check_writable
    from .teacher_cache import build_teacher_cache
    from .teachers import DTYPES
    from .tokenizer import load_tokenizer

    out = Path(args.out)
    problems = Problems()
    if out.exists() and not args.overwrite:
        problems.add(f"{out}: already exists; use --overwrite to replace it")
    offsets = ()
    try:
        offsets = tuple(int(o) for o in args.offsets.split(","))
    except ValueError:
        problems.add(f"--offsets {args.offsets!r}: expected comma-separated integers")
    if offsets and (len(set(offsets)) != len(offsets) or not all(0 <= o < args.seq_length for o in offsets)):
        problems.add(f"--offsets {list(offsets)}: expected distinct values in [0, {args.seq_length}) (--seq-length)")
    for name in ("k", "seq_length", "batch_size"):
        if getattr(args, name) < 1:
            problems.add(f"--{name.replace('_', '-')} {getattr(args, name)}: expected >= 1")
    if args.temperature <= 0:
        problems.add(f"--temperature {args.temperature}: expected > 0")
    tokenizer = problems.check(load_tokenizer, args.tokenizer)
    teachers = [t for t in args.teachers.split(",") if t]
    if not teachers:
        problems.add("--teachers: at least one teacher folder is needed")
    for teacher in teachers if tokenizer is not None else ():
        problems.check(check_teacher, teacher, tokenizer, len(tokenizer))
    problems.check(check_prepared, args.data)
    problems.check(check_writable, out)
    problems.raise_if_any()
    data = load_token_data(Path(args.data), tokenizer, Path(args.cache or Path(args.data) / "cache"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    meta = build_teacher_cache([Path(t) for t in teachers], data.train.tokens, args.seq_length,
                               out, k=args.k, tokenizer=tokenizer, temperature=args.temperature, offsets=offsets,
                               dtype=DTYPES[args.teacher_precision], batch_size=args.batch_size, seed=args.seed,
                               device=device, progress=not args.quiet)
    positions = len(offsets) * meta["n_chunks"] * args.seq_length
    print(f"{out}: {positions:,} positions x k={meta['k']} draws, {meta['bytes_per_token']} bytes per token "
          f"({positions * meta['bytes_per_token'] / 2**20:.1f} MiB), built in {meta['build_time_s']:.1f} s")
    return 0


def cmd_evaluate_loss(args) -> int:
    """Loss and bits per byte of model folders on a prepared corpus's splits."""
    import torch

    from .evaluation.perplexity import evaluate_loss
    from .model import load_model_dir
    from .pipeline import load_token_data
    from .preflight import Problems, check_model_folder, check_prepared
    from .tokenizer import load_tokenizer

    problems = Problems()
    splits = [s for s in args.splits.split(",") if s]
    for split in splits:
        if split not in ("train", "valid", "test"):
            problems.add(f"--splits {args.splits}: unknown split {split!r}; expected train, valid or test")
    if not splits:
        problems.add("--splits: no split named; expected some of train, valid, test")
    for name in ("seq_length", "batch_size"):
        if getattr(args, name) < 1:
            problems.add(f"--{name.replace('_', '-')} {getattr(args, name)}: expected >= 1")
    for model_dir in args.model_dir:
        problems.check(check_model_folder, model_dir)
        problems.check(load_tokenizer, model_dir)
    problems.check(check_prepared, args.data)
    problems.raise_if_any()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for model_dir in args.model_dir:
        tokenizer = load_tokenizer(model_dir)
        model = load_model_dir(model_dir).to(device)
        data = load_token_data(Path(args.data), tokenizer, Path(args.cache or Path(args.data) / "cache"))
        for split in splits:
            tokens = getattr(data, split)
            if tokens is None:
                print(f"{model_dir} {split}: the prepared corpus has no {split} split")
                continue
            r = evaluate_loss(model, tokens, args.seq_length, args.batch_size, tokenizer.pad_token_id, device)
            print(f"{model_dir} {split}: loss {r['loss']:.4f} bpb {r['bpb']:.4f} ({r['tokens']:,} tokens)")
    return 0


def cmd_download(args) -> int:
    """Fetch the BabyLM corpus from the Hugging Face Hub (online users only)."""
    from .download import download_corpus

    download_corpus(args.repo, Path(args.out), revision=args.revision)
    return 0


# --------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="babyllama", description="Pretrain small Llama models, distil students "
                                     "from teacher ensembles and evaluate them as the BabyLM challenge does "
                                     "(BabyLlama-2). Start with `babyllama demo`.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the whole pipeline on the built-in corpus (no data, no network)",
                       description="Generate the built-in corpus, train the tokenizer, two teachers, a baseline and "
                       "a distilled student, evaluate all four and print the comparison table.")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="replace finished stages whose config changed")
    p.add_argument("--only", action="append", default=[], metavar="MODEL", help="train only this model (repeatable)")
    p.add_argument("--prepare-only", action="store_true", help="stop after the corpus, tokenizer and token arrays")
    _add_strict_budget(p)
    _add_set(p)
    _add_quiet(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run an experiment file (resumes a killed run)",
                       description="Run every stage of EXPERIMENT.yaml in order; finished stages with the same "
                       "resolved config are skipped and an interrupted training stage resumes from its checkpoint.")
    p.add_argument("experiment", help="experiment YAML file (see configs/)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, print each model, its parameter count and the word budget, exit")
    p.add_argument("--overwrite", action="store_true", help="replace finished stages whose config changed")
    p.add_argument("--only", action="append", default=[], metavar="MODEL",
                   help="train and evaluate only this model (repeatable); other jobs may train the rest")
    p.add_argument("--prepare-only", action="store_true",
                   help="stop after the corpus, tokenizer and token arrays (run once before parallel --only jobs)")
    _add_strict_budget(p)
    _add_set(p)
    _add_quiet(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("prepare", help="clean and split a corpus", description=cmd_prepare.__doc__)
    p.add_argument("--corpus", default="builtin", help="folder of *.train/*.dev/*.test files, or 'builtin'")
    p.add_argument("--out", required=True, help="output folder for train/valid/test text")
    p.add_argument("--valid-fraction", type=float, default=0.05, help="last fraction of each train file kept "
                   "for validation (default 0.05)")
    p.add_argument("--no-clean", action="store_true", help="skip the per-source cleaning rules")
    p.add_argument("--builtin-words", type=int, default=300_000, help="size of the built-in corpus in words")
    p.add_argument("--overwrite", action="store_true", help="replace an existing prepared folder")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("tokenizer", help="train the BPE tokenizer", description=cmd_tokenizer.__doc__)
    p.add_argument("--data", required=True, help="prepared corpus folder (from `babyllama prepare`)")
    p.add_argument("--out", required=True, help="output tokenizer folder")
    p.add_argument("--vocab-size", type=int, default=16_000, help="vocabulary size (default 16000)")
    p.add_argument("--min-frequency", type=int, default=2, help="minimum pair frequency (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing tokenizer folder")
    p.set_defaults(func=cmd_tokenizer)

    for name, func, extra in (("pretrain", cmd_pretrain, False), ("distill", cmd_distill, True)):
        p = sub.add_parser(name, help=func.__doc__.rstrip("."), description=func.__doc__)
        p.add_argument("--data", required=True, help="prepared corpus folder")
        p.add_argument("--tokenizer", required=True, help="tokenizer folder")
        p.add_argument("--out", required=True, help="output model folder")
        if extra:
            p.add_argument("--teachers", required=True, metavar="DIR[,DIR...]", help="teacher model folders")
        p.add_argument("--config", help="stage YAML (keys: model, train, distill); defaults are the paper's")
        p.add_argument("--preset", help="model preset (babyllama2-345m, cpu-52m, cpu-14m, demo, tiny)")
        p.add_argument("--cache", help="token-array cache folder (default: DATA/cache)")
        p.add_argument("--overwrite", action="store_true", help="train again over a finished run")
        _add_set(p)
        _add_quiet(p)
        p.set_defaults(func=func)

    p = sub.add_parser("teach-cache", help="precompute the teachers' sampled targets for distillation",
                       description=cmd_teach_cache.__doc__ + " Use it with distill.teacher_cache: OUT (and the "
                       "same k, offsets and temperature as distill.cache_k, distill.cache_offsets, "
                       "distill.temperature).")
    p.add_argument("--data", required=True, help="prepared corpus folder")
    p.add_argument("--tokenizer", required=True, help="tokenizer folder (the student's)")
    p.add_argument("--teachers", required=True, metavar="DIR[,DIR...]", help="teacher model folders")
    p.add_argument("--out", required=True, help="output cache folder")
    p.add_argument("--k", type=int, default=32, help="token ids drawn per position (default 32)")
    p.add_argument("--offsets", default="0", help="comma-separated chunk offsets to cache (default 0)")
    p.add_argument("--seq-length", type=int, default=128, help="training sequence length (default 128)")
    p.add_argument("--temperature", type=float, default=1.0, help="distillation temperature (default 1.0)")
    p.add_argument("--teacher-precision", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="dtype the teachers run in (default float32)")
    p.add_argument("--batch-size", type=int, default=32, help="chunks per teacher forward pass (default 32)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--cache", help="token-array cache folder (default: DATA/cache)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cache folder")
    _add_quiet(p)
    p.set_defaults(func=cmd_teach_cache)

    p = sub.add_parser("evaluate", help="evaluate model folders (loss, zero-shot, glue)")
    ev = p.add_subparsers(dest="evaluation", required=True, metavar="EVALUATION")
    q = ev.add_parser("loss", help="loss and bits per byte on a prepared corpus", description=cmd_evaluate_loss.__doc__)
    q.add_argument("model_dir", nargs="+", help="model folder(s)")
    q.add_argument("--data", required=True, help="prepared corpus folder")
    q.add_argument("--splits", default="valid,test", help="comma-separated splits (default valid,test)")
    q.add_argument("--seq-length", type=int, default=128, help="evaluation chunk length (default 128)")
    q.add_argument("--batch-size", type=int, default=64, help="chunks per forward pass (default 64)")
    q.add_argument("--cache", help="token-array cache folder (default: DATA/cache)")
    q.set_defaults(func=cmd_evaluate_loss)
    from .evaluation import aoa, fast_eval, glue, reading, zero_shot

    zero_shot.add_parser(ev)
    fast_eval.add_parser(ev)
    glue.add_parser(ev)
    reading.add_parser(ev)
    aoa.add_parser(ev)

    p = sub.add_parser("download", help="fetch the BabyLM corpus from the Hugging Face Hub",
                       description=cmd_download.__doc__)
    p.add_argument("--repo", required=True, help="dataset repository on the Hub holding BabyLM *.train/*.dev/*.test files")
    p.add_argument("--revision", default=None, help="branch, tag or commit")
    p.add_argument("--out", required=True, help="output corpus folder")
    p.set_defaults(func=cmd_download)

    from . import push, report, sweep
    from .evaluation import collate

    push.add_parser(sub)
    report.add_parser(sub)
    from .study import add_parser as add_study_parser
    add_study_parser(sub)
    collate.add_parser(sub)
    sweep.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Preempted as exc:
        print(f"preempted: {exc}", file=sys.stderr)
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume from the last complete checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
