"""Seeded generator of simple English: the built-in corpus that lets ``babyllama demo`` run offline.

The language is a small probabilistic grammar. Its lexicon (nouns with irregular plurals, verbs
with irregular pasts, adjectives, determiners with number, pronouns, names with gender) and its
construction weights are data in ``grammar.yaml``, which the minimal-pair generator
(:mod:`babyllama.data.minimal_pairs`) reads too, so the evaluation pairs test exactly the
language the models were trained on. Words are drawn with Zipfian weights by their rank in the
file.

Three sources mirror the BabyLM layout (``<stem>.train``, ``.dev``, ``.test``, one sentence or
utterance per line):

* ``synthetic_speech``: single sentences exercising agreement (determiner-noun, subject-verb,
  across relative clauses, conjoined subjects), reflexives, questions, negation, imperatives;
* ``synthetic_stories``: short stories whose characters are introduced once and then referred
  to by name, definite description or a pronoun of the right gender and number, so predicting
  a pronoun needs context from earlier lines;
* ``synthetic_dialogue``: plain lines of a parent talking with a child about a topic object,
  with answers whose pronouns and verb forms agree with the question's noun.

The mix of local agreement, selectional restrictions and cross-sentence reference gives small
models something to learn for several epochs: a ~2M-parameter model does not reach its floor
in a few.
"""

from __future__ import annotations

import bisect
import functools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import yaml

from babyllama.errors import UserError
from babyllama.io import atomic_write_text

GRAMMAR_PATH = Path(__file__).with_name("grammar.yaml")
NOUN_CLASSES = ("person", "animal", "food", "toy", "thing", "body", "place")
ANIMATE = ("person", "animal")
OBJECTS = ("toy", "thing", "food")
SPLITS = ("train", "dev", "test")
SOURCE_KINDS = ("speech", "stories", "dialogue")
# Agreement slots of the auxiliary lists in grammar.yaml: [1sg, 3sg, other].
AGREEMENT_INDEX = {"1sg": 0, "3sg": 1, "other": 2}


def regular_plural(singular: str) -> str:
    """The plural the regular English rule gives (``box`` -> ``boxes``, ``baby`` -> ``babies``).

    A noun whose listed plural differs from this is an irregular plural; the minimal-pair
    generator also uses it to build over-regularised forms (``childs``).
    """
    if singular.endswith(("s", "x", "z", "ch", "sh")):
        return singular + "es"
    if singular.endswith("y") and singular[-2:-1] not in ("a", "e", "i", "o", "u"):
        return singular[:-1] + "ies"
    return singular + "s"


def regular_past(base: str) -> str:
    """The past the regular rule gives without consonant doubling (``go`` -> ``goed``).

    Used to tell irregular pasts apart and as the over-regularised (ungrammatical) form.
    """
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and base[-2:-1] not in ("a", "e", "i", "o", "u"):
        return base[:-1] + "ied"
    return base + "ed"


@dataclass(frozen=True)
class Noun:
    """A count noun: both forms, semantic class and gender (m, f, c for people; n otherwise)."""

    sg: str
    pl: str
    cls: str
    gender: str

    def form(self, number: str) -> str:
        """The form for ``number`` ("sg" or "pl")."""
        return self.sg if number == "sg" else self.pl

    @property
    def irregular(self) -> bool:
        """True when the plural is not the regular one (child/children, mouse/mice, ...)."""
        return self.pl != regular_plural(self.sg)


@dataclass(frozen=True)
class Verb:
    """A verb's four forms and the noun classes it combines with (see grammar.yaml)."""

    base: str
    s: str
    past: str
    ing: str
    subj: tuple[str, ...]
    obj: tuple[str, ...]
    intransitive: bool
    reflexive: bool
    dative: bool
    goal: bool
    stative: bool

    def finite(self, tense: str, agr: str) -> str:
        """The finite form: past for any subject, ``-s`` form for a 3sg subject in the present."""
        if tense == "past":
            return self.past
        return self.s if agr == "3sg" else self.base

    @property
    def irregular_past(self) -> bool:
        """True when the past is not regular (went, saw, ate; not hugged or cried)."""
        return self.past not in (regular_past(self.base), self.base + self.base[-1] + "ed")


@dataclass(frozen=True)
class Determiner:
    """A determiner, the number of noun it takes (sg, pl, any) and its pre-vowel form."""

    word: str
    number: str
    before_vowel: str


@dataclass(frozen=True)
class NP:
    """A noun phrase as generated: its text and the features agreement and reference need.

    ``pronoun`` is the grammar.yaml pronoun key (``3sg_f``, ``3pl`` ...) or None when the phrase
    has no singular pronoun (a person of unspecified gender).
    """

    text: str
    number: str
    person: int
    cls: str
    pronoun: str | None

    @property
    def agr(self) -> str:
        """Agreement slot: "1sg", "3sg" or "other" (plural, and singular ``you``)."""
        if self.number == "sg" and self.person == 1:
            return "1sg"
        if self.number == "sg" and self.person == 3:
            return "3sg"
        return "other"


class Pool:
    """Items drawn with Zipfian probability: the r-th item (from 1) has weight ``r ** -exponent``."""

    __slots__ = ("items", "cumulative")

    def __init__(self, items: Sequence, exponent: float):
        self.items = tuple(items)
        total = 0.0
        cumulative = []
        for rank in range(1, len(self.items) + 1):
            total += rank**-exponent
            cumulative.append(total)
        self.cumulative = cumulative

    def draw(self, rng: random.Random):
        """One item drawn with ``rng``."""
        i = bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])
        return self.items[min(i, len(self.items) - 1)]


def _interleave(lists: Sequence[Sequence]) -> list:
    """Round-robin merge, so that the union of ranked lists keeps each list's ranks comparable."""
    out = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


class Grammar:
    """The lexicon and weights of grammar.yaml, validated, with cached Zipfian pools."""

    def __init__(self, data: dict, path: Path):
        self.path = path
        if not isinstance(data, dict):
            self._fail("", "a mapping at the top level")
        self.zipf_exponent = self._number(data, "zipf_exponent")
        self.heldout_fraction = self._number(data, "heldout_fraction")
        self.past_probability = self._number(data, "past_probability")
        self.plural_probability = self._number(data, "plural_probability")
        self.adjective_probability = self._number(data, "adjective_probability")
        sources = data.get("sources")
        if not isinstance(sources, dict) or not sources:
            self._fail("sources", "a non-empty mapping of source names to {kind, share}")
        self.sources: dict[str, tuple[str, float]] = {}
        for stem, spec in sources.items():
            if not str(stem).startswith("synthetic_"):
                self._fail(f"sources.{stem}", "a source name starting with 'synthetic_'")
            if not isinstance(spec, dict) or spec.get("kind") not in SOURCE_KINDS:
                self._fail(f"sources.{stem}.kind", f"one of {', '.join(SOURCE_KINDS)}")
            share = spec.get("share")
            if isinstance(share, bool) or not isinstance(share, (int, float)) or share <= 0:
                self._fail(f"sources.{stem}.share", "a positive number")
            self.sources[str(stem)] = (spec["kind"], float(share))
        self.speech_constructions = self._weights(data, "speech_constructions")
        self.determiners = [
            Determiner(d["word"], d["number"], d.get("before_vowel", d["word"]))
            for d in self._list(data, "determiners")
        ]
        self.nouns: dict[str, list[Noun]] = {}
        for cls in NOUN_CLASSES:
            entries = self._list(data.get("nouns") or {}, cls, f"nouns.{cls}")
            self.nouns[cls] = [Noun(e[0], e[1], cls, e[2] if cls == "person" else "n") for e in entries]
        names = data.get("names") or {}
        self.names = {g: list(self._list(names, g, f"names.{g}")) for g in ("m", "f")}
        self.verbs = [
            Verb(
                *v["forms"],
                subj=tuple(v.get("subj", ANIMATE)),
                obj=tuple(v.get("obj", ())),
                intransitive=bool(v.get("intransitive", "obj" not in v and not v.get("goal", False))),
                reflexive=bool(v.get("reflexive", False)),
                dative=bool(v.get("dative", False)),
                goal=bool(v.get("goal", False)),
                stative=bool(v.get("stative", False)),
            )
            for v in self._list(data, "verbs")
        ]
        self.adjectives = [
            (word, tuple(group["for"])) for group in self._list(data, "adjectives") for word in group["words"]
        ]
        self.pronouns = {k: tuple(v) for k, v in (data.get("pronouns") or {}).items()}
        self.auxiliaries = {k: tuple(v) for k, v in (data.get("auxiliaries") or {}).items()}
        self.function_words = {k: list(v) for k, v in (data.get("function_words") or {}).items()}
        self._check()
        self._pools: dict[tuple, Pool | None] = {}

    # -- validation ---------------------------------------------------------------------------

    def _fail(self, key: str, expected: str):
        raise UserError(f"{self.path}: key '{key}' must be {expected}")

    def _number(self, data: dict, key: str) -> float:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            self._fail(key, "a non-negative number")
        return float(value)

    def _weights(self, data: dict, key: str) -> dict[str, float]:
        value = data.get(key)
        if not isinstance(value, dict) or not value:
            self._fail(key, "a non-empty mapping of names to positive weights")
        for name, weight in value.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                self._fail(f"{key}.{name}", "a positive number")
        return {str(k): float(v) for k, v in value.items()}

    def _list(self, data: dict, key: str, label: str | None = None) -> list:
        value = data.get(key)
        if not isinstance(value, list) or not value:
            self._fail(label or key, "a non-empty list")
        return value

    def _check(self) -> None:
        """Check shapes and that every open-class form belongs to exactly one category."""
        for d in self.determiners:
            if d.number not in ("sg", "pl", "any"):
                self._fail(f"determiners.{d.word}.number", "sg, pl or any")
        for cls, nouns in self.nouns.items():
            for n in nouns:
                if n.sg == n.pl:
                    self._fail(f"nouns.{cls}.{n.sg}", "a noun whose plural differs from its singular")
                if n.gender not in ("m", "f", "c", "n"):
                    self._fail(f"nouns.{cls}.{n.sg}", "a person with gender m, f or c")
        for v in self.verbs:
            if v.base == v.past:
                self._fail(f"verbs.{v.base}", "a verb whose past differs from its base")
            for cls in v.subj + v.obj:
                if cls not in NOUN_CLASSES:
                    self._fail(f"verbs.{v.base}", f"using noun classes among {', '.join(NOUN_CLASSES)}")
        for word, classes in self.adjectives:
            if not set(classes) <= set(NOUN_CLASSES):
                self._fail(f"adjectives.{word}", f"for noun classes among {', '.join(NOUN_CLASSES)}")
        expected_pronouns = {"1sg", "2sg", "3sg_m", "3sg_f", "3sg_n", "1pl", "3pl"}
        if set(self.pronouns) != expected_pronouns or any(len(p) != 4 for p in self.pronouns.values()):
            self._fail("pronouns", f"the keys {sorted(expected_pronouns)}, each with 4 forms")
        for name in ("be_present", "be_past", "do_present", "do_past", "dont_present", "dont_past", "can"):
            if len(self.auxiliaries.get(name, ())) != 3:
                self._fail(f"auxiliaries.{name}", "a list of 3 forms (1sg, 3sg, other)")
        for group, words in self.function_words.items():
            for word in words:
                if not isinstance(word, str):
                    self._fail(f"function_words.{group}", f"a list of words, but holds {word!r} (quote it)")
        owner: dict[str, str] = {}
        closed = self._closed_class_words()
        categories = [
            ("noun", [f for ns in self.nouns.values() for n in ns for f in (n.sg, n.pl)]),
            ("verb", [f for v in self.verbs for f in (v.base, v.s, v.past, v.ing)]),
            ("adjective", [w for w, _ in self.adjectives]),
            ("name", [w.lower() for ws in self.names.values() for w in ws]),
        ]
        for category, forms in categories:
            for form in forms:
                if form in closed or form in owner:
                    where = "a closed-class word" if form in closed else f"a {owner[form]}"
                    self._fail(f"{category} '{form}'", f"unique, but it is also {where}")
                owner[form] = category

    def _closed_class_words(self) -> set[str]:
        words = {d.word for d in self.determiners} | {d.before_vowel for d in self.determiners}
        words |= {w.lower() for forms in self.pronouns.values() for w in forms}
        words |= {w for forms in self.auxiliaries.values() for w in forms}
        words |= {w for group in self.function_words.values() for w in group}
        return words

    # -- lexicon queries ----------------------------------------------------------------------

    @functools.cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every word of the language, lower-cased: what a grammatical sentence may contain."""
        words = set(self._closed_class_words())
        words |= {f for ns in self.nouns.values() for n in ns for f in (n.sg, n.pl)}
        words |= {f for v in self.verbs for f in (v.base, v.s, v.past, v.ing)}
        words |= {w for w, _ in self.adjectives}
        words |= {w.lower() for ws in self.names.values() for w in ws}
        return frozenset(words)

    @functools.cached_property
    def noun_number(self) -> dict[str, str]:
        """Noun form -> "sg" or "pl"."""
        return {f: num for ns in self.nouns.values() for n in ns for f, num in ((n.sg, "sg"), (n.pl, "pl"))}

    @functools.cached_property
    def verb_form(self) -> dict[str, tuple[Verb, str]]:
        """Verb form -> (verb, "base" | "s" | "past" | "ing")."""
        out = {}
        for v in self.verbs:
            for kind in ("base", "s", "past", "ing"):
                out[getattr(v, kind)] = (v, kind)
        return out

    @functools.cached_property
    def determiner_number(self) -> dict[str, str]:
        """Determiner form (including ``an``) -> "sg", "pl" or "any"."""
        out = {d.word: d.number for d in self.determiners}
        out.update({d.before_vowel: d.number for d in self.determiners})
        return out

    @functools.cached_property
    def determiner(self) -> dict[str, Determiner]:
        """Determiner word -> its entry."""
        return {d.word: d for d in self.determiners}

    @functools.cached_property
    def name_gender(self) -> dict[str, str]:
        """Name -> "m" or "f"."""
        return {name: g for g, names in self.names.items() for name in names}

    def auxiliary(self, name: str, agr: str) -> str:
        """The form of auxiliary ``name`` (grammar.yaml key) for agreement slot ``agr``."""
        return self.auxiliaries[name][AGREEMENT_INDEX[agr]]

    def _cached(self, key: tuple, build: Callable[[], list]) -> Pool | None:
        if key not in self._pools:
            items = build()
            self._pools[key] = Pool(items, self.zipf_exponent) if items else None
        return self._pools[key]

    def noun_pool(self, classes: tuple[str, ...], gender: tuple[str, ...] | None = None) -> Pool:
        """Nouns of ``classes`` (ranks interleaved across classes), optionally of ``gender``."""
        return self._cached(
            ("noun", classes, gender),
            lambda: _interleave(
                [[n for n in self.nouns[c] if gender is None or n.gender in gender] for c in classes]
            ),
        )

    def adjective_pool(self, cls: str) -> Pool:
        """Adjectives that can describe a noun of class ``cls``."""
        return self._cached(("adj", cls), lambda: [w for w, classes in self.adjectives if cls in classes])

    def determiner_pool(self, number: str) -> Pool:
        """Determiners that go with a noun of ``number``."""
        return self._cached(
            ("det", number), lambda: [d for d in self.determiners if d.number in (number, "any")]
        )

    def name_pool(self, gender: str) -> Pool:
        """Names of ``gender`` ("m" or "f")."""
        return self._cached(("name", gender), lambda: self.names[gender])

    def verb_pool(self, kind: str, subj: str, obj: str | None = None) -> Pool | None:
        """Verbs taking a subject of class ``subj`` in frame ``kind``, or None if there are none.

        Kinds: intransitive, transitive (with an object of class ``obj`` when given), dynamic
        (transitive and not stative, so it has a progressive: "I am feeding the dog"),
        reflexive, dative, goal.
        """

        def build() -> list[Verb]:
            fits = {
                "intransitive": lambda v: v.intransitive,
                "transitive": lambda v: bool(v.obj) and (obj is None or obj in v.obj),
                "dynamic": lambda v: bool(v.obj) and not v.stative and (obj is None or obj in v.obj),
                "reflexive": lambda v: v.reflexive,
                "dative": lambda v: v.dative,
                "goal": lambda v: v.goal,
            }[kind]
            return [v for v in self.verbs if subj in v.subj and fits(v)]

        return self._cached(("verb", kind, subj, obj), build)


def load_grammar(path: str | Path | None = None) -> Grammar:
    """Load and validate a grammar file (default: the packaged ``grammar.yaml``, loaded once)."""
    return _read_grammar(Path(path)) if path is not None else _packaged_grammar()


@functools.lru_cache(maxsize=1)
def _packaged_grammar() -> Grammar:
    return _read_grammar(GRAMMAR_PATH)


def _read_grammar(path: Path) -> Grammar:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{path}: cannot read grammar file ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        return Grammar(data, path)
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: malformed grammar entry ({type(e).__name__}: {e})") from None


def sentence(parts: Sequence[str], end: str = ".") -> str:
    """Join words and phrases into one line: first letter capitalised, final punctuation added."""
    text = " ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] + end


class Maker:
    """Draws phrases and sentences of the grammar with one random generator.

    The corpus and the minimal-pair generators share it, so both produce the same language.
    """

    def __init__(self, grammar: Grammar, rng: random.Random):
        self.g = grammar
        self.rng = rng

    # -- small random choices -----------------------------------------------------------------

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.rng.random() < p

    def pick(self, items: Sequence):
        """A uniformly chosen item."""
        return items[self.rng.randrange(len(items))]

    def number(self) -> str:
        """A noun-phrase number, plural with the grammar's plural probability."""
        return "pl" if self.chance(self.g.plural_probability) else "sg"

    def tense(self) -> str:
        """A tense, past with the grammar's past probability."""
        return "past" if self.chance(self.g.past_probability) else "present"

    # -- noun phrases -------------------------------------------------------------------------

    def noun_np(
        self,
        classes: tuple[str, ...],
        number: str | None = None,
        det: str | None = None,
        adjective: bool | None = None,
        gender: tuple[str, ...] | None = None,
    ) -> NP:
        """A determiner (+ adjective) + noun phrase of one of ``classes``.

        ``det`` forces a determiner word (``a`` becomes ``an`` before a vowel) and, when
        ``number`` is not given, the number that determiner takes; otherwise a determiner
        agreeing with ``number`` is drawn.
        """
        noun = self.g.noun_pool(classes, gender).draw(self.rng)
        determiner = self.g.determiner[det] if det is not None else None
        if number is None:
            number = determiner.number if determiner and determiner.number != "any" else self.number()
        if adjective is None:
            adjective = self.chance(self.g.adjective_probability)
        words = [self.g.adjective_pool(noun.cls).draw(self.rng)] if adjective else []
        words.append(noun.form(number))
        determiner = determiner or self.g.determiner_pool(number).draw(self.rng)
        article = determiner.before_vowel if words[0][0] in "aeiou" else determiner.word
        if number == "pl":
            pronoun = "3pl"
        else:
            pronoun = None if noun.gender == "c" else f"3sg_{noun.gender if noun.cls == 'person' else 'n'}"
        return NP(" ".join([article, *words]), number, 3, noun.cls, pronoun)

    def indefinite(self, number: str) -> str:
        """An indefinite determiner for ``number``: ``a`` or one of some/two/three."""
        return "a" if number == "sg" else self.pick(("some", "two", "three"))

    def name_np(self, gender: str | None = None) -> NP:
        """A first name (gender drawn when not given)."""
        gender = gender or self.pick(("m", "f"))
        return NP(self.g.name_pool(gender).draw(self.rng), "sg", 3, "person", f"3sg_{gender}")

    def pronoun_np(self, key: str) -> NP:
        """A subject pronoun for grammar.yaml pronoun key ``key``."""
        person = int(key[0])
        number = "pl" if key.endswith("pl") else "sg"
        cls = "animal" if key == "3sg_n" else "person"
        return NP(self.g.pronouns[key][0], number, person, cls, key)

    def subject(self, classes: tuple[str, ...] = ANIMATE) -> NP:
        """A subject: mostly a noun phrase, sometimes a name or a personal pronoun."""
        r = self.rng.random()
        if "person" in classes and r < 0.15:
            return self.name_np()
        if "person" in classes and r < 0.3:
            return self.pronoun_np(self.pick(("1sg", "2sg", "3sg_m", "3sg_f", "1pl", "3pl", "3pl")))
        return self.noun_np(classes)

    def location(self) -> list[str]:
        """A locative phrase: "in the park", "under the chair"."""
        if self.chance(0.7):
            return [self.pick(("in", "in", "near")), self.noun_np(("place",), number="sg", det="the").text]
        return [
            self.pick(("on", "under", "near", "behind")),
            self.noun_np(("thing",), number="sg", det="the").text,
        ]

    # -- clauses ------------------------------------------------------------------------------

    def predicate(self, subj: NP, tense: str) -> list[str]:
        """A verb phrase agreeing with ``subj``: intransitive, transitive or copula + adjective."""
        r = self.rng.random()
        if subj.cls in ANIMATE and r < 0.45:
            verb = self.g.verb_pool("intransitive", subj.cls).draw(self.rng)
            return [verb.finite(tense, subj.agr)]
        if subj.cls in ANIMATE and r < 0.8:
            verb = self.g.verb_pool("transitive", subj.cls).draw(self.rng)
            return [verb.finite(tense, subj.agr), self.noun_np(verb.obj).text]
        be = self.g.auxiliary(f"be_{tense}", subj.agr)
        return [be, self.g.adjective_pool(subj.cls).draw(self.rng)]


def _speech_constructions(m: Maker) -> dict[str, Callable[[], str]]:
    """The single-sentence constructions of synthetic_speech, by their grammar.yaml names."""
    g, rng = m.g, m.rng

    def transitive() -> str:
        s, t = m.subject(), m.tense()
        verb = g.verb_pool("transitive", s.cls).draw(rng)
        extra = m.location() if m.chance(0.15) else []
        return sentence([s.text, verb.finite(t, s.agr), m.noun_np(verb.obj).text, *extra])

    def intransitive() -> str:
        s, t = m.subject(), m.tense()
        verb = g.verb_pool("intransitive", s.cls).draw(rng)
        r = rng.random()
        if r < 0.3:
            extra = m.location()
        elif r < 0.45:
            extra = [m.pick(("again", "now") if s.number == "sg" else ("again", "now", "together"))]
        else:
            extra = []
        return sentence([s.text, verb.finite(t, s.agr), *extra])

    def goal() -> str:
        s, t = m.subject(), m.tense()
        verb = g.verb_pool("goal", s.cls).draw(rng)
        where = (
            ["home"]
            if m.chance(0.15)
            else ["to", m.noun_np(("place",), det=m.pick(("the", "the", "my", "a"))).text]
        )
        return sentence([s.text, verb.finite(t, s.agr), *where])

    def copula() -> str:
        s, t = m.subject(NOUN_CLASSES[:-1]), m.tense()
        be = g.auxiliary(f"be_{t}", s.agr)
        if m.chance(0.3):
            return sentence([s.text, be, *m.location()])
        very = ["very"] if m.chance(0.15) else []
        return sentence([s.text, be, *very, g.adjective_pool(s.cls).draw(rng)])

    def negation() -> str:
        s, t = m.subject(), m.tense()
        dont = g.auxiliary(f"dont_{t}", s.agr)
        if m.chance(0.5):
            verb = g.verb_pool("transitive", s.cls).draw(rng)
            return sentence([s.text, dont, verb.base, m.noun_np(verb.obj).text])
        return sentence([s.text, dont, g.verb_pool("intransitive", s.cls).draw(rng).base])

    def relative_subject() -> str:
        head = m.noun_np(ANIMATE)
        verb = g.verb_pool("transitive", head.cls).draw(rng)
        other_number = "sg" if head.number == "pl" and m.chance(0.6) else "pl" if m.chance(0.6) else None
        obj = m.noun_np(verb.obj, number=other_number)
        return sentence(
            [head.text, "that", verb.finite(m.tense(), head.agr), obj.text, *m.predicate(head, m.tense())]
        )

    def relative_object() -> str:
        head = m.noun_np(NOUN_CLASSES[:-1])
        other_number = "sg" if head.number == "pl" else "pl"
        inner = m.noun_np(ANIMATE, number=other_number if m.chance(0.6) else None)
        # grammar.yaml's "see" takes every class, so some verb always links the two.
        verb = g.verb_pool("transitive", inner.cls, head.cls).draw(rng)
        return sentence(
            [head.text, "that", inner.text, verb.finite(m.tense(), inner.agr), *m.predicate(head, m.tense())]
        )

    def reflexive() -> str:
        s = m.subject()
        while s.pronoun is None:
            s = m.subject()
        verb = g.verb_pool("reflexive", s.cls).draw(rng)
        return sentence([s.text, verb.finite(m.tense(), s.agr), g.pronouns[s.pronoun][3]])

    def yes_no_question() -> str:
        s, t = m.subject(), m.tense()
        r = rng.random()
        if r < 0.55:
            verb = g.verb_pool("transitive", s.cls).draw(rng)
            return sentence([g.auxiliary(f"do_{t}", s.agr), s.text, verb.base, m.noun_np(verb.obj).text], "?")
        if r < 0.85:
            return sentence([g.auxiliary(f"be_{t}", s.agr), s.text, g.adjective_pool(s.cls).draw(rng)], "?")
        verb = g.verb_pool("intransitive", s.cls).draw(rng)
        return sentence(["can", s.text, verb.base], "?")

    def wh_object_question() -> str:
        s, t = m.subject(), m.tense()
        verb = g.verb_pool("transitive", s.cls).draw(rng)
        wh = "who" if "person" in verb.obj and m.chance(0.4) else "what"
        return sentence([wh, g.auxiliary(f"do_{t}", s.agr), s.text, verb.base], "?")

    def wh_subject_question() -> str:
        if m.chance(0.3):
            return sentence(["what", g.auxiliary(f"be_{m.tense()}", "3sg"), *m.location()], "?")
        verb = g.verb_pool("transitive", "person").draw(rng)
        return sentence(["who", verb.finite(m.tense(), "3sg"), m.noun_np(verb.obj).text], "?")

    def where_question() -> str:
        if m.chance(0.6):
            s = m.noun_np(("toy", "thing", "food", "animal", "person"))
            return sentence(["where", g.auxiliary(f"be_{m.tense()}", s.agr), s.text], "?")
        s, t = m.subject(), m.tense()
        verb = g.verb_pool("goal", s.cls).draw(rng)
        return sentence(["where", g.auxiliary(f"do_{t}", s.agr), s.text, verb.base], "?")

    def there_is() -> str:
        number = m.number()
        det = "a" if number == "sg" else m.pick(("some", "two", "three", "many"))
        s = m.noun_np(("animal", "toy", "thing", "food", "person"), number=number, det=det)
        return sentence(["there", g.auxiliary(f"be_{m.tense()}", s.agr), s.text, *m.location()])

    def imperative() -> str:
        please = ["please"] if m.chance(0.2) else []
        r = rng.random()
        if r < 0.25:
            return sentence([*please, "look", "at", m.noun_np(NOUN_CLASSES[:-1], det="the").text], "!")
        if r < 0.45:
            verb = g.verb_pool("dative", "person").draw(rng)
            thing = m.noun_np(verb.obj, det="the")
            return sentence([*please, verb.base, thing.text, "to", m.noun_np(ANIMATE, det="the").text])
        verb = g.verb_pool("transitive", "person").draw(rng)
        dont = ["don't"] if m.chance(0.3) else []
        return sentence([*please, *dont, verb.base, m.noun_np(verb.obj, det=m.pick(("the", "your"))).text])

    def dative() -> str:
        s, t = m.subject(("person",)), m.tense()
        verb = g.verb_pool("dative", s.cls).draw(rng)
        return sentence(
            [s.text, verb.finite(t, s.agr), m.noun_np(verb.obj).text, "to", m.noun_np(ANIMATE).text]
        )

    def conjoined_subject() -> str:
        first = m.name_np() if m.chance(0.5) else m.noun_np(ANIMATE)
        second = m.noun_np(ANIMATE, number="sg") if m.chance(0.6) else m.name_np()
        both = NP(f"{first.text} and {second.text}", "pl", 3, "person", "3pl")
        return sentence([both.text, *m.predicate(both, m.tense())])

    table = {
        "transitive": transitive,
        "intransitive": intransitive,
        "goal": goal,
        "copula": copula,
        "negation": negation,
        "relative_subject": relative_subject,
        "relative_object": relative_object,
        "reflexive": reflexive,
        "yes_no_question": yes_no_question,
        "wh_object_question": wh_object_question,
        "wh_subject_question": wh_subject_question,
        "where_question": where_question,
        "there_is": there_is,
        "imperative": imperative,
        "dative": dative,
        "conjoined_subject": conjoined_subject,
    }
    unknown = set(g.speech_constructions) - set(table)
    if unknown:
        raise UserError(
            f"{g.path}: key 'speech_constructions' names unknown construction(s) {sorted(unknown)}; "
            f"known: {', '.join(table)}"
        )
    return table


def speech_lines(m: Maker):
    """Endless single sentences of synthetic_speech, constructions drawn by their weights."""
    table = _speech_constructions(m)
    names = list(m.g.speech_constructions)
    weights = list(m.g.speech_constructions.values())
    while True:
        yield table[m.rng.choices(names, weights)[0]]()


@dataclass
class _Character:
    """A story character: how to name it and which pronoun (if any) refers to it."""

    name: str  # a first name or a definite description ("the dog")
    number: str
    cls: str
    pronoun: str | None


def story(m: Maker) -> list[str]:
    """One short story: a named hero, an item and a second character, told in the past tense.

    After its first mention, a character is referred to by its name or description, or by a
    pronoun when it was mentioned in the line before and the pronoun cannot mean anyone else
    there; the item is often "his ball" / "her ball", agreeing with the hero's gender.
    """
    g, rng = m.g, m.rng
    gender = m.pick(("m", "f"))
    hero_name = g.name_pool(gender).draw(rng)
    hero = _Character(hero_name, "sg", "person", f"3sg_{gender}")
    kind = m.noun_np(("person",), number="sg", det="a", gender=(gender, "c"))
    lines = [sentence(["once", "upon", "a", "time", "there", "was", kind.text, "named", hero_name])]

    other_np = m.noun_np(ANIMATE, adjective=True, det=m.indefinite("sg" if m.chance(0.75) else "pl"))
    other_noun = other_np.text.split()[-1]
    other = _Character(f"the {other_noun}", other_np.number, other_np.cls, other_np.pronoun)
    item_np = m.noun_np(OBJECTS, det=m.indefinite("sg" if m.chance(0.7) else "pl"))
    item_noun = item_np.text.split()[-1]
    item = _Character(f"the {item_noun}", item_np.number, item_np.cls, item_np.pronoun)
    characters = (hero, other, item)
    last: set[int] = {id(hero)}

    def ref(c: _Character, case: int) -> str:
        """Refer to ``c`` in case 0 (subject) or 1 (object).

        A pronoun only when ``c`` was mentioned in the previous line and no other character
        mentioned there or earlier in this line takes the same pronoun.
        """
        clash = any(
            o is not c and o.pronoun == c.pronoun and (id(o) in previous or id(o) in last) for o in characters
        )
        last.add(id(c))
        if c.pronoun and id(c) in previous and not clash and m.chance(0.65):
            return g.pronouns[c.pronoun][case]
        if c is item and m.chance(0.5):
            return f"{g.pronouns[hero.pronoun][2]} {item_noun}"
        return c.name

    def be(c: _Character) -> str:
        return g.auxiliary("be_past", "3sg" if c.number == "sg" else "other")

    previous = {id(hero)}
    lines.append(sentence([hero_name, "lived", "in", m.noun_np(("place",), number="sg", det="a").text]))
    lines.append(sentence([ref(hero, 0), "had", item_np.text]))
    previous, last = {id(hero), id(item)}, set()
    lines.append(
        sentence(
            [
                "one",
                m.pick(("day", "morning")),
                ref(hero, 0),
                "went",
                "to",
                m.noun_np(("place",), number="sg", det="the").text,
            ]
        )
    )
    previous, last = last, set()
    lines.append(sentence(["there", ref(hero, 0), "saw", other_np.text]))
    previous, last = last | {id(other)}, set()

    def event() -> list[str]:
        actor, patient = (hero, other) if m.chance(0.5) else (other, hero)
        r = rng.random()
        if r < 0.15:
            return [ref(actor, 0), be(actor), g.adjective_pool(actor.cls).draw(rng)]
        if r < 0.3:
            verb = g.verb_pool("transitive", actor.cls, item.cls)
            if verb is not None:
                return [ref(actor, 0), verb.draw(rng).past, ref(item, 1)]
        if r < 0.42:
            verb = g.verb_pool("dative", "person").draw(rng)
            if item.cls in verb.obj:
                return [ref(hero, 0), verb.past, ref(item, 1), "to", ref(other, 1)]
        if r < 0.55:
            verb = g.verb_pool("transitive", actor.cls, patient.cls)
            if verb is not None:
                return [ref(actor, 0), verb.draw(rng).past, ref(patient, 1)]
        if r < 0.65 and actor.pronoun:
            verb = g.verb_pool("reflexive", actor.cls).draw(rng)
            return [ref(actor, 0), verb.past, g.pronouns[actor.pronoun][3]]
        if r < 0.8:
            feeling = m.pick(("happy", "sad", "angry", "scared"))
            cause = g.verb_pool("transitive", patient.cls, item.cls)
            if cause is not None:
                subject = ref(actor, 0)
                return [
                    subject,
                    be(actor),
                    feeling,
                    "because",
                    ref(patient, 0),
                    cause.draw(rng).past,
                    ref(item, 1),
                ]
        verb = g.verb_pool("intransitive", actor.cls).draw(rng)
        return [ref(actor, 0), verb.past, *(m.location() if m.chance(0.4) else [])]

    for _ in range(rng.randint(3, 6)):
        line = sentence(event())
        for _retry in range(3):  # a repeated line reads as a glitch, not as a story
            if line not in lines[-3:]:
                break
            line = sentence(event())
        lines.append(line)
        previous, last = last, set()
    together = f"{hero_name} and {other.name}"
    ending = m.pick(
        (
            [together, "were", "friends"],
            [together, "played", "together"],
            ["they", "lived", "happily", "ever", "after"],
            ["after", "that", hero_name, "was", "very", g.adjective_pool("person").draw(rng)],
        )
    )
    lines.append(sentence(ending))
    if m.chance(0.4):
        lines.append(sentence(["the", "end"]))
    return lines


def dialogue(m: Maker) -> list[str]:
    """A short parent-child exchange about one topic object, referred back to by pronoun.

    Two to four different exchanges (question and answer, or remark and reply) about the same
    topic; answers use the topic's pronoun and agreeing verb forms.
    """
    g, rng = m.g, m.rng
    topic = m.noun_np(("toy", "animal", "food", "thing"), det="the", adjective=False)
    noun = topic.text.split()[-1]
    it = g.pronouns[topic.pronoun]
    be = g.auxiliary("be_present", topic.agr)

    def look() -> list[str]:
        adj = g.adjective_pool(topic.cls).draw(rng)
        return [sentence(["look", "at", topic.text], "!"), sentence(["wow,", it[0], be, "very", adj], "!")]

    def what_is_that() -> list[str]:
        this = "that" if topic.number == "sg" else "those"
        kind = m.noun_np((topic.cls,), number=topic.number, det=m.indefinite(topic.number), adjective=False)
        return [sentence(["what", be, this], "?"), sentence([this, be, kind.text])]

    def where() -> list[str]:
        return [sentence(["where", be, "your", noun], "?"), sentence([it[0], be, *m.location()])]

    def want() -> list[str] | None:
        if topic.cls != "food":
            return None
        answer = m.pick((["yes,", "please"], ["no,", "thank", "you"], ["yes,", "I", "want", it[1]]))
        return [sentence(["do", "you", "want", topic.text], "?"), sentence(answer)]

    def what_does_it_do() -> list[str] | None:
        if topic.cls != "animal":
            return None
        verb = g.verb_pool("transitive", "animal", "food").draw(rng)
        food = g.noun_pool(("food",)).draw(rng).pl
        question = ["what", g.auxiliary("do_present", topic.agr), topic.text, verb.base]
        return [sentence(question, "?"), sentence([it[0], verb.finite("present", topic.agr), food])]

    def doing() -> list[str] | None:
        verbs = g.verb_pool("dynamic", "person", topic.cls)
        if verbs is None:
            return None
        det = "the" if topic.cls == "animal" else "my"
        return [
            sentence(["what", "are", "you", "doing"], "?"),
            sentence(["I", "am", verbs.draw(rng).ing, det, noun]),
        ]

    def who_did() -> list[str] | None:
        verbs = g.verb_pool("transitive", "person", topic.cls)
        if verbs is None:
            return None
        verb, who = verbs.draw(rng), m.name_np()
        answer = [who.text, verb.past, it[1]] if m.chance(0.5) else [who.text, "did"]
        return [sentence(["who", verb.past, topic.text], "?"), sentence(answer)]

    def is_it() -> list[str]:
        adj = g.adjective_pool(topic.cls).draw(rng)
        answer = ["yes,", it[0], be, adj] if m.chance(0.6) else ["no,", it[0], be, "not", adj]
        return [sentence([be, topic.text, adj], "?"), sentence(answer)]

    def lets() -> list[str] | None:
        verbs = g.verb_pool("dynamic", "person", topic.cls)
        if verbs is None:
            return None
        return [sentence(["let's", verbs.draw(rng).base, topic.text], "!"), sentence(["okay"], "!")]

    exchanges = [look, what_is_that, where, want, what_does_it_do, doing, who_did, is_it, lets]
    rng.shuffle(exchanges)
    lines: list[str] = []
    wanted = rng.randint(2, 4)
    for exchange in exchanges:
        if wanted == 0:
            break
        pair = exchange()
        if pair is None:
            continue
        lines += pair
        wanted -= 1
        if m.chance(0.2):
            lines.append(sentence(m.pick((["good", "job"], ["well", "done"], ["okay"])), "!"))
    if m.chance(0.1):
        lines.append(sentence(["good", "night"]))
    return lines


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
