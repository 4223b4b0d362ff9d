"""The lexicon and weights of the synthetic language, read and validated from ``grammar.yaml``.

The lexicon (nouns with irregular plurals, verbs with irregular pasts, adjectives, determiners
with number, pronouns, names with gender) and the construction weights are data in
``grammar.yaml``. :class:`Grammar` checks them and serves :class:`Pool` s that draw words with
Zipfian weights by their rank in the file. The corpus generator
(:mod:`babyllama.data.synthetic`) and the minimal-pair generator
(:mod:`babyllama.data.minimal_pairs`) both read it, so the evaluation pairs test exactly the
language the models were trained on.
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

GRAMMAR_PATH = Path(__file__).with_name("grammar.yaml")
NOUN_CLASSES = ("person", "animal", "food", "toy", "thing", "body", "place")
ANIMATE = ("person", "animal")
OBJECTS = ("toy", "thing", "food")
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
