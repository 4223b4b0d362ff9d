"""`babyllama study`: seed derivation, arms, the hierarchical bootstrap, and a tiny study end to end."""

import json

import numpy as np
import pytest
import yaml

from babyllama.cli import main
from babyllama.errors import UserError
from babyllama.report_margins import paired_bootstrap_ci
from babyllama.study import load_study, replicate_seed
from babyllama.study_report import hierarchical_bootstrap_ci, replicate_t_interval
from conftest import tiny_experiment


def _write(tmp_path, corpus_dir, study=None, **changes):
    data = tiny_experiment(corpus_dir, tmp_path / "study", max_steps=2)
    data.update(changes)
    if study is not None:
        data["study"] = study
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --------------------------------------------------------------------------------------------
# Seeds and arms


def test_replicate_r_adds_stride_times_r_to_every_models_seed(tmp_path, corpus_dir):
    path = _write(tmp_path, corpus_dir, study={"replicates": 3, "arms": {"T2": {"distill.temperature": 2.0}}})
    study = load_study(path)
    assert replicate_seed(7, 2) == 2007 and replicate_seed(7, 2, stride=10) == 27
    seeds = study.seeds()
    assert [s["teacher1"] for s in seeds] == [1, 1001, 2001]
    assert [s["teacher2"] for s in seeds] == [2, 1002, 2002]
    assert [s["student"] for s in seeds] == [3, 1003, 2003]
    assert [s["student_T2"] for s in seeds] == [s["student"] for s in seeds]  # an arm keeps the student's seed
    assert [cfg.run_dir for cfg in study.replicates] == [str(tmp_path / "study" / f"rep{r}") for r in range(3)]
    arm = study.replicates[1].models["student_T2"]
    assert arm.distill.temperature == 2.0 and arm.teachers == ["teacher1", "teacher2"]
    assert study.replicates[1].models["student"].distill.temperature == 1.0


def test_seeds_flag_and_arms_flag_override_the_section(tmp_path, corpus_dir):
    path = _write(tmp_path, corpus_dir, study={"replicates": 3, "seed_stride": 10,
                                               "arms": {"a9": {"distill": {"alpha": 0.9}}, "ref": {"distill.reduction": "reference"}}})
    study = load_study(path, seeds=2, arms=["a9"])
    assert len(study.replicates) == 2 and list(study.arms) == ["a9"]
    assert study.seeds()[1]["teacher1"] == 11
    assert study.replicates[0].models["student_a9"].distill.alpha == 0.9
    assert "student_ref" not in study.replicates[0].models
    assert "student_a9" not in load_study(path, arms=[]).replicates[0].models


@pytest.mark.parametrize("study, seeds, match", [
    (None, None, "give --seeds N or a study: section"),
    ({"replicates": 0}, None, r"study.replicates: got 0, expected an integer >= 1"),
    ({"replicates": 2, "sudent": "x"}, None, "study: unknown key 'sudent'"),
    ({"replicates": 2, "student": "baseline"}, None, "'baseline' is not a distillation model"),
    ({"replicates": 2, "student": "nobody"}, None, "'nobody' is not a model of the experiment"),
    ({"replicates": 2, "arms": {"bad name": {"distill.alpha": 0.9}}}, None, "arm name 'bad name'"),
    ({"replicates": 2, "arms": {"a": {}}}, None, "study.arms.a: expected a non-empty mapping"),
    ({"replicates": 2, "arms": {"a": {"distill.alpah": 0.9}}}, None, "unknown key 'alpah'"),
    ({"replicates": 2}, 0, "--seeds: got 0"),
])
def test_bad_study_settings_are_refused_before_anything_is_written(tmp_path, corpus_dir, study, seeds, match):
    path = _write(tmp_path, corpus_dir, study=study)
    with pytest.raises(UserError, match=match):
        load_study(path, seeds=seeds)
    assert not (tmp_path / "study").exists()


def test_unknown_arm_on_the_command_line_exits_2(tmp_path, corpus_dir, capsys):
    path = _write(tmp_path, corpus_dir, study={"replicates": 2, "arms": {"T2": {"distill.temperature": 2.0}}})
    assert main(["study", str(path), "--arms", "T3"]) == 2
    assert "--arms T3: no such arm" in capsys.readouterr().err


def test_replicate_out_of_range_is_refused(tmp_path, corpus_dir, capsys):
    path = _write(tmp_path, corpus_dir, study={"replicates": 2})
    assert main(["study", str(path), "--replicate", "2"]) == 2
    assert "--replicate 2: the study has replicates 0..1" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_report_only_refuses_a_folder_that_is_not_a_study(tmp_path, capsys):
    assert main(["study", str(tmp_path), "--report-only"]) == 2
    assert "no study.json" in capsys.readouterr().err
    (tmp_path / "study.json").write_text('{"replicates": "rep0"}')
    assert main(["study", str(tmp_path), "--report-only"]) == 2
    assert "expected 'student' and a list 'replicates'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The bootstrap


def _replicate(rng, n, p_student, p_reference, strata=4):
    a = (rng.random(n) < p_student).astype(np.int8)
    b = (rng.random(n) < p_reference).astype(np.int8)
    return a, b, np.arange(n) % strata


def test_hierarchical_interval_covers_a_known_effect_and_excludes_zero():
    rng = np.random.default_rng(1)
    reps = [_replicate(rng, 600, 0.8, 0.6) for _ in range(3)]
    low, high = hierarchical_bootstrap_ci(reps, n_resamples=4000)
    assert low < 0.2 < high
    assert low > 0.1  # a 0.2 effect on 1800 items is far from zero


def test_hierarchical_interval_includes_zero_without_an_effect():
    rng = np.random.default_rng(2)
    reps = [_replicate(rng, 600, 0.7, 0.7) for _ in range(3)]
    low, high = hierarchical_bootstrap_ci(reps, n_resamples=4000)
    assert low < 0.0 < high


def test_seed_variance_widens_the_interval_beyond_item_variance():
    """Replicates whose effects disagree (+0.15, 0, -0.15): pooling items alone would report a tight
    interval; the hierarchical one must be wider and keep zero inside."""
    rng = np.random.default_rng(3)
    reps = [_replicate(rng, 2000, 0.5 + e, 0.5, strata=1) for e in (0.15, 0.0, -0.15)]
    low, high = hierarchical_bootstrap_ci(reps, n_resamples=4000)
    pooled = paired_bootstrap_ci(np.concatenate([r[0] for r in reps]), np.concatenate([r[1] for r in reps]))
    assert high - low > 2.0 * (pooled[1] - pooled[0])
    assert low < 0.0 < high


def test_one_replicate_reduces_to_the_paired_item_bootstrap():
    rng = np.random.default_rng(4)
    a, b, strata = _replicate(rng, 800, 0.75, 0.65)
    low, high = hierarchical_bootstrap_ci([(a, b, strata)], n_resamples=20000)
    ref = paired_bootstrap_ci(a, b, strata, n_resamples=20000)
    assert low == pytest.approx(ref[0], abs=0.006) and high == pytest.approx(ref[1], abs=0.006)


def test_hierarchical_bootstrap_refuses_bad_arrays():
    with pytest.raises(ValueError, match="0/1"):
        hierarchical_bootstrap_ci([(np.array([0, 2]), np.array([0, 1]), np.array([0, 0]))])
    with pytest.raises(ValueError, match="one length"):
        hierarchical_bootstrap_ci([(np.array([0, 1]), np.array([0]), np.array([0, 0]))])


def test_t_interval_over_replicates():
    low, high = replicate_t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2.0 - 2.4841, 2.0 + 2.4841), abs=1e-3)  # t(0.975, 2) = 4.303
    assert replicate_t_interval([1.0]) is None


# --------------------------------------------------------------------------------------------
# End to end


def test_tiny_study_runs_resumes_and_reports(tmp_path, corpus_dir, capsys):
    study = {"replicates": 2, "arms": {"a9": {"distill.alpha": 0.9}}}
    path = _write(tmp_path, corpus_dir, study=study,
                  evaluation={"zero_shot": {"tasks": {"builtin_pairs": "builtin"}, "pairs_per_phenomenon": 4}})
    assert main(["study", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    root = tmp_path / "study"
    meta = json.loads((root / "study.json").read_text())
    assert [r["seeds"]["teacher1"] for r in meta["replicates"]] == [1, 1001]
    for r in range(2):
        for name in ("teacher1", "teacher2", "baseline", "student", "student_a9"):
            assert (root / f"rep{r}" / name / "stage.json").is_file()
        arm = json.loads((root / f"rep{r}/student_a9/metrics.json").read_text())
        assert arm["teachers"] == ["teacher1", "teacher2"]
    # each replicate's student learnt from that replicate's teachers, whose seeds differ
    assert (json.loads((root / "rep0/teacher1/metrics.json").read_text())["val_loss"]
            != json.loads((root / "rep1/teacher1/metrics.json").read_text())["val_loss"])
    report = json.loads((root / "report/report.json").read_text())
    margins = {(m["contender"], m["reference"], m["metric"]): m for m in report["margins"]}
    pairs = margins[("student", "best teacher", "builtin_pairs")]
    assert pairs["method"].startswith("hierarchical") and pairs["replicates"] == 2
    assert pairs["interval"][0] <= pairs["interval"][1]
    for r, adv in enumerate(pairs["per_replicate"]):  # against that replicate's own best teacher
        acc = {n: json.loads((root / f"rep{r}/{n}/metrics.json").read_text())["zero_shot"]["builtin_pairs"]
               for n in ("teacher1", "teacher2", "student")}
        assert adv == pytest.approx(acc["student"] - max(acc["teacher1"], acc["teacher2"]))
    assert margins[("student_a9", "student", "val_loss")]["method"].startswith("t over replicates")
    assert set(report["spread"]["val_loss"]) >= {"teacher1", "student", "student_a9", "best teacher (per replicate)"}
    assert len(report["spread"]["val_loss"]["student"]["values"]) == 2
    md = (root / "report/report.md").read_text()
    assert "hierarchical bootstrap" in md and "losses_teacher.png" in md
    assert (root / "report/losses_student_a9.png").stat().st_size > 1000
    assert "student_a9" in out
    assert main(["study", str(path)]) == 0  # a rerun resumes: every stage is skipped
    assert capsys.readouterr().out.count("finished earlier, skipped") == 10


def test_disk_check_counts_every_replicate_that_will_run(tmp_path, corpus_dir, monkeypatch):
    from collections import namedtuple

    from babyllama import preflight
    from babyllama.errors import UserErrors

    study = load_study(_write(tmp_path, corpus_dir, study={"replicates": 3}))
    one = preflight.DiskNeed()
    preflight.experiment_problems(study.replicates[0], disk=one)
    assert one.models == 4 and one.finished_bytes > 0 and one.peak_bytes > 0
    usage = namedtuple("Usage", "total used free")
    three = 3 * one.finished_bytes + one.peak_bytes  # finished models stay; one training peak at a time
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage(10 * three, 0, three))
    preflight.preflight_study(study)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage(10 * three, 0, three - 1))
    with pytest.raises(UserErrors, match=r"training 12 model\(s\)"):
        preflight.preflight_study(study)
    preflight.preflight_study(study, replicates=[0, 2])  # two replicates fit
