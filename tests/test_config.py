"""Config loading: strict keys and types, overrides, the shipped experiment files."""

import pytest

from babyllama.cli import shipped_config
from babyllama.config import apply_overrides, load_experiment, load_yaml, resolve_experiment
from babyllama.errors import UserError
from babyllama.model import count_parameters, llama_config


def _minimal(**extra):
    return {"models": {"a": {"model": {"preset": "tiny"}}}, **extra}


def test_defaults_merge_into_models_and_model_entries_win():
    cfg = resolve_experiment({"train": {"lr": 1e-3, "batch_size": 16},
                              "models": {"a": {}, "b": {"train": {"lr": 5e-4}}}})
    assert cfg.models["a"].train.lr == 1e-3 and cfg.models["b"].train.lr == 5e-4
    assert cfg.models["b"].train.batch_size == 16


def test_unknown_key_names_key_and_suggestion():
    with pytest.raises(UserError, match=r"models\.a\.train: unknown key 'wieght_decay'.*did you mean 'weight_decay'"):
        resolve_experiment({"models": {"a": {"train": {"wieght_decay": 1}}}})
    with pytest.raises(UserError, match=r"unknown key 'modles'.*'models'"):
        resolve_experiment({**_minimal(), "modles": {}})


def test_wrong_type_and_range_are_refused():
    with pytest.raises(UserError, match=r"train.batch_size: expected an integer, got 'big'"):
        resolve_experiment(_minimal(train={"batch_size": "big"}))
    with pytest.raises(UserError, match=r"lr: got -0.1, expected > 0"):
        resolve_experiment(_minimal(train={"lr": -0.1}))
    with pytest.raises(UserError, match=r"alpha: got 1.5"):
        resolve_experiment(_minimal(distill={"alpha": 1.5}))
    with pytest.raises(UserError, match=r"temperature: got 0"):
        resolve_experiment(_minimal(distill={"temperature": 0}))
    with pytest.raises(UserError, match=r"divisible by grad_accum"):
        resolve_experiment(_minimal(train={"batch_size": 10, "grad_accum": 4}))
    with pytest.raises(UserError, match=r"unknown preset 'tinny'.*did you mean 'tiny'"):
        resolve_experiment({"models": {"a": {"model": {"preset": "tinny"}}}})


def test_teachers_must_exist_and_not_cycle():
    with pytest.raises(UserError, match=r"'teacher3' is neither a model"):
        resolve_experiment({"models": {"s": {"kind": "distill", "teachers": ["teacher3"]}}})
    cfg = resolve_experiment({"models": {"s": {"kind": "distill", "teachers": ["t"]}, "t": {}}})
    assert cfg.stage_order() == ["t", "s"]


def test_dotted_overrides_parse_yaml_and_null_removes_a_model():
    data = apply_overrides({"train": {"lr": 1}}, ["train.lr=2e-3", "train.betas=[0.8, 0.9]", "models.x.kind=pretrain"])
    assert data["train"] == {"lr": 2e-3, "betas": [0.8, 0.9]} and data["models"]["x"]["kind"] == "pretrain"
    cfg = resolve_experiment(apply_overrides({"models": {"a": {}, "b": {}}}, ["models.b=null"]))
    assert list(cfg.models) == ["a"]
    with pytest.raises(UserError, match="expected KEY.SUB=VALUE"):
        apply_overrides({}, ["train.lr"])


def test_malformed_empty_and_missing_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  a: {train: [1, 2\n")
    with pytest.raises(UserError, match=r"bad.yaml: malformed YAML \(line"):
        load_yaml(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(UserError, match="empty"):
        load_yaml(empty)
    with pytest.raises(UserError, match="no such config file"):
        load_yaml(tmp_path / "nope.yaml")


def test_paper_config_builds_345m_models():
    cfg = load_experiment(shipped_config("babyllama2/strict_small.yaml"))
    assert set(cfg.models) >= {"teacher1", "teacher2", "student", "baseline"}
    student = cfg.models["student"]
    assert student.teachers == ["teacher1", "teacher2"] and student.distill.reduction == "reference"
    assert (student.train.lr, student.train.batch_size, student.train.weight_decay) == (7e-4, 128, 5.0)
    n = count_parameters(llama_config(student.model, cfg.tokenizer.vocab_size, 0, 1, 2))
    assert abs(n - 345e6) / 345e6 < 0.01
    assert cfg.models["teacher1"].train.seed != cfg.models["teacher2"].train.seed


def test_cpu_study_config_is_a_three_replicate_real_text_study():
    from babyllama.study import load_study

    study = load_study(shipped_config("cpu_study/study.yaml"))
    assert len(study.replicates) == 3 and study.student == "student"
    assert study.replicates[0].models["student_kl_reference"].distill.reduction == "reference"
    cfg = study.replicates[2]
    assert cfg.corpus.path.endswith("babylm_text_2023_partial/train_10M")
    assert cfg.models["student"].teachers == ["teacher1", "teacher2"]
    assert {m: cfg.models[m].train.seed for m in ("teacher1", "teacher2", "baseline")} == \
        {"teacher1": 2001, "teacher2": 2002, "baseline": 2003}
    assert set(cfg.evaluation.zero_shot.tasks) == {"blimp_fast", "blimp_supplement"}


def test_gpu_study_config_is_a_100m_bf16_study():
    from babyllama.study import load_study

    study = load_study(shipped_config("gpu_study/study.yaml"))
    cfg = study.replicates[0]
    student = cfg.models["student"]
    assert student.train.precision == "bf16" and student.teachers == ["teacher1", "teacher2"]
    n = count_parameters(llama_config(student.model, cfg.tokenizer.vocab_size, 0, 1, 2))
    assert abs(n - 100e6) / 100e6 < 0.01
    assert set(cfg.evaluation.zero_shot.tasks) == {"blimp_filtered", "blimp_supplement", "ewok"}


def test_demo_config_validates():
    cfg = load_experiment(shipped_config("demo/experiment.yaml"))
    assert cfg.corpus.path == "builtin" and cfg.models["student"].kind == "distill"
