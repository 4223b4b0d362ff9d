"""The 2025 zero-shot tasks: hand-checked scores on a bigram model, the staged data, evaluate fast, collate."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from babyllama.cli import main
from babyllama.errors import UserError
from babyllama.evaluation import tasks as registry
from babyllama.evaluation.collate import collate
from babyllama.evaluation.fast_eval import evaluate_fast
from babyllama.evaluation.zero_shot import evaluate_zero_shot

from conftest import shared_data

VOCAB = ["<pad>", "<s>", "</s>", "the", "a", "cat", "dog", "runs", "sleeps", ".", "box", "contains", "x", "y"]
ID = {w: i for i, w in enumerate(VOCAB)}
V = len(VOCAB)
# Bigram logits: log P(next | current) = log_softmax(LOGITS[current])[next]. Row "the": exp weights
# 3 for cat, 1 for the 13 other tokens, so P(cat | the) = 3 / 16 and P(dog | the) = 1 / 16.
BIGRAMS = {("<s>", "the"): math.log(20.0), ("the", "cat"): math.log(3.0), ("cat", "runs"): math.log(5.0), ("dog", "runs"): math.log(2.0),
           ("contains", "cat"): math.log(7.0), ("x", "y"): math.log(4.0), ("a", "dog"): math.log(9.0)}


def lp(cur: str, nxt: str) -> float:
    """log P(nxt | cur) of the bigram model, by hand: weight exp(logit) over the row's total."""
    weights = [math.exp(BIGRAMS.get((cur, w), 0.0)) for w in VOCAB]
    return math.log(weights[ID[nxt]] / sum(weights))


def word_tokenizer(bos: bool) -> PreTrainedTokenizerFast:
    """Whitespace/punctuation word tokenizer over VOCAB (with offsets); ``bos`` adds <s> first."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def bigram_llama() -> LlamaForCausalLM:
    """A Llama whose logits depend on the current token only, equal to the BIGRAMS table.

    Attention and MLP outputs are zeroed, so the last hidden state is RMSNorm(one-hot(token)) =
    sqrt(H) * one-hot; the LM head holds LOGITS[cur, next] / sqrt(H) in column cur.
    """
    hidden = 16
    config = LlamaConfig(vocab_size=V, hidden_size=hidden, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         rms_norm_eps=1e-12, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(config).eval()
    logits = torch.zeros(V, V)
    for (cur, nxt), value in BIGRAMS.items():
        logits[ID[cur], ID[nxt]] = value
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, :V].copy_(torch.eye(V))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, :V].copy_(logits.T / math.sqrt(hidden))
    return model


def model_dir(tmp_path: Path, bos: bool = False, name: str = "model") -> Path:
    path = tmp_path / name
    bigram_llama().save_pretrained(path)
    word_tokenizer(bos).save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(model: Path, tasks: dict[str, Path], out: Path | None = None) -> dict:
    return evaluate_zero_shot(model, tasks, out, batch_size=4, progress=False)


def test_bigram_model_matches_its_table(tmp_path):
    model = bigram_llama()
    out = torch.log_softmax(model(torch.tensor([[ID["the"], ID["cat"]]])).logits[0].double(), -1)
    assert out[0, ID["cat"]].item() == pytest.approx(lp("the", "cat"), abs=1e-5)
    assert out[1, ID["runs"]].item() == pytest.approx(lp("cat", "runs"), abs=1e-5)


@pytest.mark.parametrize("bos", [False, True])
def test_blimp_first_token_scored_only_with_bos(tmp_path, bos):
    # Item 1, "a dog runs ." vs "the cat runs .": without BOS the first word is not scored:
    # 9/22 * 2/15 (= 0.0545) beats 3/16 * 5/18 (= 0.0521), correct. With BOS, P(a | <s>) = 1/33
    # against P(the | <s>) = 20/33 decides: wrong. Item 2 shares "the": 1/16 * 2/15 < 3/16 * 5/18,
    # wrong either way. Item 3 is a tie: the first candidate wins, correct.
    data = write_jsonl(tmp_path / "blimp" / "p1.jsonl", [
        {"sentence_good": "a dog runs .", "sentence_bad": "the cat runs .", "field": "syntax", "UID": "p1"},
        {"sentence_good": "the dog runs .", "sentence_bad": "the cat runs .", "field": "syntax", "UID": "p1"},
        {"sentence_good": "the cat .", "sentence_bad": "the cat .", "field": "syntax", "UID": "p1"},
    ]).parent
    good = lp("a", "dog") + lp("dog", "runs") + lp("runs", ".") + (lp("<s>", "a") if bos else 0.0)
    bad = lp("the", "cat") + lp("cat", "runs") + lp("runs", ".") + (lp("<s>", "the") if bos else 0.0)
    assert (good > bad) is (not bos)
    res = run(model_dir(tmp_path, bos), {"blimp_fast": data}, tmp_path / "out")
    entry = res["tasks"]["blimp_fast"]
    assert entry["subtasks"]["p1"]["correct"] == ([0, 0, 1] if bos else [1, 0, 1])
    assert entry["score"] == pytest.approx(1 / 3 if bos else 2 / 3)
    preds = json.loads((tmp_path / "out" / "predictions" / "blimp_fast.json").read_text())
    assert preds["p1"]["predictions"][0] == {"id": "p1_0", "pred": "the cat runs ." if bos else "a dog runs ."}
    assert [p["id"] for p in preds["p1"]["predictions"]] == ["p1_0", "p1_1", "p1_2"]
    assert preds["p1"]["predictions"][1]["pred"] == "the cat runs ."
    assert res["settings"]["tokenizer_adds_bos"] is bos
    assert any("token 0 is never scored" in rule for rule in res["settings"]["rules"]["blimp_fast"])


def test_supplement_subset_is_the_file_stem(tmp_path):
    data = write_jsonl(tmp_path / "b" / "sub.jsonl", [{"sentence_good": "a dog", "sentence_bad": "the cat"}]).parent
    res = run(model_dir(tmp_path, bos=False), {"supplement_fast": data})
    assert res["tasks"]["supplement_fast"]["subtasks"]["sub"]["correct"] == [1]  # 9/22 > 3/16
    res = run(model_dir(tmp_path, bos=True, name="bos"), {"supplement_fast": data})
    assert res["tasks"]["supplement_fast"]["subtasks"]["sub"]["correct"] == [0]  # 1/33 * 9/22 < 20/33 * 3/16


def test_ewok_scores_target_only(tmp_path):
    # Context1 "the cat" is shared; targets "runs ." vs "sleeps .": lp(cat,runs)=log 5/18 > lp(cat,sleeps).
    rows = [{"Context1": "the cat", "Context2": "z", "Target1": "runs .", "Target2": "sleeps .", "Domain": "d1"},
            {"Context1": "the dog", "Context2": "z", "Target1": "sleeps .", "Target2": "runs .", "Domain": "d2"}]
    res = run(model_dir(tmp_path), {"ewok_fast": write_jsonl(tmp_path / "e" / "x.jsonl", rows).parent}, tmp_path / "o")
    entry = res["tasks"]["ewok_fast"]
    assert entry["subtasks"]["d1"]["correct"] == [1] and entry["subtasks"]["d2"]["correct"] == [0]
    assert entry["score"] == pytest.approx(0.5)
    preds = json.loads((tmp_path / "o" / "predictions" / "ewok_fast.json").read_text())
    assert preds["d2"]["predictions"] == [{"id": "d2_0", "pred": " runs ."}]


def test_entity_tracking_two_level_mean(tmp_path):
    # After "box contains" the cat option wins (log 7/20 against log 1/20); options[0] decides.
    right = {"input_prefix": "box contains ", "options": ["cat .", "dog .", "x ."]}
    wrong = {"input_prefix": "box contains ", "options": ["dog .", "cat .", "x ."]}
    write_jsonl(tmp_path / "et" / "regular.jsonl", [dict(right, numops=0), dict(wrong, numops=0), dict(right, numops=1)])
    write_jsonl(tmp_path / "et" / "ambiref.jsonl", [dict(wrong, numops=0)])
    res = run(model_dir(tmp_path), {"entity_tracking": tmp_path / "et"}, tmp_path / "o")
    entry = res["tasks"]["entity_tracking"]
    assert entry["subtasks"]["regular_0_ops"]["accuracy"] == 0.5 and entry["subtasks"]["regular_1_ops"]["accuracy"] == 1
    assert entry["splits"] == {"ambiref": 0.0, "regular": 0.75}
    assert entry["score"] == pytest.approx(0.375)  # the flat mean over the 3 subsets would be 0.5
    preds = json.loads((tmp_path / "o" / "predictions" / "entity_tracking.json").read_text())
    assert preds["ambiref_0_ops"]["predictions"] == [{"id": "ambiref_0_ops_0", "pred": "cat ."}]


def test_wug_spearman_of_first_candidate_probability(tmp_path):
    # Candidates "x y" / "x a" etc.: without BOS only the second token is scored, so
    # prob(first) = softmax([lp(x,y), lp(x,a)])[0] = 4/5; the items' probabilities rank 4/5 > 1/2 > 1/5.
    rows = [{"sentences": "x y\tx a", "ratio": 0.9}, {"sentences": "x a\tx y", "ratio": 0.1},
            {"sentences": "x a\tx the", "ratio": "0.5"}]
    folder = write_jsonl(tmp_path / "w" / "wug_adj_nominalization.jsonl", rows).parent
    res = run(model_dir(tmp_path), {"wug_adj": folder}, tmp_path / "o")
    entry = res["tasks"]["wug_adj"]
    assert entry["metric"] == "spearman_rho" and entry["score"] == pytest.approx(1.0)
    preds = json.loads((tmp_path / "o" / "predictions" / "wug_adj.json").read_text())["wug_adj_nominalization"]
    assert [p["prob"] for p in preds["predictions"]] == pytest.approx([0.8, 0.2, 0.5], abs=1e-5)
    assert preds["predictions"][0]["pred"] == "x y"
    rows[2]["ratio"] = 0.95  # now the human ranking is 2 > 0 > 1 against the model's 0 > 2 > 1: rho = 0.5
    res = run(model_dir(tmp_path, name="m2"), {"wug_past": write_jsonl(tmp_path / "w2" / "wug_past_tense.jsonl",
                                                                        rows).parent})
    assert res["tasks"]["wug_past"]["score"] == pytest.approx(0.5)


def test_comps_property_after_each_prefix(tmp_path):
    # P(runs | cat) = 5/18 > P(runs | dog) = 2/15: the "cat" prefix is the acceptable one in line 1.
    line1 = {"prefix_acceptable": "the cat", "prefix_unacceptable": "the dog", "property_phrase": "runs"}
    line2 = {"prefix_acceptable": "the dog", "prefix_unacceptable": "the cat", "property_phrase": "runs"}
    write_jsonl(tmp_path / "c" / "comps_base.jsonl", [line1, line2])
    write_jsonl(tmp_path / "c" / "comps_wugs_dist-before.jsonl", [line1])
    write_jsonl(tmp_path / "c" / "comps_wugs_dist-in-between.jsonl", [line2])
    res = run(model_dir(tmp_path), {"comps": tmp_path / "c"}, tmp_path / "o")
    entry = res["tasks"]["comps"]
    assert {k: v["accuracy"] for k, v in entry["subtasks"].items()} == {
        "base": 0.5, "wugs_dist_before": 1.0, "wugs_dist_in_between": 0.0}
    assert entry["score"] == pytest.approx(0.5)
    preds = json.loads((tmp_path / "o" / "predictions" / "comps.json").read_text())
    assert preds["base"]["predictions"][1] == {"id": "base_1", "pred": "the cat runs"}


def test_check_names_the_bad_file_and_key(tmp_path):
    with pytest.raises(UserError, match="unknown zero-shot task 'nope'"):
        registry.check("nope", tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        registry.check("entity_tracking", tmp_path / "missing")
    bad = write_jsonl(tmp_path / "et" / "regular.jsonl", [{"input_prefix": "a", "options": ["b", "c"], "numops": "1"}])
    with pytest.raises(UserError, match=r"regular.jsonl:1: key 'numops' must be an integer"):
        registry.check("entity_tracking", bad.parent)
    assert set(registry.task_names()) >= {"blimp", "ewok", "blimp_fast", "entity_tracking", "wug_adj", "wug_past",
                                          "comps", "supplement_fast", "ewok_fast", "entity_tracking_fast"}


def subsample(src: Path, dst: Path, n: int, numops: bool = False) -> Path:
    """The first ``n`` lines of each staged file (the first ``n`` per numops for entity tracking)."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
        if numops:
            seen: dict[int, int] = {}
            keep = []
            for line in lines:
                k = json.loads(line)["numops"]
                if seen.get(k, 0) < n:
                    seen[k] = seen.get(k, 0) + 1
                    keep.append(line)
            lines = keep
        else:
            lines = lines[:n]
        (dst / path.name.removesuffix(".gz")).write_text("".join(lines), encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = shared_data() / "babylm_eval_2025"
    if not (root / "blimp_fast").is_dir():
        pytest.skip("staged 2025 evaluation data not found")
    out = tmp_path_factory.mktemp("staged")
    subsample(root / "blimp_fast", out / "blimp_fast", 2)
    subsample(root / "supplement_fast", out / "supplement_fast", 3)
    subsample(root / "ewok_fast", out / "ewok_fast", 3)
    subsample(root / "entity_tracking_fast", out / "entity_tracking_fast", 2, numops=True)
    subsample(root / "wug_adj_nominalization", out / "wug_adj_nominalization", 20)
    (out / "reading").mkdir()  # the first 300 rows: enough for the OLS fits
    with gzip.open(root / "reading" / "reading_data.csv.gz", "rt", encoding="utf-8") as f:
        (out / "reading" / "reading_data.csv").write_text("".join(itertools.islice(f, 301)), encoding="utf-8")
    return out


def small_llama_dir(path: Path) -> Path:
    """A random 2-layer Llama with a byte-level BPE tokenizer (the project's kind of model)."""
    from test_zero_shot import llama, make_tokenizer

    tok = make_tokenizer(bos=True)
    llama(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_staged_fast_sets_on_a_tiny_model(tmp_path, staged):
    model = small_llama_dir(tmp_path / "m")
    tasks = {"blimp_fast": staged / "blimp_fast", "supplement_fast": staged / "supplement_fast",
             "ewok_fast": staged / "ewok_fast", "entity_tracking_fast": staged / "entity_tracking_fast",
             "wug_adj": staged / "wug_adj_nominalization"}
    res = run(model, tasks, tmp_path / "out")
    t = res["tasks"]
    assert t["blimp_fast"]["items"] == 67 * 2 and len(t["blimp_fast"]["subtasks"]) == 67
    assert t["supplement_fast"]["items"] == 15 and len(t["supplement_fast"]["subtasks"]) == 5
    assert t["ewok_fast"]["items"] == 33 and len(t["ewok_fast"]["subtasks"]) == 11
    assert t["entity_tracking_fast"]["items"] == 12 and set(t["entity_tracking_fast"]["splits"]) == {"regular"}
    assert t["wug_adj"]["items"] == 20
    for name, entry in t.items():
        assert not math.isnan(entry["score"]), name
        assert -1.0 <= entry["score"] <= 1.0
    preds = json.loads((tmp_path / "out" / "predictions" / "entity_tracking_fast.json").read_text())
    assert sorted(preds) == [f"regular_{k}_ops" for k in range(6)]


def test_evaluate_fast_checkpoints_and_collate(tmp_path, staged, capsys):
    model = small_llama_dir(tmp_path / "run" / "student")
    for n in (1, 2):
        shutil.copytree(model, model / "word_checkpoints" / f"chck_{n}M", ignore=shutil.ignore_patterns("word_*"))
    summaries = evaluate_fast(tmp_path / "run", staged, batch_size=16, progress=False)
    summary = summaries[model]
    assert [row["name"] for row in summary["checkpoints"]] == ["chck_1M", "chck_2M", "final"]
    assert [row["words"] for row in summary["checkpoints"][:2]] == [1_000_000, 2_000_000]
    assert "wug_past" in summary["skipped"] and "not bundled" in summary["skipped"]["wug_past"]
    # The same weights everywhere: the same scores at every checkpoint.
    assert summary["checkpoints"][0]["scores"] == summary["checkpoints"][2]["scores"]
    assert (model / "fast_eval" / "chck_2M" / "results.json").is_file()
    # reading is scored on every checkpoint too, in the pipeline's per-checkpoint form (fractions)
    reading = [row["fast_metric"]["reading"] for row in summary["checkpoints"]]
    assert reading[0] == reading[2] and set(reading[0]) == {"spr", "rt"}
    assert all(math.isfinite(v) and -1.0 <= v <= 1.0 for v in reading[0].values())
    assert (model / "fast_eval" / "chck_1M" / "reading" / "predictions.json").is_file()
    assert (model / "fast_eval" / "summary.json").is_file()

    with pytest.raises(UserError) as err:
        collate(model)
    message = str(err.value)
    assert "zero_shot/predictions/blimp_2025.json missing" in message and "fast_eval/chck_3M missing" in message
    assert "fast_eval/chck_1M/blimp: 67 of 67 subsets wrong (superlative_quantifiers_2 has 2 items, expected 200," in message
    out = collate(model, partial=True)
    assert len(out["fast_eval_results"]["blimp"]) == 2 and "adjunct_island" in out["fast_eval_results"]["blimp"][0]
    assert main(["collate", str(tmp_path / "run"), "--out", str(tmp_path / "p.json")]) == 2
    assert "use --partial" in capsys.readouterr().err
    assert main(["collate", str(tmp_path / "run"), "--out", str(tmp_path / "p.json"), "--partial"]) == 0
    assert "fast_eval_results" in json.loads((tmp_path / "p.json").read_text())


def test_report_draws_learning_curves(tmp_path):
    from babyllama.report import build_report

    model = tmp_path / "run" / "student"
    model.mkdir(parents=True)
    (model / "metrics.json").write_text(json.dumps({"name": "student", "kind": "pretrain"}))
    rows = [{"name": f"chck_{n}M", "words": n * 1_000_000, "scores": {"blimp_fast": 0.5 + n / 100, "wug_adj": 0.1}}
            for n in (1, 2, 3)]
    (model / "fast_eval").mkdir()
    (model / "fast_eval" / "summary.json").write_text(json.dumps({"checkpoints": rows}))
    report = build_report([tmp_path / "run"], tmp_path / "report")
    assert (tmp_path / "report" / "learning_curves.png").is_file()
    assert "## Learning curves" in report.markdown
    from babyllama.report_curves import load_curves

    assert load_curves(model)["blimp_fast"] == [(1_000_000, 0.51), (2_000_000, 0.52), (3_000_000, 0.53)]


def test_cli_bad_input_is_one_line_before_any_work(tmp_path, capsys):
    model = model_dir(tmp_path)
    assert main(["evaluate", "fast", str(model), "--data", str(tmp_path / "empty")]) == 2
    assert "holds none of the fast-eval folders" in capsys.readouterr().err
    assert not (model / "fast_eval").exists()
    write_jsonl(tmp_path / "data" / "ewok_fast" / "x.jsonl", [{"Context1": "a", "Target1": "b", "Target2": "c"}])
    assert main(["evaluate", "fast", str(model), "--data", str(tmp_path / "data")]) == 2
    assert "x.jsonl:1" in capsys.readouterr().err and not (model / "fast_eval").exists()
    assert main(["evaluate", "zero-shot", str(model), "--task", f"comps={tmp_path / 'none'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
