"""The word budget: estimates before training, measured words after, the track's limits enforced."""

import json

import pytest
import yaml

from babyllama.cli import main
from babyllama.config import resolve_experiment
from babyllama.errors import UserError
from babyllama.word_budget import Budget, ModelWords, experiment_budget, report_lines
from conftest import tiny_experiment, write_corpus


def _builtin(tmp_path, **extra) -> dict:
    return {"run_dir": str(tmp_path / "run"), "corpus": {"path": "builtin", "builtin_words": 200_000},
            "tokenizer": {"vocab_size": 320}, "model": {"preset": "tiny"},
            "train": {"epochs": 4, "seq_length": 32, "batch_size": 8},
            "models": {"t1": {}, "t2": {}, "student": {"kind": "distill", "teachers": ["t1", "t2"]}},
            "evaluation": {"zero_shot": None}, **extra}


def test_estimate_counts_every_model_teachers_included(tmp_path):
    budget = experiment_budget(resolve_experiment(_builtin(tmp_path, track="strict-small")))
    assert [m.name for m in budget.models] == ["t1", "t2", "student"]
    assert all(m.words_seen == 190_000 * 4 and not m.measured for m in budget.models)  # 95% of 200K x 4 epochs
    assert budget.total_seen == 3 * 760_000 and budget.unique_words == 200_000 and budget.problems() == []
    assert budget.lines()[-1] == "  total: 2,280,000 words seen, 200,000 unique training words: within budget"


def test_max_steps_caps_the_estimate_at_its_tokens(tmp_path):
    data = _builtin(tmp_path)
    data["train"]["max_steps"] = 10
    budget = experiment_budget(resolve_experiment(data))
    assert budget.models[0].words_seen == 10 * 8 * 32 and "at most max_steps 10" in budget.models[0].how


def test_track_limits():
    over = Budget("strict-small", 12_000_000, [ModelWords("a", 60_000_000, True, "measured"),
                                              ModelWords("b", 50_000_000, True, "measured")])
    assert over.problems() == ["12,000,000 unique training words exceed the strict-small track's 10,000,000",
                               "110,000,000 words seen by all models exceed the strict-small track's 100,000,000"]
    assert Budget("strict", 12_000_000, over.models).problems() == []
    assert Budget("none", 10**12, over.models).problems() == []
    with pytest.raises(UserError, match=r"experiment.track: got 'small', expected one of strict-small, strict, none"):
        resolve_experiment({"track": "small", "models": {"a": {}}})


def test_dry_run_prints_the_budget_and_strict_budget_refuses(tmp_path, capsys):
    data = _builtin(tmp_path, track="strict-small")
    data["train"]["epochs"] = 200  # 3 x 190K x 200 = 114M words seen
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "  t1: 38,000,000 words seen (estimate: 190,000 training words (built-in corpus size) x 200 epochs)" \
        in captured.out
    assert captured.err.strip() == ("warning: word budget: 114,000,000 words seen by all models exceed the "
                                    "strict-small track's 100,000,000")
    assert main(["run", str(path), "--strict-budget"]) == 2
    assert "(--strict-budget; nothing was trained)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_records_measured_words_and_reports_them(tmp_path, capsys):
    data = tiny_experiment(write_corpus(tmp_path / "corpus"), tmp_path / "run", max_steps=2, eval_every=2)
    data["models"] = {"a": {"train": {"seed": 1}}}
    data["track"] = "strict-small"
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run/a/metrics.json").read_text())
    record = json.loads((tmp_path / "run/word_budget.json").read_text())
    prepared = json.loads((tmp_path / "run/corpus/prepare.json").read_text())["splits"]
    unique = sum(s["words"] for split in ("train", "valid") for s in prepared[split].values())
    assert 0 < metrics["words_seen"] <= 2 * 8 * 32
    assert record["models"] == [{"name": "a", "words_seen": metrics["words_seen"], "measured": True, "how": "measured"}]
    assert record["words_seen"] == metrics["words_seen"] and record["unique_words"] == unique
    line = (f"Word budget (track strict-small): {metrics['words_seen']:,} of 100,000,000 words seen by 1 models "
            f"(teachers included), {unique:,} of 10,000,000 unique training words: within budget.")
    assert report_lines([tmp_path / "run"]) == [line]
    assert line in (tmp_path / "run/report/report.md").read_text()
