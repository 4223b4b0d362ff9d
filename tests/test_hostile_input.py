"""Bad input across every command: one line naming the problem, exit code 2, nothing changed.

Each case builds its bad input in a fresh copy of a small valid workspace (prepared corpus,
tokenizer, a trained tiny model), runs the command in-process, and checks the exit code, that
stderr is a single ``error: ...`` line mentioning the expected words (no traceback), and that
every file that existed before has the same content afterwards.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from babyllama.cli import main
from conftest import TINY_TRAIN

TRAIN = TINY_TRAIN


@pytest.fixture
def workspace(cli_workspace) -> Path:
    return cli_workspace


def _yaml(text: str):
    return lambda ws: (ws / "bad.yaml").write_text(text)


def _exp_with(line: str):
    """The valid experiment with one more line appended (later keys win in YAML mappings)."""
    return lambda ws: (ws / "bad.yaml").write_text((ws / "exp.yaml").read_text() + line + "\n")


def _corpus(files: dict[str, bytes]):
    def make(ws):
        (ws / "bad_corpus").mkdir()
        for name, content in files.items():
            (ws / "bad_corpus" / name).write_bytes(content)
    return make


def _truncated_teacher(ws):
    shutil.copytree(ws / "teacher", ws / "broken")
    weights = ws / "broken" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])


def _other_vocab_teacher(ws):
    shutil.copytree(ws / "teacher", ws / "other")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ws / "tok300" / name, ws / "other" / name)


def _encoder_only_teacher(ws):
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(vocab_size=320, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64)).save_pretrained(ws / "bert")


def _gpt2_teacher_other_size(ws):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=327, n_positions=64, n_embd=32, n_layer=1, n_head=2, bos_token_id=1,
                               eos_token_id=2)).save_pretrained(ws / "gpt2")


def _live_lock(ws):
    """``new`` is being trained by a live process (this one's pid stands in for it)."""
    import json
    import os
    import socket
    import time

    (ws / "new").mkdir()
    (ws / "new" / "stage.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                       "since": "2026-01-01T00:00:00", "heartbeat_unix": time.time()}))


def _stale_checkpoint(ws):
    (ws / "stale/checkpoints/step-00000002").mkdir(parents=True)
    (ws / "stale/checkpoints/step-00000002/trainer_state.json").write_text('{"config_hash": "0000", "step": 2}')
    (ws / "stale/checkpoints/step-00000002/COMPLETE").write_text("ok\n")


def _bad_jsonl(ws):
    (ws / "pairs").mkdir()
    (ws / "pairs" / "agreement.jsonl").write_text('{"sentence_good": "a b", "sentence_bad": "b a"}\n{"sentence_good": \n')


PREP = lambda ws: ["prepare", "--corpus", str(ws / "bad_corpus"), "--out", str(ws / "out")]  # noqa: E731
RUN = lambda ws: ["run", str(ws / "bad.yaml"), "--quiet"]  # noqa: E731
PRETRAIN = lambda ws, *extra: ["pretrain", "--data", str(ws / "prep"), "--tokenizer", str(ws / "tok"),  # noqa: E731
                               "--out", str(ws / "new"), *TRAIN, *extra]
DISTILL = lambda ws, teachers: ["distill", "--data", str(ws / "prep"), "--tokenizer", str(ws / "tok"),  # noqa: E731
                                "--out", str(ws / "student"), "--teachers", teachers, *TRAIN]

CASES = [
    # (id, setup, argv, words expected in the message)
    ("corpus-missing", None, lambda ws: ["prepare", "--corpus", str(ws / "nope"), "--out", str(ws / "o")],
     "corpus folder not found"),
    ("corpus-no-train-files", _corpus({"readme.txt": b"hi"}), PREP, "no *.train files"),
    ("corpus-empty-file", _corpus({"qed.train": b""}), PREP, "no text left after cleaning"),
    ("corpus-blank-lines", _corpus({"qed.train": b"\n \n\n"}), PREP, "no text left after cleaning"),
    ("corpus-binary", _corpus({"qed.train": b"\x89PNG\x00\x00\x01"}), PREP, "binary file"),
    ("corpus-latin1", _corpus({"qed.train": "caf\u00e9\n".encode("latin-1")}), PREP, "not UTF-8"),
    ("corpus-bad-gzip", _corpus({"qed.train.gz": b"not gzip"}), PREP, "cannot read"),
    ("yaml-malformed", _yaml("models: {a: [1, 2}\n"), RUN, "malformed YAML"),
    ("yaml-truncated", _yaml("models:\n  a:\n    train: {lr: 1e-3\n"), RUN, "malformed YAML"),
    ("yaml-empty", _yaml(""), RUN, "config file is empty"),
    ("yaml-not-mapping", _yaml("- a\n- b\n"), RUN, "expected a mapping"),
    ("yaml-missing", None, lambda ws: ["run", str(ws / "absent.yaml")], "no such config file"),
    ("key-unknown", _exp_with("tokenizr: {vocab_size: 100}"), RUN, "unknown key 'tokenizr'"),
    ("key-mistyped", _exp_with("train: {batch_size: eight}"), RUN, "expected an integer"),
    ("lr-negative", _exp_with("train: {lr: -0.001}"), RUN, "lr: got -0.001"),
    ("alpha-out-of-range", _exp_with("distill: {alpha: 1.5}"), RUN, "alpha: got 1.5"),
    ("temperature-zero", _exp_with("distill: {temperature: 0}"), RUN, "temperature: got 0"),
    ("seq-length-zero", _exp_with("train: {seq_length: 0}"), RUN, "seq_length: got 0"),
    ("seq-length-beyond-positions", _exp_with("train: {seq_length: 4096}"), RUN, "max_position_embeddings"),
    ("batch-not-divisible", _exp_with("train: {batch_size: 10, grad_accum: 4}"), RUN, "divisible by grad_accum"),
    ("preset-unknown", _exp_with("model: {preset: huge}"), RUN, "unknown preset 'huge'"),
    ("teacher-unknown", _exp_with("models: {s: {kind: distill, teachers: [t9]}}"), RUN, "'t9' is neither"),
    ("override-malformed", None, lambda ws: ["run", str(ws / "exp.yaml"), "--set", "train.lr"], "KEY.SUB=VALUE"),
    ("prepared-corpus-missing", None,
     lambda ws: ["tokenizer", "--data", str(ws / "corpus"), "--out", str(ws / "t2")], "not a prepared corpus"),
    ("tokenizer-not-a-tokenizer", lambda ws: (ws / "faketok").mkdir() or (ws / "faketok/tokenizer.json").write_text("{}"),
     lambda ws: ["pretrain", "--data", str(ws / "prep"), "--tokenizer", str(ws / "faketok"), "--out", str(ws / "n"),
                 *TRAIN], "not a valid tokenizer"),
    ("teacher-other-vocabulary", _other_vocab_teacher, lambda ws: DISTILL(ws, str(ws / "other")),
     "tokenizer differs from the student's"),
    ("teacher-not-a-model", None, lambda ws: DISTILL(ws, str(ws / "tok")), "not a model directory"),
    ("teacher-truncated-safetensors", _truncated_teacher, lambda ws: DISTILL(ws, str(ws / "broken")),
     "cannot load the model"),
    ("teacher-encoder-only", _encoder_only_teacher, lambda ws: DISTILL(ws, str(ws / "bert")),
     "an encoder-only or non-causal-LM 'bert' model"),
    ("teacher-gpt2-other-vocabulary-size", _gpt2_teacher_other_size,
     lambda ws: DISTILL(ws, f"{ws / 'teacher'},{ws / 'gpt2'}"), "vocabulary size 327 differs from the student's 320"),
    ("stage-trained-by-another-process", _live_lock, PRETRAIN, "in use by another process (host"),
    ("checkpoint-other-config", _stale_checkpoint,
     lambda ws: [*PRETRAIN(ws)[:6], str(ws / "stale"), *TRAIN], "checkpoint was written by a different config"),
    ("finished-run-without-overwrite", None,
     lambda ws: [*PRETRAIN(ws)[:6], str(ws / "teacher"), *TRAIN], "already holds a finished run"),
    ("output-read-only", None, lambda ws: [*PRETRAIN(ws)[:6], "/proc/babyllama-out", *TRAIN], "cannot write there"),
    ("evaluate-not-a-model", None,
     lambda ws: ["evaluate", "loss", str(ws / "tok"), "--data", str(ws / "prep")], "not a model directory"),
]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("setup, argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_cleanly(tmp_path, workspace, capsys, setup, argv, expected):
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws, symlinks=True)
    for path in ws.rglob("*.yaml"):
        path.write_text(path.read_text().replace(str(workspace), str(ws)))
    if setup is not None:
        setup(ws)
    before = _hashes(ws)
    capsys.readouterr()
    code = main(argv(ws))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    assert expected in err[0]
    after = _hashes(ws)
    assert {k: v for k, v in after.items() if k in before} == before


def test_table_covers_every_command():
    commands = {c[2](Path("/w"))[0] for c in CASES}
    assert commands >= {"prepare", "run", "tokenizer", "pretrain", "distill", "evaluate"}
    assert len(CASES) >= 25
