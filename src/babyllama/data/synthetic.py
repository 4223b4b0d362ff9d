"""Seeded generator of simple English: the built-in corpus that lets ``babyllama demo`` run offline.

The language is a small probabilistic grammar (:mod:`babyllama.data.grammar`, with its lexicon
and construction weights in ``grammar.yaml``), which the minimal-pair generator
(:mod:`babyllama.data.minimal_pairs`) reads too, so the evaluation pairs test exactly the
language the models were trained on.

Three sources mirror the BabyLM layout (``<stem>.train``, ``.dev``, ``.test``, one sentence or
utterance per line):

* ``synthetic_speech``: single sentences exercising agreement (determiner-noun, subject-verb,
  across relative clauses, conjoined subjects), reflexives, questions, negation, imperatives
  (:mod:`babyllama.data.sentence_maker`);
* ``synthetic_stories``: short stories whose characters are introduced once and then referred
  to by name, definite description or a pronoun of the right gender and number, so predicting
  a pronoun needs context from earlier lines (:mod:`babyllama.data.stories_and_dialogues`);
* ``synthetic_dialogue``: plain lines of a parent talking with a child about a topic object,
  with answers whose pronouns and verb forms agree with the question's noun (same module).

The mix of local agreement, selectional restrictions and cross-sentence reference gives small
models something to learn for several epochs: a ~2M-parameter model does not reach its floor
in a few.
"""

from __future__ import annotations

import random
from pathlib import Path

from babyllama.data.grammar import Grammar, load_grammar
from babyllama.data.sentence_maker import Maker, speech_lines
from babyllama.data.stories_and_dialogues import dialogue, story
from babyllama.errors import UserError
from babyllama.io import atomic_write_text

SPLITS = ("train", "dev", "test")


def _units(kind: str, m: Maker):
    """Endless groups of lines of a source ``kind``: single sentences, stories or dialogues."""
    if kind == "stories":
        while True:
            yield story(m)
    if kind == "dialogue":
        while True:
            yield dialogue(m)
    for line in speech_lines(m):
        yield [line]


def _take_words(units, target: int) -> list[str]:
    """Lines from ``units`` until they hold at least ``target`` whitespace-separated words."""
    lines: list[str] = []
    count = 0
    for unit in units:
        for line in unit:
            lines.append(line)
            count += len(line.split())
            if count >= target:
                return lines
    return lines


def generate_corpus(
    out_dir: str | Path, words: int = 300_000, seed: int = 0, grammar: Grammar | None = None
) -> dict[str, Path]:
    """Write the synthetic corpus in the BabyLM layout under ``out_dir``; return the paths.

    For each source of the grammar (``synthetic_speech``, ``synthetic_stories``,
    ``synthetic_dialogue``) writes ``<stem>.train`` with its share of ``words`` (so the training
    files hold about ``words`` words in total) and ``<stem>.dev`` / ``<stem>.test`` with
    ``heldout_fraction`` of that each. One sentence per line, UTF-8, identical for equal
    ``seed``; each file has its own random stream, so the splits do not share a sequence.
    Returns ``{file name: path}``, e.g. ``{"synthetic_speech.train": Path(...)}``.
    """
    if isinstance(words, bool) or not isinstance(words, int) or words < 1:
        raise UserError(f"words: expected a positive integer, got {words!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed: expected an integer, got {seed!r}")
    g = grammar or load_grammar()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: expected a directory for the synthetic corpus, found a file")
    total_share = sum(share for _, share in g.sources.values())
    paths: dict[str, Path] = {}
    for stem, (kind, share) in g.sources.items():
        train_words = max(1, round(words * share / total_share))
        for split in SPLITS:
            target = train_words if split == "train" else max(1, round(train_words * g.heldout_fraction))
            m = Maker(g, random.Random(f"babyllama-synthetic/{seed}/{stem}/{split}"))
            lines = _take_words(_units(kind, m), target)
            path = out_dir / f"{stem}.{split}"
            atomic_write_text(path, "\n".join(lines) + "\n")
            paths[path.name] = path
    return paths
