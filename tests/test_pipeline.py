"""End to end: an experiment runs every stage, a re-run skips finished ones, the demo reports."""

import json

import pytest

from babyllama.cli import main
from babyllama.config import resolve_experiment
from babyllama.errors import UserError
from babyllama.pipeline import run_experiment
from conftest import tiny_experiment

DEMO_SMALL = ["--quiet", "--set", "corpus.builtin_words=20000", "--set", "tokenizer.vocab_size=400",
              "--set", "model.preset=tiny", "--set", "train.max_steps=8", "--set", "train.batch_size=8",
              "--set", "train.seq_length=64", "--set", "train.eval_every=4",
              "--set", "evaluation.zero_shot.pairs_per_phenomenon=10"]


def test_experiment_runs_all_stages_and_rerun_skips_them(tmp_path, corpus_dir, capsys):
    config = resolve_experiment(tiny_experiment(corpus_dir, tmp_path / "run"))
    results = run_experiment(config, progress=False)
    assert set(results) == {"teacher1", "teacher2", "baseline", "student"}
    for name, metrics in results.items():
        assert (tmp_path / "run" / name / "stage.json").is_file()
        assert metrics["val_loss"] > 0 and metrics["test_loss"] > 0 and metrics["val_bpb"] > 0
    assert results["student"]["kind"] == "distill" and results["student"]["teachers"] == ["teacher1", "teacher2"]
    assert results["teacher1"]["val_loss"] != results["teacher2"]["val_loss"]  # seeds differ
    stamps = {n: (tmp_path / "run" / n / "model.safetensors").stat().st_mtime_ns for n in results}
    capsys.readouterr()
    run_experiment(config, progress=False)
    assert "finished earlier, skipped" in capsys.readouterr().out
    assert stamps == {n: (tmp_path / "run" / n / "model.safetensors").stat().st_mtime_ns for n in results}
    changed = resolve_experiment(tiny_experiment(corpus_dir, tmp_path / "run", lr=1e-3))
    with pytest.raises(UserError, match="holds a finished stage with a different config; rerun with --overwrite"):
        run_experiment(changed, progress=False)


def test_demo_end_to_end_prints_the_comparison(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), *DEMO_SMALL,
                 "--set", "train.word_checkpoints=[1000]"]) == 0
    out = capsys.readouterr().out
    for name in ("teacher1", "teacher2", "baseline", "student"):
        assert name in out
        metrics = json.loads((tmp_path / "demo" / name / "metrics.json").read_text())
        assert 0.0 <= metrics["zero_shot"]["builtin_pairs"] <= 1.0
    assert (tmp_path / "demo/report/report.md").is_file()
    results = json.loads((tmp_path / "demo/student/zero_shot/results.json").read_text())
    assert len(results["tasks"]["builtin_pairs"]["subtasks"]) >= 6
    # the demo scores its word-count checkpoints too, and the report draws the learning curves
    summary = json.loads((tmp_path / "demo/student/fast_eval/summary.json").read_text())
    rows = summary["checkpoints"]
    assert [r["name"] for r in rows] == ["chck_1K", "final"]
    assert 1000 <= rows[0]["words"] < rows[1]["words"]
    assert all(0.0 <= r["scores"]["builtin_pairs"] <= 1.0 for r in rows)
    assert rows[-1]["scores"] == metrics["zero_shot"]  # the final model is read from zero_shot/, not scored again
    assert not (tmp_path / "demo/student/fast_eval/final").exists()
    assert (tmp_path / "demo/report/learning_curves.png").is_file()


def test_a_model_may_name_its_own_corpus_and_shares_the_tokenizer(tmp_path, corpus_dir):
    from conftest import write_corpus

    other = write_corpus(tmp_path / "other_corpus", lines_per_source=300, seed=9)
    experiment = tiny_experiment(corpus_dir, tmp_path / "run")
    experiment["models"] = {"baseline": {"train": {"seed": 3}},
                            "baseline_other": {"corpus": {"path": str(other)}, "train": {"seed": 3}}}
    results = run_experiment(resolve_experiment(experiment), progress=False)
    prepared = json.loads((tmp_path / "run/corpus-baseline_other/prepare.json").read_text())
    assert prepared["corpus"] == str(other)
    shared_tok = (tmp_path / "run/tokenizer/tokenizer.json").read_text()
    assert (tmp_path / "run/baseline_other/tokenizer.json").read_text() == shared_tok
    assert results["baseline_other"]["val_loss"] != results["baseline"]["val_loss"]


def test_experiment_builds_and_uses_an_offline_teacher_cache(tmp_path, corpus_dir):
    experiment = tiny_experiment(corpus_dir, tmp_path / "run")
    experiment["models"]["student"]["distill"] = {"teacher_cache": "teacher_cache", "cache_k": 8}
    results = run_experiment(resolve_experiment(experiment), progress=False)
    meta = json.loads((tmp_path / "run/teacher_cache/meta.json").read_text())
    assert meta["k"] == 8
    assert results["student"]["kind"] == "distill" and results["student"]["val_loss"] > 0
    log = [json.loads(line) for line in (tmp_path / "run/student/metrics.jsonl").read_text().splitlines()]
    assert all("kd" in r for r in log if r["event"] == "train")


def test_experiment_folds_glue_scores_into_metrics(tmp_path, corpus_dir):
    from conftest import shared_data

    glue_dir = shared_data() / "babylm_eval_2024" / "glue_filtered"
    if not glue_dir.is_dir():
        pytest.skip(f"{glue_dir} not available")
    experiment = tiny_experiment(corpus_dir, tmp_path / "run")
    experiment["models"] = {"baseline": {"train": {"seed": 3}}}
    experiment["evaluation"] = {"zero_shot": None,
                                "glue": {"data": str(glue_dir), "tasks": ["rte"], "max_train_examples": 16}}
    results = run_experiment(resolve_experiment(experiment), progress=False)
    glue = json.loads((tmp_path / "run/baseline/glue/glue_results.json").read_text())
    assert results["baseline"]["glue"]["rte"] == glue["tasks"]["rte"]["value"]
    assert 0.0 <= glue["tasks"]["rte"]["value"] <= 1.0 and "boolq" in results["baseline"]["glue"]["missing"]
