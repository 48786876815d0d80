"""Deterministic news-like articles for benchmarks (no real data involved)."""

from __future__ import annotations

import random

ACTORS = [
    "President Joe Biden",
    "Donald Trump",
    "Vladimir Putin",
    "Volodymyr Zelensky",
    "Acme Corp",
    "Globex Industries",
    "the European Union",
    "NATO",
    "Senator Chuck Schumer",
    "Governor Gavin Newsom",
    "the United Nations",
    "China",
    "Russia",
    "Ukraine",
    "the Pentagon",
    "Jane Doe",
    "the Red Cross",
    "Germany",
    "Emmanuel Macron",
    "Xi Jinping",
]
VERBS = [
    "praised",
    "criticised",
    "met",
    "thanked",
    "condemned",
    "blamed",
    "welcomed",
    "questioned",
    "defended",
    "attacked",
    "spoke with",
    "endorsed",
    "rejected a proposal from",
    "signed an agreement with",
    "accused",
]
TAILS = [
    "on Tuesday",
    "after a long meeting",
    "in a statement",
    "for its handling of the crisis",
    "over the new tariffs",
    "during a press conference in the capital",
    "for the second time this month",
    "despite growing pressure at home",
    "as markets fell sharply",
    "in an interview with reporters",
    "citing security concerns",
    "while protesters gathered outside",
]
FILLER = [
    "The decision is expected to affect thousands of workers across the region.",
    "Analysts said the move could reshape the debate ahead of next year's elections.",
    "Officials declined to comment on the details of the plan.",
    "Prices rose for the third consecutive week, according to government figures.",
    "The talks are scheduled to resume next month.",
]


def sentence(rng: random.Random) -> str:
    """One sentence; a number makes repeats across articles rare, so deduplication does not flatter a benchmark."""
    if rng.random() < 0.2:
        return rng.choice(FILLER)[:-1] + f", {rng.randint(2, 98)} officials said."
    a, b = rng.sample(ACTORS, 2)
    text = f"{a} {rng.choice(VERBS)} {b} {rng.choice(TAILS)}, {rng.randint(2, 9999)} days after the vote."
    return text[0].upper() + text[1:]


def article(rng: random.Random, words: int = 400) -> str:
    """A headline and body of about `words` words, in paragraphs."""
    a, b = rng.sample(ACTORS, 2)
    headline = f"{a.replace('the ', '').title()} And {b.replace('the ', '').title()} Clash Over New Plan"
    parts: list[str] = []
    count = 0
    paragraph: list[str] = []
    while count < words:
        s = sentence(rng)
        paragraph.append(s)
        count += len(s.split())
        if len(paragraph) >= rng.randint(3, 5):
            parts.append(" ".join(paragraph))
            paragraph = []
    if paragraph:
        parts.append(" ".join(paragraph))
    return headline + "\n" + "\n\n".join(parts)
