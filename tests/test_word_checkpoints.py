"""Word-count checkpoints: word starts per token, chck_* folders saved at the right step, resume-safe."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from babyllama import checkpoints
from babyllama.config import CorpusConfig, StageConfig, from_dict
from babyllama.data.corpus import prepare_corpus
from babyllama.data.token_arrays import WordTables, chunk_words, encode_split, epoch_chunk_starts, word_start_counts
from babyllama.errors import UserError
from babyllama.pipeline import load_token_data
from babyllama.tokenizer import load_tokenizer
from babyllama.train import plan_steps, train_stage
from babyllama.word_checkpoint_saver import WordCheckpointSaver
from babyllama.word_checkpoints import (DEFAULT_WORD_COUNTS, check_word_counts, checkpoint_name,
                                        list_word_checkpoints, parse_checkpoint_name)


@pytest.fixture(scope="module")
def data(tmp_path_factory, corpus_dir, tokenizer_dir):
    prepared = tmp_path_factory.mktemp("prep") / "corpus"
    prepare_corpus(CorpusConfig(path=str(corpus_dir)), prepared)
    tok = load_tokenizer(tokenizer_dir)
    return tok, load_token_data(prepared, tok, prepared.parent / "cache"), prepared


def test_names_follow_the_2025_pipeline_and_thousands_below_a_million():
    assert [checkpoint_name(w) for w in DEFAULT_WORD_COUNTS[:2] + DEFAULT_WORD_COUNTS[-1:]] == \
        ["chck_1M", "chck_2M", "chck_100M"]
    assert len(DEFAULT_WORD_COUNTS) == 19 and checkpoint_name(250_000) == "chck_250K"
    assert checkpoint_name(1_500_000) == "chck_1500K"
    assert parse_checkpoint_name("chck_750K") == 750_000 and parse_checkpoint_name("chck_20M") == 20_000_000
    assert parse_checkpoint_name("chck_20") is None
    with pytest.raises(UserError, match="whole number of thousands"):
        checkpoint_name(1500)
    with pytest.raises(UserError, match=r"train.word_checkpoints: got \[2000, 1000\], expected strictly increasing"):
        check_word_counts([2000, 1000], "train.word_checkpoints")


def test_word_starts_count_str_split_words_on_awkward_text(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    lines = ["the dog  runs .\n", "  café au lait, s'il vous plaît\n", "x\n", "tab\tseparated\twords\n"]
    ids = [np.asarray(tok.backend_tokenizer.encode(line, add_special_tokens=False).ids) for line in lines]
    counts = word_start_counts(WordTables.of(tok), lines, ids)
    bounds = np.cumsum([0] + [len(i) for i in ids])
    per_line = [int(counts[a:b].sum()) for a, b in zip(bounds, bounds[1:])]
    assert per_line == [4, 6, 1, 3]
    assert counts[0] == 1 and counts[1] == 1  # "Ġthe", "Ġdog": one word starts at each


def test_cached_word_starts_sum_to_the_prepared_word_count(data):
    tok, token_data, prepared = data
    stats = json.loads((prepared / "prepare.json").read_text())
    train_words = sum(s["words"] for s in stats["splits"]["train"].values())
    assert token_data.train.word_starts.shape == token_data.train.tokens.shape
    assert int(token_data.train.word_starts.sum()) == train_words
    again = encode_split(tok, sorted((prepared / "train").glob("*.txt")), prepared.parent / "cache")
    assert isinstance(again.word_starts, np.memmap) and np.array_equal(again.word_starts, token_data.train.word_starts)


def _stage(counts, **train) -> StageConfig:
    base = {"seq_length": 32, "batch_size": 8, "epochs": 6, "max_steps": 24, "lr": 3e-3, "warmup_steps": 1,
            "weight_decay": 0.0, "log_every": 1, "eval_every": 24, "seed": 4,
            "word_checkpoints": counts}
    return from_dict(StageConfig, {"model": {"preset": "tiny"}, "train": {**base, **train}}, "test")


def _words_after_each_step(stage, split) -> list[int]:
    """Cumulative words seen after steps 1..total, computed here from the chunk order."""
    t = stage.train
    per_epoch, total = plan_steps(stage, len(split))
    seen, out = 0, []
    for step in range(total):
        epoch, index = divmod(step, per_epoch)
        starts = epoch_chunk_starts(len(split), t.seq_length, t.seed, epoch)[index * t.batch_size:(index + 1) * t.batch_size]
        window = starts[:, None] + np.arange(t.seq_length)
        seen += int(split.word_starts[window].sum())
        out.append(seen)
    return out


def _crossing(cumulative, count) -> int:
    return next(step for step, w in enumerate(cumulative, start=1) if w >= count)


def test_training_saves_loadable_checkpoints_when_words_cross_each_count(tmp_path, data):
    tok, token_data, _ = data
    stage = _stage([1000, 2000, 3000, 10_000_000])
    cumulative = _words_after_each_step(stage, token_data.train)
    metrics = train_stage("m", stage, tok, token_data, tmp_path / "m", progress=False)
    assert metrics["words_seen"] == cumulative[-1] and cumulative[-1] > 3000
    found = list_word_checkpoints(tmp_path / "m")
    assert [(w, f.name) for w, f in found] == [(1000, "chck_1K"), (2000, "chck_2K"), (3000, "chck_3K")]
    for words, folder in found:
        info = json.loads((folder / "word_checkpoint.json").read_text())
        step = _crossing(cumulative, words)
        assert info == {"name": folder.name, "words": words, "words_seen": cumulative[step - 1],
                        "tokens": step * 8 * 32, "step": step}
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert len(AutoTokenizer.from_pretrained(folder)) == model.config.vocab_size == len(tok)
    first = AutoModelForCausalLM.from_pretrained(found[0][1]).state_dict()
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "m").state_dict()
    assert not torch.equal(first["model.embed_tokens.weight"], final["model.embed_tokens.weight"])
    log = [json.loads(line) for line in (tmp_path / "m/metrics.jsonl").read_text().splitlines()]
    assert [r["words_seen"] for r in log if r["event"] == "train"] == cumulative
    assert [r["name"] for r in log if r["event"] == "word_checkpoint"] == ["chck_1K", "chck_2K", "chck_3K"]


def test_resume_neither_repeats_nor_misses_a_checkpoint(tmp_path, data, monkeypatch):
    tok, token_data, _ = data
    stage = _stage([1000, 2000, 3000], checkpoint_every=4)
    cumulative = _words_after_each_step(stage, token_data.train)
    crossed_2k = _crossing(cumulative, 2000)
    resumed_at = 4 * ((crossed_2k - 1) // 4)  # the last resume checkpoint before the kill
    assert _crossing(cumulative, 1000) <= resumed_at  # so chck_1K was saved before it, chck_2K after
    after_step = WordCheckpointSaver.after_step

    def killed_after_saving_2k(self, *args):
        saved = after_step(self, *args)
        if any(folder.name == "chck_2K" for folder in saved):
            raise KeyboardInterrupt  # killed after chck_2K, before the step's resume checkpoint
        return saved

    monkeypatch.setattr(WordCheckpointSaver, "after_step", killed_after_saving_2k)
    with pytest.raises(KeyboardInterrupt):
        train_stage("m", stage, tok, token_data, tmp_path / "m", progress=False)
    monkeypatch.setattr(WordCheckpointSaver, "after_step", after_step)
    assert checkpoints.latest(tmp_path / "m/checkpoints").name == f"step-{resumed_at:08d}"
    saved_2k = (tmp_path / "m/word_checkpoints/chck_2K/model.safetensors").stat().st_mtime_ns
    assert [f.name for _, f in list_word_checkpoints(tmp_path / "m")] == ["chck_1K", "chck_2K"]
    metrics = train_stage("m", stage, tok, token_data, tmp_path / "m", progress=False)
    assert metrics["words_seen"] == cumulative[-1]
    assert [f.name for _, f in list_word_checkpoints(tmp_path / "m")] == ["chck_1K", "chck_2K", "chck_3K"]
    assert (tmp_path / "m/word_checkpoints/chck_2K/model.safetensors").stat().st_mtime_ns == saved_2k
    log = [json.loads(line) for line in (tmp_path / "m/metrics.jsonl").read_text().splitlines()]
    assert [r["name"] for r in log if r["event"] == "word_checkpoint"] == ["chck_1K", "chck_2K", "chck_3K"]
    three = json.loads((tmp_path / "m/word_checkpoints/chck_3K/word_checkpoint.json").read_text())
    assert three["step"] == _crossing(cumulative, 3000)


def test_a_fresh_start_drops_word_checkpoints_of_an_earlier_run(tmp_path, data):
    tok, token_data, _ = data
    stale = tmp_path / "m/word_checkpoints/chck_9K"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    train_stage("m", _stage([1000], max_steps=8), tok, token_data, tmp_path / "m", progress=False)
    assert [f.name for _, f in list_word_checkpoints(tmp_path / "m")] == ["chck_1K"]


def test_chunk_words_sums_the_input_windows():
    starts = np.array([0, 5])
    word_starts = np.array([1, 0, 1, 1, 0, 1, 1, 0, 0, 1], dtype=np.uint8)
    assert chunk_words(word_starts, starts, 3) == (1 + 0 + 1) + (1 + 1 + 0)
