"""Token counts of a BabyLM corpus under our encoding and the authors' (issue 13), as JSON lines.

    python benchmarks/bench_reference_encoding.py                       # the shared BabyLM 2023 text
    python benchmarks/bench_reference_encoding.py --corpus DIR --vocab-size 16000

Two comparisons, both on the corpus prepared (cleaned, 95/5 split, ``*.dev`` as test) by the
project's own stages:

- ``encoding``: one tokenizer (ours: trained on the training split, byte alphabet pre-seeded), each
  file encoded per line with a prefix space (``per_line_prefix_space``) and as one string
  without (``reference_whole_file``, what ``GPT2TokenizerFast(tokenizer_file=...).encode(text)``
  does in the authors' code). Only the encoding differs.
- ``recipe``: our whole default recipe against the authors' (``keep_blank_lines``,
  ``training_text: whole_train_files``, ``byte_alphabet: false``, ``reference_whole_file``): each
  side's own tokenizer and text.

One line per file and split, then a total per split; ``more`` is the relative change from ours.
The shared data holds raw ``train_10M`` and ``dev`` beside their cleaned copies, and a corpus
folder must hold one release, so the raw folders are linked into a temporary folder first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from babyllama.config import CorpusConfig, TokenizerConfig
from babyllama.data.corpus import split_files
from babyllama.data.token_arrays import encode_split
from babyllama.pipeline import run_prepare, run_tokenizer
from babyllama.tokenizer import for_encoding, load_tokenizer

def shared_text() -> Path:
    """The shared BabyLM 2023 text (``$BABYLLAMA_SHARED_DATA`` or ``../shared/data`` beside the checkout)."""
    env = os.environ.get("BABYLLAMA_SHARED_DATA")
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    data = Path(env) if env else beside if beside.is_dir() else Path("/work/shared/data")
    return data / "babylm_text_2023_partial"


SPLITS = ("train", "valid", "test")


def link_release(root: Path, work: Path) -> Path:
    """A folder holding only the ``train_10M`` and ``dev`` files of ``root`` (symlinks), or ``root`` itself."""
    if not (root / "train_10M").is_dir():
        return root
    corpus = work / "release"
    corpus.mkdir()
    for name in ("train_10M", "dev"):  # files, not folders: discovery does not follow linked folders
        for path in sorted((root / name).glob("*")):
            (corpus / name).mkdir(exist_ok=True)
            (corpus / name / path.name).symlink_to(path.resolve())
    return corpus


def counts(tokenizer, prepared: Path, encoding: str, cache: Path) -> dict[str, dict[str, int]]:
    """Tokens per split and source file of a prepared corpus under ``encoding``."""
    return {split: {path.stem: len(encode_split(tokenizer, [path], cache, encoding))
                    for path in split_files(prepared, split)} for split in SPLITS}


def compare(name: str, ours: dict, theirs: dict, labels: tuple[str, str]) -> list[dict]:
    rows = []
    for split in SPLITS:
        for source in sorted(ours[split]):
            a, b = ours[split][source], theirs[split][source]
            rows.append({"comparison": name, "split": split, "file": source, labels[0]: a, labels[1]: b,
                         "more": round(b / a - 1, 5)})
        a, b = sum(ours[split].values()), sum(theirs[split].values())
        rows.append({"comparison": name, "split": split, "file": "total", labels[0]: a, labels[1]: b,
                     "more": round(b / a - 1, 5)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(shared_text()), help="a BabyLM folder (default: the shared 2023 text)")
    p.add_argument("--vocab-size", type=int, default=16_000)
    opts = p.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # stage logs off stdout
        work = Path(tmp)
        corpus = link_release(Path(opts.corpus), work)
        ours_prep = run_prepare(CorpusConfig(path=str(corpus)), work / "ours")
        ref_prep = run_prepare(CorpusConfig(path=str(corpus), keep_blank_lines=True), work / "reference")
        ours_config = TokenizerConfig(vocab_size=opts.vocab_size)
        ref_config = TokenizerConfig(vocab_size=opts.vocab_size, encoding="reference_whole_file",
                                     training_text="whole_train_files", byte_alphabet=False)
        ours_tok = run_tokenizer(ours_config, ours_prep, work / "tok-ours")
        ref_tok = run_tokenizer(ref_config, ref_prep, work / "tok-reference")
        whole_tok = for_encoding(load_tokenizer(work / "tok-ours"), "reference_whole_file")
        ours = counts(ours_tok, ours_prep, ours_config.encoding, work / "cache")
        rows = compare("encoding", ours, counts(whole_tok, ours_prep, "reference_whole_file", work / "cache"),
                       ("per_line_prefix_space", "reference_whole_file"))
        rows += compare("recipe", ours, counts(ref_tok, ref_prep, ref_config.encoding, work / "cache"),
                        ("ours", "authors"))
    for row in rows:
        print(json.dumps(row))
    print(json.dumps({"event": "done", "corpus": opts.corpus, "vocab_size": opts.vocab_size,
                      "wall_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
