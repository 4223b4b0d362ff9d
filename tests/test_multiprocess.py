"""Two CPU processes (gloo, through ``accelerate launch``) follow the one-process loss curve."""

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

from babyllama.cli import main
from conftest import write_corpus

ARGS = ["--preset", "tiny", "--quiet", "--set", "train.seq_length=32", "--set", "train.batch_size=8",
        "--set", "train.max_steps=6", "--set", "train.log_every=1", "--set", "train.eval_every=3",
        "--set", "train.lr=3e-3", "--set", "train.warmup_steps=1", "--set", "train.grad_accum=2"]


def _log(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    write_corpus(tmp_path / "corpus")
    assert main(["prepare", "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "prep")]) == 0
    assert main(["tokenizer", "--data", str(tmp_path / "prep"), "--out", str(tmp_path / "tok"),
                 "--vocab-size", "320"]) == 0
    common = ["pretrain", "--data", str(tmp_path / "prep"), "--tokenizer", str(tmp_path / "tok")]
    assert main([*common, "--out", str(tmp_path / "one"), *ARGS]) == 0
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "babyllama"]
    result = subprocess.run([*launch, *common, "--out", str(tmp_path / "two"), *ARGS], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [(r["event"], r["step"]) for r in one] == [(r["event"], r["step"]) for r in two]  # written once
    for a, b in zip(one, two):
        key = "loss" if a["event"] == "train" else "val_loss"
        assert abs(a[key] - b[key]) < 1e-4, (a, b)
    assert one[-1]["val_loss"] < one[0]["loss"] - 0.3  # the curve moved, so agreement means something
    w1, w2 = load_file(tmp_path / "one/model.safetensors"), load_file(tmp_path / "two/model.safetensors")
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)
