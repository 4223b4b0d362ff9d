"""The 2025 reading task: surprisal by hand on a fixed-logit model, parity with the pipeline's
per-sub-token algorithm, shared forward passes, OLS gains against a direct least-squares fit, the
staged data, bad input."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from babyllama.cli import main
from babyllama.errors import UserError
from babyllama.evaluation import reading
from babyllama.evaluation.next_token import forward_passes, next_token_logprobs

from conftest import shared_data

REPO = Path(__file__).resolve().parents[1]
VOCAB = ["<pad>", "<s>", "</s>", "a", "dog", "cat", "the", "sat", "ran"]
ID = {w: i for i, w in enumerate(VOCAB)}
WORDS = "the a cat cats dog dogs sees see runs run big small who what is are was were it they".split()
CORPUS = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 5)) + "." for i in range(300)]


def word_tokenizer(bos: bool = False) -> PreTrainedTokenizerFast:
    """Whitespace word-level tokenizer over VOCAB (ids in VOCAB order); BOS prepended when ``bos``."""
    from tokenizers.processors import TemplateProcessing

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


class BigramLM(torch.nn.Module):
    """A causal LM whose next-token log-probabilities depend only on the current token: ``table[token]``.

    ``calls`` counts forward passes and ``rows`` the sequences run.
    """

    def __init__(self, probs: np.ndarray):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(np.log(probs), dtype=torch.float32), requires_grad=False)
        self.calls = self.rows = 0

    def forward(self, input_ids, attention_mask=None, use_cache=False, logits_to_keep=None):
        self.calls += 1
        self.rows += input_ids.shape[0]
        logits = self.table[input_ids]  # (B, L, V)
        return SimpleNamespace(logits=logits if logits_to_keep is None else logits[logits_to_keep])


def bigram_probs(seed: int = 0) -> np.ndarray:
    """(V, V) row-stochastic matrix with a few hand-set entries used below."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.5, 1.5, size=(len(VOCAB), len(VOCAB)))
    p[ID["dog"]] = [0.05] * len(VOCAB)
    p[ID["dog"], ID["the"]] = 0.5
    p[ID["dog"], ID["sat"]] = 0.5 - 0.05 * (len(VOCAB) - 2)
    p[ID["the"]] = [0.75 / (len(VOCAB) - 1)] * len(VOCAB)
    p[ID["the"], ID["cat"]] = 0.25
    return p / p.sum(axis=1, keepdims=True)


def test_surprisal_by_hand_on_a_fixed_logit_model():
    probs = bigram_probs()
    model, tok = BigramLM(probs), word_tokenizer()
    # "a dog " + "the cat": p(the | dog) * p(cat | the) = 0.5 * 0.25, the second query on "a dog the".
    queries = reading.word_queries(tok, "a dog ", "the cat")
    assert queries == [((ID["a"], ID["dog"]), ID["the"]), ((ID["a"], ID["dog"], ID["the"]), ID["cat"])]
    values, passes, n = reading.surprisals(model, tok, [("a dog ", "the cat"), ("a dog", "sat")])
    assert values[0] == pytest.approx(math.log(8), abs=1e-6)
    assert values[1] == pytest.approx(-math.log(probs[ID["dog"], ID["sat"]]), abs=1e-6)
    # Both words' queries are prefixes of "a dog the": one sequence, one forward pass.
    assert (passes, n, model.calls, model.rows) == (1, 3, 1, 1)


def test_bos_and_model_without_logits_to_keep():
    probs = bigram_probs(1)

    class Plain(BigramLM):
        def forward(self, input_ids, attention_mask=None, use_cache=False):
            return super().forward(input_ids, attention_mask)

    tok = word_tokenizer(bos=True)
    assert reading.word_queries(tok, "a", "dog") == [((ID["<s>"], ID["a"]), ID["dog"])]
    got = next_token_logprobs(Plain(probs), [((ID["<s>"],), ID["a"]), ((ID["<s>"], ID["a"]), ID["dog"])])
    assert got == pytest.approx(np.log([probs[ID["<s>"], ID["a"]], probs[ID["a"], ID["dog"]]]), abs=1e-6)


def test_prefix_cover_and_batching():
    probs = bigram_probs(2)
    queries = [((3, 4), 5), ((3, 4, 6), 7), ((3,), 4), ((3, 5), 6), ((4,), 4), ((3, 4, 6), 8)]
    want = np.log([probs[s[-1], t] for s, t in queries])
    assert forward_passes(queries) == 3  # (3, 4, 6) covers (3,) and (3, 4); (3, 5) and (4,) run alone
    for batch in (1, 2, 64):
        model = BigramLM(probs)
        assert next_token_logprobs(model, queries, batch_size=batch) == pytest.approx(want, abs=1e-6)
        assert model.rows == 3 and model.calls == math.ceil(3 / batch)
    with pytest.raises(UserError, match="no tokens"):
        next_token_logprobs(BigramLM(probs), [((), 3)])


def bpe_tokenizer(prefix_space: bool = True, template: str | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE on the in-test corpus, specials <pad> <s> </s>; ``template`` e.g. ``"<s> $A </s>"``."""
    from tokenizers.processors import TemplateProcessing

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if template is not None:
        tok.post_processor = TemplateProcessing(single=template, special_tokens=[("<s>", 1), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_llama(vocab: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_reading", REPO / "benchmarks" / "bench_reading.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("prefix_space, template", [(True, None), (False, None), (True, "<s> $A </s>")],
                         ids=["prefix-space", "gpt2-style", "bos-and-eos"])
def test_equals_the_pipelines_per_subtoken_algorithm(prefix_space, template):
    """Multi-token words, words the tokenizer re-splits after decoding (prefix space), unseen characters,
    contexts glued to the word without a space (no prefix space), an EOS read as the last position."""
    tok = bpe_tokenizer(prefix_space, template)
    model = tiny_llama(len(tok))
    pairs = [("the big", "zebras"), ("the big zebras", "sees"), ("who", "Mississippi,"), ("None", "of"),
             ("they were", "quixotic."), ("the big", "cat")]
    assert max(len(tok(w, add_special_tokens=False)["input_ids"]) for _, w in pairs) >= 4
    bench = load_bench()
    want = [-math.log(bench.pipeline_probability(model, tok, c, w)) for c, w in pairs]
    got, passes, n = reading.surprisals(model, tok, pairs)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)
    assert passes < n


def synthetic_frame(n: int = 300, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "Subtlex_log10": rng.normal(10, 2, n), "length": rng.integers(1, 12, n).astype(float),
        "context_length": rng.integers(1, 15, n).astype(float), "prev_length": rng.integers(1, 12, n).astype(float),
        "pred": rng.normal(8, 2, n), "prev_pred": rng.normal(8, 2, n),
    })
    df["RTfirstfix"] = 100 + 5 * df["length"] + 7 * df["pred"] + rng.normal(0, 10, n)
    df.loc[:9, "prev_pred"] = np.nan  # sentence-initial rows: out of the model fit only where prev_pred is used
    df.loc[20:24, "pred"] = np.nan
    return df


def direct_r2(y: np.ndarray, columns: list[np.ndarray]) -> float:
    x = np.column_stack([np.ones_like(y), *columns])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    return 1 - resid @ resid / ((y - y.mean()) @ (y - y.mean()))


def test_relative_r2_gain_against_direct_least_squares():
    df = synthetic_frame()
    for predictors in (reading.ET_PREDICTORS, reading.SPR_PREDICTORS):
        got = reading.relative_r2_gain(df, "RTfirstfix", predictors)

        def r2(frame, extra):
            cols = [frame[p].to_numpy() for p in predictors]
            cols += [frame[a].to_numpy() * frame[b].to_numpy() for i, a in enumerate(predictors) for b in predictors[i + 1:]]
            return direct_r2(frame["RTfirstfix"].to_numpy(), cols + [frame[e].to_numpy() for e in extra])

        base_rows = df[["RTfirstfix", *predictors]].dropna()
        model_rows = df[["RTfirstfix", "pred", *predictors]].dropna()
        r2_base, r2_model = r2(base_rows, []), r2(model_rows, ["pred"])
        assert got["rows_base"] == len(base_rows) and got["rows_model"] == len(model_rows)
        assert got["r2_base"] == pytest.approx(r2_base, abs=1e-10)
        assert got["r2_model"] == pytest.approx(r2_model, abs=1e-10)
        assert got["gain"] == pytest.approx(100 * (r2_model - r2_base) / (1 - r2_base), abs=1e-8)
        assert got["gain"] > 10  # pred drives the synthetic times
    assert reading.relative_r2_gain(df, "RTfirstfix", reading.SPR_PREDICTORS)["rows_base"] == len(df) - 10


def staged_reading() -> Path:
    folder = shared_data() / "babylm_eval_2025" / "reading"
    if not (folder / "reading_data.csv.gz").is_file():
        pytest.skip("staged 2025 reading data not found")
    return folder


def test_staged_data_with_a_tiny_model(tmp_path):
    folder = staged_reading()
    tok = bpe_tokenizer()
    model_dir = tmp_path / "model"
    tiny_llama(len(tok)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    results = reading.evaluate_reading(model_dir, folder, progress=False)
    out = model_dir / "reading"
    preds = json.loads((out / "predictions.json").read_text())["reading"]["predictions"]
    df = reading.load_reading(reading.find_reading_file(folder))
    assert results["rows"] == len(preds) == len(df) == 1726
    assert [p["id"] for p in preds] == list(range(1726))
    assert df["item"].iloc[320] == "None"
    first = [not isinstance(p, str) for p in df["prev_item"]]
    assert [p["prev_pred"] is None for p in preds] == first and sum(first) > 100
    assert all(math.isfinite(p["pred"]) and p["pred"] > 0 for p in preds)
    assert math.isfinite(results["eye_tracking"]) and math.isfinite(results["self_paced_reading"])
    assert set(results["measures"]) == {*reading.EYE_TRACKING, reading.SELF_PACED}
    spr_rows = df.assign(prev_pred=[np.nan if f else 1.0 for f in first])[[reading.SELF_PACED, *reading.SPR_PREDICTORS]]
    assert results["measures"][reading.SELF_PACED]["rows_model"] == len(spr_rows.dropna()) < 1726 - sum(first)
    assert results["forward_passes"] < results["model_queries"] and "missing_context" in results["settings"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["eye_tracking"] == results["eye_tracking"]


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


HEADER = ("item,word,prev_item,prev_word,Subtlex_log10,length,context_length,prev_length,RTfirstfix,RTfirstpass,"
          "RTgopast,RTrightbound,self_paced_reading_time\n")


def test_bad_input(tmp_path, capsys):
    with pytest.raises(UserError, match="no such reading data"):
        reading.find_reading_file(tmp_path / "missing")
    with pytest.raises(UserError, match="no reading_data.csv"):
        reading.find_reading_file(tmp_path)
    with pytest.raises(UserError, match="missing column.*self_paced_reading_time"):
        reading.load_reading(write_csv(tmp_path / "a.csv", HEADER.replace(",self_paced_reading_time", "") + "x,y,,,1,1,1,1,1,1,1,1\n"))
    with pytest.raises(UserError, match="column 'length', data row 2: expected a number, got 'long'"):
        reading.load_reading(write_csv(tmp_path / "b.csv", HEADER + "x,y,,,1,1,1,-1,1,1,1,1,1\nx,y,,,1,long,1,-1,1,1,1,1,1\n"))
    with pytest.raises(UserError, match="not a readable CSV"):
        reading.load_reading(write_csv(tmp_path / "c.csv.gz", "not gzip"))
    with pytest.raises(UserError, match="data row 1: empty target word"):
        reading.load_reading(write_csv(tmp_path / "d.csv", HEADER + "x,,,,1,1,1,-1,1,1,1,1,1\n"))
    # The CLI: one line, exit 2, nothing written, before the model is loaded.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert main(["evaluate", "reading", str(model_dir), "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such reading data" in err[0]
    assert not (model_dir / "reading").exists()
    gz = tmp_path / "data" / "reading_data.csv.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress((HEADER + "x,y,,,1,1,1,-1,1,1,1,1,1\n").encode()))
    assert main(["evaluate", "reading", str(model_dir), "--data", str(gz.parent)]) == 2
    assert "not a model directory" in capsys.readouterr().err
