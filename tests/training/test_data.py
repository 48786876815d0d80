from pathlib import Path

import pytest

from model.errors import DataFormatError
from training.data import find_mentions, load_file

EXAMPLES = Path(__file__).resolve().parents[2] / "training" / "examples"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_labelled_jsonl_has_stance_and_sentiment_rows():
    data = load_file(EXAMPLES / "labelled.jsonl")
    assert len(data.stance) == 9 and len(data.sentiment) == 9
    first = data.stance[0]
    assert first.label == "support" and first.pair.actor == "Acme Corp"
    assert first.pair.mentions == ((20, 29),)  # found literally when no offsets are given
    assert data.stance[2].pair.mentions == ((0, 9),)


def test_labelled_csv_matches_the_jsonl():
    data = load_file(EXAMPLES / "labelled.csv")
    assert [e.label for e in data.stance] == ["support", "oppose", "neutral", "support", "oppose", "neutral"]
    assert data.stance[0].pair.mentions == ((20, 29),)
    assert [e.label for e in data.sentiment] == ["positive", "negative", "neutral", "positive", "negative"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            '{"text": "A b.", "actor": "A", "stance": "favour"}',
            "field 'stance': unknown label 'favour'; expected one of ['support', 'oppose', 'neutral']",
        ),
        ('{"text": "", "sentiment": "positive"}', "field 'text' is missing or empty"),
        ('{"text": "A b.", "actor": " ", "stance": "support"}', "field 'actor' is missing or empty for a stance row"),
        (
            '{"text": "A b.", "actor": "A", "start": 0, "end": 40, "stance": "support"}',
            "fields 'start'/'end' (0, 40) are outside the text",
        ),
        (
            '{"text": "A b.", "actor": "A", "start": 0, "end": 1, "mention": "B", "stance": "support"}',
            "field 'mention' 'B' does not match text[0:1]",
        ),
        ('{"text": "A b."}', "row has neither a 'stance' nor a 'sentiment' label"),
    ],
)
def test_bad_rows_name_the_file_and_line(tmp_path, row, message):
    good = '{"text": "Fine.", "sentiment": "neutral"}'
    path = write(tmp_path, "bad.jsonl", good + "\n" + row + "\n")
    with pytest.raises(DataFormatError) as info:
        load_file(path)
    assert str(info.value) == f"{path}:2: {message}"


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataFormatError, match="file not found"):
        load_file(tmp_path / "nope.jsonl")
    with pytest.raises(DataFormatError, match="file is empty"):
        load_file(write(tmp_path, "empty.jsonl", ""))


def test_label_map_renames_user_labels(tmp_path):
    path = write(tmp_path, "mine.jsonl", '{"text": "A won.", "actor": "A", "stance": "favor"}\n')
    data = load_file(path, label_map={"favor": "support"})
    assert data.stance[0].label == "support"


def test_find_mentions_is_literal_and_whole_word():
    assert find_mentions("Acme and Acmeville and ACME.", "Acme") == ((0, 4), (23, 27))
    assert find_mentions("a (b)* c", "(b)*") == ((2, 6),)


def test_newsmtsc_targets(shared_data):
    data = load_file(shared_data / "newsmtsc" / "devtest_mt.jsonl")
    assert len(data.stance) == 1476
    assert {e.label for e in data.stance} == {"support", "oppose", "neutral"}
    for e in data.stance[:200]:
        start, end = e.pair.mentions[0]
        assert e.pair.text[start:end]


def test_directed_sentiment_rows_become_stance_toward_the_receiving_entity(tmp_path):
    from training.data import unbracket

    assert unbracket("[Trump] praised [Kasich’]s plan.") == ("Trump praised Kasich’s plan.", [(0, 5), (14, 21)])
    path = write(
        tmp_path,
        "directed.txt",
        "[Trump] praised [Kasich].\tTrump\tKasich\t1\n"
        "[Trump] was blamed by [Kasich].\tTrump\tKasich\t4\n"
        "[Trump] met [Kasich].\tTrump\tKasich\t0\n",
    )
    data = load_file(path)
    assert [(e.pair.actor, e.label, e.pair.mentions) for e in data.stance] == [
        ("Kasich", "support", ((14, 20),)),
        ("Trump", "oppose", ((0, 5),)),
    ]
    bad = write(tmp_path, "bad.txt", "only\ttwo\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt:1: expected 4 tab-separated fields, found 2"):
        load_file(bad)
