"""The comparison report, built from hand-written run folders (no trainer, no models).

Two tiny finished experiments: ``exp_a`` (two teachers, a baseline and a student, with zero-shot
results holding per-item correctness and GLUE results for some models) and ``exp_b`` (same model
names, no evaluation results at all), plus a sweep folder.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from babyllama.errors import UserError
from babyllama.report import add_parser, build_report
from babyllama.report_margins import paired_bootstrap_ci
from babyllama.report_table import MISSING

PARADIGMS = {"adjunct_island": "syntax", "anaphor_number": "morphology", "only_npi_scope": "semantics"}
N_ITEMS = 400


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _log(path: Path, distill: bool, offset: float) -> None:
    lines = []
    for step in range(1, 9):
        tokens = step * 4096
        loss = 6.0 - 0.4 * step + offset
        rec = {"event": "train", "step": step, "tokens": tokens, "loss": loss, "lr": 1e-3, "time_s": step}
        if distill:
            rec.update(ce=loss + 0.2, kd=loss - 0.2)
        lines.append(rec)
        if step % 4 == 0:
            lines.append({"event": "eval", "step": step, "tokens": tokens, "val_loss": loss + 0.1,
                          "val_bpb": (loss + 0.1) / 2.5, "best": True, "time_s": step})
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")


def _correct(accuracy: float, seed: int) -> list[int]:
    """``N_ITEMS`` 0/1 values with exactly ``accuracy * N_ITEMS`` ones, shuffled by ``seed``."""
    hits = np.zeros(N_ITEMS, dtype=int)
    hits[: int(round(accuracy * N_ITEMS))] = 1
    return np.random.default_rng(seed).permutation(hits).tolist()


def _zero_shot(folder: Path, accuracies: dict[str, float], seed: int, with_items: bool = True,
               groups: tuple[str, ...] = ("blimp", "blimp_supplement", "ewok")) -> None:
    subtasks = {}
    for i, (name, acc) in enumerate(accuracies.items()):
        entry = {"accuracy": acc, "n": N_ITEMS, "field": PARADIGMS[name]}
        if with_items:
            entry["correct"] = _correct(acc, seed + i)
        subtasks[f"blimp/{name}"] = entry
    blimp = float(np.mean(list(accuracies.values())))
    values = {"blimp": blimp, "blimp_supplement": blimp - 0.05, "ewok": 0.5 + blimp / 10}
    _write(folder / "zero_shot" / "results.json",
           {"model": str(folder), "settings": {}, "groups": {g: values[g] for g in groups},
            "subtasks": subtasks,
            "fields": {f"blimp/{PARADIGMS[n]}": a for n, a in accuracies.items()}})


def _model(folder: Path, name: str, kind: str, teachers: list[str], val: float, test: float | None,
           params: int = 1_843_200, glue: dict | None = None) -> None:
    _write(folder / "metrics.json", {
        "name": name, "kind": kind, "teachers": teachers, "parameters": params, "tokens_seen": 32768,
        "steps": 8, "best_step": 8, "val_loss": val, "val_bpb": val / 2.5, "test_loss": test,
        "test_bpb": None if test is None else test / 2.5, "wall_time_s": 12.5 + val, "tokens_per_s": 2600.0})
    _log(folder / "metrics.jsonl", kind == "distill", val - 3.0)
    if glue is not None:
        _write(folder / "glue" / "glue_results.json", glue)


def _glue(cola: float, rte: float) -> dict:
    return {"tasks": {"cola": {"metric": "mcc", "value": cola, "epochs_run": 3, "best_epoch": 2, "seconds": 4.0},
                      "rte": {"metric": "accuracy", "value": rte, "epochs_run": 3, "best_epoch": 1, "seconds": 2.0}},
            "glue_average": (cola + rte) / 2, "missing": {"boolq": "no training file"}}


@pytest.fixture()
def runs(tmp_path) -> dict[str, Path]:
    a = tmp_path / "exp_a"
    (a / "experiment.yaml").parent.mkdir(parents=True)
    (a / "experiment.yaml").write_text("name: a\n")
    _model(a / "teacher1", "teacher1", "pretrain", [], 3.20, 3.30, glue=_glue(0.10, 0.52))
    _model(a / "teacher2", "teacher2", "pretrain", [], 3.25, 3.35, glue=_glue(0.12, 0.50))
    _model(a / "baseline", "baseline", "pretrain", [], 3.40, 3.50, glue=_glue(0.05, 0.49))
    _model(a / "student", "student", "distill", ["teacher1", "teacher2"], 3.10, 3.22, glue=_glue(0.15, 0.55))
    # Student far above the baseline, close to teacher1 (the best teacher) on the same items.
    student = {"adjunct_island": 0.90, "anaphor_number": 0.80, "only_npi_scope": 0.70}
    _zero_shot(a / "teacher1", {"adjunct_island": 0.89, "anaphor_number": 0.80, "only_npi_scope": 0.70}, seed=0)
    _zero_shot(a / "teacher2", {"adjunct_island": 0.85, "anaphor_number": 0.75, "only_npi_scope": 0.65}, seed=10)
    _zero_shot(a / "baseline", {"adjunct_island": 0.60, "anaphor_number": 0.55, "only_npi_scope": 0.50}, seed=20,
               groups=("blimp", "blimp_supplement"))
    _zero_shot(a / "student", student, seed=30)
    b = tmp_path / "exp_b"
    _model(b / "teacher1", "teacher1", "pretrain", [], 3.60, None, params=900_000)
    _model(b / "student", "student", "distill", ["teacher1"], 3.55, 3.70, params=900_000)
    sweep = tmp_path / "sweep1"
    _write(sweep / "trials.json", [
        {"number": 0, "state": "COMPLETE", "value": 3.5, "params": {"lr": 1e-3}, "duration_s": 30.0},
        {"number": 1, "state": "PRUNED", "value": 3.9, "params": {"lr": 3e-2}, "duration_s": 5.0},
        {"number": 2, "state": "COMPLETE", "value": 3.2, "params": {"lr": 2e-3}, "duration_s": 31.0},
        {"number": 3, "state": "COMPLETE", "value": 3.4, "params": {"lr": 5e-4}, "duration_s": 29.0}])
    return {"a": a, "b": b, "sweep": sweep, "tmp": tmp_path}


def _md_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The Models table of report.md as {model label: {column title: cell}}."""
    section = markdown.split("## Models", 1)[1].split("##", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pixels = mpimg.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300, (path, pixels.shape)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05, f"{path} is (nearly) blank"
    assert len(np.unique((rgb * 255).astype(int), axis=0)) > 20, f"{path} has too few colours to hold a plot"


def test_report_has_every_section_and_valid_plots(runs):
    out = runs["tmp"] / "out"
    result = build_report([runs["a"], runs["b"], runs["sweep"]], out)
    md = (out / "report.md").read_text()
    assert md == result.markdown
    for section in ("## Models", "## Student margins", "## Training curves", "## Phenomena", "## GLUE",
                    "## Sweeps", "## Missing results"):
        assert section in md, section
    names = {p.name for p in result.plots}
    assert {"loss.png", "distill_loss.png", "glue.png", "sweep_sweep1.png", "fields_exp_a_student.png",
            "paradigms_exp_a_student.png", "scatter_exp_a_student.png"} <= names
    for path in result.plots:
        assert path.parent == out and path.is_file()
        assert f"({path.name})" in md, f"{path.name} not linked from report.md"
        _assert_png(path)
    # Sweep table: best (lowest) value bold.
    assert "**3.2000**" in md
    # Terminal table has one line per model and the same missing markers.
    assert len([line for line in result.table.splitlines() if line.startswith("exp_")]) == 6


def test_table_numbers_equal_the_run_files(runs):
    out = runs["tmp"] / "out"
    result = build_report([runs["a"], runs["b"]], out)
    rows = _md_rows(result.markdown)
    assert set(rows) == {"exp_a/teacher1", "exp_a/teacher2", "exp_a/baseline", "exp_a/student",
                         "exp_b/teacher1", "exp_b/student"}
    report_json = json.loads((out / "report.json").read_text())
    values = {m["label"]: m["values"] for m in report_json["table"]["models"]}
    for label, row in rows.items():
        exp, name = label.split("/")
        metrics = json.loads((runs[exp[-1]] / name / "metrics.json").read_text())
        assert row["Val loss"] == f"{metrics['val_loss']:.3f}"
        assert row["Val bpb"] == f"{metrics['val_bpb']:.3f}"
        assert row["Test loss"] == (MISSING if metrics["test_loss"] is None else f"{metrics['test_loss']:.3f}")
        assert row["Params"] == {1_843_200: "1.84M", 900_000: "900k"}[metrics["parameters"]]
        assert values[label]["val_loss"] == metrics["val_loss"]
        assert values[label]["test_loss"] == metrics["test_loss"]
        zs_path = runs[exp[-1]] / name / "zero_shot" / "results.json"
        if zs_path.is_file():
            groups = json.loads(zs_path.read_text())["groups"]
            assert row["BLiMP"] == f"{groups['blimp']:.3f}"
            assert values[label]["zero_shot.blimp"] == groups["blimp"]
            assert row["EWoK"] == (f"{groups['ewok']:.3f}" if "ewok" in groups else MISSING)
        glue_path = runs[exp[-1]] / name / "glue" / "glue_results.json"
        if glue_path.is_file():
            glue = json.loads(glue_path.read_text())
            assert row["cola (mcc)"] == f"{glue['tasks']['cola']['value']:.3f}"
            assert row["GLUE avg"] == f"{glue['glue_average']:.3f}"
    roles = {m["label"]: m["role"] for m in report_json["table"]["models"]}
    assert roles == {"exp_a/teacher1": "teacher", "exp_a/teacher2": "teacher", "exp_a/baseline": "baseline",
                     "exp_a/student": "student", "exp_b/teacher1": "teacher", "exp_b/student": "student"}
    # Best per column: lowest val loss (exp_a/student) and highest BLiMP are bold.
    assert "| **3.100** |" in result.markdown
    assert report_json["table"]["best"]["val_loss"] == 3.10
    # exp_b has no baseline: its student is not compared with exp_a's (another scale, another run).
    b_margins = result.markdown.split("### exp_b/student", 1)[1].split("Against the best baseline", 1)[1]
    assert "| Val loss | 3.550 | no baseline | missing | missing |" in b_margins.split("##", 1)[0]


def test_missing_results_are_marked_missing_not_zero(runs):
    result = build_report([runs["b"]], runs["tmp"] / "out")
    rows = _md_rows(result.markdown)
    for row in rows.values():
        for title in ("BLiMP", "BLiMP suppl.", "EWoK", "GLUE avg"):
            assert row[title] == MISSING
    assert rows["teacher1"]["Test loss"] == MISSING
    assert "0.000" not in result.table
    assert MISSING in result.table
    missing = result.markdown.split("## Missing results", 1)[1]
    assert f"{runs['b'] / 'student' / 'zero_shot' / 'results.json'}" in missing
    assert f"{runs['b'] / 'teacher1' / 'glue' / 'glue_results.json'}" in missing
    assert "No GLUE results among the runs." in result.markdown


def _margin_row(md: str, against: str, metric: str) -> list[str]:
    block = md.split(f"Against the {against}", 1)[1].split("Against the", 1)[0].split("##", 1)[0]
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == metric:
            return cells
    raise AssertionError(f"no {metric} row against the {against}")


def test_student_margins_with_paired_intervals(runs):
    md = build_report([runs["a"]], runs["tmp"] / "out").markdown
    # Against teacher1 (best teacher on BLiMP): 0.800 vs 0.797, a gap of 1/3 of a point -> not real.
    cells = _margin_row(md, "best teacher", "BLiMP")
    assert cells[2] == "teacher1" and cells[4] == f"{0.8 - (0.89 + 0.8 + 0.7) / 3:+.3f}"
    low, high = (float(x) for x in re.findall(r"[+-]\d\.\d+", cells[5]))
    assert low < 0 < high and cells[6] == "no"
    # Against the baseline: 0.800 vs 0.550 -> a real gap whose interval covers the difference.
    cells = _margin_row(md, "best baseline", "BLiMP")
    assert cells[2] == "baseline" and cells[4] == "+0.250"
    low, high = (float(x) for x in re.findall(r"[+-]\d\.\d+", cells[5]))
    assert 0 < low < 0.25 < high and cells[6] == "yes"
    # The baseline lacks EWoK: its margin is missing, not computed from zero.
    assert _margin_row(md, "best baseline", "EWoK")[4] == MISSING
    # Loss margin: student minus best teacher's (lowest) loss.
    assert _margin_row(md, "best teacher", "Val loss")[4] == f"{3.10 - 3.20:+.3f}"


def test_interval_unavailable_without_item_correctness(runs):
    a = runs["a"]
    _zero_shot(a / "teacher1", {"adjunct_island": 0.89, "anaphor_number": 0.80, "only_npi_scope": 0.70}, seed=0,
               with_items=False)
    md = build_report([a], runs["tmp"] / "out").markdown
    cells = _margin_row(md, "best teacher", "BLiMP")
    assert "interval unavailable" in cells[5] and "correct" in cells[5]
    assert "lacks per-item 'correct' lists" in md


def test_bootstrap_identical_arrays_give_zero_interval():
    a = np.random.default_rng(0).integers(0, 2, 500)
    assert paired_bootstrap_ci(a, a.copy()) == (0.0, 0.0)


def test_bootstrap_covers_a_known_difference_and_excludes_zero_when_large():
    b = np.zeros(1000, dtype=int)
    b[:700] = 1
    a = b.copy()
    a[700:900] = 1  # a is right on every item b is, plus 200 more: difference 0.2
    low, high = paired_bootstrap_ci(a, b)
    assert 0.15 < low < 0.2 < high < 0.25
    # Pairing matters: the disagreements are all one way, so the interval is much narrower than an
    # unpaired one (whose half-width is about 1.96 * sqrt(0.09/1000 + 0.21/1000) = 0.034).
    assert high - low < 0.06
    # One item of difference in 1000 is noise.
    c = b.copy()
    c[700] = 1
    low, high = paired_bootstrap_ci(c, b)
    assert low <= 0 < high


def test_bootstrap_matches_index_resampling_and_averages_strata():
    rng = np.random.default_rng(1)
    a = (rng.random(300) < 0.7).astype(int)
    b = (rng.random(300) < 0.6).astype(int)
    idx = rng.integers(0, 300, size=(20000, 300))
    naive = np.percentile((a[idx] - b[idx]).mean(axis=1), [2.5, 97.5])
    fast = paired_bootstrap_ci(a, b, n_resamples=20000)
    assert np.allclose(fast, naive, atol=0.01)
    # Strata are weighted equally, as group scores average subtasks: a 10-item stratum with
    # difference 1 and a 1000-item stratum with difference 0 average to 0.5 exactly.
    a2 = np.concatenate([np.ones(10, int), np.ones(1000, int)])
    b2 = np.concatenate([np.zeros(10, int), np.ones(1000, int)])
    strata = np.concatenate([np.zeros(10, int), np.ones(1000, int)])
    assert paired_bootstrap_ci(a2, b2, strata) == (0.5, 0.5)
    with pytest.raises(ValueError):
        paired_bootstrap_ci(a, b[:-1])


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_default_out_and_regeneration_drops_stale_plots(runs, capsys):
    assert _cli(["report", str(runs["a"]), str(runs["sweep"])]) == 0
    out = runs["a"] / "report"
    assert (out / "sweep_sweep1.png").is_file()
    printed = capsys.readouterr().out
    assert "student" in printed and f"report written to {out / 'report.md'}" in printed
    assert _cli(["report", str(runs["a"])]) == 0
    assert not (out / "sweep_sweep1.png").exists()
    assert "## Sweeps" not in (out / "report.md").read_text()


def test_single_model_folders_and_bad_input(runs):
    a = runs["a"]
    result = build_report([a / "student", a / "teacher1"], runs["tmp"] / "pair")
    assert set(_md_rows(result.markdown)) == {"student", "teacher1"}
    assert "teacher 'teacher2' is not among the given runs" in result.markdown
    # A baseline folder given alone is what a student of another experiment is compared with.
    md = build_report([runs["b"], a / "baseline"], runs["tmp"] / "mixed").markdown
    assert "| Val loss | 3.550 | exp_a/baseline | 3.400 | +0.150 |" in md
    empty = runs["tmp"] / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=str(empty)):
        build_report([empty], runs["tmp"] / "out")
    (a / "baseline" / "metrics.json").write_text("{not json")
    with pytest.raises(UserError, match=re.escape(str(a / "baseline" / "metrics.json"))):
        build_report([a], runs["tmp"] / "out")
    other = runs["tmp"] / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="holds no report.md"):
        build_report([a / "student"], other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_reads_the_evaluators_nested_results_and_metrics_fallbacks(runs):
    """``zero_shot/results.json`` in the nested ``tasks`` shape, and group scores taken from
    ``metrics.json`` when the results files are absent, both reach the table."""
    a = runs["a"]
    _write(a / "teacher2" / "zero_shot" / "results.json", {"model": "t2", "tasks": {"blimp": {
        "accuracy": 0.625, "items": 800,
        "subtasks": {"adjunct_island": {"accuracy": 0.75, "items": 400, "field": "syntax"},
                     "anaphor_number": {"accuracy": 0.5, "items": 400, "field": "morphology"}},
        "fields": {"syntax": {"accuracy": 0.75}, "morphology": {"accuracy": 0.5}}}}})
    metrics_path = a / "baseline" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics.update(zero_shot={"blimp": 0.612, "ewok": 0.505}, glue={"cola": 0.07, "glue_average": 0.07,
                                                                   "missing": ["rte"]})
    _write(metrics_path, metrics)
    (a / "baseline" / "zero_shot" / "results.json").unlink()
    (a / "baseline" / "glue" / "glue_results.json").unlink()
    result = build_report([a], runs["tmp"] / "out")
    rows = _md_rows(result.markdown)
    assert rows["teacher2"]["BLiMP"] == "0.625" and rows["teacher2"]["EWoK"] == MISSING
    assert (rows["baseline"]["BLiMP"], rows["baseline"]["EWoK"]) == ("0.612", "0.505")
    assert rows["baseline"]["cola (mcc)"] == "0.070" and rows["baseline"]["rte (accuracy)"] == MISSING
    assert "baseline: GLUE task rte missing (not evaluated)" in result.markdown
