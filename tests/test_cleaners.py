"""Per-source cleaners: byte-exact against the reference's cleaned BabyLM files, and hand-worked
cases for the sources no real file covers."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import pytest

from babyllama.data.cleaners import (
    KNOWN_SOURCES,
    DocumentMarkers,
    clean_extra_spaces,
    clean_text,
)
from babyllama.errors import UserError
from conftest import shared_data

DATA = shared_data()
BABYLM_2023 = DATA / "babylm_text_2023_partial"
MARKERS = DocumentMarkers(start="<s>", end="</s>", pad="<pad>", pad_count=2)


def _read_gz(path: Path) -> bytes:
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return gzip.decompress(path.read_bytes())


@pytest.mark.parametrize("split", ["train_10M", "dev"])
@pytest.mark.parametrize("source", ["aochildes", "cbt", "children_stories", "switchboard"])
def test_real_files_match_reference_cleaning_byte_for_byte(split, source):
    """Whole files, not prefixes: cleaning the raw 2023 file gives the reference's cleaned file."""
    name = f"{source}.{split.split('_')[0]}.gz"
    raw = _read_gz(BABYLM_2023 / split / name).decode("utf-8")
    expected = _read_gz(BABYLM_2023 / f"{split}_clean" / name)
    assert clean_text(source, raw).encode("utf-8") == expected


def test_real_2024_switchboard_is_unchanged():
    """BabyLlama-2's notebook reports switchboard.train 719322 -> 719322 characters."""
    raw = _read_gz(DATA / "babylm_text_2024_partial" / "train_10M" / "switchboard.train.gz").decode("utf-8")
    assert len(raw) == 719322
    assert clean_text("switchboard", raw) == raw


def test_extra_spaces_collapse_runs_and_drop_space_before_punctuation_but_keep_newlines():
    assert clean_extra_spaces("a \t\u00a0 b ,c  ;  d !") == "a b,c; d!"
    assert clean_extra_spaces("a \n b ?\n") == "a \n b?\n"


def test_childes_2024_uses_aochildes_rules():
    text = "you want  the ball ?\n\nyes .\n"
    assert clean_text("childes", text) == "you want the ball?\n\nyes.\n"
    assert clean_text("childes", text) == clean_text("aochildes", text)


def test_cbt_joins_apostrophes_left_to_right_without_overlap():
    assert clean_text("cbt", "I don 't know , John 's  dog ’s x\n") == "I don't know, John's dog’s x\n"
    assert clean_text("cbt", "a 'b 'c it ' s") == "a'b 'c it ' s"


def test_bnc_spoken_cleans_spaces_and_blank_lines_vanish():
    text = "Hello  there , mate !\n\nYes\tI  am .\n"
    assert clean_text("bnc_spoken", text) == "Hello there, mate!Yes I am.\n"
    assert clean_text("bnc_spoken", "a\n\n\nb") == "a\nb"


def test_gutenberg_is_unchanged():
    text = "  Chapter I.  \n\nIt was  a dark night .\n"
    assert clean_text("gutenberg", text) == text


def test_open_subtitles_drops_credit_lines_only():
    text = "Subtitles by XYZ\nHello  there .\nsynced SUBTITLE team\nBye.\nsubtitle on last line"
    assert clean_text("open_subtitles", text) == "Hello  there .\nBye.\nsubtitle on last line"


def test_qed_sentence_cases_capital_lines_and_strips_every_line():
    text = (
        "HELLO WORLD. HOW ARE YOU?\n"
        "lT'S A TEST.\n"
        "\n"
        "(APPLAUSE) this is normal text.\n"
        "  Mixed Case line  \n"
        "(Music)\n"
        "WHAT DID I SAY!  YES\n"
    )
    assert clean_text("qed", text) == (
        "Hello world. How are you?\n"
        "It's a test.\n"
        "\n"
        "(APPLAUSE) this is normal text.\n"
        "Mixed Case line\n"
        "(Music)\n"
        "What did i say!  Yes"
    )


@pytest.mark.parametrize("source", ["simple_wikipedia", "simple_wiki"])
def test_simple_wikipedia_joins_articles_and_keeps_spaces(source):
    text = "April\nApril is a month .\n\nAugust\nAugust  is ."
    assert clean_text(source, text) == "April\nApril is a month .August\nAugust  is ."


def test_wikipedia_unwraps_headings_strips_lines_and_drops_first_character():
    text = "\n= = = Valkyria = = =\nIt is a game .\n\n  Second  article  \n"
    assert clean_text("wikipedia", text) == "ValkyriaIt is a game .Second  article"
    assert clean_text("wikipedia", "Abc\n") == "bc"


@pytest.mark.parametrize(
    ("source", "text", "expected"),
    [
        ("simple_wiki", "a\n\nb", "<s>a</s><pad><pad><s>b</s><pad><pad>"),
        ("bnc_spoken", "a  .\n\nb", "<s>a.</s><pad><pad><s>b</s><pad><pad>"),
        ("wikipedia", "\nx\n\ny\n", "<s>x</s><pad><pad><s>y</s><pad><pad>"),
        ("qed", "A\nb\n", "<s>A\nb</s><pad><pad>"),
        ("childes", "a  b\n", "<s>a b\n</s><pad><pad>"),
        ("open_subtitles", "a\n", "<s>a\n</s><pad><pad>"),
        ("gutenberg", "a\n\nb", "a\n\nb<pad><pad>"),
        ("switchboard", "a\n", "a\n<pad><pad>"),
    ],
)
def test_document_markers_wrap_documents_like_the_reference_tokens(source, text, expected):
    assert clean_text(source, text, MARKERS) == expected


@pytest.mark.parametrize("pad_count", [-1, "128"])
def test_document_markers_reject_bad_pad_count(pad_count):
    with pytest.raises(UserError, match="pad_count"):
        DocumentMarkers(pad="<pad>", pad_count=pad_count)


def test_known_sources_cover_both_releases():
    assert KNOWN_SOURCES == (
        "aochildes", "bnc_spoken", "cbt", "childes", "children_stories", "gutenberg",
        "open_subtitles", "qed", "simple_wiki", "simple_wikipedia", "switchboard", "wikipedia",
    )


def test_unknown_source_passes_through_with_one_warning_naming_it():
    text = "a  b .\n\nc"
    with pytest.warns(UserWarning, match="'mystery'") as record:
        assert clean_text("mystery", text) == text
    assert len(record) == 1


def test_synthetic_source_passes_through_silently():
    text = "a  b .\n\nc"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clean_text("synthetic_grammar", text) == text
