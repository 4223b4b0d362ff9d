"""Bad input across every command: one line naming the problem, exit code 2, nothing changed.

Each case builds its bad input in a fresh copy of a small valid workspace (prepared corpus,
tokenizer, a trained tiny model), runs the command in-process, and checks the exit code, that
stderr is a single ``error: ...`` line mentioning the expected words (no traceback), and that
every file that existed before has the same content afterwards.
"""

from __future__ import annotations

import hashlib
import json
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
    """The valid experiment with one more line appended (later keys win in YAML mappings);
    ``WS`` in the line stands for the workspace folder."""
    return lambda ws: (ws / "bad.yaml").write_text((ws / "exp.yaml").read_text() + line.replace("WS", str(ws)) + "\n")


def _all(*setups):
    def make(ws):
        for setup in setups:
            setup(ws)
    return make


def _teacher_config(text: str | None = None, vocab_size: int | None = None):
    """A copy of the trained teacher in ``ws/t2`` with its config.json replaced or its vocabulary size changed."""
    def make(ws):
        shutil.copytree(ws / "teacher", ws / "t2")
        config = ws / "t2" / "config.json"
        if vocab_size is not None:
            data = json.loads(config.read_text())
            data["vocab_size"] = vocab_size
            text_ = json.dumps(data)
        else:
            text_ = text
        config.write_text(text_)
    return make


def _glue(lines: dict[str, str]):
    def make(ws):
        (ws / "glue").mkdir()
        for name, text in lines.items():
            (ws / "glue" / name).write_text(text)
    return make


COLA = '{"sentence": "the dog runs .", "label": 1}\n{"sentence": "dog the runs .", "label": 0}\n'


def _sweep(ws):
    (ws / "sweep.yaml").write_text(f"experiment: bad.yaml\nstage: a\nsweep_dir: {ws}/sweep\ntrials: 2\n"
                                   "space: {train.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}}\n")


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
RUN_DRY = lambda ws: ["run", str(ws / "bad.yaml"), "--dry-run"]  # noqa: E731
TEACH = lambda ws, teachers: ["teach-cache", "--data", str(ws / "prep"), "--tokenizer", str(ws / "tok"),  # noqa: E731
                              "--teachers", teachers, "--out", str(ws / "tcache"), "--quiet"]
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
    # issue 11: the whole run is checked before its first stage (run, --dry-run, sweep)
    ("zero-shot-task-unknown-dry-run", _exp_with("evaluation: {zero_shot: {tasks: {blimpp: builtin}}}"), RUN_DRY,
     "unknown zero-shot task 'blimpp' (did you mean 'blimp'?)"),
    ("zero-shot-task-unknown-run", _exp_with("evaluation: {zero_shot: {tasks: {blimpp: builtin}}}"), RUN,
     "unknown zero-shot task 'blimpp'"),
    ("zero-shot-folder-missing", _exp_with("evaluation: {zero_shot: {tasks: {blimp_filtered: WS/blimp_nope}}}"), RUN,
     "blimp_nope: data folder for task 'blimp_filtered' does not exist"),
    ("zero-shot-folder-empty", _all(lambda ws: (ws / "empty").mkdir(),
                                    _exp_with("evaluation: {zero_shot: {tasks: {blimp: WS/empty}}}")), RUN,
     "no .jsonl or .jsonl.gz files"),
    ("zero-shot-file-malformed", _all(_bad_jsonl, _exp_with("evaluation: {zero_shot: {tasks: {blimp: WS/pairs}}}")),
     RUN, "agreement.jsonl:2: invalid JSON"),
    ("zero-shot-builtin-not-pairs", _exp_with("evaluation: {zero_shot: {tasks: {ewok: builtin}}}"), RUN_DRY,
     "'builtin' generates BLiMP-style pairs"),
    ("glue-folder-missing", _exp_with("evaluation: {zero_shot: null, glue: {data: WS/glue_nope}}"), RUN,
     "glue_nope: GLUE data folder not found"),
    ("glue-task-unknown", _all(_glue({"cola.train.jsonl": COLA, "cola.valid.jsonl": COLA}),
                               _exp_with("evaluation: {zero_shot: null, glue: {data: WS/glue, tasks: [cola, rtee]}}")),
     RUN, "unknown GLUE task 'rtee' (did you mean 'rte'?)"),
    ("glue-task-files-missing", _all(_glue({"cola.train.jsonl": COLA, "cola.valid.jsonl": COLA}),
                                     _exp_with("evaluation: {zero_shot: null, glue: {data: WS/glue, tasks: [rte]}}")),
     RUN, "no train file"),
    ("glue-no-task-files", _all(_glue({"notes.txt": "x"}), _exp_with("evaluation: {zero_shot: null, glue: {data: WS/glue}}")),
     RUN, "no GLUE task files"),
    ("glue-file-malformed", _all(_glue({"cola.train.jsonl": '{"sentence": 3, "label": 1}\n', "cola.valid.jsonl": COLA}),
                                 _exp_with("evaluation: {zero_shot: null, glue: {data: WS/glue, tasks: [cola]}}")),
     RUN, "cola.train.jsonl:1: key 'sentence' must be a string"),
    ("override-unknown-model", None, lambda ws: ["run", str(ws / "exp.yaml"), "--set", "models.aa.train.lr=1e-3"],
     "has no model 'aa' (did you mean 'a'?)"),
    ("run-teacher-other-vocab-size", _all(_teacher_config(vocab_size=300),
                                          _exp_with("models: {a: {}, s: {kind: distill, teachers: [WS/t2]}}")), RUN,
     "vocabulary size 300 differs from the student's 320"),
    ("run-teacher-config-unreadable", _all(_teacher_config(text="{"),
                                           _exp_with("models: {a: {}, s: {kind: distill, teachers: [WS/t2]}}")), RUN,
     "cannot read config.json"),
    ("run-teacher-truncated", _all(_truncated_teacher,
                                   _exp_with("models: {a: {}, s: {kind: distill, teachers: [WS/broken]}}")), RUN,
     "cannot load the model"),
    ("run-corpus-missing", _exp_with("corpus: {path: WS/nope}"), RUN, "corpus.path: " ),
    ("run-corpus-binary", _all(_corpus({"qed.train": b"\x89PNG\x00\x00\x01"}),
                               _exp_with("corpus: {path: WS/bad_corpus}")), RUN, "binary file"),
    ("run-tokenizer-missing", _exp_with("tokenizer: {path: WS/tok_nope}"), RUN, "no such tokenizer folder"),
    ("run-dir-unwritable", _exp_with("run_dir: /proc/babyllama-run"), RUN, "cannot write there"),
    ("run-disk-too-small", _exp_with("train: {seq_length: 32, keep_checkpoints: 100000000}"), RUN_DRY,
     "free on disk"),
    ("run-only-unknown", None, lambda ws: ["run", str(ws / "exp.yaml"), "--only", "b"], "--only b: no such model"),
    ("sweep-corpus-missing", _all(_exp_with("corpus: {path: WS/nope}"), _sweep),
     lambda ws: ["sweep", str(ws / "sweep.yaml"), "--quiet"], "corpus folder not found"),
    ("sweep-zero-shot-folder-missing", _all(_exp_with("evaluation: {zero_shot: {tasks: {ewok: WS/ewok_nope}}}"), _sweep),
     lambda ws: ["sweep", str(ws / "sweep.yaml"), "--quiet"], "ewok_nope: data folder for task 'ewok'"),
    # argument errors: one line, no usage
    ("argument-unknown-option", None, lambda ws: ["run", str(ws / "exp.yaml"), "--bogus"],
     "unrecognized arguments: --bogus"),
    ("argument-bad-task", None, lambda ws: ["evaluate", "zero-shot", str(ws / "teacher"), "--task", "blimpp=x"],
     "unknown task 'blimpp'"),
    ("argument-bad-integer", None,
     lambda ws: ["tokenizer", "--data", str(ws / "prep"), "--out", str(ws / "t"), "--vocab-size", "many"],
     "invalid int value: 'many'"),
    ("argument-missing", None, lambda ws: ["pretrain", "--data", str(ws / "prep")], "the following arguments are required"),
    # every command checks its inputs before it writes: with --overwrite, nothing is deleted first
    ("prepare-overwrite-bad-corpus", None,
     lambda ws: ["prepare", "--corpus", str(ws / "nope"), "--out", str(ws / "prep"), "--overwrite"],
     "corpus folder not found"),
    ("tokenizer-overwrite-bad-data", None,
     lambda ws: ["tokenizer", "--data", str(ws / "corpus"), "--out", str(ws / "tok"), "--overwrite"],
     "not a prepared corpus"),
    ("pretrain-overwrite-bad-tokenizer", None,
     lambda ws: ["pretrain", "--data", str(ws / "prep"), "--tokenizer", str(ws / "nope"), "--out", str(ws / "teacher"),
                 "--overwrite", *TRAIN], "no such tokenizer folder"),
    ("distill-teacher-config-unreadable", _teacher_config(text="{"), lambda ws: DISTILL(ws, str(ws / "t2")),
     "cannot read config.json"),
    ("distill-teacher-cache-missing", None,
     lambda ws: [*DISTILL(ws, str(ws / "teacher")), "--set", f"distill.teacher_cache={ws / 'cache_nope'}"],
     "not a teacher cache"),
    ("teach-cache-not-a-model", None, lambda ws: TEACH(ws, str(ws / "tok")), "not a model directory"),
    ("teach-cache-other-vocabulary", _other_vocab_teacher, lambda ws: TEACH(ws, str(ws / "other")),
     "tokenizer differs from the student's"),
    ("teach-cache-bad-offsets", None, lambda ws: [*TEACH(ws, str(ws / "teacher")), "--offsets", "0,200"],
     "offsets [0, 200]: expected distinct values in [0, 128)"),
    ("evaluate-unknown-split", None,
     lambda ws: ["evaluate", "loss", str(ws / "teacher"), "--data", str(ws / "prep"), "--splits", "valid,dev"],
     "unknown split 'dev'"),
    ("reading-data-missing", None,
     lambda ws: ["evaluate", "reading", str(ws / "teacher"), "--data", str(ws / "nope")], "no such reading data"),
    ("aoa-no-word-checkpoints", None,
     lambda ws: ["evaluate", "aoa", str(ws / "teacher"), "--data", str(ws / "nope")], "no word-count checkpoints"),
]


def _hashes(root: Path) -> dict[str, str]:
    """Every path under ``root``: a file's content hash, ``dir`` for a folder."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


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
    assert _hashes(ws) == before  # nothing changed, nothing added


def test_table_covers_every_command():
    commands = {c[2](Path("/w"))[0] for c in CASES}
    assert commands >= {"prepare", "run", "tokenizer", "pretrain", "distill", "evaluate", "teach-cache", "sweep"}
    assert len(CASES) >= 60
