"""The training loop: loss goes down, distillation works, resume is exact, outputs load."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from babyllama import checkpoints
from babyllama.config import CorpusConfig, StageConfig, from_dict
from babyllama.data.corpus import prepare_corpus
from babyllama.errors import UserError
from babyllama.evaluation.perplexity import evaluate_loss
from babyllama.model import build_model, llama_config
from babyllama.pipeline import load_token_data
from babyllama.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
from babyllama.train import Stopped, train_stage


@pytest.fixture(scope="module")
def data(tmp_path_factory, corpus_dir, tokenizer_dir):
    prepared = tmp_path_factory.mktemp("prep") / "corpus"
    prepare_corpus(CorpusConfig(path=str(corpus_dir)), prepared)
    tok = load_tokenizer(tokenizer_dir)
    return tok, load_token_data(prepared, tok, prepared.parent / "cache")


def _stage(**train) -> StageConfig:
    base = {"seq_length": 32, "batch_size": 8, "epochs": 1, "max_steps": 6, "lr": 3e-3, "warmup_steps": 1,
            "weight_decay": 0.0, "log_every": 1, "eval_every": 2}
    return from_dict(StageConfig, {"model": {"preset": "tiny"}, "train": {**base, **train}}, "test")


def _initial_val_loss(stage, tok, data):
    config = llama_config(stage.model, len(tok), 0, 1, 2)
    model = build_model(config, seed=stage.train.seed)
    return evaluate_loss(model, data.valid, 32, 16, 0, torch.device("cpu"))["loss"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    tok, token_data = data
    out = tmp_path_factory.mktemp("teacher") / "t"
    train_stage("t", _stage(seed=5, max_steps=8), tok, token_data, out, progress=False)
    return out


def test_pretraining_lowers_loss_and_writes_a_loadable_model(teacher, data):
    tok, token_data = data
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["val_loss"] < _initial_val_loss(_stage(seed=5), tok, token_data) - 0.5
    assert metrics["steps"] == 8 and metrics["tokens_seen"] == 8 * 8 * 32
    model = AutoModelForCausalLM.from_pretrained(teacher)
    reloaded_tok = AutoTokenizer.from_pretrained(teacher)
    assert model.config.vocab_size == len(reloaded_tok) == len(tok)
    ids = torch.tensor([reloaded_tok("the dog runs .")["input_ids"]])
    assert torch.isfinite(model(input_ids=ids).logits).all()
    log = [json.loads(line) for line in (teacher / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "eval"] == [2, 4, 6, 8]
    assert {"loss", "ce", "lr", "tokens_per_s", "grad_norm"} <= set(log[0])
    assert (teacher / "resolved_config.yaml").is_file() and not (teacher / "checkpoints").exists()


def test_distillation_lowers_loss_and_logs_ce_and_kd(tmp_path, teacher, data):
    tok, token_data = data
    stage = _stage(seed=7, max_steps=4)
    stage.kind, stage.teachers = "distill", ["t", "t"]
    metrics = train_stage("s", stage, tok, token_data, tmp_path / "s", [teacher, teacher], progress=False)
    assert metrics["val_loss"] < _initial_val_loss(stage, tok, token_data) - 0.3
    log = [json.loads(line) for line in (tmp_path / "s/metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in log if r["event"] == "train"]
    assert all("kd" in r and "ce" in r for r in train_rows)
    assert train_rows[-1]["kd"] < train_rows[0]["kd"]
    r = train_rows[0]
    assert abs(r["loss"] - (0.5 * r["ce"] + 0.5 * r["kd"])) < 1e-4


def test_resume_after_interruption_gives_identical_weights(tmp_path, data):
    """With attention dropout on, the weights only match if the rerun restores the checkpoint's
    random state; the log shows the rerun starting at the checkpoint's step."""
    tok, token_data = data
    stage = _stage(seed=3, max_steps=6, eval_every=2)
    stage.model.attention_dropout = 0.2
    train_stage("full", stage, tok, token_data, tmp_path / "full", progress=False)

    def crash(step, loss):
        if step == 4:
            raise KeyboardInterrupt  # as if killed right after the step-4 checkpoint

    with pytest.raises(KeyboardInterrupt):
        train_stage("cut", stage, tok, token_data, tmp_path / "cut", on_eval=crash, progress=False)
    assert checkpoints.latest(tmp_path / "cut/checkpoints").name == "step-00000004"
    train_stage("cut", stage, tok, token_data, tmp_path / "cut", progress=False)
    full, cut = load_file(tmp_path / "full/model.safetensors"), load_file(tmp_path / "cut/model.safetensors")
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    log_full = [json.loads(l) for l in (tmp_path / "full/metrics.jsonl").read_text().splitlines()]
    log_cut = [json.loads(l) for l in (tmp_path / "cut/metrics.jsonl").read_text().splitlines()]
    events = [(r["event"], r["step"]) for r in log_cut]
    resumed = events.index(("resume", 4))
    assert events[resumed + 1] == ("train", 5) and ("train", 1) not in events[resumed:]
    assert log_cut[resumed]["tokens"] == 4 * 8 * 32
    strip = lambda rows: [(r["event"], r["step"], r.get("loss"), r.get("val_loss")) for r in rows
                          if r["event"] != "resume"]
    assert strip(log_full) == strip(log_cut)
    assert not any(r["event"] == "resume" for r in log_full)


def test_checkpoint_from_another_config_is_refused(tmp_path, data):
    tok, token_data = data
    with pytest.raises(KeyboardInterrupt):
        train_stage("x", _stage(seed=1), tok, token_data, tmp_path / "x", progress=False,
                    on_eval=lambda s, l: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(UserError, match="checkpoint was written by a different config"):
        train_stage("x", _stage(seed=1, lr=1e-3), tok, token_data, tmp_path / "x", progress=False)
    metrics = train_stage("x", _stage(seed=1, lr=1e-3), tok, token_data, tmp_path / "x", progress=False,
                          overwrite=True)  # --overwrite discards the stale checkpoint and starts again
    assert metrics["steps"] == 6 and json.loads((tmp_path / "x/metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_stopped_callback_ends_early_and_keeps_best(tmp_path, data):
    tok, token_data = data

    def stop(step, loss):
        raise Stopped()

    metrics = train_stage("p", _stage(seed=2), tok, token_data, tmp_path / "p", on_eval=stop, progress=False)
    assert metrics["steps"] == 2 and metrics["stopped_early"]
    assert (tmp_path / "p/model.safetensors").is_file()


def test_teacher_with_other_vocabulary_is_refused(tmp_path, teacher, data, corpus_dir):
    tok, token_data = data
    other_tok = train_tokenizer((corpus_dir / "synthetic_b.train").read_text().splitlines(), vocab_size=300)
    save_tokenizer(other_tok, tmp_path / "other_tok")
    stage = _stage(seed=7, max_steps=2)
    stage.kind, stage.teachers = "distill", ["t"]
    with pytest.raises(UserError, match=r"teacher .*vocabulary size 320 differs from the student's 300"):
        train_stage("s", stage, load_tokenizer(tmp_path / "other_tok"), token_data, tmp_path / "s", [teacher],
                    progress=False)
    with pytest.raises(UserError, match="not a model directory"):
        train_stage("s", stage, tok, token_data, tmp_path / "s2", [tmp_path / "other_tok"], progress=False)


def test_seq_length_beyond_positions_is_refused(tmp_path, data):
    tok, token_data = data
    with pytest.raises(UserError, match="seq_length: 512 exceeds the model's max_position_embeddings 256"):
        train_stage("x", _stage(seq_length=512), tok, token_data, tmp_path / "x", progress=False)
