"""(Super)GLUE finetuning: metrics, data reading, the finetuning loop, resuming and the CLI."""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from sklearn import metrics as skm

from babyllama.errors import UserError
from babyllama.evaluation import glue
from babyllama.evaluation.glue_metrics import accuracy, classification_scores, f1, matthews_corrcoef

GLUE_DATA = shared_data() / "babylm_eval_2024" / "glue_filtered"
needs_data = pytest.mark.skipif(not GLUE_DATA.is_dir(), reason="shared GLUE data not present")

FILLERS = "the a cat dog saw ran home today very big small red tree house we they it was".split()


def _read_jsonl_gz(path: Path, n: int | None = None) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return lines[:n] if n else lines


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _easy_records(n: int, rng: random.Random) -> list[dict]:
    """Single-sentence examples whose label is which of two marker words the sentence holds."""
    records = []
    for i in range(n):
        label = rng.randrange(2)
        words = [rng.choice(FILLERS) for _ in range(rng.randint(3, 7))]
        words.insert(rng.randrange(len(words) + 1), "good" if label else "bad")
        records.append({"sentence": " ".join(words), "label": label, "idx": i})
    return records


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama with a byte-level BPE tokenizer trained here, saved as a model dir."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [" ".join(FILLERS + ["good", "bad"])] * 20
    if GLUE_DATA.is_dir():
        for record in _read_jsonl_gz(GLUE_DATA / "rte.train.jsonl.gz", 200):
            corpus += [record["sentence1"], record["sentence2"]]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        min_frequency=2,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        tie_word_embeddings=False,
    )
    model_dir = tmp_path_factory.mktemp("tiny_model")
    LlamaForCausalLM(config).save_pretrained(model_dir)
    fast.save_pretrained(model_dir)
    return model_dir


# ---------------------------------------------------------------------------------------------- metrics


def test_metrics_match_scikit_learn_on_fixed_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    preds = np.where(rng.random(200) < 0.7, labels, 1 - labels)
    assert accuracy(preds, labels) == pytest.approx(skm.accuracy_score(labels, preds))
    assert f1(preds, labels) == pytest.approx(skm.f1_score(labels, preds))
    assert matthews_corrcoef(preds, labels) == pytest.approx(skm.matthews_corrcoef(labels, preds))
    three = rng.integers(0, 3, size=200)
    three_preds = np.where(rng.random(200) < 0.5, three, rng.integers(0, 3, size=200))
    assert matthews_corrcoef(three_preds, three) == pytest.approx(skm.matthews_corrcoef(three, three_preds))
    assert accuracy(three_preds, three) == pytest.approx(skm.accuracy_score(three, three_preds))


def test_metrics_hand_computed_and_degenerate_cases():
    labels = [1, 1, 1, 0, 0, 0, 1, 0]
    preds = [1, 1, 0, 0, 0, 1, 1, 0]  # TP 3, TN 3, FP 1, FN 1
    assert accuracy(preds, labels) == pytest.approx(6 / 8)
    assert f1(preds, labels) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert matthews_corrcoef(preds, labels) == pytest.approx((3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))
    # constant predictions: MCC 0; no positives anywhere: F1 0 (scikit-learn's conventions)
    assert matthews_corrcoef([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0
    assert f1([0, 0, 0], [0, 0, 0]) == 0.0
    assert classification_scores([0, 2, 1], [0, 1, 1], 3) == {"accuracy": pytest.approx(2 / 3)}
    assert set(classification_scores([0, 1], [0, 1], 2)) == {"accuracy", "f1", "mcc"}


# ---------------------------------------------------------------------------------------------- task table


@needs_data
def test_superglue_records_become_the_pipeline_inputs():
    wsc = _read_jsonl_gz(GLUE_DATA / "wsc.valid.jsonl.gz", 1)[0]
    first, second = glue.TASKS["wsc"].texts(wsc)
    assert first == f'Does "{wsc["span2_text"]}" refer to "{wsc["span1_text"]}" in this passage?'
    assert second == wsc["text"]
    multirc = _read_jsonl_gz(GLUE_DATA / "multirc.valid.jsonl.gz", 1)[0]
    assert glue.TASKS["multirc"].texts(multirc) == (
        f"Question: {multirc['question']} Answer: {multirc['answer']}",
        multirc["paragraph"],
    )
    assert glue.TASKS["cola"].texts({"sentence": "Hi.", "label": 1}) == ("Hi.", None)
    # every validation file of the 2024 evaluation reads without error under its task's checks
    for name in glue.TASK_NAMES:
        examples = glue.load_examples(glue.task_file(GLUE_DATA, name, "valid"), glue.TASKS[name])
        assert len(examples.labels) > 0 and examples.labels.max() < glue.TASKS[name].num_labels


def test_options_resolve_defaults_global_task_and_lora():
    assert glue.resolve_options("cola") == glue.DEFAULT_OPTIONS
    opts = glue.resolve_options("rte", {"lr": 1e-4, "rte": {"epochs": 3}, "cola": {"lr": 9e-4}})
    assert (opts["lr"], opts["epochs"], opts["batch_size"], opts["seed"]) == (1e-4, 3, 64, 12)
    lora = glue.resolve_options("wsc", {"wsc": {"lora": True}})
    assert (lora["lr"], lora["epochs"], lora["lora_r"], lora["lora_alpha"]) == (3e-4, 32, 8, 16.0)
    assert glue.resolve_options("wsc", {"lora": True, "lr": 1e-3})["lr"] == 1e-3
    assert glue.resolve_options("mnli-mm", {"mnli": {"lr": 2e-5}})["lr"] == 2e-5
    for bad in ({"learning_rate": 1}, {"rte": {"lr": -1.0}}, {"mnli-mm": {"lr": 1e-4}}, {"epochs": 2.5}):
        with pytest.raises(UserError):
            glue.resolve_options("rte", bad)


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_data_errors_name_the_file(tiny_model, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rec = {"sentence1": "A man walks.", "sentence2": "A man moves.", "label": 0}
    _write_jsonl(data / "rte.train.jsonl", [rec, {**rec, "label": 3}])
    _write_jsonl(data / "rte.valid.jsonl", [rec])
    with pytest.raises(UserError, match=r"rte\.train\.jsonl:2: label 3 does not fit the 2-way rte head"):
        glue.evaluate_glue(tiny_model, data, tmp_path / "out", tasks=["rte"], progress=False)
    (data / "rte.train.jsonl").write_text("\n")
    with pytest.raises(UserError, match=r"rte\.train\.jsonl: no rte examples"):
        glue.evaluate_glue(tiny_model, data, tmp_path / "out", tasks=["rte"], progress=False)
    _write_jsonl(data / "wsc.train.jsonl", [{"text": "He ran.", "span1_text": "He", "label": 0}])
    _write_jsonl(data / "wsc.valid.jsonl", [{"text": "He ran.", "span1_text": "He", "label": 0}])
    with pytest.raises(UserError, match=r"wsc\.train\.jsonl:1: missing key 'span2_text'"):
        glue.evaluate_glue(tiny_model, data, tmp_path / "out", tasks=["wsc"], progress=False)
    with pytest.raises(UserError, match=r"no train file .*cola\.train\.jsonl"):
        glue.evaluate_glue(tiny_model, data, tmp_path / "out", tasks=["cola"], progress=False)
    with pytest.raises(UserError, match="unknown GLUE task"):
        glue.evaluate_glue(tiny_model, data, tmp_path / "out", tasks=["stsb"], progress=False)
    assert not (tmp_path / "out").exists()  # nothing written on bad input
    _write_jsonl(data / "rte.train.jsonl", [rec])
    (tmp_path / "taken").write_text("a file where the output folder should go\n")
    with pytest.raises(UserError, match=r"taken: is a file, but the GLUE output folder .*taken/out must be a folder"):
        glue.evaluate_glue(tiny_model, data, tmp_path / "taken" / "out", tasks=["rte"], progress=False)


# ---------------------------------------------------------------------------------------------- finetuning


@needs_data
def test_real_rte_slice_writes_every_field_and_resumes(tiny_model, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "valid"):
        shutil.copy(GLUE_DATA / f"rte.{split}.jsonl.gz", data)
    out = tmp_path / "glue"
    overrides = {"epochs": 2, "batch_size": 16, "max_length": 48, "lr": 1e-3}
    results = glue.evaluate_glue(tiny_model, data, out, max_train_examples=32, overrides=overrides, progress=False)

    assert json.loads((out / "glue_results.json").read_text()) == results
    rte = results["tasks"]["rte"]
    assert rte["metric"] == "accuracy" and rte["value"] == rte["scores"]["accuracy"]
    assert 0.0 <= rte["value"] <= 1.0
    assert rte["epochs_run"] == 2 and rte["best_epoch"] in (1, 2)
    assert rte["seconds"] > 0 and rte["train_examples"] == 32 and rte["valid_examples"] == 139
    assert rte["trained_on"] == "rte" and rte["options"]["lr"] == 1e-3 and rte["selected_by"] == "f1"
    assert results["evaluated"] == ["rte"] and results["glue_average"] == rte["value"]
    # all tasks were asked for: the ten without files are reported missing, with the reason
    assert set(results["missing"]) == set(glue.TASK_NAMES) - {"rte"}
    assert "cola.train.jsonl" in results["missing"]["cola"]
    assert "mnli.train.jsonl" in results["missing"]["mnli-mm"]
    assert not (out / "scratch").exists()
    assert glue.glue_summary(results)["missing"] == list(results["missing"])

    # a finished task is not rerun; a changed option reruns it
    calls = []

    def fake_finetune(model_dir, tokenizer, train_task, scored, data, options, scratch, progress):
        calls.append((train_task.name, options["lr"]))
        return {t.name: {**rte, "value": 0.25} for t in scored}

    monkeypatch.setattr(glue, "_finetune", fake_finetune)
    again = glue.evaluate_glue(tiny_model, data, out, max_train_examples=32, overrides=overrides, progress=False)
    assert calls == [] and again == results
    changed = glue.evaluate_glue(
        tiny_model, data, out, max_train_examples=32, overrides={**overrides, "lr": 5e-4}, progress=False
    )
    assert calls == [("rte", 5e-4)] and changed["tasks"]["rte"]["value"] == 0.25

    # the command line runs the same code and keeps the finished task
    parser = argparse.ArgumentParser()
    glue.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["glue", str(tiny_model), "--data", str(data), "--out", str(out), "--tasks", "rte"]
        + ["--max-train-examples", "32", "--epochs", "2", "--batch-size", "16", "--max-length", "48", "--lr", "5e-4"]
    )
    assert args.func(args) == 0 and len(calls) == 1


def test_easy_task_is_learned_well_above_chance(tiny_model, tmp_path):
    rng = random.Random(0)
    data = tmp_path / "data"
    data.mkdir()
    _write_jsonl(data / "sst2.train.jsonl", _easy_records(256, rng))
    _write_jsonl(data / "sst2.valid.jsonl", _easy_records(100, rng))
    results = glue.evaluate_glue(
        tiny_model,
        data,
        tmp_path / "out",
        tasks=["sst2"],
        overrides={"lr": 3e-3, "batch_size": 16, "epochs": 4, "max_length": 32},
        progress=False,
    )
    assert results["tasks"]["sst2"]["value"] >= 0.9


def test_lora_finetuning_runs(tiny_model, tmp_path):
    pytest.importorskip("peft")
    rng = random.Random(1)
    data = tmp_path / "data"
    data.mkdir()
    _write_jsonl(data / "cola.train.jsonl", _easy_records(64, rng))
    _write_jsonl(data / "cola.valid.jsonl", _easy_records(40, rng))
    results = glue.evaluate_glue(
        tiny_model,
        data,
        tmp_path / "out",
        tasks=["cola"],
        overrides={"lora": True, "epochs": 2, "batch_size": 16, "max_length": 32},
        progress=False,
    )
    cola = results["tasks"]["cola"]
    assert cola["metric"] == "mcc" and cola["options"]["lora"] and cola["options"]["lr"] == 3e-4
    assert cola["epochs_run"] == 2 and -1.0 <= cola["value"] <= 1.0


def test_mnli_mm_is_scored_with_the_mnli_model(tiny_model, tmp_path, monkeypatch):
    rng = random.Random(2)
    words = ["yes", "maybe", "no"]

    def records(n):
        out = []
        for i in range(n):
            label = rng.randrange(3)
            out.append({"premise": " ".join(rng.sample(FILLERS, 4)), "hypothesis": words[label], "label": label})
        return out

    data = tmp_path / "data"
    data.mkdir()
    _write_jsonl(data / "mnli-mm.valid.jsonl", records(30))
    with pytest.raises(UserError, match=r"no train file .*mnli\.train\.jsonl.*needed to score mnli-mm"):
        glue.evaluate_glue(tiny_model, data, tmp_path / "out", tasks=["mnli-mm"], progress=False)
    _write_jsonl(data / "mnli.train.jsonl", records(32))
    _write_jsonl(data / "mnli.valid.jsonl", records(30))

    runs = []
    real_finetune = glue._finetune

    def spy(model_dir, tokenizer, train_task, scored, *rest):
        runs.append((train_task.name, [t.name for t in scored]))
        return real_finetune(model_dir, tokenizer, train_task, scored, *rest)

    monkeypatch.setattr(glue, "_finetune", spy)
    overrides = {"epochs": 1, "batch_size": 16, "max_length": 32}
    results = glue.evaluate_glue(
        tiny_model, data, tmp_path / "out", tasks=["mnli", "mnli-mm"], overrides=overrides, progress=False
    )
    assert runs == [("mnli", ["mnli", "mnli-mm"])]  # one finetuning run scores both
    mm = results["tasks"]["mnli-mm"]
    assert mm["trained_on"] == "mnli" and mm["valid_examples"] == 30 and mm["train_file"].endswith("mnli.train.jsonl")
    assert mm["seconds"] == results["tasks"]["mnli"]["seconds"]


def test_cli_options_and_help():
    parser = argparse.ArgumentParser()
    sub = glue.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["glue", "MODEL", "--tasks", "cola,rte", "--lr", "1e-4", "--patience", "0", "--lora"]
        + ["--set", "rte.epochs=20", "--set", "wsc.lora=false", "--select-by", "task"]
    )
    assert glue.overrides_from_args(args) == {
        "lr": 1e-4,
        "patience": 0,
        "select_by": "task",
        "lora": True,
        "rte": {"epochs": 20},
        "wsc": {"lora": False},
    }
    help_text = sub.format_help()
    for flag in ("--data", "--tasks", "--max-train-examples", "--out", "--lr", "--batch-size", "--epochs",
                 "--patience", "--seed", "--max-length", "--lora", "--set", "--select-by", "BABYLLAMA_GLUE_DATA"):
        assert flag in help_text
    with pytest.raises(UserError, match="TASK.OPTION=VALUE"):
        glue.overrides_from_args(parser.parse_args(["glue", "MODEL", "--set", "rte.learning_rate=1"]))
