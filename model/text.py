"""Sentence splitting with character offsets into the original text.

Rule-based and fast: a line break always ends a sentence (headlines, bullets, blank
lines), and within a line a sentence ends at . ! ? (plus closing quotes or brackets)
followed by white space and an upper-case letter, digit or opening quote, unless the
word before the period is a known abbreviation or a single initial (U.S., Gen., J.).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Corporate suffixes (Inc., Corp., Ltd.) are left out on purpose: they end sentences more often than not.
# fmt: off
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "gen", "lt", "col", "maj", "capt", "sgt", "cpl",
    "adm", "cmdr", "gov", "sen", "rep", "rev", "hon", "pres", "supt", "insp", "det", "u.s", "u.k", "u.n", "e.u",
    "d.c", "u.s.a", "p.m", "a.m", "e.g", "i.e", "etc", "vs", "v", "no", "nos", "dept", "univ", "est", "approx",
    "fig", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue",
    "wed", "thu", "fri", "sat", "sun", "ave", "blvd", "rd",
})
# fmt: on
_BULLET = re.compile(r"^\s*(?:[-*•‣◦▪–—]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])\s+")
# Possessive runs, tried only where a run of end marks starts: linear even on a line of thousands of dots.
_BOUNDARY = re.compile(r"(?<![.!?…])[.!?…]++[\"'”’»)\]]*+(?=\s++[\"'“‘«(\[]?[A-Z0-9])")
_WORD_BEFORE = re.compile(r"([\w.]+)$")
# Abbreviations are short: only this many characters before a period are read, so a long word costs no more.
_LONGEST_WORD = 32


@dataclass(frozen=True)
class Sentence:
    """A sentence: its text and its [start, end) offsets in the original document."""

    index: int
    text: str
    start: int
    end: int


def _is_abbreviation(line: str, dot: int) -> bool:
    """True when the period at `dot` closes an abbreviation or an initial rather than a sentence."""
    if line[dot] != ".":
        return False
    match = _WORD_BEFORE.search(line, max(0, dot - _LONGEST_WORD - 1), dot)
    if not match or len(match.group(1)) > _LONGEST_WORD:
        return False
    word = match.group(1).lower().strip(".")
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. Edgar Hoover"
    return word in ABBREVIATIONS


def _split_line(line: str, offset: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(line):
        end = match.end()
        if match.group(0) == "." and _is_abbreviation(line, match.start()):
            continue
        spans.append((start, end))
        start = end
    spans.append((start, len(line)))
    out = []
    for a, b in spans:
        piece = line[a:b]
        stripped = piece.strip()
        if not stripped:
            continue
        lead = len(piece) - len(piece.lstrip())
        out.append((offset + a + lead, offset + a + lead + len(stripped)))
    return out


def split_sentences(text: str) -> list[Sentence]:
    """Split `text` into sentences whose offsets index into `text` (`text[s.start:s.end] == s.text`)."""
    sentences: list[Sentence] = []
    position = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        bullet = _BULLET.match(body)
        skip = bullet.end() if bullet and len(body) > bullet.end() else 0
        for start, end in _split_line(body[skip:], position + skip):
            if any(ch.isalnum() for ch in text[start:end]):
                sentences.append(Sentence(len(sentences), text[start:end], start, end))
        position += len(line)
    return sentences


def is_headline(sentence: str) -> bool:
    """A title-case line such as "Senate Passes Sweeping Climate Bill After Long Night"."""
    words = [w for w in re.findall(r"[A-Za-z][\w'’-]*", sentence)]
    if len(words) < 3 or sentence.rstrip()[-1:] in '.!?"”':
        return False
    minor = {"a", "an", "the", "and", "or", "but", "of", "in", "on", "at", "to", "for", "by", "with", "as", "from", "vs"}
    content = [w for w in words if w.lower() not in minor]
    capitalised = sum(1 for w in content if w[0].isupper())
    return bool(content) and capitalised / len(content) >= 0.8
