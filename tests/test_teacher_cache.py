"""The offline teacher cache: what it stores, what it refuses, and distillation reading it."""

import json

import numpy as np
import pytest
import torch

from babyllama import teacher_cache
from babyllama.cli import main
from babyllama.config import CorpusConfig, ModelConfig, StageConfig, from_dict
from babyllama.data.corpus import prepare_corpus
from babyllama.data.token_arrays import gather_chunks
from babyllama.errors import UserError
from babyllama.model import build_model, llama_config
from babyllama.pipeline import load_token_data
from babyllama.teacher_cache import build_teacher_cache, cache_epoch_starts, load_teacher_cache
from babyllama.teachers import ensemble_logits, load_teachers
from babyllama.tokenizer import load_tokenizer
from babyllama.train import build_loss, train_stage

SEQ, K = 16, 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory, corpus_dir, tokenizer_dir):
    """A prepared corpus, its tokenizer and token arrays, and two tiny teachers with peaked outputs."""
    root = tmp_path_factory.mktemp("cache")
    prepared = root / "corpus"
    prepare_corpus(CorpusConfig(path=str(corpus_dir)), prepared)
    tok = load_tokenizer(tokenizer_dir)
    data = load_token_data(prepared, tok, root / "tokens")
    teachers = []
    for seed in (1, 2):
        model = build_model(llama_config(ModelConfig(preset="tiny"), len(tok), tok.pad_token_id, tok.bos_token_id,
                                         tok.eos_token_id), seed)
        with torch.no_grad():
            model.lm_head.weight.mul_(40)  # peaked distributions, so misaligned targets would show
        model.save_pretrained(root / f"teacher{seed}")
        tok.save_pretrained(root / f"teacher{seed}")
        teachers.append(root / f"teacher{seed}")
    return tok, data, teachers, prepared, root


@pytest.fixture(scope="module")
def cache(setup):
    tok, data, teachers, _, root = setup
    meta = build_teacher_cache(teachers, data.train.tokens, SEQ, root / "tc", k=K, tokenizer=tok, offsets=(0, 5),
                               batch_size=16, progress=False)
    return root / "tc", meta


def _open(setup, path, **changes):
    tok, data, teachers, _, _ = setup
    args = dict(teacher_dirs=teachers, train_tokens=data.train.tokens, seq_length=SEQ, temperature=1.0, k=K,
                offsets=(0, 5), vocab_size=len(tok))
    args.update(changes)
    return load_teacher_cache(path, **args)


def test_cache_holds_draws_from_the_ensemble_at_each_cached_offset(setup, cache):
    tok, data, teachers, _, _ = setup
    path, meta = cache
    assert meta["bytes_per_token"] == K * 4 and meta["k"] == K and meta["offsets"] == [0, 5]
    opened = _open(setup, path)
    n_chunks = (len(data.train) - SEQ) // SEQ
    assert opened.ids.shape == (2, n_chunks, SEQ, K) and opened.ids.dtype == np.uint16
    models = load_teachers(teachers, tok, len(tok), torch.float32, torch.device("cpu"))
    starts = np.array([5 + 3 * SEQ, 0, 5 + (n_chunks - 1) * SEQ])
    inputs, _ = gather_chunks(data.train.tokens, starts, SEQ)
    log_p = torch.log_softmax(ensemble_logits(models, inputs), -1).flatten(0, 1)
    targets = opened.targets(starts, torch.device("cpu"))
    assert targets.ids.shape == (3 * SEQ, K)
    # each stored log-prob is the ensemble's log-prob of its id at that very position (float16)
    assert torch.allclose(targets.logp, log_p.gather(1, targets.ids), atol=2e-2, rtol=2e-3)
    # draws follow the distribution: the most frequent id is usually the argmax, never a near-zero one
    assert (log_p.gather(1, targets.ids) > -12).all()
    modal = torch.mode(targets.ids, dim=1).values
    assert (modal == log_p.argmax(-1)).float().mean() > 0.6
    with pytest.raises(ValueError, match="no cached chunk starts at token 3"):
        opened.targets(np.array([3]), torch.device("cpu"))


def test_cache_built_for_other_inputs_is_refused_in_one_line(setup, cache, tmp_path):
    tok, data, teachers, _, root = setup
    path, _ = cache
    for changes, message in (({"seq_length": 32}, "built with seq_length 16, but this run needs 32"),
                             ({"k": 4}, "built with k 8, but this run needs 4"),
                             ({"temperature": 2.0}, "built with temperature 1.0, but this run needs 2.0"),
                             ({"offsets": (0,)}, r"built with offsets \[0, 5\], but this run needs \[0\]"),
                             ({"teacher_dirs": teachers[:1]}, "built from 2 teachers, this run names 1"),
                             ({"teacher_dirs": teachers[::-1]}, "teacher .*teacher2 differs"),
                             ({"train_tokens": data.train.tokens[::-1].copy()}, "built from other training tokens")):
        with pytest.raises(UserError, match=message) as info:
            _open(setup, path, **changes)
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="is not a teacher cache .*babyllama teach-cache"):
        _open(setup, tmp_path)


def test_an_interrupted_build_leaves_nothing_under_the_final_name(setup, tmp_path, monkeypatch):
    tok, data, teachers, _, _ = setup

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher_cache, "_sample", fail)
    with pytest.raises(KeyboardInterrupt):
        build_teacher_cache(teachers, data.train.tokens, SEQ, tmp_path / "tc", k=K, tokenizer=tok, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cached_epochs_use_cached_offsets_only_and_are_reproducible():
    seen = set()
    for epoch in range(12):
        starts = cache_epoch_starts(1000, SEQ, 3, epoch, (0, 5))
        assert np.array_equal(starts, cache_epoch_starts(1000, SEQ, 3, epoch, (0, 5)))
        offset = int(starts[0] % SEQ)
        assert np.array_equal(np.sort(starts), offset + np.arange((1000 - SEQ) // SEQ) * SEQ)
        seen.add(offset)
    assert seen == {0, 5}


def _stage(cache_path=None, **distill) -> StageConfig:
    train = {"seq_length": SEQ, "batch_size": 8, "epochs": 1, "max_steps": 6, "lr": 3e-3, "warmup_steps": 1,
             "weight_decay": 0.0, "log_every": 1, "eval_every": 3, "seed": 4}
    d = {"cache_k": K, "cache_offsets": [0, 5], **distill}
    if cache_path is not None:
        d["teacher_cache"] = str(cache_path)
    return from_dict(StageConfig, {"kind": "distill", "teachers": ["a", "b"], "model": {"preset": "tiny"},
                                   "train": train, "distill": d}, "test")


def test_cached_loss_estimates_the_online_loss(setup, tmp_path):
    """With many draws per position the cached KL and gradient approach the online ones."""
    from accelerate import Accelerator

    tok, data, teachers, _, _ = setup
    build_teacher_cache(teachers, data.train.tokens, SEQ, tmp_path / "big", k=512, tokenizer=tok, offsets=(0, 5),
                        progress=False)
    accelerator = Accelerator(cpu=True)
    online = build_loss(_stage(cache_k=512), teachers, tok, len(tok), accelerator, data.train.tokens)
    cached = build_loss(_stage(tmp_path / "big", cache_k=512), teachers, tok, len(tok), accelerator,
                        data.train.tokens)
    assert online.offsets is None and cached.offsets == (0, 5)
    student = build_model(llama_config(ModelConfig(preset="tiny"), len(tok), 0, 1, 2), 9)
    starts = cached.epoch_starts(len(data.train), SEQ, 4, 0)[:8]
    inputs, labels = gather_chunks(data.train.tokens, starts, SEQ)
    grads = []
    for loss in (online, cached):
        parts = loss.fn(student, inputs, labels, starts)
        grads.append(torch.autograd.grad(parts.loss, student.lm_head.weight)[0])
        if loss is online:
            kd_online, ce_online = parts.kd.item(), parts.ce.item()
    assert parts.ce.item() == pytest.approx(ce_online, rel=1e-6)
    assert parts.kd.item() == pytest.approx(kd_online, rel=0.03)
    cosine = torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cosine > 0.97


def test_distillation_from_the_cache_trains_and_cli_builds_it(setup, tmp_path, capsys):
    tok, data, teachers, prepared, root = setup
    tok_dir = root / "teacher1"
    args = ["teach-cache", "--data", str(prepared), "--tokenizer", str(tok_dir), "--teachers",
            ",".join(map(str, teachers)), "--out", str(tmp_path / "tc"), "--k", str(K), "--offsets", "0,5",
            "--seq-length", str(SEQ), "--cache", str(root / "tokens"), "--quiet"]
    assert main(args) == 0
    assert f"k={K} draws, {4 * K} bytes per token" in capsys.readouterr().out
    assert main(args) == 2 and "already exists; use --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--offsets", "0,99"]) == 2
    assert "offsets [0, 99]: expected distinct values in [0, 16)" in capsys.readouterr().err
    metrics = train_stage("s", _stage(tmp_path / "tc"), tok, data, tmp_path / "s", teachers, progress=False)
    log = [json.loads(line) for line in (tmp_path / "s/metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in log if r["event"] == "train"]
    assert all(np.isfinite(r["kd"]) for r in train_rows) and train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert metrics["steps"] == 6
    with pytest.raises(UserError, match="built with k 8, but this run needs 16"):
        train_stage("s2", _stage(tmp_path / "tc", cache_k=16), tok, data, tmp_path / "s2", teachers, progress=False)


def test_cache_settings_are_validated_with_the_experiment():
    for distill, message in (({"cache_k": 0}, r"distill.cache_k: got 0, expected in \[1, 4096\]"),
                             ({"cache_offsets": [0, 0]}, "distill.cache_offsets: got \\[0, 0\\], expected a non-empty"),
                             ({"cache_offsets": []}, "distill.cache_offsets: got \\[\\]"),
                             ({"teacher_cache": 3}, "distill.teacher_cache: expected a string")):
        with pytest.raises(UserError, match=message):
            stage = from_dict(StageConfig, {"kind": "distill", "teachers": ["a"], "distill": distill}, "m")
            stage.validate("m")
