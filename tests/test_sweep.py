"""Hyperparameter sweeps: sampling stays on its support; a short sweep prunes, records failures,
resumes after its worker is killed and hands back a valid experiment; two worker processes
share one SQLite study."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from babyllama.cli import main
from babyllama.config import resolve_experiment
from babyllama.errors import UserError
from babyllama.sweep import run_sweep
from babyllama.sweep_file import check_key, load_sweep
from babyllama.sweep_space import parse_param
from babyllama.sweep_study import open_storage, open_study, prepare_shared
from conftest import tiny_experiment

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _draws(spec: dict, n: int = 240, sampler=None) -> list[tuple]:
    """``n`` (searched, config) pairs from ``spec``: random start-up draws, then TPE's suggestions."""
    param = parse_param("x", spec, "space.x")
    study = optuna.create_study(sampler=sampler or optuna.samplers.TPESampler(seed=0, n_startup_trials=n // 2))
    out = []
    for _ in range(n):
        trial = study.ask()
        searched, value = param.sample(trial)
        out.append((searched, value))
        numeric = value if isinstance(value, (int, float)) and not isinstance(value, bool) else len(str(value))
        study.tell(trial, (float(numeric) - 0.3) ** 2)
    return out


def _on_grid(value: float, anchor: float, q: float) -> bool:
    k = (value - anchor) / q
    return abs(k - round(k)) < 1e-6


@pytest.mark.parametrize("spec, low, high, grid", [
    ({"type": "uniform", "low": 0.1, "high": 0.5}, 0.1, 0.5, None),
    ({"type": "loguniform", "low": 1e-4, "high": 1e-1}, 1e-4, 1e-1, None),
    ({"type": "normal", "mu": 1.0, "sigma": 0.5, "low": 0.1, "high": 3.0}, 0.1, 3.0, None),
    ({"type": "lognormal", "mu": -18.4, "sigma": 1.0, "low": 1e-9, "high": 1e-7}, 1e-9, 1e-7, None),
    ({"type": "quniform", "low": 0, "high": 30, "q": 10}, 0, 30, (0, 10)),
    ({"type": "quniform", "low": 0.0, "high": 0.2, "q": 0.05}, 0.0, 0.2, (0.0, 0.05)),
    ({"type": "qloguniform", "low": 0.001, "high": 0.1, "q": 0.001}, 0.001, 0.1, (0.001, 0.001)),
    ({"type": "qnormal", "mu": 10, "sigma": 5, "q": 2, "low": 1, "high": 19}, 1, 19, (1, 2)),
    ({"type": "qlognormal", "mu": math.log(64), "sigma": 1.0, "q": 8}, 0, math.inf, (0, 8)),
])
def test_sampling_stays_within_bounds_and_on_grid(spec, low, high, grid):
    draws = _draws(spec)
    for searched, value in draws:
        assert searched == value  # no transform
        assert low <= value <= high, (spec, value)
        if grid is not None:
            assert _on_grid(value, *grid), (spec, value)
            if float(grid[1]).is_integer() and float(grid[0]).is_integer():
                assert isinstance(value, int), (spec, value)
    assert len({v for _, v in draws}) > 2  # not stuck on one value


def test_normal_draws_follow_the_prior_and_transforms_apply():
    values = [v for _, v in _draws({"type": "normal", "mu": 0.0, "sigma": 1.0}, n=400,
                                   sampler=optuna.samplers.RandomSampler(seed=0))]
    assert abs(statistics.mean(values)) < 0.2 and 0.85 < statistics.stdev(values) < 1.15
    assert max(abs(v) for v in values) < 5  # a uniform over the +-4.75 sigma range would exceed 3 often
    for searched, value in _draws({"type": "loguniform", "low": 1e-3, "high": 1e-1, "transform": "one_minus"}):
        assert 1e-3 <= searched <= 1e-1 and value == pytest.approx(1 - searched) and 0.9 <= value <= 0.999
    choices = {v for _, v in _draws({"type": "categorical", "choices": [16, 32, "x"]}, n=60)}
    assert choices <= {16, 32, "x"} and len(choices) == 3


@pytest.mark.parametrize("spec, message", [
    ({"type": "gaussian", "mu": 0, "sigma": 1}, "expected one of uniform"),
    ({"type": "uniform", "low": 1.0}, "high: missing"),
    ({"type": "loguniform", "low": 0.0, "high": 1.0}, "expected > 0"),
    ({"type": "quniform", "low": 0, "high": 1, "q": 0.3}, "multiple of q"),
    ({"type": "uniform", "low": 2, "high": 1}, "must be below high"),
    ({"type": "uniform", "low": 0, "high": 1, "step": 2}, "unknown key 'step'"),
    ({"type": "categorical", "choices": []}, "non-empty list"),
    ({"type": "normal", "mu": 0, "sigma": 1, "low": 50, "high": 60}, "no probability mass"),
])
def test_bad_distributions_are_refused(spec, message):
    with pytest.raises(UserError, match=message):
        parse_param("train.lr", spec, "space.train.lr")


def test_space_keys_are_checked_against_the_stage_config():
    check_key("train.betas.1", "k")
    check_key("model.attention_dropout", "k")
    for key, message in (("train.lrr", "unknown key 'lrr'"), ("train.betas.2", "list of 2"),
                         ("train", "names a section"), ("kind", "starts with one of"),
                         ("teachers", "starts with one of"), ("train.lr.x", "is a value"),
                         ("corpus.path", "starts with one of")):
        with pytest.raises(UserError, match=message):
            check_key(key, "k")


@pytest.mark.parametrize("name", ["demo/sweep.yaml", "babyllama2/sweep.yaml"])
def test_shipped_sweep_files_validate(name):
    from babyllama.cli import shipped_config

    sweep = load_sweep(shipped_config(name), storage="postgresql://user:secret@db.example/babyllama")
    assert sweep.stage == "teacher1" and sweep.direction == "minimize" and len(sweep.space) >= 8
    assert sweep.storage.startswith("postgresql://")
    if name.startswith("babyllama2"):
        keys = {p.key for p in sweep.space}
        assert {"train.lr", "train.batch_size", "train.epochs", "train.betas.0", "train.betas.1", "train.eps",
                "train.schedule", "train.weight_decay", "train.grad_clip", "train.warmup_steps",
                "model.attention_dropout"} <= keys


def _write_sweep(tmp: Path, corpus: Path, name: str, **extra) -> Path:
    """A tiny experiment and a sweep file over its teacher1 (evaluations every 2 of 4 steps)."""
    (tmp / "exp.yaml").write_text(yaml.safe_dump(tiny_experiment(corpus, tmp / "run", eval_every=2, max_steps=4)))
    spec = {"experiment": "exp.yaml", "stage": "teacher1", "name": name, "sweep_dir": str(tmp / name),
            "trials": 4, "seed": 0, "startup_trials": 3, "heartbeat_s": 1, "grace_s": 1,
            # one bracket in which a trial continues past step 2 (2 x 8 x 32 tokens) only if it is
            # the best there so far
            "pruner": {"min_resource": 512, "max_resource": 1024, "reduction_factor": 4},
            "space": {"train.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
                      "train.betas.1": {"type": "qloguniform", "low": 0.001, "high": 0.1, "q": 0.001,
                                        "transform": "one_minus"},
                      "train.warmup_steps": {"type": "quniform", "low": 0, "high": 4, "q": 2},
                      # 3 heads do not divide the tiny model's width: a sampled combination that fails
                      "model.num_attention_heads": {"type": "categorical", "choices": [3, 4]}},
            **extra}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_sweep_file_errors_name_the_key(tmp_path, corpus_dir):
    path = _write_sweep(tmp_path, corpus_dir, "bad")
    spec = yaml.safe_load(path.read_text())
    cases = [({"space": {"train.lrr": {"type": "uniform", "low": 0, "high": 1}}}, "space.train.lrr: unknown key 'lrr'"),
             ({"space": {"train.schedule": {"type": "categorical", "choices": ["cosine", "bogus"]}}},
              "space.train.schedule: value 'bogus' is refused"),
             ({"stage": "teacher9"}, "stage: 'teacher9' is not a model"),
             ({"metric": "val_los"}, "metric: got 'val_los'"),
             ({"trails": 3}, "unknown key 'trails'")]
    for change, message in cases:
        path.write_text(yaml.safe_dump({**spec, **change}))
        with pytest.raises(UserError, match=message):
            load_sweep(path)


def _trials(study, state):
    return [t for t in study.get_trials(deepcopy=False) if t.state == state]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow
def test_sweep_prunes_fails_resumes_and_returns_the_best(tmp_path, corpus_dir, capsys):
    path = _write_sweep(tmp_path, corpus_dir, "tiny")
    sweep = load_sweep(path)
    summary = run_sweep(sweep, progress=False)
    study = open_study(sweep, open_storage(sweep))
    assert len(_trials(study, TrialState.COMPLETE)) + len(_trials(study, TrialState.PRUNED)) == 4
    assert _trials(study, TrialState.PRUNED), "the aggressive Hyperband setting pruned no trial"
    assert _trials(study, TrialState.COMPLETE)
    failed = _trials(study, TrialState.FAIL)
    assert failed and all("not divisible by num_attention_heads 3" in t.user_attrs["reason"] for t in failed)

    done = _trials(study, TrialState.COMPLETE)[0]
    folder = sweep.sweep_dir / f"trial-{done.number:04d}"
    trial_config = yaml.safe_load((folder / "experiment.yaml").read_text())
    assert trial_config["models"]["teacher1"]["train"]["lr"] == done.user_attrs["values"]["train.lr"]
    assert trial_config["models"]["teacher1"]["train"]["betas"][1] == done.user_attrs["values"]["train.betas.1"]
    resolved = yaml.safe_load((folder / "teacher1" / "resolved_config.yaml").read_text())
    assert resolved["train"]["warmup_steps"] == done.user_attrs["values"]["train.warmup_steps"]
    metrics = json.loads((folder / "teacher1" / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(done.value)
    records = json.loads((sweep.sweep_dir / "trials.json").read_text())
    assert [r["number"] for r in records] == list(range(len(study.trials)))
    pruned = next(r for r in records if r["state"] == "PRUNED")
    assert pruned["value"] is None and pruned["reason"].startswith("pruned at step")
    assert summary["best"]["value"] == pytest.approx(study.best_value)
    for png in ("history.png", "intermediate.png", "slice.png", "parallel.png", "importances.png"):
        assert (sweep.sweep_dir / png).stat().st_size > 5000, png
    assert "| Trial | State | val_loss |" in (sweep.sweep_dir / "trials.md").read_text()

    # A worker killed in the middle of a trial, and a worker elsewhere that stopped heartbeating.
    worker = subprocess.Popen([sys.executable, "-m", "babyllama.cli", "sweep", str(path), "--trials", "5", "--quiet"],
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    killed = None
    while killed is None and time.time() < deadline and worker.poll() is None:
        for t in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
            if (t.user_attrs.get("worker") or {}).get("pid") == worker.pid:
                os.kill(worker.pid, signal.SIGKILL)
                killed = t.number
                break
        time.sleep(0.1)
    worker.wait()
    assert killed is not None, "the second worker never started a trial"
    storage = open_storage(sweep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # heartbeats outside optimize(): exactly the lost worker
        remote = study.ask()
    storage.record_heartbeat(remote._trial_id)
    storage.set_trial_user_attr(remote._trial_id, "worker", {"host": "elsewhere", "pid": 1})
    time.sleep(2.2)  # past the 1 s grace period

    assert main(["sweep", str(path), "--trials", "5", "--quiet"]) == 0
    study = open_study(sweep, open_storage(sweep))
    by_number = {t.number: t for t in study.trials}
    assert by_number[killed].state == TrialState.FAIL
    assert f"worker process {worker.pid}" in by_number[killed].user_attrs["reason"]
    assert by_number[remote.number].state == TrialState.FAIL
    assert len(_trials(study, TrialState.COMPLETE)) + len(_trials(study, TrialState.PRUNED)) == 5
    assert not _trials(study, TrialState.RUNNING)
    records = {r["number"]: r for r in json.loads((sweep.sweep_dir / "trials.json").read_text())}
    assert "worker stopped" in records[remote.number]["reason"]

    capsys.readouterr()
    assert main(["sweep", str(path), "--best"]) == 0
    text = capsys.readouterr().out
    config = resolve_experiment(yaml.safe_load(text), "best")
    best = study.best_trial
    assert config.models["teacher1"].train.lr == best.user_attrs["values"]["train.lr"]
    assert config.models["teacher1"].train.betas[1] == best.user_attrs["values"]["train.betas.1"]
    assert config.models["teacher2"].train.seed == 2 and config.models["teacher2"].train.lr == 3e-3
    assert text.startswith(f"# Best trial {best.number} ")


def _freeze_outside_a_transaction(worker: subprocess.Popen, database: Path, deadline: float) -> None:
    """SIGSTOP ``worker`` at a moment it holds no lock on the SQLite ``database``.

    A worker frozen inside a transaction would block every other worker's writes; an exclusive
    lock that the test can take (and release) right after the freeze proves it holds none.
    """
    while True:
        assert worker.poll() is None and time.monotonic() < deadline, "worker ended before it could be frozen"
        worker.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(database, timeout=0.2, isolation_level=None)
        try:
            probe.execute("BEGIN EXCLUSIVE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # locked: let the worker finish its transaction, try again
            worker.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path, corpus_dir):
    # The second worker starts while the first is frozen inside its first trial, so the test does
    # not depend on which worker happens to start first: the second must count the first's
    # running trial (stopping at 4 in all), and the first must finish that trial afterwards.
    # A long heartbeat grace keeps the frozen trial from being failed as stale.
    path = _write_sweep(tmp_path, corpus_dir, "pair", trials=4, pruner=None, heartbeat_s=60, grace_s=600,
                        space={"train.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}})
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'study.db'}"  # a database outside the sweep folder
    sweep = load_sweep(path, storage=url)
    prepare_shared(sweep, progress=False)
    command = [sys.executable, "-m", "babyllama.cli", "sweep", str(path), "--quiet", "--storage", url]

    def start():
        return subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    first = start()
    deadline = time.monotonic() + 300
    while not (sweep.sweep_dir / "sweep.yaml").exists():  # written once the worker has opened the study
        assert first.poll() is None and time.monotonic() < deadline, "first worker ended or timed out"
        time.sleep(0.02)
    watched = open_study(sweep, open_storage(sweep))
    while not (running := _trials(watched, TrialState.RUNNING)):
        assert first.poll() is None and time.monotonic() < deadline, "first worker ended or timed out"
        time.sleep(0.02)
    _freeze_outside_a_transaction(first, Path(url[len("sqlite:///"):]), deadline)
    try:
        second = start()
        second_output = second.communicate(timeout=600)[0]
    finally:
        first.send_signal(signal.SIGCONT)
    first_output = first.communicate(timeout=600)[0]
    assert [first.returncode, second.returncode] == [0, 0], (first_output, second_output)
    study = open_study(sweep, open_storage(sweep))
    complete = _trials(study, TrialState.COMPLETE)
    assert len(complete) == len(study.trials) == 4
    by_worker = [sorted(t.number for t in complete if t.user_attrs["worker"]["pid"] == w.pid) for w in (first, second)]
    assert running[0].number in by_worker[0] and by_worker[1], by_worker  # the frozen trial finished after the thaw
    for t in complete:
        metrics = json.loads((sweep.sweep_dir / f"trial-{t.number:04d}" / "teacher1" / "metrics.json").read_text())
        assert metrics["val_loss"] == pytest.approx(t.value)
    assert len({t.params["train.lr"] for t in complete}) == len(complete)
