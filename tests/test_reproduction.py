"""The authors' recipe as named options (docs/reproduction.md): each one changes what it says, on a tiny case."""

import json

import numpy as np
import pytest
import torch

from babyllama.cli import shipped_config
from babyllama.config import CorpusConfig, StageConfig, TokenizerConfig, from_dict, load_experiment
from babyllama.data.corpus import prepare_corpus
from babyllama.data.token_arrays import TokenSplit, chunks_per_epoch, encode_split, epoch_chunk_starts
from babyllama.errors import UserError
from babyllama.evaluation.distill_validation import evaluate_distill_loss
from babyllama.evaluation.perplexity import evaluate_loss
from babyllama.losses import chunked_lm_loss, distillation_loss
from babyllama.model import build_model, llama_config
from babyllama.pipeline import load_token_data, run_tokenizer
from babyllama.teachers import ensemble_logits, teacher_dtype
from babyllama.tokenizer import for_encoding, load_tokenizer, save_tokenizer, train_tokenizer
from babyllama.train import train_stage

from conftest import write_corpus

TWO_LINES = "The dog runs .\nThe dogs run .\n"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    lines = ["The dog runs .", "The dogs run .", "A child plays with the ball ."] * 40
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(train_tokenizer(lines, vocab_size=300), out)
    return out


def test_two_lines_under_both_encodings(tmp_path, tok_dir):
    text_file = tmp_path / "two.txt"
    text_file.write_text(TWO_LINES)
    ours_tok = load_tokenizer(tok_dir)
    ref_tok = for_encoding(load_tokenizer(tok_dir), "reference_whole_file")
    ours = np.asarray(encode_split(ours_tok, [text_file], tmp_path / "c").tokens).tolist()
    ref = np.asarray(encode_split(ref_tok, [text_file], tmp_path / "c", "reference_whole_file").tokens).tolist()
    # ours: each line with a prefix space; the authors': the file as one string, no line start gets one
    assert ours_tok.convert_ids_to_tokens(ours) == ["ĠThe", "Ġdog", "Ġruns", "Ġ.", "Ċ", "ĠThe", "Ġdogs", "Ġrun",
                                                   "Ġ.", "Ċ"]
    assert ref_tok.convert_ids_to_tokens(ref) == ["The", "Ġdog", "Ġruns", "Ġ.", "Ċ", "The", "Ġdogs", "Ġrun",
                                                 "Ġ.", "Ċ"]
    assert len(list((tmp_path / "c").glob("*.json"))) == 2  # the encoding is part of the cache key
    # the saved tokenizer encodes as training did: AutoTokenizer gives the training array's ids
    save_tokenizer(ref_tok, tmp_path / "saved")
    assert load_tokenizer(tmp_path / "saved")(TWO_LINES, add_special_tokens=False)["input_ids"] == ref
    assert load_tokenizer(tok_dir)(TWO_LINES, add_special_tokens=False)["input_ids"] != ref


@pytest.fixture(scope="module")
def reference_corpus(tmp_path_factory):
    """A corpus whose last lines (the validation 5%) hold a word the first 95% never use, and blank lines."""
    root = tmp_path_factory.mktemp("refcorpus")
    lines = ["the dog runs .", "", "the cat sees the ball ."] * 60 + ["zebra zebra zebra ."] * 8
    (root / "src" / "animals.train").parent.mkdir()
    (root / "src" / "animals.train").write_text("\n".join(lines) + "\n")
    (root / "src" / "animals.dev").write_text("the dog sees the cat .\n\nthe cat runs .\n")
    return root


def test_blank_lines_kept_through_the_split(reference_corpus):
    ours = prepare_corpus(CorpusConfig(path=str(reference_corpus / "src"), clean=False), reference_corpus / "ours")
    kept = prepare_corpus(CorpusConfig(path=str(reference_corpus / "src"), clean=False, keep_blank_lines=True),
                          reference_corpus / "kept")
    assert ours["splits"]["train"]["animals"]["lines"] + ours["splits"]["valid"]["animals"]["lines"] == 128
    assert kept["splits"]["train"]["animals"]["lines"] + kept["splits"]["valid"]["animals"]["lines"] == 188
    assert kept["splits"]["valid"]["animals"]["lines"] == round(188 * 0.05)  # the split counts blank lines
    assert "\n\n" in (reference_corpus / "kept" / "train" / "animals.txt").read_text()
    assert "\n\n" not in (reference_corpus / "ours" / "train" / "animals.txt").read_text()
    assert (reference_corpus / "kept" / "test" / "animals.txt").read_text() == \
        "the dog sees the cat .\n\nthe cat runs .\n"


def test_tokenizer_training_text_and_byte_alphabet(reference_corpus):
    prepared = reference_corpus / "kept"
    if not prepared.is_dir():
        prepare_corpus(CorpusConfig(path=str(reference_corpus / "src"), clean=False, keep_blank_lines=True), prepared)
    configs = {"ours": TokenizerConfig(vocab_size=300),
               "ours_no_alphabet": TokenizerConfig(vocab_size=300, byte_alphabet=False),
               "whole": TokenizerConfig(vocab_size=300, training_text="whole_train_files", byte_alphabet=False)}
    vocab = {name: set(run_tokenizer(c, prepared, reference_corpus / f"tok-{name}").get_vocab())
             for name, c in configs.items()}
    # the validation part's word is learnt only from the whole files; their newlines give "Ċ" a token
    assert "Ġzebra" in vocab["whole"] and "Ġzebra" not in vocab["ours"] | vocab["ours_no_alphabet"]
    assert "Ċ" in vocab["whole"] and "Ċ" not in vocab["ours_no_alphabet"]
    # the pre-seeded alphabet holds bytes the text never uses; without it they cannot be encoded
    assert "Q" in vocab["ours"] and "Q" not in vocab["ours_no_alphabet"]
    no_alphabet = load_tokenizer(reference_corpus / "tok-ours_no_alphabet")
    assert no_alphabet.convert_ids_to_tokens(no_alphabet(" Q", add_special_tokens=False)["input_ids"]) == ["Ġ"]


def test_reference_pipeline_saves_a_tokenizer_that_encodes_like_training(reference_corpus, tmp_path):
    prepared = reference_corpus / "kept"
    if not prepared.is_dir():
        prepare_corpus(CorpusConfig(path=str(reference_corpus / "src"), clean=False, keep_blank_lines=True), prepared)
    config = TokenizerConfig(vocab_size=300, encoding="reference_whole_file", training_text="whole_train_files")
    tok = run_tokenizer(config, prepared, tmp_path / "tok")
    data = load_token_data(prepared, tok, tmp_path / "cache", config.encoding)
    text = (prepared / "train" / "animals.txt").read_text()
    reloaded = load_tokenizer(tmp_path / "tok")
    assert reloaded(text, add_special_tokens=False)["input_ids"] == np.asarray(data.train.tokens).tolist()
    assert data.train.n_bytes == len(text.encode())


def test_chunk_starts_under_both_samplers():
    n_tokens, seq = 2000, 32
    n = chunks_per_epoch(n_tokens, seq)
    per_epoch = epoch_chunk_starts(n_tokens, seq, seed=3, epoch=0)
    per_sample = epoch_chunk_starts(n_tokens, seq, seed=3, epoch=0, sampling="per_sample_offset")
    assert len(per_epoch) == len(per_sample) == n
    assert len(set(per_epoch % seq)) == 1  # one offset for the epoch: disjoint windows
    assert len(set(per_sample % seq)) > 10  # a fresh offset per chunk
    assert sorted(per_sample // seq) == list(range(n))  # chunk i starts in [i*seq, (i+1)*seq)
    assert per_sample.max() + seq + 1 <= n_tokens
    gaps = np.diff(np.sort(per_sample))
    assert (gaps < seq + 1).any() and (gaps > seq + 1).any()  # windows overlap in places and leave gaps
    assert np.array_equal(per_sample, epoch_chunk_starts(n_tokens, seq, 3, 0, "per_sample_offset"))  # resumable
    assert not np.array_equal(per_sample, epoch_chunk_starts(n_tokens, seq, 3, 1, "per_sample_offset"))


def test_option_values_are_validated():
    def stage(**kw):
        return from_dict(StageConfig, kw, "s")

    for section, key, value in (("train", "select_on", "val_kd"), ("train", "chunk_sampling", "random"),
                                ("train", "precision", "fp32")):
        with pytest.raises(UserError, match=f"{key}: got '{value}'"):
            stage(**{section: {key: value}}).validate("models.m")
    with pytest.raises(UserError, match="select_on: got 'val_distill_loss', expected val_loss for kind: pretrain"):
        stage(train={"select_on": "val_distill_loss"}).validate("models.m")
    with pytest.raises(UserError, match="chunk_sampling.*teacher_cache"):
        stage(kind="distill", teachers=["t"], train={"chunk_sampling": "per_sample_offset"},
              distill={"teacher_cache": "cache"}).validate("models.m")
    stage(kind="distill", teachers=["t"], train={"select_on": "val_distill_loss", "precision": "fp16",
                                                 "chunk_sampling": "per_sample_offset"}).validate("models.m")
    for key, value in (("encoding", "whole_file"), ("training_text", "all")):
        with pytest.raises(UserError, match=f"tokenizer.{key}: got '{value}'"):
            TokenizerConfig(**{key: value}).validate("tokenizer")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from babyllama.tokenizer import wrap

    words = Tokenizer(models.WordLevel({"<unk>": 0, "dog": 1}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(UserError, match="tokenizer.path x: encoding reference_whole_file needs a byte-level BPE"):
        for_encoding(wrap(words), "reference_whole_file", "tokenizer.path x")


def test_fp16_keeps_float32_teacher_weights():
    assert teacher_dtype("same", "fp16") == torch.float32  # the authors': fp32 weights under fp16 autocast
    assert teacher_dtype("same", "bf16") == torch.bfloat16  # ours
    assert teacher_dtype("same", "no") == torch.float32
    assert teacher_dtype("float16", "fp16") == torch.float16  # an explicit dtype wins


def test_fp16_gradients_survive_until_the_loss_scale_is_applied():
    torch.manual_seed(0)
    logits = torch.randn(4096, 64)
    labels = torch.randint(0, 64, (4096,))
    scale = 2.0 ** 16
    ref = logits.clone().requires_grad_()
    (chunked_lm_loss(ref, None, labels).loss * scale).backward()
    half = logits.half().requires_grad_()
    (chunked_lm_loss(half, None, labels).loss * scale).backward()
    assert half.grad.dtype == torch.float16
    # unscaled, these gradients (about 1/4096 per row) are mostly below fp16's smallest normal
    assert torch.allclose(half.grad.float(), ref.grad, rtol=1e-2, atol=1e-3)


def test_the_shipped_paper_config_selects_the_authors_recipe():
    cfg = load_experiment(shipped_config("babyllama2/strict_small.yaml"))
    assert cfg.corpus.keep_blank_lines and cfg.models["baseline_100m"].corpus.keep_blank_lines
    assert (cfg.tokenizer.encoding, cfg.tokenizer.training_text, cfg.tokenizer.byte_alphabet) == \
        ("reference_whole_file", "whole_train_files", False)
    for name, stage in cfg.models.items():
        assert (stage.train.precision, stage.train.chunk_sampling) == ("fp16", "per_sample_offset"), name
    assert cfg.models["student"].train.select_on == "val_distill_loss"
    assert cfg.models["student"].distill.reduction == "reference"


# ---- validation distillation loss and checkpoint selection


def _tiny(vocab: int, seed: int):
    return build_model(llama_config(from_dict(StageConfig, {"model": {"preset": "tiny"}}, "s").model, vocab, 0, 1, 2),
                       seed=seed).eval()


@pytest.mark.parametrize("reduction", ["per_token", "reference"])
def test_validation_kd_matches_the_training_loss_on_full_logits(reduction):
    vocab, seq = 50, 16
    split = TokenSplit(np.random.default_rng(0).integers(3, vocab, 5 * seq + 7).astype(np.uint16), 100)
    student, teachers = _tiny(vocab, 0), [_tiny(vocab, 1), _tiny(vocab, 2)]
    got = evaluate_distill_loss(student, teachers, split, seq, 64, 0, torch.device("cpu"), 0.3, 2.0, reduction)
    plain = evaluate_loss(student, split, seq, 64, 0, torch.device("cpu"))
    assert got["loss"] == pytest.approx(plain["loss"]) and got["bpb"] == pytest.approx(plain["bpb"])
    from babyllama.data.token_arrays import eval_batches

    (inputs, labels), = list(eval_batches(split.tokens, seq, 64, 0))  # one batch of 6 chunks, the last padded
    with torch.no_grad():
        want = distillation_loss(student(input_ids=inputs).logits, ensemble_logits(teachers, inputs), labels,
                                 0.3, 2.0, reduction)
    assert got["kd"] == pytest.approx(want.kd.item(), rel=1e-5)
    assert got["distill_loss"] == pytest.approx(want.loss.item(), rel=1e-5)


def test_selection_keeps_a_different_checkpoint_when_the_losses_disagree(tmp_path_factory):
    """A teacher that only ever says "zebra": the student (alpha 0) moves towards it, so its validation
    KD falls while its cross-entropy on real text rises; each rule keeps its own minimum."""
    root = tmp_path_factory.mktemp("select")
    corpus = write_corpus(root / "corpus")
    zebra = root / "zebra"
    zebra.mkdir()
    (zebra / "zebra.train").write_text("zebra zebra zebra zebra .\n" * 400)
    lines = (corpus / "synthetic_a.train").read_text().splitlines() + ["zebra zebra ."] * 20
    tok_dir = root / "tok"
    save_tokenizer(train_tokenizer(lines, vocab_size=320), tok_dir)
    tok = load_tokenizer(tok_dir)

    def prepared(src, name):
        prepare_corpus(CorpusConfig(path=str(src)), root / name)
        return load_token_data(root / name, tok, root / "cache")

    def stage(**kw):
        train = {"seq_length": 32, "batch_size": 8, "epochs": 1, "max_steps": 8, "lr": 1e-2, "warmup_steps": 0,
                 "weight_decay": 0.0, "log_every": 4, "eval_every": 2, **kw.pop("train", {})}
        return from_dict(StageConfig, {"model": {"preset": "tiny"}, "train": train, **kw}, "s")

    train_stage("zebra", stage(train={"max_steps": 24, "eval_every": 24, "lr": 2e-2}), tok, prepared(zebra, "zebra-prep"), root / "teacher",
                progress=False)
    data = prepared(corpus, "prep")
    kept = {}
    for rule in ("val_loss", "val_distill_loss"):
        out = root / rule
        metrics = train_stage("s", stage(kind="distill", teachers=[str(root / "teacher")], distill={"alpha": 0.0},
                                         train={"select_on": rule}),
                              tok, data, out, [root / "teacher"], progress=False)
        evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["event"] == "eval"]
        values = {r["step"]: r[rule] for r in evals}
        assert metrics["best_step"] == min(values, key=values.get)
        assert metrics[rule] == pytest.approx(min(values.values()), rel=1e-5)  # the kept model is that checkpoint
        kept[rule] = metrics["best_step"]
        assert all("val_kd" in r for r in evals)
    assert kept["val_loss"] < kept["val_distill_loss"]


def test_the_authors_options_run_through_the_pipeline(tmp_path):
    """Every option of strict_small.yaml on a tiny experiment (one teacher, one student)."""
    from babyllama.config import resolve_experiment
    from babyllama.pipeline import run_experiment

    from conftest import tiny_experiment

    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "synthetic_a.train").write_text((corpus / "synthetic_a.train").read_text().replace(" .\n", " .\n\n"))
    data = tiny_experiment(corpus, tmp_path / "run", chunk_sampling="per_sample_offset")
    data["corpus"]["keep_blank_lines"] = True
    data["tokenizer"].update(encoding="reference_whole_file", training_text="whole_train_files", byte_alphabet=False)
    data["models"] = {"teacher1": data["models"]["teacher1"],
                      "student": {"kind": "distill", "teachers": ["teacher1"],
                                  "train": {"seed": 3, "select_on": "val_distill_loss"}}}
    results = run_experiment(resolve_experiment(data), progress=False, evaluate=False)
    student = tmp_path / "run" / "student"
    evals = [r for r in map(json.loads, (student / "metrics.jsonl").read_text().splitlines()) if r["event"] == "eval"]
    values = {r["step"]: r["val_distill_loss"] for r in evals}
    assert results["student"]["best_step"] == min(values, key=values.get)
    train_text = (tmp_path / "run" / "corpus" / "train" / "synthetic_a.txt").read_text()
    assert "\n\n" in train_text  # blank lines kept
    ids = load_tokenizer(student)(train_text, add_special_tokens=False)["input_ids"]
    cached = [np.load(p) for p in (tmp_path / "run" / "cache").glob("*.npy")]
    assert any(np.asarray(a[:len(ids)]).tolist() == ids for a in cached)  # the model folder encodes as training did
    assert load_tokenizer(student).tokenize("the dog")[0] == "the"  # no prefix space
