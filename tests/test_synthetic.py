"""The synthetic corpus: layout, size, determinism, and that its sentences obey its grammar."""

from collections import Counter
from pathlib import Path

import pytest
import yaml

from babyllama.data.grammar import GRAMMAR_PATH, load_grammar
from babyllama.data.synthetic import generate_corpus
from babyllama.errors import UserError

WORDS = 20_000
STEMS = ("synthetic_speech", "synthetic_stories", "synthetic_dialogue")
G = load_grammar()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return generate_corpus(tmp_path_factory.mktemp("corpus"), words=WORDS, seed=0)


def tokens(line: str) -> list[str]:
    """Lower-cased words of a line without punctuation."""
    return [w.strip(",.?!").lower() for w in line.split()]


def lines(corpus, split="train", stems=STEMS) -> list[str]:
    return [line for stem in stems for line in corpus[f"{stem}.{split}"].read_text("utf-8").splitlines()]


def noun_phrase(toks: list[str], i: int):
    """(determiner, noun, index after the noun) if toks[i:] starts with det + adjectives + noun."""
    if i >= len(toks) or toks[i] not in G.determiner_number:
        return None
    j = i + 1
    while j < len(toks) and toks[j] in adjectives:
        j += 1
    if j < len(toks) and toks[j] in G.noun_number:
        return toks[i], toks[j], j + 1
    return None


adjectives = {w for w, _ in G.adjectives}
SINGULAR_AUX = {
    "is": "sg",
    "was": "sg",
    "does": "sg",
    "doesn't": "sg",
    "are": "pl",
    "were": "pl",
    "do": "pl",
    "don't": "pl",
}


def verb_number(word: str) -> str | None:
    """ "sg"/"pl" for a present-tense verb or auxiliary form, None for past or non-verbs."""
    if word in SINGULAR_AUX:
        return SINGULAR_AUX[word]
    if word in G.verb_form:
        kind = G.verb_form[word][1]
        return {"s": "sg", "base": "pl"}.get(kind)
    return None


def test_layout_sizes_and_format(corpus):
    assert set(corpus) == {f"{s}.{split}" for s in STEMS for split in ("train", "dev", "test")}
    for name, path in corpus.items():
        assert path.name == name and path.name.startswith("synthetic_")
        text = path.read_text("utf-8")
        assert text.endswith("\n") and "\n\n" not in text and "\r" not in text
    train = {s: len(corpus[f"{s}.train"].read_text().split()) for s in STEMS}
    assert WORDS <= sum(train.values()) <= WORDS * 1.01
    for stem in STEMS:
        for split in ("dev", "test"):
            held = len(corpus[f"{stem}.{split}"].read_text().split())
            assert 0.09 * train[stem] <= held <= 0.12 * train[stem]


def test_deterministic_for_a_seed_and_different_across_seeds(corpus, tmp_path):
    again = generate_corpus(tmp_path / "a", words=WORDS, seed=0)
    other = generate_corpus(tmp_path / "b", words=WORDS, seed=1)
    for name, path in corpus.items():
        assert again[name].read_bytes() == path.read_bytes()
        assert other[name].read_bytes() != path.read_bytes()
    # dev and test are fresh text, not a copy of train
    assert corpus["synthetic_stories.dev"].read_text() not in corpus["synthetic_stories.train"].read_text()


def test_every_word_belongs_to_the_grammar(corpus):
    words = {w for split in ("train", "dev", "test") for line in lines(corpus, split) for w in tokens(line)}
    assert words <= G.vocabulary, sorted(words - G.vocabulary)[:20]
    assert len(words) > 400


def test_word_choice_is_zipfian(corpus):
    counts = Counter(w for line in lines(corpus) for w in tokens(line) if w in G.noun_number)
    ranked = [c for _, c in counts.most_common()]
    assert ranked[0] > 10 * ranked[len(ranked) // 2]


def test_determiners_agree_with_nouns(corpus):
    checked = 0
    for line in lines(corpus):
        toks = tokens(line)
        for i in range(len(toks)):
            np = noun_phrase(toks, i)
            if np and G.determiner_number[np[0]] != "any":
                assert G.determiner_number[np[0]] == G.noun_number[np[1]], line
                checked += 1
    assert checked > 500


def test_subjects_agree_with_verbs(corpus):
    checked = 0
    for line in lines(corpus):
        toks = tokens(line)
        np = noun_phrase(toks, 0)
        if np and np[2] < len(toks) and verb_number(toks[np[2]]):
            assert verb_number(toks[np[2]]) == G.noun_number[np[1]], line
            checked += 1
    assert checked > 300


def test_agreement_holds_across_relative_clauses(corpus):
    """The main verb after "NP that ..." agrees with the head noun, not the nearer noun."""
    checked = attracted = 0
    for line in lines(corpus, stems=("synthetic_speech",)):
        toks = tokens(line)
        np = noun_phrase(toks, 0)
        if not np or np[2] >= len(toks) or toks[np[2]] != "that":
            continue
        finite = [
            i
            for i, w in enumerate(toks)
            if w in SINGULAR_AUX or (w in G.verb_form and G.verb_form[w][1] != "ing")
        ]
        main = finite[1]
        if verb_number(toks[main]):
            assert verb_number(toks[main]) == G.noun_number[np[1]], line
            checked += 1
            nearest = [w for w in toks[np[2] : main] if w in G.noun_number][-1]
            attracted += G.noun_number[nearest] != G.noun_number[np[1]]
    assert checked > 100 and attracted > 30


def test_reflexives_agree_with_their_subjects(corpus):
    reflexive = {forms[3]: key for key, forms in G.pronouns.items()}
    checked = 0
    for line in lines(corpus, stems=("synthetic_speech",)):
        toks = tokens(line)
        np = noun_phrase(toks, 0)
        if not np or len(toks) != np[2] + 2 or toks[-1] not in reflexive:
            continue
        noun = next(n for ns in G.nouns.values() for n in ns if np[1] in (n.sg, n.pl))
        if np[1] == noun.pl:
            expected = "3pl"
        else:
            expected = f"3sg_{noun.gender}" if noun.cls == "person" else "3sg_n"
        assert reflexive[toks[-1]] == expected, line
        checked += 1
    assert checked > 30


def test_irregular_plurals_and_pasts_appear(corpus):
    words = Counter(w for line in lines(corpus) for w in tokens(line))
    irregular_plurals = {n.pl for ns in G.nouns.values() for n in ns if n.irregular}
    irregular_pasts = {v.past for v in G.verbs if v.irregular_past}
    assert {"children", "men", "feet"} <= irregular_plurals and {"went", "saw", "ate"} <= irregular_pasts
    assert len(irregular_plurals & set(words)) >= 8
    assert len(irregular_pasts & set(words)) >= 20
    assert words["went"] > 50 and words["saw"] > 50


def test_stories_refer_back_with_pronouns_of_the_right_gender(corpus):
    text = corpus["synthetic_stories.train"].read_text("utf-8").splitlines()
    starts = [i for i, line in enumerate(text) if line.startswith("Once upon a time")]
    stories = [text[a:b] for a, b in zip(starts, starts[1:])]
    assert len(stories) > 100
    gender_words = {"m": {"he", "him", "his", "himself"}, "f": {"she", "her", "herself"}}
    person_gender = {f: n.gender for n in G.nouns["person"] for f in (n.sg,)}
    referred = 0
    for story in stories:
        hero = story[0].rstrip(".").split()[-1]
        genders = {G.name_gender[hero]} | {person_gender.get(w) for line in story for w in tokens(line)}
        later = {w for line in story[1:] for w in tokens(line)}
        for gender, pronouns in gender_words.items():
            if later & pronouns:
                assert gender in genders, story
        referred += bool(later & gender_words[G.name_gender[hero]])
        assert hero in " ".join(story[1:]), story
    assert referred > 0.8 * len(stories)


def test_dialogue_answers_agree_with_the_question(corpus):
    text = lines(corpus, stems=("synthetic_dialogue",))
    checked = 0
    for question, answer in zip(text, text[1:]):
        q, a = tokens(question), tokens(answer)
        if question.startswith("Where ") and question.endswith("?"):
            assert a[0] == ("it" if q[1] == "is" else "they") and a[1] == q[1], (question, answer)
            checked += 1
    assert checked > 50


def test_bad_arguments_and_grammar_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="words"):
        generate_corpus(tmp_path, words=0)
    data = yaml.safe_load(GRAMMAR_PATH.read_text())
    data["nouns"]["toy"].append(["run", "runs"])
    bad = tmp_path / "grammar.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="'run'"):
        load_grammar(bad)
    data["nouns"]["toy"].pop()
    data["sources"]["speech"] = {"kind": "speech", "share": 1}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="synthetic_"):
        load_grammar(tmp_path / "grammar.yaml")
    assert not list(tmp_path.glob("synthetic_*"))
