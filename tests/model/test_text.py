from model.text import is_headline, split_sentences


def texts(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)]


def test_offsets_index_into_the_original_text():
    text = "  Mr. Smith met Gen. Mark Milley in the U.S. on Friday.  He left!\n\nThen he spoke. "
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "Mr. Smith met Gen. Mark Milley in the U.S. on Friday.",
        "He left!",
        "Then he spoke.",
    ]
    for s in sentences:
        assert text[s.start : s.end] == s.text
    assert [s.index for s in sentences] == [0, 1, 2]


def test_line_breaks_end_sentences_so_headlines_stay_apart():
    text = "Senate Passes Climate Bill\nWASHINGTON - The Senate passed the bill."
    assert texts(text) == ["Senate Passes Climate Bill", "WASHINGTON - The Senate passed the bill."]


def test_quotes_and_initials():
    text = '"We will win," Zelensky said. J. Edgar Hoover ran the F.B.I. for decades. "It is over." She left.'
    assert texts(text) == [
        '"We will win," Zelensky said.',
        "J. Edgar Hoover ran the F.B.I. for decades.",
        '"It is over."',
        "She left.",
    ]


def test_bullets_are_stripped_from_the_sentence_span():
    text = "Key points:\n- Biden praised Kyiv.\n* NATO condemned Moscow.\n2. Prices rose."
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == ["Key points:", "Biden praised Kyiv.", "NATO condemned Moscow.", "Prices rose."]
    assert all(text[s.start : s.end] == s.text for s in sentences)


def test_empty_and_punctuation_only_text_has_no_sentences():
    assert split_sentences("") == []
    assert split_sentences("   \n\n\t ") == []
    assert split_sentences("... !!! ---") == []


def test_unicode_and_non_english_text_keep_offsets():
    text = "Путин встретился с Си. 習近平は演説した。 😀 Great news!"
    for s in split_sentences(text):
        assert text[s.start : s.end] == s.text


def test_headline_detection():
    assert is_headline("Senate Passes Sweeping Climate Bill After Long Night")
    assert is_headline("Russia Warns Ukraine Over NATO Bid")
    assert not is_headline("The senate passed the bill after a long night.")
    assert not is_headline("Biden spoke")
