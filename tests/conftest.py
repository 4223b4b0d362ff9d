"""Shared test fixtures: a small in-test corpus, a tokenizer trained on it, tiny experiment configs;
and a guard failing any test during which babyllama's code causes a FutureWarning or DeprecationWarning."""

from __future__ import annotations

import os
import random
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

import babyllama
from babyllama.cli import main
from babyllama.tokenizer import save_tokenizer, train_tokenizer


#: Our package's source folder: a warning is ours when raised from a frame in it, or from a library
#: call made by one (transformers' deprecations point their filename at torch or at themselves).
PACKAGE_DIR = str(Path(babyllama.__file__).resolve().parent) + os.sep
DEPRECATIONS = (FutureWarning, DeprecationWarning, PendingDeprecationWarning)


def _ours(filename: str) -> bool:
    if str(Path(filename).resolve()).startswith(PACKAGE_DIR):
        return True
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(PACKAGE_DIR):
            return True
        frame = frame.f_back
    return False


@contextmanager
def deprecations_from_babyllama():
    """Collect, as ``"file:line: Category: message"`` strings, each deprecation warning raised while
    babyllama code is on the stack (every such warning counts: ``always``); other warnings go on to
    the previous handler (pytest's record, or an outer guard)."""
    caught: list[str] = []
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DEPRECATIONS) and _ours(filename):
            caught.append(f"{filename}:{lineno}: {category.__name__}: {message}")  # handled here, not passed on
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        for category in DEPRECATIONS:
            warnings.simplefilter("always", category)
        warnings.showwarning = show
        try:
            yield caught
        finally:
            warnings.showwarning = previous


@pytest.fixture(autouse=True)
def _no_deprecations_from_babyllama():
    """Fail the test if babyllama's calls raised a FutureWarning or DeprecationWarning."""
    with deprecations_from_babyllama() as caught:
        yield
    if caught:
        pytest.fail("deprecated API used by babyllama:\n" + "\n".join(dict.fromkeys(caught)), pytrace=False)


def shared_data() -> Path:
    """The project's shared evaluation data (``../shared/data`` beside the checkout)."""
    env = os.environ.get("BABYLLAMA_SHARED_DATA")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


SUBJECTS = [("the dog", "runs", "sees"), ("the dogs", "run", "see"), ("a child", "plays", "likes"),
            ("the children", "play", "like"), ("my mother", "sings", "hears"), ("the birds", "sing", "hear")]
OBJECTS = ["the ball", "a red apple", "the little cat", "some milk", "the big house", "her friends"]


def write_corpus(folder: Path, lines_per_source: int = 400, seed: int = 0) -> Path:
    """A BabyLM-layout corpus of simple agreeing sentences: two sources, train and dev files."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for source in ("synthetic_a", "synthetic_b"):
        for suffix, n in (("train", lines_per_source), ("dev", lines_per_source // 5)):
            lines = []
            for _ in range(n):
                subj, intrans, trans = rng.choice(SUBJECTS)
                lines.append(f"{subj} {trans} {rng.choice(OBJECTS)} ." if rng.random() < 0.6 else f"{subj} {intrans} .")
            (folder / f"{source}.{suffix}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, corpus_dir) -> Path:
    lines = (corpus_dir / "synthetic_a.train").read_text().splitlines()
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(train_tokenizer(lines, vocab_size=320, min_frequency=2), out)
    return out


def tiny_experiment(corpus: Path, run_dir: Path, **train) -> dict:
    """An experiment dict: two tiny teachers, a baseline and a distilled student, a few steps each."""
    return {
        "name": "tiny", "run_dir": str(run_dir),
        "corpus": {"path": str(corpus)},
        "tokenizer": {"vocab_size": 320},
        "model": {"preset": "tiny"},
        "train": {"seq_length": 32, "batch_size": 8, "epochs": 1, "max_steps": 6, "lr": 3e-3, "warmup_steps": 1,
                  "weight_decay": 0.0, "log_every": 2, "eval_every": 3, **train},
        "models": {"teacher1": {"train": {"seed": 1}}, "teacher2": {"train": {"seed": 2}},
                   "baseline": {"train": {"seed": 3}},
                   "student": {"kind": "distill", "teachers": ["teacher1", "teacher2"], "train": {"seed": 3}}},
        "evaluation": {"zero_shot": None},
    }


#: ``babyllama pretrain/distill`` options for a tiny, fast model.
TINY_TRAIN = ["--preset", "tiny", "--quiet", "--set", "train.seq_length=32", "--set", "train.batch_size=8",
              "--set", "train.max_steps=2", "--set", "train.warmup_steps=1"]


@pytest.fixture(scope="session")
def cli_workspace(tmp_path_factory) -> Path:
    """Made with the command line: ``corpus``, ``prep`` (prepared), ``tok`` (320 tokens), ``teacher``
    (a trained tiny model), ``tok300`` (another tokenizer) and ``exp.yaml`` (a valid experiment)."""
    ws = tmp_path_factory.mktemp("ws")
    write_corpus(ws / "corpus")
    assert main(["prepare", "--corpus", str(ws / "corpus"), "--out", str(ws / "prep")]) == 0
    assert main(["tokenizer", "--data", str(ws / "prep"), "--out", str(ws / "tok"), "--vocab-size", "320"]) == 0
    assert main(["pretrain", "--data", str(ws / "prep"), "--tokenizer", str(ws / "tok"), "--out", str(ws / "teacher"),
                 *TINY_TRAIN]) == 0
    write_corpus(ws / "corpus2", seed=5)
    assert main(["prepare", "--corpus", str(ws / "corpus2"), "--out", str(ws / "prep2")]) == 0
    assert main(["tokenizer", "--data", str(ws / "prep2"), "--out", str(ws / "tok300"), "--vocab-size", "300"]) == 0
    (ws / "exp.yaml").write_text(
        f"run_dir: {ws}/run\ncorpus: {{path: {ws}/corpus}}\ntokenizer: {{vocab_size: 320}}\n"
        "model: {preset: tiny}\ntrain: {seq_length: 32, batch_size: 8, max_steps: 2}\n"
        "models: {a: {}}\nevaluation: {zero_shot: null}\n")
    return ws
