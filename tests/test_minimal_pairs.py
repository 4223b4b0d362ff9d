"""Minimal pairs of the synthetic language: BLiMP format, one-word differences, real violations."""

import gzip
import json
from pathlib import Path

import pytest

from babyllama.data.grammar import load_grammar
from babyllama.data.minimal_pairs import PHENOMENA, generate_minimal_pairs
from babyllama.data.synthetic import generate_corpus
from babyllama.errors import UserError

G = load_grammar()
N = 100
BLIMP_SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/blimp/determiner_noun_agreement_1.jsonl.gz"
NOUNS = {f: n for ns in G.nouns.values() for n in ns for f in (n.sg, n.pl)}
REFLEXIVE = {forms[3]: key for key, forms in G.pronouns.items()}
AUX_NUMBER = {"is": "sg", "was": "sg", "does": "sg", "are": "pl", "were": "pl", "do": "pl"}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, list[dict]]:
    paths = generate_minimal_pairs(tmp_path_factory.mktemp("pairs"), pairs_per_phenomenon=N, seed=0)
    return {
        p.name.removesuffix(".jsonl"): [json.loads(line) for line in p.read_text("utf-8").splitlines()]
        for p in paths
    }


def words(sentence: str) -> list[str]:
    return [w.strip(",.?!").lower() for w in sentence.split()]


def number(word: str) -> str | None:
    """Grammatical number of a noun, name, verb or auxiliary form (None for past tense etc.)."""
    if word in NOUNS:
        return "sg" if word == NOUNS[word].sg else "pl"
    if word.capitalize() in G.name_gender:
        return "sg"
    if word in AUX_NUMBER:
        return AUX_NUMBER[word]
    if word in REFLEXIVE:
        return "pl" if REFLEXIVE[word] == "3pl" else "sg"
    if word in G.determiner_number and G.determiner_number[word] != "any":
        return G.determiner_number[word]
    if word in G.verb_form:
        return {"s": "sg", "base": "pl"}.get(G.verb_form[word][1])
    return None


def heads(toks: list[str]) -> list[int]:
    """Positions of nouns and names: the words that carry a noun phrase's number."""
    return [i for i, w in enumerate(toks) if w in NOUNS or w.capitalize() in G.name_gender]


def gender(word: str) -> str:
    return G.name_gender.get(word.capitalize()) or NOUNS[word].gender


def agrees(phenomenon: str, toks: list[str], i: int) -> bool:
    """Whether the critical word toks[i] agrees with its controller, per the grammar's features."""
    word = toks[i]
    if phenomenon == "determiner_noun_agreement":
        det = max(j for j in range(i) if toks[j] in G.determiner_number)
        return number(toks[det]) == number(word)
    if phenomenon == "subject_verb_agreement":
        return number(toks[max(j for j in heads(toks) if j < i)]) == number(word)
    if phenomenon == "agreement_across_relative_clause":
        head, nearest = heads(toks)[0], max(j for j in heads(toks) if j < i)
        assert number(toks[nearest]) != number(toks[head])  # a real attractor
        return number(toks[head]) == number(word)
    if phenomenon == "question_auxiliary_agreement":
        return number(toks[min(j for j in heads(toks) if j > i)]) == number(word)
    subject = toks[heads(toks)[0]]
    if phenomenon == "reflexive_number_agreement":
        return number(subject) == number(word)
    if phenomenon == "reflexive_gender_agreement":
        return REFLEXIVE[word] == f"3sg_{gender(subject)}"
    raise AssertionError(phenomenon)


def test_one_file_per_phenomenon_in_blimp_format(pairs):
    assert len(PHENOMENA) >= 6 and set(pairs) == set(PHENOMENA)
    expected_keys = {
        "sentence_good",
        "sentence_bad",
        "one_prefix_prefix",
        "one_prefix_word_good",
        "one_prefix_word_bad",
        "field",
        "linguistics_term",
        "UID",
        "simple_LM_method",
        "one_prefix_method",
        "two_prefix_method",
        "lexically_identical",
        "pairID",
    }
    if BLIMP_SAMPLE.exists():
        with gzip.open(BLIMP_SAMPLE, "rt") as f:
            assert set(json.loads(f.readline())) == expected_keys
    for phenomenon, records in pairs.items():
        assert len(records) == N
        assert [r["pairID"] for r in records] == [str(i) for i in range(N)]
        assert len({r["sentence_good"] for r in records}) == N
        for r in records:
            assert set(r) == expected_keys and r["UID"] == phenomenon
            assert r["field"] == "morphology" and isinstance(r["linguistics_term"], str)


def test_pairs_differ_in_exactly_one_word(pairs):
    for records in pairs.values():
        for r in records:
            good, bad = r["sentence_good"].split(), r["sentence_bad"].split()
            assert r["sentence_good"] != r["sentence_bad"] and len(good) == len(bad)
            diff = [i for i, (a, b) in enumerate(zip(good, bad)) if a != b]
            assert len(diff) == 1, r
            i = diff[0]
            assert r["one_prefix_prefix"] == " ".join(good[:i])
            assert (
                good[i].rstrip(".?") == r["one_prefix_word_good"]
                and bad[i].rstrip(".?") == r["one_prefix_word_bad"]
            )


def test_good_sentences_use_only_grammar_words(pairs):
    for records in pairs.values():
        for r in records:
            assert set(words(r["sentence_good"])) <= G.vocabulary, r["sentence_good"]


def test_bad_sentences_break_the_grammar(pairs):
    for phenomenon, records in pairs.items():
        for r in records:
            good, bad = words(r["sentence_good"]), words(r["sentence_bad"])
            i = next(j for j, (a, b) in enumerate(zip(good, bad)) if a != b)
            if phenomenon == "irregular_plural":
                assert (
                    NOUNS[good[i]].irregular and good[i] == NOUNS[good[i]].pl and bad[i] not in G.vocabulary
                )
            elif phenomenon == "irregular_past_tense":
                verb, kind = G.verb_form[good[i]]
                assert kind == "past" and verb.irregular_past and bad[i] not in G.vocabulary
            else:
                assert bad[i] in G.vocabulary
                assert agrees(phenomenon, good, i), r["sentence_good"]
                assert not agrees(phenomenon, bad, i), r["sentence_bad"]


def test_deterministic_seeded_and_not_copied_from_the_corpus(pairs, tmp_path):
    again = generate_minimal_pairs(tmp_path / "a", pairs_per_phenomenon=N, seed=0)
    other = generate_minimal_pairs(tmp_path / "b", pairs_per_phenomenon=N, seed=1)
    for path in again:
        name = path.name.removesuffix(".jsonl")
        assert [json.loads(line) for line in path.read_text().splitlines()] == pairs[name]
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(again, other))
    corpus = generate_corpus(tmp_path / "corpus", words=20_000, seed=0)
    seen = {line for path in corpus.values() for line in path.read_text().splitlines()}
    good = [r["sentence_good"] for records in pairs.values() for r in records]
    assert sum(s in seen for s in good) < 0.1 * len(good)


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="pairs_per_phenomenon"):
        generate_minimal_pairs(tmp_path, pairs_per_phenomenon=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="directory"):
        generate_minimal_pairs(tmp_path / "file")
