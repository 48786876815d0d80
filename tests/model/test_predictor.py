import json

import pytest
import torch

from model.actors import ActorSpec
from model.errors import InvalidInputError, ModelLoadError
from model.labels import SENTIMENT_LABELS, STANCE_LABELS, label_index
from model.predictor import PairInput, StancePredictor, bf16_faster

ARTICLE = "Donald Trump praised Acme Corp on Monday.\nTrump later criticised Russia. The weather was fine."


def test_predict_returns_the_classify_shape(tiny_predictor):
    result = tiny_predictor.predict(ARTICLE).to_dict()
    assert set(result) == {"model", "sentences", "actors"}
    assert result["model"] == {"name": "tiny-test", "version": "0.0.1"}
    assert [s["index"] for s in result["sentences"]] == [0, 1, 2]
    for s in result["sentences"]:
        assert ARTICLE[s["start"] : s["end"]] == s["text"]
        assert set(s["sentiment"]["scores"]) == set(SENTIMENT_LABELS)
        assert abs(sum(s["sentiment"]["scores"].values()) - 1) < 1e-3
        for pair in s["actors"]:
            assert set(pair["stance"]["scores"]) == set(STANCE_LABELS)
            for m in pair["mentions"]:
                assert ARTICLE[m["start"] : m["end"]] == m["text"]
    assert result["sentences"][2]["actors"] == []
    summary = {a["actor"]: a for a in result["actors"]}
    assert summary["Donald Trump"]["mentions"] == 2
    assert summary["Donald Trump"]["support"] + summary["Donald Trump"]["oppose"] + summary["Donald Trump"]["neutral"] == 2
    assert set(summary["Donald Trump"]) == {"actor", "type", "mentions", "support", "oppose", "neutral", "net", "label"}


def test_unmentioned_explicit_actor_is_scored_only_for_single_sentences(tiny_predictor):
    single = tiny_predictor.predict("The plan is bad.", [ActorSpec("Ukraine")], detect_actors=False).to_dict()
    pair = single["sentences"][0]["actors"][0]
    assert pair["actor"] == "Ukraine" and pair["mentioned"] is False and pair["mentions"] == []
    several = tiny_predictor.predict("The plan is bad. It failed.", [ActorSpec("Ukraine")], detect_actors=False).to_dict()
    assert all(s["actors"] == [] for s in several["sentences"])
    assert several["actors"][0]["mentions"] == 0


@pytest.mark.parametrize("text", ["", "   \n\t  "])
def test_empty_text_is_an_invalid_input(tiny_predictor, text):
    with pytest.raises(InvalidInputError, match="text must not be empty"):
        tiny_predictor.predict(text)


def test_text_without_sentences_or_actors_is_well_defined(tiny_predictor):
    assert tiny_predictor.predict("... !!!").to_dict()["sentences"] == []
    result = tiny_predictor.predict("it rained all day.").to_dict()
    assert len(result["sentences"]) == 1 and result["actors"] == []


def test_odd_unicode_and_very_long_sentences(tiny_predictor):
    text = "Путин 😀 \u202eRTL\u202c text\x00 here. " + "Acme Corp " * 600 + "grew."
    result = tiny_predictor.predict(text, [ActorSpec("Acme Corp")], detect_actors=False).to_dict()
    assert len(result["sentences"]) == 2


def test_duplicate_sentences_are_scored_once(tiny_predictor, monkeypatch):
    calls = []
    original = tiny_predictor.sentiment_probabilities
    monkeypatch.setattr(tiny_predictor, "sentiment_probabilities", lambda texts, *a: calls.append(list(texts)) or original(texts))
    tiny_predictor.predict("Acme grew. Acme grew. Acme grew.")
    assert calls == [["Acme grew."]]


def test_save_and_load_round_trip(tiny_predictor, tiny_model_dir):
    loaded = StancePredictor.load(tiny_model_dir)
    pairs = [PairInput("Trump praised Acme.", "Acme", ((14, 18),))]
    assert torch.allclose(loaded.stance_logits(pairs), tiny_predictor.stance_logits(pairs), atol=1e-2)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["stance_labels"] == list(STANCE_LABELS)
    assert "weights.safetensors" in config["files"] and "metrics.json" in config["files"]


def test_corrupt_weights_refuse_to_load(tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match=r"weights\.safetensors is corrupt"):
        StancePredictor.load(broken)


def test_missing_folder_and_missing_config(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        StancePredictor.load(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match=r"missing config\.json"):
        StancePredictor.load(tmp_path)


def test_label_maps():
    assert label_index(STANCE_LABELS) == {"support": 0, "oppose": 1, "neutral": 2}
    assert label_index(SENTIMENT_LABELS) == {"positive": 0, "negative": 1, "neutral": 2}


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_fast_paths_agree_with_fp32_on_the_tiny_model(tiny_model_dir, precision):
    fp32 = StancePredictor.load(tiny_model_dir)
    fast = StancePredictor.load(tiny_model_dir, precision=precision)
    assert fast.precision == precision and fp32.precision == "fp32"
    pairs = [PairInput(f"Acme Corp hired {i} people and Trump praised it.", "Acme Corp", ((0, 9),)) for i in range(20)]
    assert torch.allclose(fp32.stance_probabilities(pairs), fast.stance_probabilities(pairs), atol=0.05)
    assert torch.allclose(
        fp32.sentiment_probabilities(["Trump praised it."]), fast.sentiment_probabilities(["Trump praised it."]), atol=0.05
    )


def test_precision_auto_and_unknown(tiny_model_dir):
    expected = "bf16" if bf16_faster() else "fp32"
    assert StancePredictor.load(tiny_model_dir, precision="auto").precision == expected
    with pytest.raises(InvalidInputError, match=r"precision must be one of \('auto', 'fp32', 'bf16', 'int8'\), not 'int4'"):
        StancePredictor.load(tiny_model_dir, precision="int4")


@pytest.mark.parametrize(
    ("native", "bf16_seconds", "expected"),
    [(True, 0.5, True), (True, 0.8, True), (True, 0.9, False), (True, 1.8, False), (False, 0.1, False)],
)
def test_bf16_is_taken_only_where_it_is_measured_faster(monkeypatch, native, bf16_seconds, expected):
    from model import predictor

    seconds = {torch.bfloat16: bf16_seconds, torch.float32: 1.0}
    monkeypatch.setattr(predictor, "native_bf16", lambda: native)
    monkeypatch.setattr(predictor, "_matmul_seconds", lambda dtype: seconds[dtype])
    predictor.bf16_faster.cache_clear()
    try:
        assert predictor.bf16_faster() is expected
        assert predictor.resolve_precision("auto") == ("bf16" if expected else "fp32")
    finally:
        predictor.bf16_faster.cache_clear()


def test_the_matmul_probe_times_both_precisions():
    from model.predictor import _matmul_seconds

    assert _matmul_seconds(torch.float32, rounds=2) > 0 and _matmul_seconds(torch.bfloat16, rounds=2) > 0


def test_actor_only_stance_pooling_round_trips(tmp_path):
    from conftest import build_tiny_predictor

    predictor = build_tiny_predictor(stance_pooling="actor")
    assert predictor.network.stance_head.in_features == 32
    predictor.save(tmp_path / "actor")
    loaded = StancePredictor.load(tmp_path / "actor")
    assert loaded.config.stance_pooling == "actor"
    pairs = [PairInput("Trump praised Acme.", "Acme", ((14, 18),))]
    assert torch.allclose(loaded.stance_logits(pairs), predictor.stance_logits(pairs), atol=1e-2)


def test_device_choice(tiny_model_dir):
    from model.predictor import resolve_device

    predictor = StancePredictor.load(tiny_model_dir)
    assert predictor.to("auto").device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert predictor.to("cpu").device == torch.device("cpu")
    with pytest.raises(InvalidInputError, match=r"^device must be cpu, cuda, cuda:N or auto, not 'tpu'$"):
        resolve_device("tpu")
    with pytest.raises(InvalidInputError, match=r"^device 'cuda:99' is not available on this machine \(no CUDA GPU found\)$"):
        resolve_device("cuda:99")


def test_batches_cut_by_tokens_hold_a_multiple_of_the_threads_count(tiny_predictor, monkeypatch):
    items = tiny_predictor.encode_sentences(["One two three four five six seven."] * 9)
    width = len(items[0].input_ids)
    monkeypatch.setattr(tiny_predictor, "batch_tokens", 5 * width)  # room for five
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert [len(b) for b in tiny_predictor._batches(items, 256)] == [4, 4, 1]
    monkeypatch.setattr(tiny_predictor, "batch_tokens", None)  # eager batches: batch_size pairs, as many as asked
    assert [len(b) for b in tiny_predictor._batches(items, 5)] == [5, 4]
