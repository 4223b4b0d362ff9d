"""Parity with lm-evaluation-harness (the `parity` extra): same per-item choices and accuracies.

Runs the harness offline on a tiny saved Llama with task YAMLs in the BabyLM 2024 pipeline's form
(``blimp_filtered`` and ``ewok_filtered`` templates) pointing at local jsonl files cut from the
real BLiMP and EWoK data, and compares with ``evaluate_zero_shot`` on the same files.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from babyllama.evaluation.minimal_pair_tasks import load_task
from babyllama.evaluation.zero_shot import encode_items, evaluate_zero_shot, load_model, score_encoded

from conftest import shared_data

DATA = shared_data()
PARADIGMS = ["anaphor_number_agreement", "wh_questions_object_gap", "existential_there_quantifiers_1"]
EWOK_DOMAIN = "social-properties"
N_ITEMS = 120


BLIMP_TEMPLATE = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {path}
output_type: multiple_choice
validation_split: train
doc_to_text: ""
doc_to_target: 0
doc_to_choice: "{{{{[sentence_good, sentence_bad]}}}}"
num_fewshot: 0
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""
EWOK_TEMPLATE = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {path}
output_type: multiple_choice
validation_split: train
doc_to_text: "{{{{Context1}}}}"
doc_to_target: 0
doc_to_choice: "{{{{[Target1, Target2]}}}}"
num_fewshot: 0
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""


def cut(src: Path, dst: Path, n: int) -> list[dict]:
    with gzip.open(src, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f.read().splitlines()[:n]]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pytest.importorskip("lm_eval")
    if not (DATA / "blimp").is_dir():
        pytest.skip(f"{DATA} not available")
    root = tmp_path_factory.mktemp("parity")
    texts = []
    for name in PARADIGMS:
        records = cut(DATA / "blimp" / f"{name}.jsonl.gz", root / "blimp" / f"{name}.jsonl", N_ITEMS)
        texts += [r[k] for r in records for k in ("sentence_good", "sentence_bad")]
    records = cut(DATA / "babylm_eval_2024" / "ewok_filtered" / f"{EWOK_DOMAIN}.jsonl.gz",
                  root / "ewok" / f"{EWOK_DOMAIN}.jsonl", N_ITEMS)
    texts += [r[k] for r in records for k in ("Context1", "Target1", "Target2")]

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model_dir = root / "model"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    yaml_dir = root / "tasks"
    yaml_dir.mkdir()
    names = {}
    for name in PARADIGMS:
        names[f"parity_blimp_{name}"] = ("blimp", name)
        (yaml_dir / f"parity_blimp_{name}.yaml").write_text(
            BLIMP_TEMPLATE.format(name=f"parity_blimp_{name}", path=json.dumps(str(root / "blimp" / f"{name}.jsonl"))))
    names["parity_ewok"] = ("ewok", EWOK_DOMAIN)
    (yaml_dir / "parity_ewok.yaml").write_text(
        EWOK_TEMPLATE.format(name="parity_ewok", path=json.dumps(str(root / "ewok" / f"{EWOK_DOMAIN}.jsonl"))))
    return root, model_dir, yaml_dir, names


def run_harness(model_dir: Path, yaml_dir: Path, names: list[str], root: Path, monkeypatch) -> dict:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(root / "hf_cache"))
    import lm_eval
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=names,
        task_manager=TaskManager(include_path=str(yaml_dir)), batch_size=1, device="cpu", log_samples=True,
    )


def test_same_choices_and_accuracies_as_lm_eval(setup, monkeypatch):
    root, model_dir, yaml_dir, names = setup
    harness = run_harness(model_dir, yaml_dir, list(names), root, monkeypatch)
    ours = evaluate_zero_shot(model_dir, {"blimp": root / "blimp", "ewok": root / "ewok"}, None, progress=False)

    model, tokenizer, _ = load_model(model_dir)
    for harness_name, (task, subtask) in names.items():
        sub = next(s for s in load_task(task, root / task) if s.name == subtask)
        scores = score_encoded(model, encode_items(tokenizer, sub.items, 128), progress=False)
        samples = sorted(harness["samples"][harness_name], key=lambda s: s["doc_id"])
        assert len(samples) == len(scores) == N_ITEMS
        for sample, ours_item in zip(samples, scores):
            theirs = [resp[0] for resp in sample["filtered_resps"]]
            assert ours_item == pytest.approx(theirs, abs=1e-3)
            # argmax with ties to the first index: gold (0) is chosen iff its score is the highest
            assert (ours_item[0] >= ours_item[1]) == (sample["acc"] == 1.0)
        assert ours["tasks"][task]["subtasks"][subtask]["accuracy"] == harness["results"][harness_name]["acc,none"]
