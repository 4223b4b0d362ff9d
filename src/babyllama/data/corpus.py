"""Corpus discovery, cleaning and splitting (``babyllama prepare``).

A corpus is a folder of ``<source>.train`` / ``<source>.dev`` / ``<source>.test`` files (the
BabyLM 2023 and 2024 layouts, possibly gzipped, possibly in sub-folders such as ``train_10M/``
and ``dev/``). Preparing it cleans each file with its source's rules, then writes:

- ``train/<source>.txt``: the first ``1 - valid_fraction`` of each training file's lines,
- ``valid/<source>.txt``: the last ``valid_fraction`` of them,
- ``test/<source>.txt``: the ``*.dev`` files (the paper's test set), or ``*.test`` when there is
  no ``*.dev``,
- ``prepare.json``: lines, words and bytes per source and split.

Blank (whitespace-only) lines are dropped after cleaning and the split counts the remaining
lines; with ``keep_blank_lines`` they are kept, in the split count and in the written files, as
the authors' ``split_dataset.ipynb`` does (docs/reproduction.md).
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections import defaultdict
from pathlib import Path

from ..config import CorpusConfig
from ..errors import UserError
from ..io import atomic_path
from .cleaners import clean_text

SPLIT_SUFFIXES = ("train", "dev", "test")


def discover(root: str | Path) -> dict[str, dict[str, Path]]:
    """Map split suffix -> source stem -> file under ``root`` (searched recursively).

    Refuses a missing folder, a folder with no ``*.train`` file, and a folder where one source
    appears twice for a split (e.g. both ``train_10M/`` and ``train_100M/`` below the root).
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: corpus folder not found")
    found: dict[str, dict[str, Path]] = {s: {} for s in SPLIT_SUFFIXES}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        stem, _, suffix = name.rpartition(".")
        if suffix not in found or not stem:
            continue
        if stem in found[suffix]:
            raise UserError(f"{root}: two {suffix} files for source {stem!r} ({found[suffix][stem]} and {path}); "
                            f"point at one release folder")
        found[suffix][stem] = path
    if not found["train"]:
        raise UserError(f"{root}: no *.train files (expected a BabyLM corpus folder)")
    return found


def read_text(path: Path) -> str:
    """Read a (possibly gzipped) UTF-8 text file, refusing binary or non-UTF-8 content."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if b"\x00" in raw:
        raise UserError(f"{path}: binary file (NUL bytes), expected UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def clean_lines(source: str, text: str, clean: bool, keep_blank: bool = False) -> list[str]:
    """The lines of ``text`` after the source's cleaning rules, blank ones dropped unless ``keep_blank``."""
    if clean:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text = clean_text(source, text)
        for w in caught:
            print(f"warning: {w.message}")
    lines = text.splitlines()
    return lines if keep_blank else [line for line in lines if line.strip()]


def prepare_corpus(config: CorpusConfig, out_dir: str | Path) -> dict:
    """Clean and split the corpus of ``config`` into ``out_dir``; return the statistics.

    The built-in corpus is generated into ``out_dir/source`` first. The output folder is
    written atomically: it appears complete or not at all.
    """
    out_dir = Path(out_dir)
    source_dir = Path(config.path)
    if config.path == "builtin":
        from .synthetic import generate_corpus

        source_dir = out_dir.with_name(out_dir.name + "-source")
        if not (source_dir / "done").is_file():
            with atomic_path(source_dir) as tmp:
                generate_corpus(tmp, words=config.builtin_words, seed=config.builtin_seed)
                (tmp / "done").write_text("ok\n")
    files = discover(source_dir)
    splits: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for source, path in files["train"].items():
        lines = clean_lines(source, read_text(path), config.clean, config.keep_blank_lines)
        if not any(line.strip() for line in lines):
            raise UserError(f"{path}: no text left after cleaning (empty or blank lines only)")
        n_valid = max(1, round(len(lines) * config.valid_fraction))
        if n_valid >= len(lines):
            raise UserError(f"{path}: {len(lines)} line(s) are too few to split with valid_fraction "
                            f"{config.valid_fraction}")
        splits["train"][source] = lines[:-n_valid]
        splits["valid"][source] = lines[-n_valid:]
    test_files = files["dev"] or files["test"]
    for source, path in test_files.items():
        lines = clean_lines(source, read_text(path), config.clean, config.keep_blank_lines)
        if any(line.strip() for line in lines):
            splits["test"][source] = lines
    stats: dict = {"corpus": str(source_dir), "clean": config.clean, "valid_fraction": config.valid_fraction,
                   "keep_blank_lines": config.keep_blank_lines,
                   "test_from": "dev" if files["dev"] else ("test" if files["test"] else None), "splits": {}}
    with atomic_path(out_dir) as tmp:
        for split, sources in splits.items():
            (tmp / split).mkdir(parents=True)
            split_stats = {}
            for source, lines in sources.items():
                text = "\n".join(lines) + "\n"
                (tmp / split / f"{source}.txt").write_text(text, encoding="utf-8")
                split_stats[source] = {"lines": len(lines), "words": sum(len(l.split()) for l in lines),
                                       "bytes": len(text.encode("utf-8"))}
            stats["splits"][split] = split_stats
        (tmp / "prepare.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


def split_files(prepared_dir: str | Path, split: str) -> list[Path]:
    """The text files of one split of a prepared corpus (empty list if the split is absent)."""
    prepared_dir = Path(prepared_dir)
    if not (prepared_dir / "prepare.json").is_file():
        raise UserError(f"{prepared_dir}: not a prepared corpus (no prepare.json); run `babyllama prepare` first")
    return sorted((prepared_dir / split).glob("*.txt"))


def iter_lines(files: list[Path]):
    """Yield the lines of ``files`` in order (for tokenizer training)."""
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\n")


def whole_file_lines(prepared_dir: str | Path):
    """Yield every line of each cleaned training file, newline kept: a source's ``train`` lines
    then its ``valid`` lines, which together are the whole cleaned file (tokenizer training on
    ``whole_train_files``, as the authors' ``tokenizer.train(paths)`` reads its files)."""
    prepared_dir = Path(prepared_dir)
    for path in split_files(prepared_dir, "train"):
        for part in (path, prepared_dir / "valid" / path.name):
            with open(part, encoding="utf-8") as f:
                yield from f
