"""The 2025 AoA task: surprisal by hand on a fixed-logit model, sigmoid fits that recover known
curves, the curve-fitness score, checkpoints end to end, the staged contexts, bad input."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from babyllama.cli import main
from babyllama.errors import UserError
from babyllama.evaluation import aoa
from babyllama.word_checkpoints import WORD_CHECKPOINTS_DIR, checkpoint_name

from conftest import shared_data
from test_reading import ID, BigramLM, bigram_probs, bpe_tokenizer, tiny_llama, word_tokenizer

COUNTS = [m * 1_000_000 for m in (*range(1, 11), *range(20, 101, 10))]


def test_surprisal_by_hand_on_a_fixed_logit_model():
    probs = bigram_probs()
    model = BigramLM(probs)
    for bos in (False, True):
        tok = word_tokenizer(bos=bos)
        start = (ID["<s>"],) if bos else ()
        # " a dog " is stripped and joined with one space: "a dog the cat"; both word tokens are scored.
        assert aoa.context_queries(tok, " a dog ", "the cat") == [
            (start + (ID["a"], ID["dog"]), ID["the"]), (start + (ID["a"], ID["dog"], ID["the"]), ID["cat"])]
        got = aoa.checkpoint_surprisals(model, tok, {"the cat": [" a dog "], "sat": ["a dog", "the"]})
        assert got == pytest.approx([math.log(8), -math.log(probs[ID["dog"], ID["sat"]]),
                                     -math.log(probs[ID["the"], ID["sat"]])], abs=1e-6)
    # Without a BOS the first token is never predicted: a word with an empty context scores 0.
    assert aoa.context_queries(word_tokenizer(), "", "dog") == []


def curve(x, a, b, c, d):
    return a / (1 + np.exp(-b * (x - c))) + d


def test_model_aoa_recovers_a_known_sigmoid():
    steps = np.repeat(np.array(COUNTS, dtype=np.float64), 3)  # 3 contexts per checkpoint
    x = np.log10(steps + 1)
    a, b, c, d = 10.0, 4.0, 6.6, -25.0  # -surprisal rises from -25 to -15 around 4M words
    surprisal = -curve(x, a, b, c, d)
    chance = math.log2(300_000)
    threshold = chance - 0.5 * (chance - surprisal.min())  # bits against nats, as the pipeline does
    want = c - math.log(a / (-threshold - d) - 1) / b
    got = aoa.model_aoa(steps, surprisal)
    assert got == pytest.approx(want, abs=1e-4)
    assert 6.0 < got < 8.0
    with_nan = surprisal.copy()
    with_nan[::5] = np.nan
    assert aoa.model_aoa(steps, with_nan) == pytest.approx(want, abs=1e-3)
    # A word learnt before the first checkpoint: the crossing lies outside the observed words.
    assert aoa.model_aoa(steps, -curve(x, a, b, 5.0, d)) is None
    assert aoa.model_aoa(steps[:2], surprisal[:2]) is None
    assert aoa.model_aoa(steps, np.full(len(steps), 30.0)) is None  # flat: no crossing


def test_child_aoa_recovers_a_known_sigmoid():
    ages = np.arange(16, 31)
    assert aoa.child_aoa(ages, curve(ages, 1.0, 0.5, 22.0, 0.0)) == pytest.approx(22.0, abs=1e-3)
    skew = curve(ages, 0.9, 0.6, 24.0, 0.05)
    want = 24.0 - math.log(0.9 / (0.5 - 0.05) - 1) / 0.6
    assert aoa.child_aoa(ages, skew) == pytest.approx(want, abs=1e-3)
    assert aoa.child_aoa(ages, np.full(15, 0.9)) is None  # known by every age: no AoA inside the range
    sparse = np.full(15, np.nan)
    sparse[:2] = [0.1, 0.6]
    assert aoa.child_aoa(ages, sparse) is None


def entries_for(midpoints: dict[str, float]) -> list[dict]:
    out = []
    for word, c in midpoints.items():
        for n in COUNTS:
            s = float(-curve(math.log10(n + 1), 10.0, 4.0, c, -25.0))
            out.append({"step": checkpoint_name(n), "word_count": n, "target_word": word, "context_id": 0,
                        "context": "", "surprisal": s})
    return out


def test_curve_fitness_score():
    midpoints = {"ball": 6.3, "dog": 6.6, "milk": 6.9, "tree": 7.2, "zebra": 7.5, "early": 5.0}
    entries = entries_for(midpoints)
    alone = aoa.summarise(entries, None)
    assert alone["curve_fitness"] is None and "not bundled" in alone["message"]
    assert alone["model_aoa"]["early"] is None and alone["words_with_model_aoa"] == 5
    human = {"ball": 17.0, "dog": 19.0, "milk": 20.0, "tree": 24.0, "zebra": 29.0, "early": 16.5, "cat": 18.0}
    scored = aoa.summarise(entries, human)
    m = [alone["model_aoa"][w] for w in scored["scored_words"]]
    assert scored["n_words"] == 5 and scored["scored_words"] == ["ball", "dog", "milk", "tree", "zebra"]
    assert scored["curve_fitness"] == pytest.approx(np.corrcoef(m, [human[w] for w in scored["scored_words"]])[0, 1])
    assert scored["spearman"] == pytest.approx(1.0)
    few = aoa.summarise(entries_for({"ball": 6.3, "dog": 6.6}), human)
    assert few["curve_fitness"] == 0.0 and few["n_words"] == 2


def write_human(path: Path, rows: dict[str, list[float]]) -> Path:
    lines = ["word," + ",".join(str(a) for a in range(16, 31))]
    lines += [w + "," + ",".join("" if math.isnan(v) else f"{v:.4f}" for v in vals) for w, vals in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_human_table(tmp_path):
    ages = np.arange(16, 31)
    rows = {"dog": list(curve(ages, 1.0, 0.5, 20.0, 0.0)), "ball": list(curve(ages, 1.0, 0.5, 26.0, 0.0)),
            "sky": [np.nan] * 13 + [0.2, 0.4]}
    human = aoa.load_human_aoa(write_human(tmp_path / "cdi_human.csv", rows))
    assert human["dog"] == pytest.approx(20.0, abs=1e-3) and human["ball"] == pytest.approx(26.0, abs=1e-3)
    assert math.isnan(human["sky"])
    (tmp_path / "bad.csv").write_text("word,16,17\ndog,0.1,lots\n")
    with pytest.raises(UserError, match="data row 1, column 17: expected a proportion, got 'lots'"):
        aoa.load_human_aoa(tmp_path / "bad.csv")
    (tmp_path / "nomonths.csv").write_text("word,age\ndog,3\n")
    with pytest.raises(UserError, match="month columns"):
        aoa.load_human_aoa(tmp_path / "nomonths.csv")


def write_cdi(path: Path, words: dict[str, list[str]]) -> Path:
    path.write_text(json.dumps({w: [{"context": c, "word_in_context_stats": {"count": 1}} for c in cs]
                                for w, cs in words.items()}))
    return path


@pytest.fixture
def model_with_checkpoints(tmp_path) -> Path:
    tok = bpe_tokenizer()
    model_dir = tmp_path / "run" / "student"
    for i, n in enumerate((1_000_000, 2_000_000, 10_000_000)):
        folder = model_dir / WORD_CHECKPOINTS_DIR / checkpoint_name(n)
        tiny_llama(len(tok), seed=i).save_pretrained(folder)
        tok.save_pretrained(folder)
    return model_dir


def test_checkpoints_end_to_end(tmp_path, model_with_checkpoints, capsys):
    cdi = write_cdi(tmp_path / "cdi_childes.json", {"dog": ["the big", "who is a"], "a": ["it is"], "cats": ["the small"],
                                                    "ball": []})
    human = write_human(tmp_path / "cdi_human.csv", {"dog": list(curve(np.arange(16, 31), 1.0, 0.5, 20.0, 0.0))})
    assert main(["evaluate", "aoa", str(tmp_path / "run"), "--data", str(tmp_path), "--human-aoa", str(human),
                 "--quiet"]) == 0
    assert "AoA curve fitness (Pearson r): 0.000 over" in capsys.readouterr().out
    out = model_with_checkpoints / "aoa"
    surprisal = json.loads((out / "surprisal.json").read_text())
    results = json.loads((out / "results.json").read_text())
    rows = surprisal["results"]
    assert len(rows) == 3 * 3  # 3 checkpoints x 3 contexts ("a" has one character, "ball" none)
    assert [r["step"] for r in rows[::3]] == ["chck_1M", "chck_2M", "chck_10M"]
    assert [(r["target_word"], r["context_id"]) for r in rows[:3]] == [("dog", 0), ("dog", 1), ("cats", 0)]
    assert all(r["surprisal"] is not None and math.isfinite(r["surprisal"]) and r["surprisal"] > 0 for r in rows)
    assert rows[0]["surprisal"] != rows[3]["surprisal"]  # different checkpoints, different models
    assert results["words"] == 3 and results["contexts_per_checkpoint"] == 3
    assert results["checkpoints"] == ["chck_1M", "chck_2M", "chck_10M"] and "model_aoa" in results["settings"]
    # --min-context drops words with fewer contexts; without a human table: a message, no score.
    r = aoa.evaluate_aoa(model_with_checkpoints, cdi, out_dir=tmp_path / "alone", min_context=2, progress=False)
    assert r["words"] == 1 and r["curve_fitness"] is None and "--human-aoa" in r["message"]


def test_staged_contexts_with_a_tiny_model():
    folder = shared_data() / "babylm_eval_2025" / "aoa"
    if not (folder / "cdi_childes.json.gz").is_file():
        pytest.skip("staged 2025 AoA data not found")
    words = aoa.load_contexts(aoa.find_cdi_file(folder))
    assert len(words) == 504 and sum(len(c) for c in words.values()) == 8005  # the pipeline's AOA_SIZE
    assert len(aoa.load_contexts(aoa.find_cdi_file(folder), min_context=20)) < 504
    tok = bpe_tokenizer()
    subset = dict(list(words.items())[:12])
    values = aoa.checkpoint_surprisals(tiny_llama(len(tok)), tok, subset, batch_size=16)
    assert len(values) == sum(len(c) for c in subset.values()) > 100
    assert all(math.isfinite(v) and v > 0 for v in values)


def test_bad_input(tmp_path, model_with_checkpoints, capsys):
    with pytest.raises(UserError, match="no such AoA data"):
        aoa.find_cdi_file(tmp_path / "missing")
    (tmp_path / "cdi_childes.json.gz").write_bytes(gzip.compress(b"{not json"))
    with pytest.raises(UserError, match="not a readable JSON"):
        aoa.load_contexts(aoa.find_cdi_file(tmp_path))
    (tmp_path / "list.json").write_text(json.dumps({"dog": [{"text": "x"}]}))
    with pytest.raises(UserError, match="word 'dog': expected a list of objects with a string 'context'"):
        aoa.load_contexts(tmp_path / "list.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, message in [
        ([str(empty), "--data", str(tmp_path)], "no word-count checkpoints"),
        ([str(model_with_checkpoints), "--data", str(tmp_path / "missing")], "no such AoA data"),
        ([str(model_with_checkpoints), "--data", str(tmp_path), "--human-aoa", str(tmp_path / "none.csv")],
         "no such human AoA table"),
        ([str(model_with_checkpoints), "--data", str(tmp_path)], "not a readable JSON"),
    ]:
        assert main(["evaluate", "aoa", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (model_with_checkpoints / "aoa").exists()
