"""Zero-shot minimal-pair scoring: exact scores, tie rule, batching/prefix sharing, files, CLI."""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from babyllama.errors import UserError
from babyllama.evaluation import zero_shot
from babyllama.evaluation.minimal_pair_tasks import Item, load_task
from babyllama.evaluation.zero_shot import add_parser, encode_items, evaluate_zero_shot, format_table, score_encoded

WORDS = "the a cat cats dog dogs sees see runs run big small who what is are was were it they".split()
CORPUS = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 5)) + "." for i in range(300)]


def make_tokenizer(bos: bool = True) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the in-test corpus, specials <pad> <s> </s> (ids 0, 1, 2)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>" if bos else None, eos_token="</s>", pad_token="<pad>"
    )


def llama(vocab: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def save(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def naive_scores(model, encoded) -> list[list[float]]:
    """Reference: one unpadded forward per choice, full log-softmax, sum over the scored tokens."""
    out = []
    with torch.inference_mode():
        for enc in encoded:
            row = []
            for seq in enc.choices:
                logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), dim=-1)
                row.append(sum(logp[j - 1, seq[j]].item() for j in range(enc.context_len, len(seq))))
            out.append(row)
    return out


def write_jsonl(path: Path, records: list[dict], compress: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


MIXED_ITEMS = [
    Item("", ("the cat sees the dog.", "the cat see the dog."), 0, 1),  # shared prefix, same length
    Item("", ("who is it?", "what were they big small cats?"), 0, 2),  # different lengths
    Item("", ("the dog runs.", "the dog runs."), 0, 3),  # identical choices: exact tie
    Item("", ("a cat", "a cat runs big."), 0, 4),  # one choice is a prefix of the other
    Item("", ("they", "it"), 0, 5),  # single-token choices
    Item("the cat is big.", ("the cat runs.", "the cat run.", "a dog."), 0, 6),  # context, three choices
    Item("who are they?  ", ("they are cats.", "it is a dog."), 0, 7),  # context with trailing spaces
    Item("", ("the cat sees the dog.", "the cat see the dog."), 0, 8),  # duplicate of line 1
]


def test_encoding_follows_the_harness_rules():
    tok = make_tokenizer()
    enc = encode_items(tok, MIXED_ITEMS, 64)
    bare = tok(" the cat sees the dog.", add_special_tokens=False)["input_ids"]
    assert enc[0].choices[0] == (tok.bos_token_id, *bare) and enc[0].context_len == 1
    # Context items: context tokens, then whatever "context + ' ' + choice" adds after them.
    ctx = tok("the cat is big.")["input_ids"]
    whole = tok("the cat is big. the cat runs.")["input_ids"]
    assert enc[5].choices[0] == tuple(whole) and enc[5].context_len == len(ctx)
    # Trailing spaces of the context move to the choice: "who are they?" + "   they are cats."
    ctx7 = tok("who are they?")["input_ids"]
    assert enc[6].choices[0] == tuple(tok("who are they?   they are cats.")["input_ids"])
    assert enc[6].context_len == len(ctx7)
    # Without a BOS token the EOS token stands in for the empty context.
    no_bos = encode_items(make_tokenizer(bos=False), MIXED_ITEMS[:1], 64)
    assert no_bos[0].choices[0][0] == tok.eos_token_id


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batched_prefix_shared_scores_match_naive(batch_size):
    tok = make_tokenizer()
    model = llama(len(tok))
    enc = encode_items(tok, MIXED_ITEMS, 64)
    got = score_encoded(model, enc, batch_size=batch_size, progress=False)
    want = naive_scores(model, enc)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-4)
    assert got[2][0] == got[2][1]  # identical choices score exactly the same
    assert got[7] == got[0]


def test_uniform_model_scores_by_hand_and_tie_rule(tmp_path):
    """All-zero weights give logits 0 everywhere: every token costs exactly log(V)."""
    tok = make_tokenizer()
    model = llama(len(tok))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    vocab = model.config.vocab_size
    sentences = [("the cat runs.", "the cat runs big."), ("the dog", "the dog"), ("who is it big?", "who")]
    items = [Item("", pair, 0, i + 1) for i, pair in enumerate(sentences)]
    scores = score_encoded(model, encode_items(tok, items, 64), progress=False)
    for (good, bad), got in zip(sentences, scores):
        for text, value in zip((good, bad), got):
            n = len(tok(" " + text, add_special_tokens=False)["input_ids"])
            assert value == pytest.approx(-n * math.log(vocab), rel=1e-6)
    # Accuracy through the full pipeline: fewer tokens wins, the tie (item 2) counts as correct.
    model_dir = save(model, tok, tmp_path / "uniform")
    write_jsonl(tmp_path / "pairs" / "p.jsonl", [{"sentence_good": g, "sentence_bad": b} for g, b in sentences])
    res = evaluate_zero_shot(model_dir, {"builtin_pairs": tmp_path / "pairs"}, None, progress=False)
    assert res["tasks"]["builtin_pairs"]["subtasks"]["p"]["accuracy"] == pytest.approx(2 / 3)


def test_certain_model_scores_by_hand():
    """Constant hidden state aligned with one lm_head row: that token gets logit a, all others 0."""
    tok = make_tokenizer()
    model = llama(len(tok))
    target = tok(" the", add_special_tokens=False)["input_ids"][0]
    a = 20.0
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight[target].fill_(a / model.config.hidden_size)
    logit = a / math.sqrt(1.0 + model.config.rms_norm_eps)  # RMSNorm of a ones vector
    log_z = math.log(math.exp(logit) + model.config.vocab_size - 1)
    items = [Item("", ("the the the", "the cat"), 0, 1), Item("", ("who", "the"), 0, 2)]
    enc = encode_items(tok, items, 64)
    scores = score_encoded(model, enc, progress=False)
    for e, got in zip(enc, scores):
        for seq, value in zip(e.choices, got):
            want = sum((logit if t == target else 0.0) - log_z for t in seq[1:])
            assert value == pytest.approx(want, abs=1e-3)
    assert scores[0][0] == pytest.approx(0.0, abs=1e-6)  # the certain choice
    assert scores[1][0] < scores[1][1]  # item 2: the gold choice loses


def test_results_file_groups_fields_and_table(tmp_path):
    tok = make_tokenizer()
    model_dir = save(llama(len(tok)), tok, tmp_path / "m")
    pairs = [("the cat runs.", "the cat run."), ("who is it?", "who are it?"), ("they see a dog.", "they sees a dog.")]
    write_jsonl(tmp_path / "blimp" / "agr.jsonl.gz",
                [{"sentence_good": g, "sentence_bad": b, "field": "morphology"} for g, b in pairs], compress=True)
    write_jsonl(tmp_path / "blimp" / "isl.jsonl",
                [{"sentence_good": g, "sentence_bad": b, "field": "syntax"} for g, b in pairs[:1]])
    ewok = [{"Context1": "the cat is big.", "Context2": "the cat is small.",
             "Target1": "the cat runs.", "Target2": "the cat sees."}]
    write_jsonl(tmp_path / "ewok" / "physical.jsonl", ewok)
    out = tmp_path / "out"
    res = evaluate_zero_shot(model_dir, {"blimp": tmp_path / "blimp", "ewok": tmp_path / "ewok"}, out, progress=False)
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(res))

    model, _, _ = zero_shot.load_model(model_dir)
    per_sub = {}
    for sub in load_task("blimp", tmp_path / "blimp"):
        scores = naive_scores(model, encode_items(tok, sub.items, 64))
        per_sub[sub.name] = sum(s[0] >= max(s) for s in scores) / len(scores)
    blimp = res["tasks"]["blimp"]
    assert {k: v["accuracy"] for k, v in blimp["subtasks"].items()} == pytest.approx(per_sub)
    assert blimp["subtasks"]["agr"]["items"] == 3 and blimp["items"] == 4
    assert blimp["accuracy"] == pytest.approx((per_sub["agr"] + per_sub["isl"]) / 2)  # unweighted
    assert blimp["fields"]["morphology"]["accuracy"] == pytest.approx(per_sub["agr"])
    assert res["summary"] == {"blimp": blimp["accuracy"], "ewok": res["tasks"]["ewok"]["accuracy"]}
    assert res["settings"]["target_delimiter"] == " " and res["settings"]["prefix_token_id"] == tok.bos_token_id
    table = format_table(res)
    assert "agr" in table and "field morphology" in table and "physical" in table


@pytest.mark.parametrize(
    "line, message",
    [('{"sentence_good": "a cat", "sentence_bad": "a cats"', "p.jsonl:2: invalid JSON"),
     ('{"sentence_good": "a cat"}', "p.jsonl:2: missing key 'sentence_bad'"),
     ('["a", "b"]', "p.jsonl:2: expected a JSON object")],
)
def test_malformed_line_stops_before_scoring(tmp_path, monkeypatch, line, message):
    good = json.dumps({"sentence_good": "the cat", "sentence_bad": "the cats"})
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.jsonl").write_text(good + "\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "p.jsonl").write_text(good + "\n" + line + "\n")
    monkeypatch.setattr(zero_shot, "load_model", lambda *a, **k: pytest.fail("model loaded before data checked"))
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        evaluate_zero_shot(tmp_path / "nomodel", {"blimp": tmp_path / "ok", "builtin_pairs": tmp_path / "bad"},
                           tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_and_foreign_gpt2_directory(tmp_path, capsys):
    """A randomly initialised Hugging Face GPT-2 with a BOS-less tokenizer scores through the CLI."""
    tok = make_tokenizer(bos=False)
    torch.manual_seed(1)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                      bos_token_id=2, eos_token_id=2)).eval()
    model_dir = save(gpt2, tok, tmp_path / "gpt2")
    pairs = [("the cat runs.", "the cat run."), ("who is it?", "who are it big?")]
    write_jsonl(tmp_path / "pairs" / "agr.jsonl", [{"sentence_good": g, "sentence_bad": b} for g, b in pairs])

    parser = argparse.ArgumentParser(prog="babyllama evaluate")
    add_parser(parser.add_subparsers())
    help_text = parser._subparsers._group_actions[0].choices["zero-shot"].format_help()
    for option in ("MODEL_DIR", "--task", "--batch-size", "--dtype", "--out", "--device", "--quiet"):
        assert option in help_text
    args = parser.parse_args(["zero-shot", str(model_dir), "--task", f"builtin_pairs={tmp_path / 'pairs'}",
                              "--batch-size", "3", "--out", str(tmp_path / "out"), "--quiet"])
    assert args.func(args) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["settings"]["prefix_token_id"] == tok.eos_token_id
    enc = encode_items(tok, load_task("builtin_pairs", tmp_path / "pairs")[0].items, 64)
    expected = sum(s[0] >= max(s) for s in naive_scores(gpt2, enc)) / 2
    assert res["summary"]["builtin_pairs"] == pytest.approx(expected)
    assert "agr" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["zero-shot", str(model_dir), "--task", "nosuchtask=x"])
