"""Stage locks: a live second job on one stage folder is refused (one line naming the holder,
files untouched), a lock whose process is gone is taken over, different stages run side by side."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from babyllama import stage_lock as sl
from babyllama.cli import main
from babyllama.errors import UserError
from conftest import TINY_TRAIN


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_lock(folder: Path, **info):
    folder.mkdir(parents=True, exist_ok=True)
    base = {"host": socket.gethostname(), "pid": os.getpid(), "since": "2026-01-01T00:00:00",
            "heartbeat": "2026-01-01T00:00:00", "heartbeat_unix": time.time(), "token": "x"}
    (folder / sl.LOCK_NAME).write_text(json.dumps({**base, **info}))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_released_on_exit_and_per_folder(tmp_path):
    with sl.stage_lock(tmp_path / "a") as lock:
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        held = f"a: in use by another process (host {socket.gethostname()}, pid {os.getpid()}, since {info['since']}"
        with pytest.raises(UserError, match=re.escape(held)):
            sl.StageLock(tmp_path / "a").acquire()
        with sl.stage_lock(tmp_path / "b"):  # another stage: side by side
            assert (tmp_path / "b" / sl.LOCK_NAME).is_file()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # created empty, left as found
    (tmp_path / "c").mkdir()
    with pytest.raises(RuntimeError):
        with sl.stage_lock(tmp_path / "c"):
            raise RuntimeError("crash")
    assert list((tmp_path / "c").iterdir()) == []


def test_stale_locks_are_taken_over_and_live_ones_refused(tmp_path):
    _write_lock(tmp_path / "dead", pid=_dead_pid())
    _write_lock(tmp_path / "old", host="elsewhere", heartbeat_unix=time.time() - sl.STALE_AFTER_S - 5)
    _write_lock(tmp_path / "torn")
    (tmp_path / "torn" / sl.LOCK_NAME).write_text("")  # crash between create and write
    os.utime(tmp_path / "torn" / sl.LOCK_NAME, (time.time() - sl.STALE_AFTER_S - 5,) * 2)
    for name in ("dead", "old", "torn"):
        with sl.stage_lock(tmp_path / name) as lock:
            assert json.loads(lock.path.read_text())["token"] == lock.token
        assert not (tmp_path / name / sl.LOCK_NAME).exists()
    _write_lock(tmp_path / "remote", host="elsewhere", pid=_dead_pid())  # another host's pid says nothing
    with pytest.raises(UserError, match="host elsewhere, pid"):
        sl.StageLock(tmp_path / "remote").acquire()
    assert json.loads((tmp_path / "remote" / sl.LOCK_NAME).read_text())["host"] == "elsewhere"


def test_heartbeat_refreshes_and_never_overwrites_a_new_holder(tmp_path, monkeypatch):
    monkeypatch.setattr(sl, "HEARTBEAT_S", 0.05)
    with sl.stage_lock(tmp_path / "s") as lock:
        first = json.loads(lock.path.read_text())["heartbeat_unix"]
        time.sleep(0.3)
        assert json.loads(lock.path.read_text())["heartbeat_unix"] > first
        _write_lock(tmp_path / "s", token="someone-else")  # judged stale and taken over by another
        time.sleep(0.2)
        assert json.loads(lock.path.read_text())["token"] == "someone-else"
    assert json.loads((tmp_path / "s" / sl.LOCK_NAME).read_text())["token"] == "someone-else"


def test_second_run_of_a_live_training_stage_is_refused_and_changes_nothing(tmp_path, cli_workspace, capsys):
    ws = cli_workspace
    argv = ["pretrain", "--data", str(ws / "prep"), "--tokenizer", str(ws / "tok"), "--out", str(tmp_path / "m"),
            *TINY_TRAIN, "--set", "train.max_steps=100000", "--set", "train.epochs=10000", "--set", "train.log_every=1"]
    first = subprocess.Popen([sys.executable, "-m", "babyllama", *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + 120
        while not (tmp_path / "m/metrics.jsonl").is_file() and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        first.send_signal(signal.SIGSTOP)  # frozen, still alive: its files hold still while we look
        before = _snapshot(tmp_path / "m")
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {first.pid}" in err and "in use by another process" in err, err
        exp = tmp_path / "exp.yaml"  # the same stage through `run`, as `run_dir/m`
        exp.write_text(f"run_dir: {tmp_path}\ncorpus: {{path: {ws}/corpus}}\ntokenizer: {{vocab_size: 320}}\n"
                       "model: {preset: tiny}\ntrain: {seq_length: 32, batch_size: 8, max_steps: 2}\n"
                       "models: {m: {}}\nevaluation: {zero_shot: null}\n")
        assert main(["run", str(exp), "--quiet"]) == 2
        assert f"pid {first.pid}" in capsys.readouterr().err
        assert _snapshot(tmp_path / "m") == before
        assert json.loads((tmp_path / "m" / sl.LOCK_NAME).read_text())["pid"] == first.pid
        with pytest.raises(UserError, match=f"pid {first.pid}"):
            sl.check_free(tmp_path / "m")
    finally:
        first.send_signal(signal.SIGCONT)
        first.kill()
        first.wait()
    # killed: its lock is stale, and the next run takes the stage over (here starting it again)
    assert sl.check_free(tmp_path / "m") is None
    assert main([*argv[:-6], "--set", "train.max_steps=2", "--overwrite"]) == 0
    assert (tmp_path / "m/stage.json").is_file() and not (tmp_path / "m" / sl.LOCK_NAME).exists()
