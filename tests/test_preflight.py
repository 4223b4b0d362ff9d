"""The whole-run check (babyllama.preflight): disk estimate, all problems at once, single checks."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from babyllama import preflight
from babyllama.cli import main, shipped_config
from babyllama.config import load_experiment, resolve_experiment
from babyllama.errors import UserError, UserErrors
from babyllama.model import count_parameters, llama_config
from conftest import shared_data

Usage = namedtuple("Usage", "total used free")


def _experiment(corpus: Path, run_dir: Path, **extra) -> dict:
    return {"run_dir": str(run_dir), "corpus": {"path": str(corpus)}, "tokenizer": {"vocab_size": 320},
            "model": {"preset": "tiny"}, "train": {"seq_length": 32, "keep_checkpoints": 2},
            "models": {"small": {}, "large": {"model": {"preset": "demo"}, "train": {"keep_checkpoints": 1}}},
            "evaluation": {"zero_shot": None}, **extra}


def _params(preset: str) -> int:
    from babyllama.config import ModelConfig

    return count_parameters(llama_config(ModelConfig(preset=preset), 320, 0, 1, 2))


def test_checkpoint_estimate_counts_weights_and_adam_moments_per_kept_checkpoint():
    # keep 2: three checkpoints at the moment a new one is complete, 12 bytes each, plus best weights
    assert preflight.checkpoint_disk_bytes(1000, 2) == 1000 * (12 * 3 + 4)
    assert preflight.checkpoint_disk_bytes(1000, 1) == 1000 * (12 * 2 + 4)


def test_disk_estimate_is_all_finished_models_plus_the_largest_training_peak(tmp_path, corpus_dir, monkeypatch):
    config = resolve_experiment(_experiment(corpus_dir, tmp_path / "run"))
    small, large = _params("tiny"), _params("demo")
    needed = 4 * (small + large) + max(preflight.checkpoint_disk_bytes(small, 2),
                                       preflight.checkpoint_disk_bytes(large, 1))
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: Usage(10 * needed, 0, needed))
    assert preflight.experiment_problems(config) == []
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: Usage(10 * needed, 0, needed - 1))
    (line,) = preflight.experiment_problems(config)
    assert "free on disk, training 2 model(s)" in line and "keep_checkpoints" in line
    # a finished model needs nothing more: only the other one is counted
    (tmp_path / "run" / "large").mkdir(parents=True)
    (tmp_path / "run" / "large" / "stage.json").write_text("{}")
    monkeypatch.setattr(preflight.shutil, "disk_usage",
                        lambda path: Usage(0, 0, 4 * small + preflight.checkpoint_disk_bytes(small, 2)))
    assert preflight.experiment_problems(config) == []


def test_every_problem_is_reported_at_once_one_line_each(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(f"run_dir: /proc/babyllama-run\ncorpus: {{path: {tmp_path}/no_corpus}}\nmodel: {{preset: tiny}}\n"
                    f"models: {{a: {{}}, s: {{kind: distill, teachers: [a, {tmp_path}]}}}}\n"
                    f"evaluation:\n  zero_shot: {{tasks: {{blimpp: builtin, ewok: {tmp_path}/no_ewok}}}}\n"
                    f"  glue: {{data: {tmp_path}/no_glue}}\n")
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error: ") for line in err), err
    expected = ["/proc/babyllama-run: cannot write there", "no_corpus: corpus folder not found",
                f"{tmp_path}: not a model directory (no config.json)", "unknown zero-shot task 'blimpp'",
                "no_ewok: data folder for task 'ewok' does not exist", "no_glue: GLUE data folder not found"]
    assert len(err) == len(expected)
    for line, words in zip(err, expected):
        assert words in line
    with pytest.raises(UserErrors) as info:
        preflight.preflight_experiment(load_experiment(path))
    assert len(info.value.problems) == len(expected) and str(info.value).count("\n") == len(expected) - 1


def test_paper_config_dry_run_names_the_missing_evaluation_folder(tmp_path, corpus_dir, capsys):
    blimp = shared_data() / "babylm_eval_2024" / "blimp_filtered"
    if not blimp.is_dir():
        pytest.skip("shared BLiMP data not found")
    missing = tmp_path / "evaluation_data" / "ewok_filtered"
    argv = ["run", str(shipped_config("babyllama2/strict_small.yaml")), "--dry-run",
            "--set", f"run_dir={tmp_path / 'run'}", "--set", f"corpus.path={corpus_dir}",
            "--set", "models.baseline_100m=null", "--set", "evaluation.glue=null",
            "--set", f"evaluation.zero_shot.tasks.blimp_filtered={blimp}",
            "--set", f"evaluation.zero_shot.tasks.blimp_supplement={blimp.parent / 'supplement_filtered'}",
            "--set", f"evaluation.zero_shot.tasks.ewok={missing}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: evaluation.zero_shot.tasks.ewok: {missing}: data folder for task 'ewok' does not exist"]
    assert not (tmp_path / "run").exists()


def test_zero_shot_task_check_reads_first_lines_and_suggests_names(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "agr.jsonl").write_text('{"sentence_good": "a b", "sentence_bad": "b a"}\n' * 3)
    preflight.check_zero_shot_task("blimp", folder)
    preflight.check_zero_shot_task("builtin_pairs", "builtin")
    with pytest.raises(UserError, match=r"unknown zero-shot task 'ewk' \(did you mean 'ewok'\?\)"):
        preflight.check_zero_shot_task("ewk", folder)
    with pytest.raises(UserError, match=r"agr.jsonl:1: missing key 'Context1'"):
        preflight.check_zero_shot_task("ewok", folder)
    (folder / "agr.jsonl").write_text('{"sentence_good": "a b", "sentence_bad": ["b a"]}\n')
    with pytest.raises(UserError, match=r"agr.jsonl:1: key 'sentence_bad' must be a string"):
        preflight.check_zero_shot_task("blimp", folder)


def test_shared_evaluation_data_passes(corpus_dir, tmp_path):
    data = shared_data() / "babylm_eval_2024"
    if not data.is_dir():
        pytest.skip("shared evaluation data not found")
    config = resolve_experiment(_experiment(corpus_dir, tmp_path / "run", evaluation={
        "zero_shot": {"tasks": {"blimp_filtered": str(data / "blimp_filtered"), "ewok": str(data / "ewok_filtered"),
                                "blimp_supplement": str(data / "supplement_filtered")}},
        "glue": {"data": str(data / "glue_filtered")}}))
    assert preflight.experiment_problems(config) == []


def test_writable_probe_leaves_nothing_behind(tmp_path):
    assert preflight.check_writable(tmp_path / "a" / "b") == tmp_path
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        preflight.check_writable(tmp_path / "file" / "run")


def test_set_may_add_a_model_only_with_its_kind(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: {preset: tiny}\nmodels: {teacher: {}, student: {kind: distill, teachers: [teacher]}}\n")
    with pytest.raises(UserError, match=r"no model 'studnet' \(did you mean 'student'\?\).*models.studnet.kind"):
        load_experiment(path, ["models.studnet.train.lr=1e-3"])
    with pytest.raises(UserError, match=r"no model 'gone'"):
        load_experiment(path, ["models.gone=null"])
    config = load_experiment(path, ["models.extra.kind=pretrain", "models.extra.train.seed=4",
                                    "models.student.train.lr=1e-3", "models.teacher=null",
                                    "models.student.teachers=[extra]"])
    assert sorted(config.models) == ["extra", "student"]
    assert config.models["extra"].train.seed == 4 and config.models["student"].train.lr == 1e-3
    config = load_experiment(path, ["models.other={kind: pretrain, train: {seed: 9}}"])
    assert config.models["other"].train.seed == 9


def test_teacher_vocabulary_and_tokenizer_are_checked(tmp_path, cli_workspace):
    from babyllama.teachers import check_teacher
    from babyllama.tokenizer import load_tokenizer

    teacher = tmp_path / "teacher"
    shutil.copytree(cli_workspace / "teacher", teacher)
    tok = load_tokenizer(cli_workspace / "tok")
    check_teacher(teacher, tok, len(tok))
    check_teacher(teacher, None, len(tok))
    with pytest.raises(UserError, match="vocabulary size 320 differs from the student's 300"):
        check_teacher(teacher, None, 300)
    other = load_tokenizer(cli_workspace / "tok300")
    with pytest.raises(UserError, match="vocabulary size 320 differs"):
        check_teacher(teacher, other, len(other))
