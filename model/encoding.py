"""Turn (sentence, actor mentions) into model inputs: entity markers, windows and padded batches."""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from model.errors import InvalidInputError

INPUT_FORMATS = ("markers", "pair", "markers+pair")
# Entity markers reuse two of BERT's unused vocabulary rows, so the vocabulary never grows.
MARKER_TOKENS = ("[unused0]", "[unused1]")
# Tokenised sentences kept for reuse (several actors per sentence, repeated sentences). Each costs a few kB of
# Python objects, so the cache stays small: a serving process sees mostly new text.
CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class Encoded:
    """One model input before padding.

    `focus` lists the positions that stand for the actor; `other` the tokens of a second actor
    (the holder, when the pair is read as a relation holder → target).
    """

    input_ids: list[int]
    token_type_ids: list[int]
    focus: list[int]
    other: tuple[int, ...] = ()


class PairEncoder:
    """Encodes sentences and (sentence, actor) pairs with a fast tokenizer.

    Each sentence is tokenized once, with character offsets; actor markers are then
    inserted at token level, so several actors in one sentence share that work.
    """

    def __init__(self, tokenizer, input_format: str = "markers", max_length: int = 128) -> None:
        if input_format not in INPUT_FORMATS:
            raise InvalidInputError(f"input_format must be one of {INPUT_FORMATS}, not {input_format!r}")
        if max_length < 16:
            raise InvalidInputError("max_length must be at least 16")
        self.tokenizer = tokenizer
        self.input_format = input_format
        self.max_length = max_length
        self.cls_id = tokenizer.cls_token_id
        self.sep_id = tokenizer.sep_token_id
        self.pad_id = tokenizer.pad_token_id
        self.marker_ids = tuple(tokenizer.convert_tokens_to_ids(t) for t in MARKER_TOKENS)
        self._cache: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and character offsets of `text`, without special tokens (memoised)."""
        hit = self._cache.get(text)
        if hit is None:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            hit = (list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]])
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[text] = hit
        return hit

    def clear_cache(self) -> None:
        self._cache.clear()

    def encode_sentence(self, text: str) -> Encoded:
        """`[CLS] sentence [SEP]`, truncated to the window."""
        ids, _ = self.tokenize(text)
        ids = ids[: self.max_length - 2]
        return Encoded([self.cls_id, *ids, self.sep_id], [0] * (len(ids) + 2), [])

    def encode_pair(
        self, text: str, actor: str, mentions: Sequence[tuple[int, int]], other: Sequence[tuple[int, int]] = ()
    ) -> Encoded:
        """Encode `text` with `mentions` (character spans) of `actor` marked.

        Sentences longer than the window keep a window centred on the first mention.
        With no mentions (an implicit target) the actor is still scored: in the pair
        formats through the second segment, in the markers format on the sentence alone.
        `other` are character spans of a second actor whose token positions are returned unmarked.
        """
        ids, offsets = self.tokenize(text)
        spans = _token_spans(offsets, mentions) if self.input_format != "pair" else []
        other_tokens = {i for a, b in _token_spans(offsets, other) for i in range(a, b + 1)}
        actor_ids: list[int] = []
        if self.input_format != "markers":
            actor_ids = self.tokenize(actor)[0][:16]
        budget = self.max_length - 2 - (len(actor_ids) + 1 if actor_ids else 0) - 2 * len(spans)
        lo, hi = _window(len(ids), spans, budget)
        start_id, end_id = self.marker_ids
        out = [self.cls_id]
        focus: list[int] = []
        # The window's tokens a slice at a time, with a marker before each span's first token and after its last
        # where they fall in the window (spans are sorted and apart); out[1 + i - lo + shift[i]] is token i.
        cursor, marked, hi = lo, [], max(lo, hi)  # no tokens at all where the actor leaves no room
        for first, last in spans:
            if lo <= first < hi:
                out += ids[cursor:first]
                cursor = first
                focus.append(len(out))
                out.append(start_id)
                marked.append(first)
            if lo <= last < hi:
                out += ids[cursor : last + 1]
                cursor = last + 1
                out.append(end_id)
                marked.append(last + 1)
        out += ids[cursor:hi]
        out.append(self.sep_id)
        positions = [1 + i - lo + bisect.bisect_right(marked, i) for i in sorted(other_tokens) if lo <= i < hi]
        types = [0] * len(out)
        if actor_ids:
            if not focus:
                focus = list(range(len(out), len(out) + len(actor_ids)))
            out += [*actor_ids, self.sep_id]
            types += [1] * (len(actor_ids) + 1)
        return Encoded(out, types, focus, tuple(positions))


def _token_spans(offsets: Sequence[tuple[int, int]], mentions: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Map character spans to inclusive token spans, dropping ones that overlap an earlier span."""
    spans: list[tuple[int, int]] = []
    for start, end in sorted(mentions):
        toks = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        if not toks:
            continue
        first, last = toks[0], toks[-1]
        if spans and first <= spans[-1][1]:
            continue
        spans.append((first, last))
    return spans


def _window(n: int, spans: Sequence[tuple[int, int]], budget: int) -> tuple[int, int]:
    """A token window [lo, hi) of at most `budget` tokens, centred on the first span."""
    if n <= budget:
        return 0, n
    if not spans:
        return 0, budget
    first_start, first_end = spans[0]
    centre = (first_start + first_end) // 2
    lo = max(0, min(centre - budget // 2, n - budget))
    return lo, lo + budget


def collate(items: Sequence[Encoded], pad_id: int, with_other: bool = False, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest item (dynamic padding), rounded up to a `multiple`.

    `with_other` adds the second actor's mask.
    """
    lengths = [len(e.input_ids) for e in items]
    width = -(-max(lengths) // multiple) * multiple
    n = len(items)
    # Padded into flat int64 buffers that become tensors without a copy: a tensor per item and row took 2-3% of a
    # compiled scoring pass, nested lists 1.5x the time of these (benchmarks/PROFILE.md, session 21).
    input_ids = _padded([e.input_ids for e in items], lengths, width, pad_id)
    # Token types are all 0 without a second segment (the markers format): no need to pad them one by one.
    if any(map(any, (e.token_type_ids for e in items))):
        token_type_ids = _padded([e.token_type_ids for e in items], lengths, width, 0)
    else:
        token_type_ids = torch.zeros((n, width), dtype=torch.long)
    attention_mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    focus_mask = _marks(items, "focus", n, width)
    batch = {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "focus_mask": focus_mask,
    }
    if with_other:
        batch["other_mask"] = _marks(items, "other", n, width)
    return batch


def _padded(rows: Sequence[Sequence[int]], lengths: Sequence[int], width: int, pad: int) -> torch.Tensor:
    """[len(rows), width] int64: each row, then `pad` up to the width."""
    flat = array("q")
    padding = [pad] * width
    for row, length in zip(rows, lengths, strict=True):
        flat.extend(row)
        flat.extend(padding[: width - length])
    return torch.frombuffer(flat, dtype=torch.long).view(len(rows), width)


def _marks(items: Sequence[Encoded], field: str, n: int, width: int) -> torch.Tensor:
    """[n, width] floats, 1 at each item's token positions in `field` ("focus" or "other"), set in one step."""
    rows = [row for row, e in enumerate(items) for _ in getattr(e, field)]
    columns = [i for e in items for i in getattr(e, field)]
    marks = torch.zeros((n, width), dtype=torch.float)
    marks[rows, columns] = 1.0
    return marks


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None, multiple: int = 1
) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first.

    A batch holds at most `batch_size` items and, with `max_tokens`, at most that many tokens once padded to its
    longest item (always at least one item); where it could hold more than `multiple` items, a multiple of them.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        size = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // max(1, lengths[order[start]])))
        if size > multiple:
            size -= size % multiple
        batches.append(order[start : start + size])
        start += size
    return batches
