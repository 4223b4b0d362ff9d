"""The 2025 GLUE recipe: its table, the training subsets, pooling independent of the padding
side, predictions.json in the pipeline's format, and the command line."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from babyllama.errors import UserError
from babyllama.evaluation import glue
from babyllama.evaluation.glue_classifier import last_token_index, load_classifier, load_tokenizer
from babyllama.evaluation.glue_data import load_examples
from babyllama.evaluation.glue_tasks import RECIPES, TASKS

SUBSETS = shared_data() / "babylm_eval_2025_glue_subsampled"
WORDS = "the a cat dog saw ran home today very big small red tree house we they it was good bad".split()


def _tokenizer(with_pad: bool):
    """A byte-level BPE tokenizer trained on WORDS; without a padding token when ``with_pad`` is
    false (GPT-2 style: finetuning then pads with the end-of-text token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"] if with_pad else ["<s>", "</s>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([" ".join(WORDS)] * 10, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>" if with_pad else None
    )


def _save_model(folder: Path, arch: str) -> Path:
    """A 2-layer, 32-wide Llama (RoPE, own padding token) or GPT-2 (absolute positions, padding
    with the end-of-text token) saved with its tokenizer in ``folder``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if arch == "llama":
        tok = _tokenizer(with_pad=True)
        config = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            tie_word_embeddings=False,
        )
        model = LlamaForCausalLM(config)
    else:
        tok = _tokenizer(with_pad=False)
        config = GPT2Config(
            vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=128,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: _save_model(root / arch, arch) for arch in ("llama", "gpt2")}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))


def _records(task: str, n: int, rng: random.Random) -> list[dict]:
    """``n`` records of ``task`` in the BabyLM jsonl format (the keys its pipeline reads)."""
    out = []
    for i in range(n):
        label = rng.randrange(TASKS[task].num_labels)
        if task == "boolq":
            record = {"question": _sentence(rng), "passage": _sentence(rng)}
        elif task == "multirc":
            record = {"paragraph": _sentence(rng), "question": _sentence(rng), "answer": _sentence(rng)}
        elif task == "mnli":
            record = {"premise": _sentence(rng), "hypothesis": _sentence(rng)}
        elif task == "wsc":
            record = {"text": _sentence(rng), "span1_text": rng.choice(WORDS), "span2_text": rng.choice(WORDS)}
        else:  # mrpc, rte
            record = {"sentence1": _sentence(rng), "sentence2": _sentence(rng)}
        out.append({**record, "label": label, "idx": i})
    return out


# ---------------------------------------------------------------------------------------------- recipe table


def test_2025_recipe_options_and_limits():
    opts = {task: glue.resolve_options(task, recipe="2025") for task in RECIPES["2025"].tasks}
    assert {t: o["lr"] for t, o in opts.items()} == dict.fromkeys(RECIPES["2025"].tasks, 3e-5)
    assert {t: o["batch_size"] for t, o in opts.items() if o["batch_size"] != 32} == {"boolq": 16, "multirc": 16}
    assert {t: o["epochs"] for t, o in opts.items() if o["epochs"] != 10} == {"wsc": 30}
    assert all(o["max_length"] == 512 and o["seed"] == 42 and o["patience"] == 0 for o in opts.values())
    assert all(o["select_by"] == "task" for o in opts.values())  # accuracy, F1 for mrpc and qqp
    assert [t for t in RECIPES["2025"].tasks if TASKS[t].metric == "f1"] == ["mrpc", "qqp"]
    assert (opts["rte"]["schedule"], opts["rte"]["min_lr_ratio"], opts["rte"]["warmup_ratio"]) == ("cosine", 0.1, 0.06)
    # overrides win over the per-task defaults; the linear schedule has no floor
    assert glue.resolve_options("wsc", {"epochs": 2}, recipe="2025")["epochs"] == 2
    assert glue.resolve_options("rte", {"schedule": "linear"}, recipe="2025")["min_lr_ratio"] == 0.0
    with pytest.raises(UserError, match="min_lr_ratio 0.2 needs schedule 'cosine'"):
        glue.resolve_options("rte", {"schedule": "linear", "min_lr_ratio": 0.2}, recipe="2025")
    with pytest.raises(UserError, match="unknown GLUE task 'cola' for the 2025 recipe"):
        glue.resolve_options("cola", recipe="2025")
    with pytest.raises(UserError, match="task 'cola' is not in the 2025 recipe"):
        glue.resolve_options("rte", {"cola": {"lr": 1e-4}}, recipe="2025")
    with pytest.raises(UserError, match="unknown GLUE recipe '2023'"):
        glue.resolve_options("rte", recipe="2023")
    # the 2024 recipe is the one it was
    assert glue.resolve_options("rte") == glue.DEFAULT_OPTIONS == RECIPES["2024"].defaults


@pytest.mark.skipif(not SUBSETS.is_dir(), reason="staged 2025 GLUE subsets not present")
def test_staged_training_subsets_have_the_recipe_sizes():
    for task, size in RECIPES["2025"].train_sizes.items():
        examples = load_examples(SUBSETS / f"{task}.train.jsonl.gz", TASKS[task], limit=5)
        assert examples.records == size == 10_000 and len(examples.labels) == 5


# ---------------------------------------------------------------------------------------------- pooling


def _logits(model, tokenizer, texts: list[str], side: str):
    import torch

    tokenizer.padding_side = side
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_logits_do_not_depend_on_the_padding_side(models, arch):
    import torch

    tokenizer = load_tokenizer(models[arch])
    options = glue.resolve_options("rte", recipe="2025")
    model = load_classifier(models[arch], 2, tokenizer, options).eval()
    texts = ["the cat", "we saw a very big red tree house today", "dog ran home"]
    right, right_batch = _logits(model, tokenizer, texts, "right")
    left, left_batch = _logits(model, tokenizer, texts, "left")
    assert not torch.equal(right_batch["input_ids"], left_batch["input_ids"])  # the padding really moved
    alone = torch.cat([_logits(model, tokenizer, [text], "right")[0] for text in texts])
    torch.testing.assert_close(right, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=1e-5)
    assert torch.equal(right.argmax(-1), left.argmax(-1))
    width = left_batch["input_ids"].shape[1]
    assert last_token_index(left_batch["attention_mask"]).tolist() == [width - 1] * 3
    assert last_token_index(right_batch["attention_mask"]).tolist() == [
        int(n) - 1 for n in right_batch["attention_mask"].sum(-1)
    ]

    # The Hugging Face head finds the last token by comparing ids with pad_token_id and counts
    # positions from the left edge: it agrees under right padding with a distinct padding token
    # (the 2024 recipe's results are unchanged), and for GPT-2 padded with its end-of-text token
    # it moves with the padding side.
    hf = model.classifier
    with torch.no_grad():
        hf_right = hf(**right_batch).logits
        hf_left = hf(**left_batch).logits
    if arch == "llama":
        torch.testing.assert_close(hf_right, alone, atol=1e-5, rtol=1e-5)
    else:
        assert not torch.allclose(hf_left, alone, atol=1e-3)


# ---------------------------------------------------------------------------------------------- end to end


def test_2025_recipe_end_to_end_writes_results_and_predictions(models, tmp_path):
    rng = random.Random(0)
    subsets, data = tmp_path / "subsets", tmp_path / "data"
    _write_jsonl(subsets / "mnli.train.jsonl", _records("mnli", 10_000, rng))  # the recipe's subset size
    _write_jsonl(data / "mnli.train.jsonl", _records("mnli", 40, rng))  # a full-size stand-in: wrong size
    for task in ("boolq", "mnli", "mrpc", "multirc", "wsc"):
        if task != "mnli":
            _write_jsonl(data / f"{task}.train.jsonl", _records(task, 16, rng))
        _write_jsonl(data / f"{task}.valid.jsonl", _records(task, 10 + len(task), rng))
    out = tmp_path / "out"
    run = dict(max_train_examples=12, overrides={"epochs": 1}, progress=False, recipe="2025")

    with pytest.raises(UserError, match=r"mnli\.train\.jsonl: 40 mnli training examples.*10000-example subset"):
        glue.evaluate_glue(models["llama"], [data, subsets], out, **run)
    assert not out.exists()  # checked before anything is written

    results = glue.evaluate_glue(models["llama"], [subsets, data], out, **run)
    assert json.loads((out / "results.json").read_text()) == results
    assert results["recipe"] == "2025" and results["settings"]["defaults"]["lr"] == 3e-5
    assert results["settings"]["train_sizes"] == {"mnli": 10_000, "qqp": 10_000}
    assert set(results["settings"]["data_not_bundled"]) == {"boolq", "multirc"}
    assert results["evaluated"] == ["boolq", "mnli", "mrpc", "multirc", "wsc"]
    assert set(results["missing"]) == {"qqp", "rte"} and "qqp.train.jsonl" in results["missing"]["qqp"]
    tasks = results["tasks"]
    assert tasks["mnli"]["train_file"] == str(subsets.resolve() / "mnli.train.jsonl")
    assert {t: e["options"]["batch_size"] for t, e in tasks.items()} == {
        "boolq": 16, "mnli": 32, "mrpc": 32, "multirc": 16, "wsc": 32
    }
    assert {t: e["selected_by"] for t, e in tasks.items()} == {
        "boolq": "accuracy", "mnli": "accuracy", "mrpc": "f1", "multirc": "accuracy", "wsc": "accuracy"
    }
    assert all(e["max_length_used"] == 256 and e["epochs_run"] == 1 for e in tasks.values())  # 512 capped

    predictions = json.loads((out / "predictions.json").read_text())
    assert list(predictions) == results["evaluated"]
    for task, entry in tasks.items():
        preds = predictions[task]["predictions"]
        assert [p["id"] for p in preds] == [f"{task}_{i}" for i in range(entry["valid_examples"])]
        assert all(isinstance(p["pred"], int) and 0 <= p["pred"] < TASKS[task].num_labels for p in preds)
        labels = [r["label"] for r in map(json.loads, (data / f"{task}.valid.jsonl").read_text().splitlines())]
        accuracy = float(np.mean([p["pred"] == label for p, label in zip(preds, labels)]))
        assert accuracy == pytest.approx(entry["scores"]["accuracy"])
    assert results["accuracy_average"] == pytest.approx(np.mean([e["scores"]["accuracy"] for e in tasks.values()]))

    # a 2024 run cannot share the folder (nor its predictions.json)
    with pytest.raises(UserError, match=r"results\.json: results of the 2025 recipe are in this folder"):
        glue.evaluate_glue(models["llama"], data, out, tasks=["wsc"], progress=False)


def test_cli_recipe_2025_default_folder_and_not_bundled_data(models, tmp_path, monkeypatch):
    rng = random.Random(1)
    data = tmp_path / "data"
    for split in ("train", "valid"):
        _write_jsonl(data / f"rte.{split}.jsonl", _records("rte", 8, rng))

    def fake_finetune(model_dir, tokenizer, train_task, scored, data, options, scratch, progress):
        n = len(data["select"].labels)
        entry = {"metric": "accuracy", "value": 0.5, "scores": {"accuracy": 0.5, "f1": 0.5, "mcc": 0.0},
                 "epochs_run": options["epochs"], "best_epoch": 1, "selected_by": "accuracy",
                 "max_length_used": 256, "predictions": [1] * n, "seconds": 0.1}
        return {t.name: entry for t in scored}

    monkeypatch.setattr(glue, "_finetune", fake_finetune)
    monkeypatch.setenv("BABYLLAMA_GLUE_DATA", str(data))
    parser = argparse.ArgumentParser()
    glue.add_parser(parser.add_subparsers())
    args = parser.parse_args(["glue", str(models["gpt2"]), "--recipe", "2025", "--set", "rte.epochs=3"])
    assert args.func(args) == 0
    results = json.loads((models["gpt2"] / "glue_2025" / "results.json").read_text())
    assert results["tasks"]["rte"]["options"]["epochs"] == 3 and results["evaluated"] == ["rte"]
    assert "data not bundled" in results["missing"]["boolq"] and "data not bundled" in results["missing"]["multirc"]
    assert "data not bundled" not in results["missing"]["mnli"]
    predictions = json.loads((models["gpt2"] / "glue_2025" / "predictions.json").read_text())
    assert predictions == {"rte": {"predictions": [{"id": f"rte_{i}", "pred": 1} for i in range(8)]}}
    with pytest.raises(UserError, match="GLUE data folder not found"):
        glue.evaluate_glue(models["gpt2"], [data, tmp_path / "absent"], tmp_path / "o", recipe="2025")
    with pytest.raises(SystemExit):
        parser.parse_args(["glue", "M", "--recipe", "2023"])
