"""Labelled data: NewsMTSC, the project's own JSONL/CSV format, and sentence-sentiment corpora.

Files are read with `datasets` (local files only). Errors name the file and line.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.errors import DataFormatError
from model.labels import NEWSMTSC_POLARITY_TO_STANCE, RELATION_LABELS, SENTIMENT_LABELS, STANCE_LABELS
from model.predictor import PairInput, RelationInput

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


@dataclass(frozen=True)
class RelationExample:
    relation: RelationInput
    label: str


@dataclass
class LabelledData:
    stance: list[StanceExample] = field(default_factory=list)
    sentiment: list[SentimentExample] = field(default_factory=list)
    relations: list[RelationExample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def extend(self, other: LabelledData) -> None:
        self.stance += other.stance
        self.sentiment += other.sentiment
        self.relations += other.relations
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
# The same labels read as relations for both orders (p → q, q → p).
_DIRECTED_RELATIONS = {
    "0": ("neutral", "neutral"),
    "1": ("support", "neutral"),
    "2": ("neutral", "support"),
    "3": ("oppose", "neutral"),
    "4": ("neutral", "oppose"),
}
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
    """Directed-sentiment TSV (sentence, p, q, label): relation rows for both orders, and stance rows.

    Stance rows go to the praised or blamed entity; neutral rows (label 0) say nothing about the
    sentence's stance toward either entity and give no stance row.
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
            located = {side: tuple(sp for sp in spans if text[sp[0] : sp[1]] == name)[:1] for side, name in names.items()}
            if label.strip() not in _DIRECTED_RELATIONS:
                raise DataFormatError(str(path), line, f"unknown label {label!r}; expected 0-4")
            if located["p"] and located["q"]:
                forward, backward = _DIRECTED_RELATIONS[label.strip()]
                for (holder, target), relation in ((("p", "q"), forward), (("q", "p"), backward)):
                    pair = RelationInput(text, names[holder], located[holder], names[target], located[target])
                    data.relations.append(RelationExample(pair, relation))
            target = _DIRECTED_TARGET.get(label.strip())
            if target is not None and located[target[0]]:
                side, stance = target
                data.stance.append(StanceExample(PairInput(text, names[side], located[side]), stance))
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


def _label(row: dict[str, Any], key: str, labels: Sequence[str], label_map: dict[str, str], path: Path, line: int) -> str | None:
    value = row.get(key)
    if value in (None, ""):
        return None
    label = label_map.get(str(value), str(value))
    if label not in labels:
        raise DataFormatError(str(path), line, f"field {key!r}: unknown label {value!r}; expected one of {list(labels)}")
    return label


def _name_spans(
    row: dict[str, Any], text: str, name_key: str, prefix: str, path: Path, line: int
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The named actor of `name_key` and its mention spans: from `<prefix>start/end`, else found literally."""
    name = row.get(name_key)
    if not isinstance(name, str) or not name.strip():
        raise DataFormatError(str(path), line, f"field {name_key!r} is missing or empty")
    start_key, end_key = f"{prefix}start", f"{prefix}end"
    start, end = _offset(row.get(start_key), path, line, start_key), _offset(row.get(end_key), path, line, end_key)
    if (start is None) != (end is None):
        raise DataFormatError(str(path), line, f"fields {start_key!r} and {end_key!r} must be given together")
    if start is None or end is None:
        return name.strip(), find_mentions(text, name)
    if not 0 <= start < end <= len(text):
        raise DataFormatError(str(path), line, f"fields '{start_key}'/'{end_key}' ({start}, {end}) are outside the text")
    mention = row.get(f"{prefix}mention")
    if mention not in (None, "") and text[start:end] != mention:
        raise DataFormatError(str(path), line, f"field '{prefix}mention' {mention!r} does not match text[{start}:{end}]")
    return name.strip(), ((start, end),)


def parse_row(row: dict[str, Any], path: Path, line: int, label_map: dict[str, str] | None = None) -> LabelledData:
    """Validate one row of the project's labelled format into stance, sentiment and/or relation examples."""
    label_map = label_map or {}
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataFormatError(str(path), line, "field 'text' is missing or empty")
    out = LabelledData()
    stance = _label(row, "stance", STANCE_LABELS, label_map, path, line)
    sentiment = _label(row, "sentiment", SENTIMENT_LABELS, label_map, path, line)
    relation = _label(row, "relation", RELATION_LABELS, label_map, path, line)
    if stance is None and sentiment is None and relation is None:
        raise DataFormatError(str(path), line, "row has neither a 'stance' nor a 'sentiment' label")
    if stance is not None:
        if not isinstance(row.get("actor"), str) or not row["actor"].strip():
            raise DataFormatError(str(path), line, "field 'actor' is missing or empty for a stance row")
        actor, mentions = _name_spans(row, text, "actor", "", path, line)
        out.stance.append(StanceExample(PairInput(text, actor, mentions), stance))
    if sentiment is not None:
        out.sentiment.append(SentimentExample(text, sentiment))
    if relation is not None:
        holder, holder_spans = _name_spans(row, text, "holder", "holder_", path, line)
        target, target_spans = _name_spans(row, text, "target", "target_", path, line)
        out.relations.append(RelationExample(RelationInput(text, holder, holder_spans, target, target_spans), relation))
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
