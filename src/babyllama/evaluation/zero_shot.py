"""Zero-shot minimal-pair evaluation (BLiMP, BLiMP supplement, EWoK, built-in pairs), fast.

Scoring is that of lm-evaluation-harness ``multiple_choice`` tasks with the ``acc`` metric, as the
BabyLM 2024 pipeline runs them:

- a choice's score is ``sum log P(choice tokens | context tokens)``, with no length normalisation;
- the harness scores ``context`` + ``" " + choice`` (target delimiter one space). With an empty
  context the choice is encoded without special tokens and the context is the prefix token (BOS,
  else EOS). With a context, ``context + " " + choice`` and ``context`` are encoded with the
  tokenizer's default special tokens and the choice tokens are what follows the context tokens;
- an item is correct when the gold choice (index 0) has the highest score, the first index
  winning ties (``numpy.argmax``);
- a subtask's accuracy is the mean over its items; a group (task) or field score is the unweighted
  mean of its subtasks' accuracies.

What makes it fast, with the same numbers:

- every distinct item is scored once (``blimp`` and ``blimp_filtered`` share most pairs);
- the choices of an item share a token prefix (the BOS token or context, and often the first words
  of a minimal pair). The prefix runs once; its key/value cache is then copied to one row per
  choice and only the differing suffixes run, so each token of an item goes through the model once;
- items are sorted by length and batched with right padding; logits are computed only at the
  positions that are scored (``logits_to_keep``) and reduced to ``logit[target] - logsumexp``
  without materialising a log-softmax copy; everything runs under ``torch.inference_mode`` in the
  compute dtype, with log-probabilities summed in float64.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from babyllama.errors import UserError
from babyllama.evaluation.minimal_pair_tasks import TASK_FORMATS, Item, Subtask, load_tasks
from babyllama.io import atomic_write_json
from babyllama.progress import Progress

TARGET_DELIMITER = " "
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_MAX_LENGTH = 2048  # the harness's fallback when neither config nor tokenizer gives one
LOG_INTERVAL_S = 10.0


@dataclass(frozen=True)
class EncodedItem:
    """Token ids of one item, as the harness builds them.

    ``choices[k]`` is the full sequence context + choice k (a tuple of ints, length ``n_k``);
    tokens at indices ``>= context_len`` are scored, each predicted from the tokens before it.
    """

    choices: tuple[tuple[int, ...], ...]
    context_len: int


def prefix_token_id(tokenizer) -> int:
    """The token that stands in for an empty context: BOS, else EOS (as the harness chooses)."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise UserError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has neither a BOS nor an EOS token; "
            "one is needed to score sentences with an empty context"
        )
    return token


def model_max_length(model, tokenizer) -> int:
    """The longest input the model takes: config ``n_positions`` / ``max_position_embeddings`` /
    ``n_ctx``, else the tokenizer's ``model_max_length``, else 2048 (the harness's order)."""
    config = getattr(model.config, "text_config", None) or model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**9:
        return value
    return DEFAULT_MAX_LENGTH


def encode_items(tokenizer, items: Sequence[Item], max_length: int, source: str | Path = "") -> list[EncodedItem]:
    """Encode ``items`` exactly as lm-evaluation-harness (``HFLM.loglikelihood``) does.

    Raises ``UserError`` (naming ``source`` and the item's line) when a sequence is longer than
    ``max_length`` + 1 tokens, where the harness would silently cut its start.
    """
    prefix = prefix_token_id(tokenizer)
    bos_text = tokenizer.decode([prefix])
    encoded: list[EncodedItem | None] = [None] * len(items)

    bare = [i for i, item in enumerate(items) if item.context == ""]
    texts = [TARGET_DELIMITER + choice for i in bare for choice in items[i].choices]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    at = 0
    for i in bare:
        seqs = []
        for cont in ids[at : at + len(items[i].choices)]:
            # The harness uses the first choice token as context when it already is the prefix token.
            ctx, cont = ([prefix], cont) if cont[0] != prefix else (cont[:1], cont[1:])
            seqs.append(tuple(ctx + cont))
        at += len(items[i].choices)
        encoded[i] = EncodedItem(tuple(seqs), 1)

    for special in (True, False):
        # Strings that already start with the prefix token's text get no special tokens (harness rule).
        group = [i for i, item in enumerate(items) if item.context and (not item.context.startswith(bos_text)) == special]
        if not group:
            continue
        contexts, wholes = [], []
        for i in group:
            context = items[i].context
            stripped = context.rstrip()
            spaces = context[len(stripped) :]  # trailing spaces move to the continuation
            contexts.append(stripped)
            wholes.extend(stripped + spaces + TARGET_DELIMITER + choice for choice in items[i].choices)
        context_ids = tokenizer(contexts, add_special_tokens=special)["input_ids"]
        whole_ids = tokenizer(wholes, add_special_tokens=special)["input_ids"]
        at = 0
        for i, ctx in zip(group, context_ids):
            n = len(items[i].choices)
            seqs = tuple(tuple(ctx) + tuple(whole[len(ctx) :]) for whole in whole_ids[at : at + n])
            at += n
            encoded[i] = EncodedItem(seqs, len(ctx))

    for item, enc in zip(items, encoded):
        longest = max(len(seq) for seq in enc.choices)
        if longest - 1 > max_length:
            raise UserError(
                f"{source}:{item.line}: item is {longest} tokens long, more than the model's context of {max_length} + 1"
            )
    return encoded


def _common_prefix(seqs: Sequence[tuple[int, ...]]) -> int:
    """Length of the longest token prefix shared by all ``seqs``."""
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for j in range(n):
        token = first[j]
        if any(s[j] != token for s in seqs[1:]):
            return j
    return n


def _accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def cache_keyword(model) -> str:
    """The forward keyword for a key/value cache: ``cache`` where the model's forward takes it
    (current transformers, which deprecates ``past_key_values`` and removes it in 5.40), else
    ``past_key_values`` (older releases and remote code)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _kept_logits(model, keep: torch.Tensor, fast_keep: bool, **inputs) -> tuple[torch.Tensor, object]:
    """Run ``model`` and return the logits at the ``True`` positions of ``keep`` (B, L) as a float32
    (N_keep, V) tensor in row-major order of ``keep``, with the model's key/value cache."""
    if fast_keep:
        out = model(**inputs, use_cache=True, logits_to_keep=keep)
        logits = out.logits
    else:  # models without ``logits_to_keep`` (older remote code): project every position
        out = model(**inputs, use_cache=True)
        logits = out.logits[keep]
    return logits.float(), out["cache"] if "cache" in out else out["past_key_values"]


def _target_logprobs(logits: torch.Tensor, rows: list[int], tokens: list[int]) -> torch.Tensor:
    """log P(tokens[i] | position rows[i]) from (N, V) logits: ``logit - logsumexp``, float64 (len(rows),)."""
    device = logits.device
    rows_t = torch.tensor(rows, dtype=torch.long, device=device)
    tokens_t = torch.tensor(tokens, dtype=torch.long, device=device)
    lse = torch.logsumexp(logits, dim=-1)
    return (logits[rows_t, tokens_t] - lse[rows_t]).double()


def score_encoded(
    model, encoded: Sequence[EncodedItem], batch_size: int = 64, progress: bool = True, desc: str = "zero-shot"
) -> list[tuple[float, ...]]:
    """Score every choice of every item: ``sum log P(choice tokens | context)`` per choice.

    ``batch_size`` bounds the sequences (choices) per forward pass. Returns one tuple of floats per
    item, in the order given. Identical items are scored once.
    """
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    device = next(model.parameters()).device
    pad_id = 0
    fast_keep = _accepts_logits_to_keep(model)

    unique: dict[EncodedItem, int] = {}
    for enc in encoded:
        unique.setdefault(enc, len(unique))
    items = list(unique)
    shared = [_common_prefix(item.choices) for item in items]
    # Slot of (item u, choice k) in the flat score vector.
    offsets = np.cumsum([0] + [len(item.choices) for item in items])
    scores = torch.zeros(int(offsets[-1]), dtype=torch.float64, device=device)

    def suffix_len(u: int) -> int:
        return max(len(seq) for seq in items[u].choices) - 1 - shared[u]

    order = sorted(range(len(items)), key=lambda u: (shared[u], suffix_len(u)), reverse=True)
    bar = Progress(sum(len(enc.choices) for enc in encoded), desc, unit="sequence", enabled=progress,
                   log_every_s=LOG_INTERVAL_S)
    done = 0
    max_choices = max((len(item.choices) for item in items), default=1)
    per_batch = max(1, batch_size // max_choices)
    counts = np.zeros(len(items), dtype=np.int64)
    for enc in encoded:
        counts[unique[enc]] += len(enc.choices)

    with torch.inference_mode():
        for start in range(0, len(order), per_batch):
            batch = order[start : start + per_batch]
            _score_batch(model, items, shared, offsets, batch, scores, pad_id, fast_keep, device)
            done += int(counts[batch].sum())
            bar.update(done)

    flat = scores.tolist()
    per_item = [tuple(flat[offsets[u] : offsets[u + 1]]) for u in range(len(items))]
    return [per_item[unique[enc]] for enc in encoded]


def _score_batch(model, items, shared, offsets, batch, scores, pad_id, fast_keep, device) -> None:
    """Add the log-probabilities of one batch of items into ``scores`` (float64, one slot per choice).

    Pass 1 runs each item's shared prefix (B, P_max) and scores the shared targets plus the first
    token after the prefix of every choice. Pass 2 runs each choice's remaining tokens (S, L_max)
    on a copy of its item's prefix cache, with positions continuing from the prefix length.
    """
    n = len(batch)
    width = max(shared[u] for u in batch)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=bool)
    keep = np.zeros((n, width), dtype=bool)
    for b, u in enumerate(batch):
        p, c = shared[u], items[u].context_len
        ids[b, :p] = items[u].choices[0][:p]
        mask[b, :p] = True
        keep[b, c - 1 : p] = True
    # Row of each kept position in the flattened logits.
    kept_row = (np.cumsum(keep.ravel()) - 1).reshape(n, width)

    rows, tokens, slots = [], [], []
    suffix_rows = []  # (b, u, k) for choices with tokens left after the prefix
    for b, u in enumerate(batch):
        p, c = shared[u], items[u].context_len
        first = items[u].choices[0]
        for k, seq in enumerate(items[u].choices):
            slot = int(offsets[u]) + k
            for j in range(c, p):  # shared targets, predicted at position j - 1
                rows.append(int(kept_row[b, j - 1]))
                tokens.append(first[j])
                slots.append(slot)
            if len(seq) > p:  # first token after the shared prefix
                rows.append(int(kept_row[b, p - 1]))
                tokens.append(seq[p])
                slots.append(slot)
            if len(seq) - 1 > p:
                suffix_rows.append((b, u, k))

    logits, cache = _kept_logits(
        model,
        torch.from_numpy(keep).to(device),
        fast_keep,
        input_ids=torch.from_numpy(ids).to(device),
        attention_mask=torch.from_numpy(mask).to(device),
    )
    if rows:
        values = _target_logprobs(logits, rows, tokens)
        scores.index_add_(0, torch.tensor(slots, dtype=torch.long, device=device), values)
    del logits
    if not suffix_rows:
        return

    s_width = max(len(items[u].choices[k]) - 1 - shared[u] for _, u, k in suffix_rows)
    s_ids = np.full((len(suffix_rows), s_width), pad_id, dtype=np.int64)
    s_mask = np.zeros((len(suffix_rows), s_width), dtype=bool)
    s_pos = np.zeros((len(suffix_rows), s_width), dtype=np.int64)
    for r, (b, u, k) in enumerate(suffix_rows):
        seq, p = items[u].choices[k], shared[u]
        length = len(seq) - 1 - p
        s_ids[r, :length] = seq[p : p + length]
        s_mask[r, :length] = True
        s_pos[r] = p + np.arange(s_width)
    s_kept_row = (np.cumsum(s_mask.ravel()) - 1).reshape(s_mask.shape)
    rows, tokens, slots = [], [], []
    for r, (b, u, k) in enumerate(suffix_rows):
        seq, p = items[u].choices[k], shared[u]
        slot = int(offsets[u]) + k
        for j in range(len(seq) - 1 - p):  # suffix position j predicts token p + j + 1
            rows.append(int(s_kept_row[r, j]))
            tokens.append(seq[p + j + 1])
            slots.append(slot)

    source = torch.tensor([b for b, _, _ in suffix_rows], dtype=torch.long, device=device)
    cache.reorder_cache(source)
    s_mask_t = torch.from_numpy(s_mask).to(device)
    logits, _ = _kept_logits(
        model,
        s_mask_t,
        fast_keep,
        input_ids=torch.from_numpy(s_ids).to(device),
        attention_mask=torch.cat([torch.from_numpy(mask).to(device)[source], s_mask_t], dim=1),
        position_ids=torch.from_numpy(s_pos).to(device),
        **{cache_keyword(model): cache},
    )
    values = _target_logprobs(logits, rows, tokens)
    scores.index_add_(0, torch.tensor(slots, dtype=torch.long, device=device), values)


def load_model(model_dir: str | Path, dtype: str = "float32", device: str | None = None):
    """Load a causal LM directory (ours or any Hugging Face one) and its tokenizer for scoring.

    Returns ``(model, tokenizer, device)``; the model is in ``eval()`` mode, in ``dtype``, on ``device``
    (default: CUDA when available, else CPU).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; expected one of: {', '.join(DTYPES)}")
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model directory (no config.json)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=DTYPES[dtype])
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{model_dir}: cannot load model or tokenizer ({first_line})") from None
    model.to(device).eval()
    return model, tokenizer, device


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def summarise(subtasks: dict[str, list[Subtask]], correct: dict[tuple[str, str], list[bool]]) -> dict:
    """Per-subtask, per-field and group accuracies from per-item correctness.

    ``correct[(task, subtask)]`` holds one bool per item. Group and field scores are unweighted
    means over subtasks, as the harness aggregates groups (``weight_by_size: false``).
    """
    tasks = {}
    for task, subs in subtasks.items():
        table = {}
        by_field: dict[str, list[str]] = {}
        for sub in subs:
            hits = correct[(task, sub.name)]
            table[sub.name] = {"accuracy": _mean(hits), "items": len(hits), "field": sub.field, "path": str(sub.path),
                               "correct": [int(h) for h in hits]}
            if sub.field is not None:
                by_field.setdefault(sub.field, []).append(sub.name)
        fields = {
            field: {
                "accuracy": _mean([table[name]["accuracy"] for name in names]),
                "subtasks": len(names),
                "items": sum(table[name]["items"] for name in names),
            }
            for field, names in sorted(by_field.items())
        }
        tasks[task] = {
            "accuracy": _mean([entry["accuracy"] for entry in table.values()]),
            "items": sum(entry["items"] for entry in table.values()),
            "subtasks": table,
            "fields": fields,
        }
    return tasks


def evaluate_zero_shot(
    model_dir: str | Path,
    tasks: dict[str, Path],
    out_dir: Path | None = None,
    batch_size: int = 64,
    dtype: str = "float32",
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Score the causal LM in ``model_dir`` on minimal-pair ``tasks`` ({task name: data folder}).

    All task files are parsed (and all items encoded) before anything is scored, so a malformed
    line stops the run early. Returns the results dict (written to ``out_dir/results.json`` when
    ``out_dir`` is given): ``tasks`` (per task: accuracy, items, ``subtasks``, ``fields``),
    ``summary`` ({task: accuracy}), ``settings`` (the exact scoring rule) and timings.
    """
    if not tasks:
        raise UserError("no zero-shot tasks given; pass at least one NAME=PATH")
    loaded = load_tasks(tasks)
    model, tokenizer, device = load_model(model_dir, dtype, device)
    max_length = model_max_length(model, tokenizer)

    encoded: list[EncodedItem] = []
    spans: dict[tuple[str, str], tuple[int, int]] = {}
    golds: list[int] = []
    for task, subs in loaded.items():
        for sub in subs:
            start = len(encoded)
            encoded.extend(encode_items(tokenizer, sub.items, max_length, sub.path))
            golds.extend(item.gold for item in sub.items)
            spans[(task, sub.name)] = (start, len(encoded))

    started = time.perf_counter()
    scores = score_encoded(model, encoded, batch_size, progress, desc=f"zero-shot {Path(model_dir).name}")
    elapsed = time.perf_counter() - started
    hits = [int(np.argmax(s)) == g for s, g in zip(scores, golds)]
    correct = {key: hits[a:b] for key, (a, b) in spans.items()}

    task_results = summarise(loaded, correct)
    for task, folder in tasks.items():
        task_results[task]["path"] = str(folder)
    results = {
        "model": str(model_dir),
        "tasks": task_results,
        "summary": {task: entry["accuracy"] for task, entry in task_results.items()},
        "settings": {
            "metric": "acc (lm-evaluation-harness multiple_choice): argmax over choices of the choice score",
            "choice_score": "sum of log P(choice token | preceding tokens) over the choice tokens, no length normalisation",
            "gold_choice": 0,
            "ties": "first choice wins (numpy.argmax), so a tie counts as correct",
            "target_delimiter": TARGET_DELIMITER,
            "empty_context": "prefix token (BOS, else EOS); choice encoded without special tokens",
            "context_encoding": "context + delimiter + choice encoded with the tokenizer's default special tokens; "
            "choice tokens are those after the encoded context",
            "prefix_token_id": prefix_token_id(tokenizer),
            "group_score": "unweighted mean of subtask accuracies",
            "field_score": "unweighted mean of the field's subtask accuracies",
            "task_formats": {task: list(TASK_FORMATS[task]) for task in tasks},
            "batch_size": batch_size,
            "dtype": dtype,
            "device": str(device),
            "max_length": max_length,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "sequences": sum(len(enc.choices) for enc in encoded),
        "unique_items": len(set(encoded)),
        "scoring_time_s": elapsed,
    }
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / "results.json", results)
    return results


def format_table(results: dict) -> str:
    """A plain-text table of one results dict: group scores, fields, then every subtask."""
    lines = [f"model: {results['model']}"]
    lines.append(f"{'task':<58} {'items':>7} {'accuracy':>9}")
    for task, entry in results["tasks"].items():
        lines.append(f"{task:<58} {entry['items']:>7} {100 * entry['accuracy']:>8.2f}%")
        for field, f in entry["fields"].items():
            label = f"  field {field} ({f['subtasks']} subtasks)"
            lines.append(f"{label:<58} {f['items']:>7} {100 * f['accuracy']:>8.2f}%")
        for name, sub in entry["subtasks"].items():
            lines.append(f"{'    ' + name:<58} {sub['items']:>7} {100 * sub['accuracy']:>8.2f}%")
    lines.append("summary: " + ", ".join(f"{t} {100 * a:.2f}%" for t, a in results["summary"].items()))
    return "\n".join(lines)


def _parse_task(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    if name not in TASK_FORMATS:
        raise argparse.ArgumentTypeError(f"unknown task {name!r}; expected one of: {', '.join(TASK_FORMATS)}")
    return name, Path(path)


def _run(args: argparse.Namespace) -> int:
    from babyllama.preflight import Problems, check_writable

    tasks: dict[str, Path] = {}
    for name, path in args.task or []:
        if name in tasks:
            raise UserError(f"--task {name} given twice")
        tasks[name] = path
    if not tasks:
        raise UserError("no zero-shot tasks given; pass --task NAME=PATH (e.g. --task blimp_filtered=data/blimp_filtered)")
    for model_dir in args.model_dir:
        if not (Path(model_dir) / "config.json").is_file():
            raise UserError(f"{model_dir}: not a model directory (no config.json)")
    names = [Path(m).name for m in args.model_dir]
    if args.out is not None and len(set(names)) < len(names):
        raise UserError("model directories share a folder name; evaluate them one at a time with --out")
    outs = [Path(m) / "zero_shot" if args.out is None else
            (Path(args.out) if len(args.model_dir) == 1 else Path(args.out) / Path(m).name) for m in args.model_dir]
    problems = Problems()
    for out in outs:
        problems.check(check_writable, out)
    problems.raise_if_any()
    for model_dir, out in zip(args.model_dir, outs):
        results = evaluate_zero_shot(
            model_dir, tasks, out, batch_size=args.batch_size, dtype=args.dtype, device=args.device,
            progress=not args.quiet,
        )
        print(format_table(results))
        print(f"wrote {out / 'results.json'}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``zero-shot`` subcommand to ``subparsers`` (under ``babyllama evaluate``)."""
    parser = subparsers.add_parser(
        "zero-shot",
        help="score causal LMs on minimal pairs (BLiMP, BLiMP supplement, EWoK, built-in pairs)",
        description=(
            "Score one or more causal LM directories (ours or any Hugging Face model directory with its "
            "tokenizer) on minimal-pair tasks the way lm-evaluation-harness scores them in the BabyLM 2024 "
            "pipeline: sum of log-probabilities of each choice, gold choice must score highest (ties count "
            "as correct), group score = unweighted mean of subtasks. Writes results.json per model and prints a table."
        ),
    )
    parser.add_argument("model_dir", nargs="+", metavar="MODEL_DIR", help="model directory (config.json, weights, tokenizer)")
    parser.add_argument(
        "--task",
        action="append",
        type=_parse_task,
        metavar="NAME=PATH",
        help=(
            "task name and its data folder of .jsonl/.jsonl.gz files, one file per subtask; repeatable. "
            f"NAME is one of: {', '.join(TASK_FORMATS)}"
        ),
    )
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass (default: 64)")
    parser.add_argument(
        "--dtype", choices=list(DTYPES), default="float32", help="compute dtype of the model (default: float32)"
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=(
            "output folder: OUT/results.json for one model, OUT/<model folder name>/results.json for several "
            "(default: MODEL_DIR/zero_shot/results.json)"
        ),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress log lines")
    parser.set_defaults(func=_run)
    return parser
