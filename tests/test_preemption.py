"""Signals, checkpoint retention and a full disk: the run stops cleanly and loses nothing."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from babyllama import checkpoints
from babyllama.cli import main
from babyllama.errors import UserError
from babyllama.preemption import EXIT_PREEMPTED, Preempted
from conftest import TINY_TRAIN
from babyllama.train import train_stage
from test_train import _stage, data  # noqa: F401  (module fixture)


def _log(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_sigterm_checkpoints_then_resume_is_exact(tmp_path, data):  # noqa: F811
    tok, token_data = data
    stage = _stage(seed=4, max_steps=6, eval_every=2)
    stage.model.attention_dropout = 0.2  # the resumed weights match only with the random state restored
    train_stage("full", stage, tok, token_data, tmp_path / "full", progress=False)

    def terminate(step, loss):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would; handled after the step

    with pytest.raises(Preempted, match="stopped by signal at step 3; checkpoint saved"):
        train_stage("cut", stage, tok, token_data, tmp_path / "cut", on_eval=terminate, progress=False)
    assert checkpoints.latest(tmp_path / "cut/checkpoints").name == "step-00000003"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored
    train_stage("cut", stage, tok, token_data, tmp_path / "cut", progress=False)
    full, cut = load_file(tmp_path / "full/model.safetensors"), load_file(tmp_path / "cut/model.safetensors")
    assert all(torch.equal(full[k], cut[k]) for k in full)
    events = [(r["event"], r["step"]) for r in _log(tmp_path / "cut")]
    assert events[events.index(("resume", 3)) + 1] == ("train", 4)


def test_sigterm_to_the_cli_exits_75_and_the_rerun_resumes(tmp_path, cli_workspace):
    ws = cli_workspace
    argv = ["pretrain", "--data", str(ws / "prep"), "--tokenizer", str(ws / "tok"), *TINY_TRAIN,
            "--set", "train.max_steps=30", "--set", "train.epochs=100", "--set", "train.log_every=1",
            "--set", "train.eval_every=0", "--set", "train.checkpoint_every=1", "--set", "model.attention_dropout=0.2"]
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "babyllama", *argv, "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").is_file() and any(r["event"] == "train" for r in _log(out)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED == 75, err[-2000:]
    stopped = int(re.search(r"preempted: cut: stopped by signal at step (\d+); checkpoint saved", err).group(1))
    assert checkpoints.read_state(checkpoints.latest(out / "checkpoints"))["step"] == stopped
    assert not (out / "stage.json").exists()
    assert main([*argv, "--out", str(out)]) == 0
    events = [(r["event"], r["step"]) for r in _log(out)]
    assert events[events.index(("resume", stopped)) + 1] == ("train", stopped + 1)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 30


def test_only_the_newest_checkpoints_are_kept(tmp_path, data):  # noqa: F811
    tok, token_data = data
    stage = _stage(seed=4, max_steps=5, eval_every=0, checkpoint_every=1, keep_checkpoints=2)
    stage.train.epochs = 100

    def crash(step, loss):
        raise KeyboardInterrupt

    stage.train.eval_every = 4
    with pytest.raises(KeyboardInterrupt):
        train_stage("k", stage, tok, token_data, tmp_path / "k", on_eval=crash, progress=False)
    names = [p.name for p in checkpoints.complete_checkpoints(tmp_path / "k/checkpoints")]
    assert names == ["step-00000003", "step-00000004"]
    assert (tmp_path / "k/checkpoints/best/model.safetensors").is_file()


def test_half_written_checkpoint_is_never_loaded(tmp_path):
    root = tmp_path / "checkpoints"
    checkpoints.save(root, 2, {"step": 2}, lambda d: (d / "w").write_text("x"), keep_last=3)
    (root / "step-00000009").mkdir()  # no COMPLETE marker: a crash mid-write
    assert checkpoints.latest(root).name == "step-00000002"


def test_full_disk_keeps_previous_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    checkpoints.save(root, 1, {"step": 1}, lambda d: (d / "w").write_text("one"), keep_last=1)

    def full(d):
        (d / "w").write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="disk full while writing the checkpoint; the previous one is intact"):
        checkpoints.save(root, 2, {"step": 2}, full, keep_last=1)
    assert [p.name for p in root.iterdir()] == ["step-00000001"]
    assert (root / "step-00000001/w").read_text() == "one"


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):  # noqa: F811
    from babyllama import train
    from babyllama.losses import LossParts

    tok, token_data = data
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = train_loss(*args, **kwargs).loss
        loss = loss * float("nan") if len(calls) > 3 else loss  # the 4th step's loss is NaN
        return LossParts(loss=loss, ce=loss)

    train_loss = train.chunked_lm_loss
    monkeypatch.setattr(train, "chunked_lm_loss", poisoned)
    stage = _stage(seed=4, max_steps=10, eval_every=0, checkpoint_every=1, keep_checkpoints=50, log_every=1)
    stage.train.epochs = 100
    with pytest.raises(UserError, match=r"loss became nan at step 4; the last good checkpoint is kept"):
        train_stage("nan", stage, tok, token_data, tmp_path / "nan", progress=False)
    kept = checkpoints.complete_checkpoints(tmp_path / "nan/checkpoints")
    assert [p.name for p in kept] == ["step-00000001", "step-00000002", "step-00000003"]
    weights = load_file(kept[-1] / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
