"""BLiMP-style minimal pairs for the synthetic language, from the same grammar as the corpus.

Each phenomenon file ``<phenomenon>.jsonl`` holds pairs in the BLiMP record format
(``sentence_good``, ``sentence_bad``, ``one_prefix_prefix``, ``one_prefix_word_good``,
``one_prefix_word_bad``, ``field``, ``linguistics_term``, ``UID``, ``simple_LM_method``,
``one_prefix_method``, ``two_prefix_method``, ``lexically_identical``, ``pairID``), so the
zero-shot evaluation reads them like BLiMP. The two sentences of a pair differ in exactly one
word: the good one is a sentence of the grammar, the bad one breaks one agreement or uses an
over-regularised form (``childs``, ``goed``). Pairs are drawn from a random stream separate from
the corpus's, so they are new sentences over the training vocabulary, and a model trained on
the synthetic corpus can be checked for what it learnt before any real data is involved.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

from babyllama.data.grammar import ANIMATE, Grammar, load_grammar, regular_past, regular_plural
from babyllama.data.sentence_maker import Maker, sentence
from babyllama.errors import UserError
from babyllama.io import atomic_write_text

# A generated pair: the good sentence's words, the index of the critical word, its bad
# replacement, and the final punctuation.
Draft = tuple[list[str], int, str, str]

PHENOMENA: tuple[str, ...] = (
    "determiner_noun_agreement",
    "subject_verb_agreement",
    "agreement_across_relative_clause",
    "reflexive_number_agreement",
    "reflexive_gender_agreement",
    "irregular_plural",
    "irregular_past_tense",
    "question_auxiliary_agreement",
)

# BLiMP's field and linguistics_term for each phenomenon.
_TERMS = {
    "determiner_noun_agreement": ("morphology", "determiner_noun_agreement"),
    "subject_verb_agreement": ("morphology", "subject_verb_agreement"),
    "agreement_across_relative_clause": ("morphology", "subject_verb_agreement"),
    "reflexive_number_agreement": ("morphology", "anaphor_agreement"),
    "reflexive_gender_agreement": ("morphology", "anaphor_agreement"),
    "irregular_plural": ("morphology", "irregular_forms"),
    "irregular_past_tense": ("morphology", "irregular_forms"),
    "question_auxiliary_agreement": ("morphology", "subject_verb_agreement"),
}

# Auxiliary forms and their other-number counterparts.
_SWAP_AUX = {"is": "are", "are": "is", "was": "were", "were": "was", "does": "do", "do": "does"}


def _words(*parts: str) -> list[str]:
    """Split phrases into single words."""
    return [w for p in parts for w in p.split()]


def _other_number(number: str) -> str:
    """The other grammatical number."""
    return "sg" if number == "pl" else "pl"


def _drafters(m: Maker) -> dict[str, Callable[[], Draft]]:
    """One function per phenomenon, each returning a fresh random :data:`Draft`."""
    g, rng = m.g, m.rng
    marked = [d.word for d in g.determiners if d.number != "any" and d.before_vowel == d.word]
    marked_by_number = {n: [w for w in marked if g.determiner[w].number == n] for n in ("sg", "pl")}

    def subject_np(gendered: bool = False):
        """A third-person subject: noun phrase or name (with a singular pronoun if ``gendered``)."""
        while True:
            s = m.name_np() if m.chance(0.25) else m.noun_np(ANIMATE)
            if not gendered or s.pronoun is not None:
                return s

    def verb_other_form(verb, agr: str) -> str:
        return verb.base if agr == "3sg" else verb.s

    def determiner_noun_agreement() -> Draft:
        s = subject_np()
        verb = g.verb_pool("transitive", s.cls).draw(rng)
        noun = g.noun_pool(verb.obj).draw(rng)
        number = m.number()
        det = m.pick(marked_by_number[number])
        adj = [g.adjective_pool(noun.cls).draw(rng)] if m.chance(0.3) else []
        words = _words(s.text, verb.past, det, *adj, noun.form(number))
        return words, len(words) - 1, noun.form(_other_number(number)), "."

    def subject_verb_agreement() -> Draft:
        s = subject_np()
        r = rng.random()
        if r < 0.6:
            verb = g.verb_pool("transitive", s.cls).draw(rng)
            good, bad = verb.finite("present", s.agr), verb_other_form(verb, s.agr)
            words = _words(s.text, good, m.noun_np(verb.obj).text)
        else:
            good = g.auxiliary("be_present" if r < 0.85 else "be_past", s.agr)
            words = _words(s.text, good, g.adjective_pool(s.cls).draw(rng))
            bad = _SWAP_AUX[good]
        return words, len(_words(s.text)), bad, "."

    def agreement_across_relative_clause() -> Draft:
        head = m.noun_np(ANIMATE)
        attractor_number = _other_number(head.number)
        if m.chance(0.5):  # subject relative: the attractor is the relative clause's object
            verb = g.verb_pool("transitive", head.cls).draw(rng)
            attractor = m.noun_np(verb.obj, number=attractor_number)
            relative = _words(head.text, "that", verb.past, attractor.text)
        else:  # object relative: the attractor is the relative clause's subject
            attractor = m.noun_np(ANIMATE, number=attractor_number)
            verb = g.verb_pool("transitive", attractor.cls, head.cls).draw(rng)
            relative = _words(head.text, "that", attractor.text, verb.past)
        if m.chance(0.6):
            main = g.verb_pool("intransitive", head.cls).draw(rng)
            good, bad = main.finite("present", head.agr), verb_other_form(main, head.agr)
            rest = []
        else:
            good = g.auxiliary("be_present", head.agr)
            bad, rest = _SWAP_AUX[good], [g.adjective_pool(head.cls).draw(rng)]
        return [*relative, good, *rest], len(relative), bad, "."

    def reflexive(words_before: list[str], subject, bad: str) -> Draft:
        return [*words_before, g.pronouns[subject.pronoun][3]], len(words_before), bad, "."

    def reflexive_number_agreement() -> Draft:
        s = subject_np(gendered=True)
        verb = g.verb_pool("reflexive", s.cls).draw(rng)
        if s.number == "sg":
            bad = g.pronouns["3pl"][3]
        else:
            gender = m.pick(("m", "f")) if s.cls == "person" else "n"
            bad = g.pronouns[f"3sg_{gender}"][3]
        return reflexive(_words(s.text, verb.past), s, bad)

    def reflexive_gender_agreement() -> Draft:
        while True:
            s = subject_np(gendered=True)
            if s.pronoun in ("3sg_m", "3sg_f"):
                break
        verb = g.verb_pool("reflexive", s.cls).draw(rng)
        bad = g.pronouns["3sg_f" if s.pronoun == "3sg_m" else "3sg_m"][3]
        return reflexive(_words(s.text, verb.past), s, bad)

    irregular_nouns = [
        n for ns in g.nouns.values() for n in ns if n.irregular and regular_plural(n.sg) not in g.vocabulary
    ]
    irregular_verbs = [v for v in g.verbs if v.irregular_past and regular_past(v.base) not in g.vocabulary]

    def irregular_plural() -> Draft:
        noun = m.pick(irregular_nouns)
        det = m.pick(
            [d.word for d in g.determiners if d.number in ("pl", "any") and d.word == d.before_vowel]
        )
        adj = [g.adjective_pool(noun.cls).draw(rng)] if m.chance(0.3) else []
        np = _words(det, *adj, noun.pl)
        if noun.cls in ANIMATE and m.chance(0.6):
            verb = g.verb_pool("intransitive", noun.cls).draw(rng)
            return [*np, verb.finite(m.tense(), "other")], len(np) - 1, regular_plural(noun.sg), "."
        s = subject_np()
        # grammar.yaml's "see" takes every class, so some verb always fits the object.
        verb = g.verb_pool("transitive", s.cls, noun.cls).draw(rng)
        words = _words(s.text, verb.past, *np)
        return words, len(words) - 1, regular_plural(noun.sg), "."

    def irregular_past_tense() -> Draft:
        verb = m.pick(irregular_verbs)
        s = m.noun_np((m.pick(verb.subj),)) if m.chance(0.75) else m.name_np()
        start = ["yesterday"] if m.chance(0.2) else []
        words = _words(*start, s.text, verb.past)
        index = len(words) - 1
        if verb.obj and (not verb.intransitive or m.chance(0.7)):
            words += _words(m.noun_np(verb.obj).text)
        elif verb.goal and m.chance(0.5):
            words += ["to", *_words(m.noun_np(("place",), number="sg", det="the").text)]
        return words, index, regular_past(verb.base), "."

    def question_auxiliary_agreement() -> Draft:
        s = subject_np()
        r = rng.random()
        if r < 0.4:
            verb = g.verb_pool("transitive", s.cls).draw(rng)
            aux = g.auxiliary("do_present", s.agr)
            return _words(aux, s.text, verb.base, m.noun_np(verb.obj).text), 0, _SWAP_AUX[aux], "?"
        if r < 0.7:
            aux = g.auxiliary("be_present" if m.chance(0.7) else "be_past", s.agr)
            return _words(aux, s.text, g.adjective_pool(s.cls).draw(rng)), 0, _SWAP_AUX[aux], "?"
        verb = g.verb_pool("transitive", s.cls).draw(rng)
        aux = g.auxiliary("do_present", s.agr)
        return _words("what", aux, s.text, verb.base), 1, _SWAP_AUX[aux], "?"

    return {
        "determiner_noun_agreement": determiner_noun_agreement,
        "subject_verb_agreement": subject_verb_agreement,
        "agreement_across_relative_clause": agreement_across_relative_clause,
        "reflexive_number_agreement": reflexive_number_agreement,
        "reflexive_gender_agreement": reflexive_gender_agreement,
        "irregular_plural": irregular_plural,
        "irregular_past_tense": irregular_past_tense,
        "question_auxiliary_agreement": question_auxiliary_agreement,
    }


def _record(phenomenon: str, pair_id: int, draft: Draft) -> dict:
    """The BLiMP record of a draft: both sentences and the one-prefix fields."""
    words, index, bad, end = draft
    bad_words = list(words)
    bad_words[index] = bad
    good_sentence, bad_sentence = sentence(words, end), sentence(bad_words, end)
    good_tokens, bad_tokens = good_sentence[: -len(end)].split(" "), bad_sentence[: -len(end)].split(" ")
    field, term = _TERMS[phenomenon]
    return {
        "sentence_good": good_sentence,
        "sentence_bad": bad_sentence,
        "one_prefix_prefix": " ".join(good_tokens[:index]),
        "one_prefix_word_good": good_tokens[index],
        "one_prefix_word_bad": bad_tokens[index],
        "field": field,
        "linguistics_term": term,
        "UID": phenomenon,
        "simple_LM_method": True,
        "one_prefix_method": True,
        "two_prefix_method": False,
        "lexically_identical": False,
        "pairID": str(pair_id),
    }


def generate_minimal_pairs(
    out_dir: str | Path, pairs_per_phenomenon: int = 200, seed: int = 0, grammar: Grammar | None = None
) -> list[Path]:
    """Write ``<phenomenon>.jsonl`` for every name in :data:`PHENOMENA`; return the paths.

    Each file holds ``pairs_per_phenomenon`` distinct pairs, identical for equal ``seed``. The
    random streams are named apart from the corpus's, so pairs are not copies of the training
    text even for the same seed.
    """
    if (
        isinstance(pairs_per_phenomenon, bool)
        or not isinstance(pairs_per_phenomenon, int)
        or pairs_per_phenomenon < 1
    ):
        raise UserError(f"pairs_per_phenomenon: expected a positive integer, got {pairs_per_phenomenon!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed: expected an integer, got {seed!r}")
    g = grammar or load_grammar()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: expected a directory for the minimal pairs, found a file")
    paths = []
    for phenomenon in PHENOMENA:
        m = Maker(g, random.Random(f"babyllama-minimal-pairs/{seed}/{phenomenon}"))
        draft = _drafters(m)[phenomenon]
        seen: set[str] = set()
        records: list[dict] = []
        for _attempt in range(50 * pairs_per_phenomenon):
            record = _record(phenomenon, len(records), draft())
            if record["sentence_good"] in seen:
                continue
            seen.add(record["sentence_good"])
            records.append(record)
            if len(records) == pairs_per_phenomenon:
                break
        else:
            raise UserError(
                f"{g.path}: the grammar yields only {len(records)} distinct {phenomenon} pairs, "
                f"fewer than the {pairs_per_phenomenon} asked for"
            )
        path = out_dir / f"{phenomenon}.jsonl"
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
        paths.append(path)
    return paths
