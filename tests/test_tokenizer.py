"""Tokenizer round trip through AutoTokenizer and token-array caching and chunking."""

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from babyllama.data.token_arrays import (IGNORE_INDEX, chunks_per_epoch, encode_split, epoch_chunk_starts,
                                         eval_batches, gather_chunks)
from babyllama.errors import UserError
from babyllama.tokenizer import load_tokenizer


def test_autotokenizer_reload_gives_training_ids(tokenizer_dir, corpus_dir):
    reloaded = AutoTokenizer.from_pretrained(tokenizer_dir)
    trained = load_tokenizer(tokenizer_dir)
    lines = (corpus_dir / "synthetic_b.train").read_text().splitlines()[:50] + ["Ünïcode ﬁ text\n and tabs\t!"]
    for line in lines:
        assert reloaded(line)["input_ids"] == trained.backend_tokenizer.encode(line, add_special_tokens=False).ids
    pre = json.loads(reloaded.backend_tokenizer.to_str())["pre_tokenizer"]
    assert pre["add_prefix_space"] is True  # transformers 5 GPT-2 wrappers drop it on reload
    assert reloaded("the dog")["input_ids"] == reloaded(" the dog")["input_ids"]


def test_vocabulary_size_and_special_tokens(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert len(tok) == 320 == tok.backend_tokenizer.get_vocab_size()
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert "<|endoftext|>" not in tok.get_vocab()


def test_not_a_tokenizer_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="tokenizer.json: not a valid tokenizer"):
        load_tokenizer(tmp_path)


def test_token_arrays_are_cached_by_tokenizer_and_text(tmp_path, tokenizer_dir, corpus_dir):
    tok = load_tokenizer(tokenizer_dir)
    files = [corpus_dir / "synthetic_a.train"]
    first = encode_split(tok, files, tmp_path / "cache")
    assert first.tokens.dtype == np.uint16
    lines = files[0].read_text().splitlines()
    # each line is encoded on its own with the prefix space, newline kept as a token
    assert tok.decode(np.asarray(first.tokens).tolist()) == "".join(f" {line}\n" for line in lines)
    assert first.n_bytes == len(files[0].read_bytes())
    again = encode_split(tok, files, tmp_path / "cache")  # from the cache: identical, memory-mapped
    assert isinstance(again.tokens, np.memmap) and np.array_equal(again.tokens, first.tokens)
    other = tmp_path / "other.train"
    other.write_text(files[0].read_text() + "one more line .\n")
    changed = encode_split(tok, [other], tmp_path / "cache")
    assert len(changed) > len(first)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4  # token arrays and their word starts
    assert len(list((tmp_path / "cache").glob("*.words.npy"))) == 2


def test_epoch_chunks_random_offset_fixed_order_per_seed():
    n, t = 1000, 32
    a0, a1 = epoch_chunk_starts(n, t, seed=0, epoch=0), epoch_chunk_starts(n, t, seed=0, epoch=1)
    assert np.array_equal(a0, epoch_chunk_starts(n, t, seed=0, epoch=0))
    assert len(a0) == chunks_per_epoch(n, t) == 30
    assert not np.array_equal(a0, a1)
    offsets = {int(epoch_chunk_starts(n, t, 0, e).min()) for e in range(8)}
    assert len(offsets) > 1 and all(0 <= o < t for o in offsets)
    assert (a0.max() + t + 1) <= n
    tokens = np.arange(n, dtype=np.uint16)
    inputs, labels = gather_chunks(tokens, a0[:4], t)
    assert inputs.shape == (4, t) and bool((labels == inputs + 1).all())


def test_eval_batches_predict_every_token_once():
    tokens = np.arange(1, 101, dtype=np.uint16)
    seen = []
    for inputs, labels in eval_batches(tokens, seq_length=16, batch_size=3, pad_id=0):
        seen.extend(labels[labels != IGNORE_INDEX].tolist())
    assert seen == list(range(2, 101))
