"""SIGKILL at a random step, then the same command again: the run ends as if never killed.

The killed run is a real ``babyllama`` process; the resumed and the uninterrupted runs are the
same command in this process. On CPU the kernels are deterministic for a fixed thread count, so
weights are compared bitwise (``torch.equal``); the logged metrics must match line for line.
Attention dropout is on, so a match needs the checkpoint's random state restored, and the log's
``resume`` record shows the rerun starting at the last checkpoint's step.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from babyllama import checkpoints
from babyllama.cli import main

STEPS = ["--preset", "tiny", "--quiet", "--set", "train.seq_length=32", "--set", "train.batch_size=8",
         "--set", "train.max_steps=14", "--set", "train.warmup_steps=1", "--set", "train.lr=3e-3",
         "--set", "train.log_every=1", "--set", "train.eval_every=5", "--set", "train.checkpoint_every=1",
         "--set", "train.seed=11", "--set", "model.attention_dropout=0.2"]


def _records(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _kill_at(argv, log, step, timeout=120):
    """Start ``babyllama argv`` and SIGKILL it once ``log`` shows a train record at ``step``."""
    proc = subprocess.Popen([sys.executable, "-m", "babyllama", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and any(r.get("step", 0) >= step for r in _records(log.parent)):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"process ended or timed out before step {step}: {proc.stderr.read().decode()[-1000:]}")


@pytest.mark.parametrize("kind", ["pretrain", "distill"])
def test_sigkill_then_rerun_matches_an_uninterrupted_run(tmp_path, cli_workspace, kind):
    ws = cli_workspace
    base = [kind, "--data", str(ws / "prep"), "--tokenizer", str(ws / "tok")]
    if kind == "distill":
        base += ["--teachers", f"{ws / 'teacher'},{ws / 'teacher'}"]
    assert main([*base, "--out", str(tmp_path / "full"), *STEPS]) == 0
    kill_step = random.Random(kind).randint(3, 11)
    _kill_at([*base, "--out", str(tmp_path / "cut"), *STEPS], tmp_path / "cut/metrics.jsonl", kill_step)
    assert not (tmp_path / "cut/stage.json").exists()
    saved = checkpoints.read_state(checkpoints.latest(tmp_path / "cut/checkpoints"))["step"]
    assert saved >= kill_step - 1  # checkpoint_every=1: at most the killed step is lost
    assert main([*base, "--out", str(tmp_path / "cut"), *STEPS]) == 0
    full, cut = load_file(tmp_path / "full/model.safetensors"), load_file(tmp_path / "cut/model.safetensors")
    assert all(torch.equal(full[k], cut[k]) for k in full)
    cut_log = _records(tmp_path / "cut")
    resumed = [i for i, r in enumerate(cut_log) if r["event"] == "resume"]
    assert len(resumed) == 1 and cut_log[resumed[0]]["step"] == saved
    assert [r["step"] for r in cut_log[resumed[0] + 1:] if r["event"] == "train"][0] == saved + 1
    drop_time = lambda rows: [{k: v for k, v in r.items() if k not in ("tokens_per_s", "time_s")} for r in rows
                              if r["event"] != "resume"]
    assert drop_time(_records(tmp_path / "full")) == drop_time(cut_log)
