"""Corpus discovery, cleaning dispatch, split proportions and bad corpus folders."""

import gzip
import json

import pytest

from babyllama.config import CorpusConfig
from babyllama.data.corpus import discover, prepare_corpus
from babyllama.errors import UserError


def _write(folder, name, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_split_takes_first_95_percent_to_train_and_dev_as_test(tmp_path):
    src = tmp_path / "src"
    _write(src / "train_10M", "switchboard.train", [f"line {i}" for i in range(200)])
    _write(src / "train_10M", "gutenberg.train", [f"row {i}" for i in range(40)])
    _write(src / "dev", "switchboard.dev", ["dev line"] * 7)
    _write(src / "test", "switchboard.test", ["test line"] * 3)
    stats = prepare_corpus(CorpusConfig(path=str(src)), tmp_path / "out")
    train = (tmp_path / "out/train/switchboard.txt").read_text().splitlines()
    valid = (tmp_path / "out/valid/switchboard.txt").read_text().splitlines()
    assert train == [f"line {i}" for i in range(190)] and valid == [f"line {i}" for i in range(190, 200)]
    assert stats["splits"]["valid"]["gutenberg"]["lines"] == 2
    assert (tmp_path / "out/test/switchboard.txt").read_text() == "dev line\n" * 7
    assert json.loads((tmp_path / "out/prepare.json").read_text())["test_from"] == "dev"


def test_fraction_is_configurable_and_gzip_is_read(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "aochildes.train.gz").write_bytes(gzip.compress("\n".join(f"u {i}" for i in range(100)).encode()))
    stats = prepare_corpus(CorpusConfig(path=str(src), valid_fraction=0.2), tmp_path / "out")
    assert stats["splits"]["train"]["aochildes"]["lines"] == 80 and stats["test_from"] is None


def test_cleaning_is_applied_per_source(tmp_path):
    src = tmp_path / "src"
    _write(src, "aochildes.train", ["hello   there .", "you are here ."] * 20)
    prepare_corpus(CorpusConfig(path=str(src)), tmp_path / "out")
    first = (tmp_path / "out/train/aochildes.txt").read_text().splitlines()[0]
    assert first == "hello there."  # aochildes rules: collapse spaces, no space before punctuation


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "corpus folder not found"),
    (lambda d: d.mkdir(), "no \\*.train files"),
    (lambda d: _write(d, "a.train", [""] * 5), "no text left after cleaning"),
    (lambda d: (d.mkdir(), (d / "a.train").write_bytes(b"caf\xe9 au lait\n")), "not UTF-8 text"),
    (lambda d: (d.mkdir(), (d / "a.train").write_bytes(b"\x00\x01binary")), "binary file"),
])
def test_bad_corpus_folders(tmp_path, setup, message):
    src = tmp_path / "src"
    setup(src)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=message):
        prepare_corpus(CorpusConfig(path=str(src)), out)
    assert not out.exists()


def test_two_release_folders_are_ambiguous(tmp_path):
    _write(tmp_path / "train_10M", "qed.train", ["a"])
    _write(tmp_path / "train_100M", "qed.train", ["a"])
    with pytest.raises(UserError, match="two train files for source 'qed'"):
        discover(tmp_path)
