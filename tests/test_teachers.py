"""Teachers of any causal-LM architecture: a GPT-2 and a Llama teacher distil one student, and
what cannot work (another vocabulary, an encoder-only model, a non-causal config, a head that is
not ``hidden @ W.T + b``) is refused in one line before anything is written."""

import json

import numpy as np
import pytest
import torch
from transformers import (BertConfig, BertForMaskedLM, CohereConfig, CohereForCausalLM, GPT2Config, GPT2LMHeadModel,
                          LlamaForSequenceClassification, T5Config)

from babyllama.cli import main
from babyllama.config import ModelConfig
from babyllama.errors import UserError
from babyllama.model import build_model, llama_config
from babyllama.pipeline import load_token_data
from babyllama.teacher_cache import build_teacher_cache, load_teacher_cache
from babyllama.teachers import check_teacher, check_teacher_config, ensemble_logits, ensemble_targets, load_teachers
from babyllama.tokenizer import load_tokenizer
from conftest import TINY_TRAIN

SPECIALS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _save(model, folder, tokenizer=None):
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def _gpt2(vocab, seed=0, positions=64):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=32, n_layer=2, n_head=2,
                                      **SPECIALS))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, cli_workspace):
    """``(tokenizer, gpt2_dir, llama_dir)``: a tiny random GPT-2 and the workspace's trained Llama."""
    tok = load_tokenizer(cli_workspace / "tok")
    gpt2 = _save(_gpt2(len(tok)), tmp_path_factory.mktemp("gpt2") / "gpt2", tok)
    return tok, gpt2, cli_workspace / "teacher"


def test_mixed_ensemble_targets_are_the_mean_of_each_models_own_logits(teachers):
    tok, gpt2, llama = teachers
    models = load_teachers([gpt2, llama], tok, len(tok), torch.float32, torch.device("cpu"), seq_length=32)
    assert [type(m).__name__ for m in models] == ["GPT2LMHeadModel", "LlamaForCausalLM"]
    ids = torch.randint(0, len(tok), (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        own = (models[0](input_ids=ids).logits + models[1](input_ids=ids).logits).flatten(0, 1) / 2
    targets = ensemble_targets(models, ids)
    assert torch.allclose(targets.logits(0, 33), own, atol=1e-5)
    assert torch.allclose(targets.logits(4, 9), own[4:9], atol=1e-5)
    assert torch.allclose(ensemble_logits(models, ids).flatten(0, 1), own, atol=1e-5)


def test_an_output_bias_enters_the_targets(teachers):
    tok, gpt2, _ = teachers
    model = _gpt2(len(tok), seed=3)
    model.config.tie_word_embeddings = False
    model.lm_head = torch.nn.Linear(32, len(tok), bias=True)
    torch.nn.init.normal_(model.lm_head.bias, std=3.0)
    model.eval().requires_grad_(False)
    ids = torch.randint(0, len(tok), (2, 7))
    with torch.no_grad():
        own = model(input_ids=ids).logits.flatten(0, 1)
    assert torch.allclose(ensemble_targets([model], ids).logits(0, 14), own, atol=1e-5)


def test_gpt2_and_llama_teachers_distil_a_student_through_the_cli(tmp_path, teachers, cli_workspace):
    tok, gpt2, llama = teachers
    out = tmp_path / "student"
    code = main(["distill", "--data", str(cli_workspace / "prep"), "--tokenizer", str(cli_workspace / "tok"),
                 "--teachers", f"{gpt2},{llama}", "--out", str(out), *TINY_TRAIN, "--set", "train.log_every=1"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["event"] == "train"]
    assert len(train_rows) == 2 and all(np.isfinite(r["kd"]) and r["kd"] > 0 for r in train_rows)
    assert all(abs(r["loss"] - 0.5 * (r["ce"] + r["kd"])) < 1e-4 for r in train_rows)
    assert json.loads((out / "metrics.json").read_text())["teachers"] == [str(gpt2), str(llama)]


def test_teacher_cache_from_gpt2_and_llama(tmp_path, teachers, cli_workspace):
    tok, gpt2, llama = teachers
    data = load_token_data(cli_workspace / "prep", tok, cli_workspace / "prep" / "cache")
    tokens = data.train.tokens[:32 * 7]  # six chunks whatever the offset
    build_teacher_cache([gpt2, llama], tokens, 32, tmp_path / "cache", k=4, tokenizer=tok, progress=False)
    cache = load_teacher_cache(tmp_path / "cache", [gpt2, llama], tokens, 32, 1.0, 4, (0,), len(tok))
    models = load_teachers([gpt2, llama], tok, len(tok), torch.float32, torch.device("cpu"))
    inputs = torch.from_numpy(tokens[:32 * 6].astype(np.int64)).view(6, 32)
    log_p = torch.log_softmax(ensemble_logits(models, inputs), -1).flatten(0, 1)
    targets = cache.targets(np.arange(6) * 32, torch.device("cpu"))
    assert torch.allclose(targets.logp, log_p.gather(1, targets.ids), atol=2e-3)  # stored as float16


@pytest.mark.parametrize("case", ["other-vocabulary", "encoder-only", "encoder-decoder", "classifier",
                                  "few-positions"])
def test_teachers_that_cannot_work_are_refused_up_front(tmp_path, teachers, cli_workspace, capsys, case):
    tok, _, _ = teachers
    folder = tmp_path / case
    vocab = len(tok)
    if case == "other-vocabulary":
        _save(_gpt2(vocab + 7), folder)
        match = f"vocabulary size {vocab + 7} differs from the student's {vocab}"
    elif case == "encoder-only":
        _save(BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64)), folder)
        match = "an encoder-only or non-causal-LM 'bert' model (saved as BertForMaskedLM)"
    elif case == "encoder-decoder":
        folder.mkdir()
        T5Config(vocab_size=vocab, d_model=32).save_pretrained(folder)
        match = "model type 't5' is not a causal language model"
    elif case == "classifier":
        config = llama_config(ModelConfig(preset="tiny"), vocab, **{"pad_token_id": 0, "bos_token_id": 1,
                                                                     "eos_token_id": 2})
        _save(LlamaForSequenceClassification(config), folder)
        match = "saved as LlamaForSequenceClassification"
    else:
        _save(_gpt2(vocab, positions=16), folder)
        match = "accepts 16 positions, fewer than seq_length 32"
    with pytest.raises(UserError, match=match.replace("(", r"\(").replace(")", r"\)")):
        check_teacher_config(folder, vocab, seq_length=32)
    before = sorted(p.name for p in folder.iterdir())
    out = tmp_path / "student"
    capsys.readouterr()
    code = main(["distill", "--data", str(cli_workspace / "prep"), "--tokenizer", str(cli_workspace / "tok"),
                 "--teachers", str(folder), "--out", str(out), *TINY_TRAIN])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(folder) in err and "error: teacher" in err, err
    assert not out.exists() and sorted(p.name for p in folder.iterdir()) == before


def test_a_scaled_head_is_refused_when_loaded(tmp_path, teachers):
    tok, _, _ = teachers
    config = CohereConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, logit_scale=0.5, **SPECIALS)
    folder = _save(CohereForCausalLM(config), tmp_path / "cohere")
    check_teacher_config(folder, len(tok))  # the config alone is fine
    with pytest.raises(UserError, match=r"cohere: its logits are not its decoder's output through get_output"):
        load_teachers([folder], tok, len(tok), torch.float32, torch.device("cpu"))


def test_a_random_llama_and_a_missing_folder(tmp_path, teachers):
    tok, _, _ = teachers
    model = build_model(llama_config(ModelConfig(preset="tiny"), len(tok), 0, 1, 2), seed=0)
    folder = _save(model, tmp_path / "llama")
    assert check_teacher_config(folder, len(tok)).model_type == "llama"
    tok.save_pretrained(folder)
    check_teacher(folder, None, len(tok))  # before the student's tokenizer exists: config only
    with pytest.raises(UserError, match="no such folder"):
        check_teacher_config(tmp_path / "nothing", len(tok))
