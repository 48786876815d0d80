import pytest
import torch

from model.encoding import PairEncoder, collate, length_sorted_batches
from model.errors import InvalidInputError
from model.predictor import base_model_path


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_model_path()))


def tokens(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


def test_markers_wrap_every_mention(tokenizer):
    enc = PairEncoder(tokenizer, "markers", 64)
    text = "Trump praised Acme Corp, and Acme thanked him."
    out = enc.encode_pair(text, "Acme Corp", [(14, 23), (29, 33)])
    toks = tokens(tokenizer, out.input_ids)
    assert toks == [
        "[CLS]",
        "trump",
        "praised",
        "[unused0]",
        "ac",
        "##me",
        "corp",
        "[unused1]",
        ",",
        "and",
        "[unused0]",
        "ac",
        "##me",
        "[unused1]",
        "thanked",
        "him",
        ".",
        "[SEP]",
    ]
    assert [toks[i] for i in out.focus] == ["[unused0]", "[unused0]"]
    assert set(out.token_type_ids) == {0}


def test_pair_format_puts_the_actor_in_the_second_segment(tokenizer):
    enc = PairEncoder(tokenizer, "pair", 64)
    out = enc.encode_pair("Trump praised Acme.", "Acme", [(14, 18)])
    toks = tokens(tokenizer, out.input_ids)
    assert toks == ["[CLS]", "trump", "praised", "ac", "##me", ".", "[SEP]", "ac", "##me", "[SEP]"]
    assert out.token_type_ids == [0] * 7 + [1] * 3
    assert [toks[i] for i in out.focus] == ["ac", "##me"]


def test_unmentioned_actor_falls_back_to_the_second_segment(tokenizer):
    enc = PairEncoder(tokenizer, "markers+pair", 64)
    out = enc.encode_pair("The plan failed.", "Ukraine", [])
    toks = tokens(tokenizer, out.input_ids)
    assert toks[-2:] == ["ukraine", "[SEP]"]
    assert [toks[i] for i in out.focus] == ["ukraine"]


def test_long_sentence_window_is_centred_on_the_mention(tokenizer):
    enc = PairEncoder(tokenizer, "markers", 32)
    words = ["word"] * 200
    words[150] = "Acme"
    text = " ".join(words)
    start = text.index("Acme")
    out = enc.encode_pair(text, "Acme", [(start, start + 4)])
    toks = tokens(tokenizer, out.input_ids)
    assert len(out.input_ids) <= 32
    marker = toks.index("[unused0]")
    assert 10 <= marker <= 20, marker
    assert toks[marker + 1 : marker + 3] == ["ac", "##me"]


def test_the_other_actors_tokens_are_found_past_the_markers(tokenizer):
    enc = PairEncoder(tokenizer, "markers", 64)
    text = "Moscow blamed Kyiv, and Moscow said Kyiv lied."
    out = enc.encode_pair(text, "Ukraine", [(14, 18), (36, 40)], other=[(0, 6), (24, 30)])
    toks = tokens(tokenizer, out.input_ids)
    assert [toks[i] for i in out.other] == ["moscow", "moscow"]
    assert [toks[i + 1] for i in out.focus] == ["kyiv", "kyiv"]
    # Right after a mention's end marker, and right before a start marker.
    out = enc.encode_pair("Kyiv Moscow Kyiv.", "Ukraine", [(0, 4), (12, 16)], other=[(5, 11)])
    toks = tokens(tokenizer, out.input_ids)
    assert toks == ["[CLS]", "[unused0]", "kyiv", "[unused1]", "moscow", "[unused0]", "kyiv", "[unused1]", ".", "[SEP]"]
    assert out.other == (4,)


def test_the_other_actors_tokens_outside_the_window_are_left_out(tokenizer):
    enc = PairEncoder(tokenizer, "markers", 32)
    words = ["word"] * 200
    words[10], words[150] = "Moscow", "Acme"
    text = " ".join(words)
    start, other = text.index("Acme"), text.index("Moscow")
    inside = text.index("word", start + 10)
    out = enc.encode_pair(text, "Acme", [(start, start + 4)], other=[(other, other + 6), (inside, inside + 4)])
    assert [tokens(tokenizer, out.input_ids)[i] for i in out.other] == ["word"]


def test_an_actor_that_fills_the_window_leaves_no_sentence_tokens(tokenizer):
    # max_length 16 and a 16-token actor in the second segment: no room for the sentence.
    enc = PairEncoder(tokenizer, "pair", 16)
    actor = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    out = enc.encode_pair("Some sentence about it.", actor, [])
    assert out.input_ids[:2] == [tokenizer.cls_token_id, tokenizer.sep_token_id]
    assert out.token_type_ids[:2] == [0, 0] and len(out.input_ids) == 2 + 16 + 1


def test_sentence_encoding_truncates_to_the_window(tokenizer):
    enc = PairEncoder(tokenizer, "markers", 16)
    out = enc.encode_sentence("word " * 100)
    assert len(out.input_ids) == 16 and out.input_ids[-1] == tokenizer.sep_token_id


def test_collate_pads_to_the_longest_item(tokenizer):
    enc = PairEncoder(tokenizer, "markers", 64)
    items = [enc.encode_sentence("Short."), enc.encode_sentence("A somewhat longer sentence here.")]
    batch = collate(items, tokenizer.pad_token_id)
    width = max(len(i.input_ids) for i in items)
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"][0].sum() == len(items[0].input_ids)
    assert batch["input_ids"][0, -1] == tokenizer.pad_token_id


def test_length_sorted_batches_cover_every_index_once():
    batches = length_sorted_batches([5, 1, 9, 3, 7], 2)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    assert batches[0] == [2, 4]


def test_token_budget_batches_hold_more_short_items_than_long_ones():
    lengths = [100, 10, 100, 10, 10, 50, 10, 300]
    batches = length_sorted_batches(lengths, 3, max_tokens=200)
    # 300 tokens alone (over the budget, still one item), two of 100, then 50 and the first two of 10 (cap of 3).
    assert batches == [[7], [0, 2], [5, 1, 3], [4, 6]]
    assert length_sorted_batches(lengths, 3) == [[7, 0, 2], [5, 1, 3], [4, 6]]


def test_token_budget_batches_hold_a_multiple_of_items_where_they_can():
    lengths = [300, 40, 40, 40, 40, 40, 40, 40, 40, 40]
    # 300 tokens alone; five of 40 fit the budget of 200, four go (a multiple of 2); then the last.
    assert length_sorted_batches(lengths, 8, max_tokens=200, multiple=2) == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert length_sorted_batches(lengths, 8, max_tokens=200) == [[0], [1, 2, 3, 4, 5], [6, 7, 8, 9]]


def test_bad_settings_are_rejected(tokenizer):
    with pytest.raises(InvalidInputError, match="input_format"):
        PairEncoder(tokenizer, "nope")


def test_collate_rounds_the_width_up_to_a_multiple():
    from model.encoding import Encoded

    items = [Encoded([101, 7, 8, 102], [0] * 4, [1]), Encoded([101, 7, 8, 9, 10, 102], [0] * 6, [2])]
    assert collate(items, 0)["input_ids"].shape == (2, 6)
    batch = collate(items, 0, multiple=16)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(1).tolist() == [4, 6]
    assert batch["input_ids"][1, 6:].tolist() == [0] * 10
    assert collate([Encoded([1] * 16, [0] * 16, [])], 0, multiple=16)["input_ids"].shape == (1, 16)


def test_padding_to_a_multiple_leaves_scores_unchanged(tiny_predictor):
    from model.predictor import PAD_MULTIPLE, PairInput

    pairs = [PairInput("The senator praised Acme Corp.", "Acme Corp", ((19, 28),)), PairInput("Acme fell.", "Acme", ())]
    assert tiny_predictor.pad_multiple == PAD_MULTIPLE > 1
    padded = tiny_predictor.stance_probabilities(pairs)
    tiny_predictor.pad_multiple = 1
    try:
        assert torch.allclose(tiny_predictor.stance_probabilities(pairs), padded, atol=1e-5)
    finally:
        tiny_predictor.pad_multiple = PAD_MULTIPLE


def test_collate_lays_out_every_field():
    from model.encoding import Encoded

    items = [Encoded([101, 7, 102, 8, 102], [0, 0, 0, 1, 1], [1], (3,)), Encoded([101, 9, 102], [0] * 3, [], ())]
    batch = collate(items, 0, with_other=True)
    assert batch["input_ids"].tolist() == [[101, 7, 102, 8, 102], [101, 9, 102, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["focus_mask"].tolist() == [[0, 1, 0, 0, 0], [0] * 5]
    assert batch["other_mask"].tolist() == [[0, 0, 0, 1, 0], [0] * 5]
    assert {k: v.dtype for k, v in batch.items()} == dict.fromkeys(
        ("input_ids", "token_type_ids", "attention_mask"), torch.long
    ) | dict.fromkeys(("focus_mask", "other_mask"), torch.float)
