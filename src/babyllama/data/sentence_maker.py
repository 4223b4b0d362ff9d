"""Phrases and sentences of the synthetic grammar: :class:`Maker` and the speech constructions.

:class:`Maker` draws noun phrases, subjects, locatives and predicates that agree in number,
person and gender, all from one random generator; the corpus generator and the minimal-pair
generator both build on it, so they produce the same language. :func:`speech_lines` draws the
single-sentence constructions of ``synthetic_speech`` (agreement, relative clauses, conjoined
subjects, reflexives, questions, negation, imperatives) by their ``grammar.yaml`` weights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from babyllama.data.grammar import ANIMATE, NOUN_CLASSES, Grammar
from babyllama.errors import UserError


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
