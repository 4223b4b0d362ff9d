"""Multi-line texts of the synthetic corpus: stories and parent-child dialogues.

Stories (``synthetic_stories``) introduce their characters once and then refer to them by name,
definite description or a pronoun of the right gender and number, so predicting a pronoun needs
context from earlier lines. Dialogues (``synthetic_dialogue``) talk about one topic object, with
answers whose pronouns and verb forms agree with the question's noun.
"""

from __future__ import annotations

from dataclasses import dataclass

from babyllama.data.grammar import ANIMATE, OBJECTS
from babyllama.data.sentence_maker import Maker, sentence


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
