"""Labelled data: NewsMTSC, the project's own JSONL/CSV format, and sentence-sentiment corpora.

Files are read with `datasets` (local files only). Errors name the file and line.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.errors import DataFormatError
from model.labels import NEWSMTSC_POLARITY_TO_STANCE, SENTIMENT_LABELS, STANCE_LABELS
from model.predictor import PairInput

FORMATS = ("auto", "newsmtsc", "jsonl", "csv", "parquet", "directed")
_BUILDERS = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}
_PRONOUN = re.compile(r"^(he|she|him|her|his|hers|they|them|their|theirs|it|its|we|us|our|i|me|my|you|your)$", re.I)


@dataclass(frozen=True)
class StanceExample:
    pair: PairInput
    label: str


@dataclass(frozen=True)
class SentimentExample:
    text: str
    label: str


@dataclass
class LabelledData:
    stance: list[StanceExample] = field(default_factory=list)
    sentiment: list[SentimentExample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def extend(self, other: LabelledData) -> None:
        self.stance += other.stance
        self.sentiment += other.sentiment
        self.skipped += other.skipped


def _rows(path: Path, builder: str) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs read through `datasets`."""
    import datasets

    if not path.is_file():
        raise DataFormatError(str(path), None, "file not found")
    if path.stat().st_size == 0:
        raise DataFormatError(str(path), None, "file is empty")
    if builder != "parquet":
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataFormatError(str(path), raw.count(b"\n", 0, exc.start) + 1, f"invalid UTF-8 at byte {exc.start}") from exc
    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets wraps parser errors in several types
        raise DataFormatError(str(path), None, f"cannot parse as {builder}: {exc}") from exc
    first_line = 2 if builder == "csv" else 1
    if len(table) == 0:
        raise DataFormatError(str(path), None, "file has no rows")
    columns = set(table.column_names)
    if builder != "json" or "sentence_normalized" not in columns:
        _check_columns(path, columns)
    for i, row in enumerate(table):
        yield i + first_line, row


def _check_columns(path: Path, columns: set[str]) -> None:
    if "text" not in columns:
        raise DataFormatError(str(path), None, f"missing column 'text' (columns: {sorted(columns)})")
    if not columns & {"stance", "sentiment", "relation"}:
        raise DataFormatError(str(path), None, "missing label column: need 'stance' or 'sentiment'")
    if "stance" in columns and "actor" not in columns:
        raise DataFormatError(str(path), None, "missing column 'actor' (needed with 'stance')")


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        return suffix[1:]
    if suffix in (".txt", ".tsv"):
        return "directed"
    try:
        with path.open("rb") as handle:
            first = handle.readline()
    except OSError as exc:
        raise DataFormatError(str(path), None, f"cannot read: {exc}") from exc
    return "newsmtsc" if b'"sentence_normalized"' in first else "jsonl"


def load_file(
    path: str | Path, fmt: str = "auto", label_map: dict[str, str] | None = None, skip_invalid: bool = False
) -> LabelledData:
    """Load one labelled file: NewsMTSC, or the project's JSONL/CSV/Parquet format.

    `label_map` renames the file's labels to ours; with `skip_invalid` bad rows are skipped
    and listed in `skipped` instead of stopping the load.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise DataFormatError(str(path), None, f"unknown format {fmt!r}; use one of {FORMATS}")
    if not path.is_file():
        raise DataFormatError(str(path), None, "file not found")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "newsmtsc":
        return load_newsmtsc(path)
    if fmt == "directed":
        return load_directed(path)
    return load_labelled(path, _BUILDERS[fmt], label_map, skip_invalid)


def load_newsmtsc(path: Path) -> LabelledData:
    """One stance example per NewsMTSC target; named further mentions are marked too."""
    data = LabelledData()
    for line, row in _rows(path, "json"):
        text = row.get("sentence_normalized")
        if not isinstance(text, str) or not row.get("targets"):
            raise DataFormatError(str(path), line, "expected sentence_normalized and targets")
        for target in row["targets"]:
            label = NEWSMTSC_POLARITY_TO_STANCE.get(target.get("polarity"))
            if label is None:
                raise DataFormatError(str(path), line, f"unknown polarity {target.get('polarity')!r}")
            start, end = target["from"], target["to"]
            if text[start:end] != target["mention"]:
                raise DataFormatError(str(path), line, f"mention {target['mention']!r} is not text[{start}:{end}]")
            mentions = [(start, end)]
            for extra in target.get("further_mentions") or []:
                if not _PRONOUN.match(extra["mention"]) and text[extra["from"] : extra["to"]] == extra["mention"]:
                    mentions.append((extra["from"], extra["to"]))
            data.stance.append(StanceExample(PairInput(text, target["mention"], tuple(sorted(mentions))), label))
    return data


# Directed-sentiment labels: 0 neutral, 1 p→q positive, 2 q→p positive, 3 p→q negative, 4 q→p negative.
# As stance toward the entity on the receiving end: praise is support, blame is oppose.
_DIRECTED_TARGET = {"1": ("q", "support"), "2": ("p", "support"), "3": ("q", "oppose"), "4": ("p", "oppose")}
_BRACKETED = re.compile(r"\[([^\[\]]+)\]")


def unbracket(sentence: str) -> tuple[str, list[tuple[int, int]]]:
    """Remove the [..] entity brackets; return the plain text and each bracketed span in it, in order."""
    spans: list[tuple[int, int]] = []
    out: list[str] = []
    position = 0
    length = 0
    for match in _BRACKETED.finditer(sentence):
        out.append(sentence[position : match.start()])
        length += match.start() - position
        spans.append((length, length + len(match.group(1))))
        out.append(match.group(1))
        length += len(match.group(1))
        position = match.end()
    out.append(sentence[position:])
    return "".join(out), spans


def load_directed(path: Path) -> LabelledData:
    """Directed-sentiment TSV (sentence, p, q, label) as stance rows toward the praised or blamed entity.

    Neutral rows (label 0) say nothing about the sentence's stance toward either entity and are left out.
    """
    data = LabelledData()
    with path.open(encoding="utf-8") as handle:
        for line, raw in enumerate(handle, start=1):
            parts = raw.rstrip("\n").split("\t")
            if len(parts) != 4:
                raise DataFormatError(str(path), line, f"expected 4 tab-separated fields, found {len(parts)}")
            sentence, p, q, label = parts
            text, spans = unbracket(sentence)
            names = {"p": p, "q": q}
            target = _DIRECTED_TARGET.get(label.strip())
            if target is None:
                continue
            side, stance = target
            mentions = tuple(span for span in spans if text[span[0] : span[1]] == names[side])
            if mentions:
                data.stance.append(StanceExample(PairInput(text, names[side], mentions[:1]), stance))
    return data


def _offset(value: Any, path: Path, line: int, name: str) -> int | None:
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(str(path), line, f"field {name!r} must be an integer, not {value!r}") from exc
    if number != value and str(number) != str(value).strip():
        raise DataFormatError(str(path), line, f"field {name!r} must be an integer, not {value!r}")
    return number


def find_mentions(text: str, actor: str) -> tuple[tuple[int, int], ...]:
    """Every literal, case-insensitive, whole-word occurrence of `actor` in `text`."""
    if not actor.strip():
        return ()
    pattern = re.compile(r"(?<!\w)" + re.escape(actor.strip()) + r"(?!\w)", re.IGNORECASE)
    return tuple((m.start(), m.end()) for m in pattern.finditer(text))


def parse_row(row: dict[str, Any], path: Path, line: int, label_map: dict[str, str] | None = None) -> LabelledData:
    """Validate one row of the project's labelled format into stance and/or sentiment examples."""
    label_map = label_map or {}
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataFormatError(str(path), line, "field 'text' is missing or empty")
    out = LabelledData()
    stance, sentiment = row.get("stance"), row.get("sentiment")
    if stance in (None, "") and sentiment in (None, ""):
        raise DataFormatError(str(path), line, "row has neither a 'stance' nor a 'sentiment' label")
    if stance not in (None, ""):
        label = label_map.get(str(stance), str(stance))
        if label not in STANCE_LABELS:
            raise DataFormatError(
                str(path), line, f"field 'stance': unknown label {stance!r}; expected one of {list(STANCE_LABELS)}"
            )
        actor = row.get("actor")
        if not isinstance(actor, str) or not actor.strip():
            raise DataFormatError(str(path), line, "field 'actor' is missing or empty for a stance row")
        start, end = _offset(row.get("start"), path, line, "start"), _offset(row.get("end"), path, line, "end")
        if (start is None) != (end is None):
            raise DataFormatError(str(path), line, "fields 'start' and 'end' must be given together")
        if start is not None and end is not None:
            if not 0 <= start < end <= len(text):
                raise DataFormatError(str(path), line, f"fields 'start'/'end' ({start}, {end}) are outside the text")
            mention = row.get("mention")
            if mention not in (None, "") and text[start:end] != mention:
                raise DataFormatError(str(path), line, f"field 'mention' {mention!r} does not match text[{start}:{end}]")
            mentions: tuple[tuple[int, int], ...] = ((start, end),)
        else:
            mentions = find_mentions(text, actor)
        out.stance.append(StanceExample(PairInput(text, actor.strip(), mentions), label))
    if sentiment not in (None, ""):
        label = label_map.get(str(sentiment), str(sentiment))
        if label not in SENTIMENT_LABELS:
            raise DataFormatError(
                str(path), line, f"field 'sentiment': unknown label {sentiment!r}; expected one of {list(SENTIMENT_LABELS)}"
            )
        out.sentiment.append(SentimentExample(text, label))
    return out


def load_labelled(path: Path, builder: str, label_map: dict[str, str] | None = None, skip_invalid: bool = False) -> LabelledData:
    data = LabelledData()
    for line, row in _rows(path, builder):
        try:
            data.extend(parse_row(row, path, line, label_map))
        except DataFormatError as exc:
            if not skip_invalid:
                raise
            data.skipped.append(str(exc))
    return data


def load_sst2(path: Path, min_words: int = 6, limit: int | None = None, seed: int = 0) -> list[SentimentExample]:
    """SST-2 phrases of at least `min_words` words (binary: positive/negative), optionally subsampled."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [r for r in reader if len(r["sentence"].split()) >= min_words]
    examples = [SentimentExample(r["sentence"].strip(), "positive" if r["label"] == "1" else "negative") for r in rows]
    if limit is not None and limit < len(examples):
        examples = random.Random(seed).sample(examples, limit)
    return examples


def load_tweeteval(path: Path) -> list[SentimentExample]:
    """TweetEval sentiment (3 classes)."""
    with path.open(encoding="utf-8") as handle:
        return [SentimentExample(d["text"].strip(), d["label"]) for d in map(json.loads, handle) if d["text"].strip()]
