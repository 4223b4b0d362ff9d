"""Per-source regex cleaning of the BabyLM corpora, as done by BabyLlama and BabyLlama-2.

The BabyLM corpus is a folder of ``<source>.train`` / ``.dev`` / ``.test`` text files, one per
source. Before tokenisation the reference code (``mrclean.py`` of BabyLlama, reused by
BabyLlama-2) applies a small set of regex rules chosen per source: collapse runs of spaces, drop
subtitle credits, fix OCR'ed all-caps subtitles, strip Wikipedia heading markers, and so on. The
functions here reproduce those rules exactly, so that cleaning a raw BabyLM file gives the same
bytes as the reference's cleaned file (checked on the real 2023 aochildes, cbt, children_stories
and switchboard files).

Sources of both releases are covered. The 2024 release renamed two sources and BabyLlama-2 cleans
them with the 2023 rules: ``childes`` uses the ``aochildes`` rules and ``simple_wiki`` the
``simple_wikipedia`` rules.

Document markers. The reference functions take a ``seq_length`` argument and can wrap documents in
start / end / padding tokens: each document ends with the end token followed by ``seq_length``
padding tokens, so that a training chunk of ``seq_length`` tokens never runs from one document into
the next. The reference ships with all three tokens set to the empty string, so ``seq_length`` has
no effect on the cleaned text (BabyLlama-2 calls it "a legacy parameter"). Here that option is
:class:`DocumentMarkers`; the default, :data:`NO_MARKERS`, gives the reference output.

Some reference rules are odd but kept for byte-for-byte reproduction; each cleaner's docstring
says which. Notably a blank line (``"\\n\\n"``) in simple_wikipedia, wikipedia and bnc_spoken is
*replaced* by the (empty) document separator, which glues the two paragraphs together.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Callable

from babyllama.errors import UserError

__all__ = [
    "DocumentMarkers",
    "NO_MARKERS",
    "KNOWN_SOURCES",
    "SYNTHETIC_PREFIX",
    "clean_text",
    "clean_extra_spaces",
    "clean_aochildes",
    "clean_bnc_spoken",
    "clean_cbt",
    "clean_children_stories",
    "clean_gutenberg",
    "clean_open_subtitles",
    "clean_qed",
    "clean_simple_wikipedia",
    "clean_switchboard",
    "clean_wikipedia",
]

SYNTHETIC_PREFIX = "synthetic_"
"""Stem prefix of the project's built-in generated corpus, which needs no cleaning."""


@dataclass(frozen=True)
class DocumentMarkers:
    """Strings placed around documents by the cleaners (the reference's tokens and ``seq_length``).

    ``start`` opens a document, ``end`` closes it and ``pad`` is then repeated ``pad_count`` times
    (the reference's ``seq_length``), so that a fixed-length training chunk of that many tokens
    never spans two documents. All empty / zero (:data:`NO_MARKERS`) reproduces the reference,
    whose tokens are empty strings.
    """

    start: str = ""
    end: str = ""
    pad: str = ""
    pad_count: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.pad_count, int) or self.pad_count < 0:
            raise UserError(f"document markers: pad_count must be an integer >= 0, got {self.pad_count!r}")

    @property
    def padding(self) -> str:
        """The ``pad`` string repeated ``pad_count`` times (no end marker)."""
        return self.pad * self.pad_count

    @property
    def closing(self) -> str:
        """What ends a document: the end marker, then the padding."""
        return self.end + self.padding


NO_MARKERS = DocumentMarkers()
"""No markers at all: the reference configuration, cleaners change only the text itself."""

_RUN_OF_SPACES = re.compile(r"[ \t\u00A0]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t\u00A0]([.,;!?])")
_SPACE_BEFORE_APOSTROPHE = re.compile(r"([\w\d])[ \t\u00A0](['’]\w)")
_SUBTITLE_CREDIT_LINE = re.compile(r"^.*subtitle.*$\n", re.MULTILINE | re.IGNORECASE)
_WIKI_HEADING = re.compile(r"= = = (.+?) = = =\n")
_QED_SENTENCE_END = re.compile(r"([.!?]\s*)")
_QED_IGNORED_FOR_CASE = re.compile(r"\(.*?\)|[.!?]")


def clean_extra_spaces(text: str) -> str:
    """Collapse runs of spaces, tabs and no-break spaces into one space, then drop the space before
    ``. , ; ! ?`` (the corpora are tokenised with spaces around punctuation). Newlines are kept."""
    text = _RUN_OF_SPACES.sub(" ", text)
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)


def _split_documents(text: str, markers: DocumentMarkers) -> str:
    """Treat each blank line (``"\\n\\n"``, matched left to right without overlap) as a document
    boundary: replace it by closing + opening markers and wrap the whole text in them.

    The reference replaces the blank line itself, so with empty markers the paragraphs on either
    side are joined with no newline at all; reproduced as is.
    """
    return markers.start + text.replace("\n\n", markers.closing + markers.start) + markers.closing


def clean_aochildes(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """CHILDES transcripts (2023 ``aochildes``, 2024 ``childes``): extra spaces removed, one document."""
    return markers.start + clean_extra_spaces(text) + markers.closing


def clean_bnc_spoken(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """British National Corpus, spoken part: extra spaces removed, then every blank line is a
    document boundary (and, with empty markers, disappears: see :func:`_split_documents`)."""
    return _split_documents(clean_extra_spaces(text), markers)


def clean_cbt(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """Children's Book Test: extra spaces removed, and the space before a clitic or apostrophe-word
    dropped (``"don 't"`` -> ``"don't"``, ``"John 's"`` -> ``"John's"``). The apostrophe rule, like
    the reference's, matches left to right without overlap, so in ``"a 'b 'c"`` only the first
    space goes."""
    text = _SPACE_BEFORE_APOSTROPHE.sub(r"\1\2", clean_extra_spaces(text))
    return markers.start + text + markers.closing


def clean_children_stories(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """Children's stories: left as is (blank lines separate stories only sometimes), one document."""
    return markers.start + text + markers.closing


def clean_gutenberg(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """Project Gutenberg: left as is. The text starts and ends mid-book, so the reference adds no
    start or end marker, only the padding."""
    return text + markers.padding


def clean_open_subtitles(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """OpenSubtitles: every line containing "subtitle" (any case) is removed with its newline, which
    drops credits such as "Subtitles by ..."; a last line without a trailing newline is kept."""
    return markers.start + _SUBTITLE_CREDIT_LINE.sub("", text) + markers.closing


def _is_mostly_uppercase(line: str) -> bool:
    """Whether at least half the characters of ``line`` are upper case, ignoring parenthesised
    asides and ``. ! ?``. A line with nothing left counts as not upper case (the reference divides
    by zero there)."""
    body = _QED_IGNORED_FOR_CASE.sub("", line)
    return bool(body) and sum(c.isupper() for c in body) / len(body) >= 0.5


def clean_qed(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """QED educational-video subtitles: lines typed in capitals are converted to sentence case.

    In a mostly upper-case line every ``l`` becomes ``I`` first (OCR read capital I as l), then each
    sentence (split after ``. ! ?`` and the spaces that follow) is capitalised: first letter upper,
    the rest lower. Every line is then stripped of surrounding white space; lines are split as
    :meth:`str.splitlines` does and joined with ``"\\n"``, so a final newline is dropped.
    """
    lines = []
    for line in text.splitlines():
        if _is_mostly_uppercase(line):
            pieces = _QED_SENTENCE_END.split(line.replace("l", "I"))
            line = "".join(piece.capitalize() for piece in pieces)
        lines.append(line.strip())
    return markers.start + "\n".join(lines) + markers.closing


def clean_simple_wikipedia(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """Simple English Wikipedia (2023 ``simple_wikipedia``, 2024 ``simple_wiki``): every blank line
    is an article boundary (and, with empty markers, disappears: see :func:`_split_documents`)."""
    return _split_documents(text, markers)


def clean_switchboard(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """Switchboard dialogues: left as is. The text is cut mid-dialogue, so only padding is added."""
    return text + markers.padding


def clean_wikipedia(text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """English Wikipedia (2023 release).

    A heading line ``= = = Title = = =`` becomes ``Title`` *and loses its newline*, so the title runs
    into the next line (as in the reference). Every line is then stripped, lines are split as
    :meth:`str.splitlines` does and re-joined with ``"\\n"`` (a final newline is dropped), the first
    character is removed (the reference does this to drop the file's leading blank line; it removes
    whatever character comes first), and blank lines become article boundaries as in
    :func:`clean_simple_wikipedia`.
    """
    text = _WIKI_HEADING.sub(r"\1", text)
    text = "\n".join(line.strip() for line in text.splitlines())[1:]
    return _split_documents(text, markers)


_CLEANERS: dict[str, Callable[[str, DocumentMarkers], str]] = {
    # BabyLM 2023 names
    "aochildes": clean_aochildes,
    "bnc_spoken": clean_bnc_spoken,
    "cbt": clean_cbt,
    "children_stories": clean_children_stories,
    "gutenberg": clean_gutenberg,
    "open_subtitles": clean_open_subtitles,
    "qed": clean_qed,
    "simple_wikipedia": clean_simple_wikipedia,
    "switchboard": clean_switchboard,
    "wikipedia": clean_wikipedia,
    # BabyLM 2024 renames, cleaned with the 2023 rules as BabyLlama-2 does
    "childes": clean_aochildes,
    "simple_wiki": clean_simple_wikipedia,
}

KNOWN_SOURCES: tuple[str, ...] = tuple(sorted(_CLEANERS))
"""File stems that have a cleaner, sorted."""


def clean_text(source: str, text: str, markers: DocumentMarkers = NO_MARKERS) -> str:
    """Clean ``text`` with the rules of ``source``, the corpus file's stem (``"aochildes"`` for
    ``aochildes.train``).

    A stem starting with ``synthetic_`` (the project's generated corpus) is returned unchanged. Any
    other unknown stem is returned unchanged too, with a warning naming it, so that a user's extra
    corpus file still trains but the missing cleaning does not pass unnoticed.
    """
    cleaner = _CLEANERS.get(source)
    if cleaner is not None:
        return cleaner(text, markers)
    if not source.startswith(SYNTHETIC_PREFIX):
        warnings.warn(
            f"no cleaner for corpus source {source!r} (known: {', '.join(KNOWN_SOURCES)}); "
            "text left unchanged",
            stacklevel=2,
        )
    return text
