"""The shipped default model on sentences we wrote ourselves."""

import json

import pytest

from model import StancePredictor, default_model_path, fused_attention
from model.actors import ActorSpec
from model.amx_encoder import AmxEncoder
from model.predictor import DocumentInput, compiler_found

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def real() -> StancePredictor:
    return StancePredictor.load(default_model_path())


def stance_of(result, actor: str, sentence: int = 0) -> str:
    return next(a["stance"]["label"] for a in result["sentences"][sentence]["actors"] if a["actor"] == actor)


def test_praise_is_support(real):
    result = real.predict("The senator praised Acme Corp for its generosity.").to_dict()
    assert stance_of(result, "Acme Corp") == "support"
    assert result["sentences"][0]["sentiment"]["label"] == "positive"


def test_blame_is_oppose(real):
    result = real.predict("Protesters blamed Mayor Jane Doe for the city's crumbling schools and rising crime.").to_dict()
    assert stance_of(result, "Jane Doe") == "oppose"
    assert result["sentences"][0]["sentiment"]["label"] == "negative"


def test_report_is_neutral(real):
    result = real.predict("Acme Corp will publish its quarterly results on Tuesday.").to_dict()
    assert stance_of(result, "Acme Corp") == "neutral"


def test_actors_of_one_sentence_are_told_apart(real):
    from pathlib import Path

    from training.evaluate import evaluate_file

    data = Path(__file__).resolve().parents[2] / "training" / "examples" / "two_actors.jsonl"
    report = evaluate_file(real, data)
    assert report["stance"]["n"] == 80
    # A model that gave every actor of a sentence the same label could get at most 50 of these 80 pairs (0.625).
    assert report["stance"]["accuracy"] >= 0.68


def test_document_summary(real):
    text = (
        "Acme Corp Opens New Plant\n"
        "Local leaders praised Acme Corp for bringing 500 jobs to the town.\n"
        "The governor said Acme Corp had been a model employer for decades."
    )
    summary = {a["actor"]: a for a in real.predict(text).to_dict()["actors"]}
    assert summary["Acme Corp"]["mentions"] == 3
    assert summary["Acme Corp"]["label"] == "support" and summary["Acme Corp"]["net"] > 0.15


def test_folder_records_what_it_was_trained_on():
    folder = default_model_path()
    config = json.loads((folder / "config.json").read_text())
    assert config["base_model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(config["base_model"]["sha256"]) == 64
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "calibration" in metrics
    training = json.loads((folder / "training.json").read_text())
    assert training["data"]["sha256"]
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 30 * 1024 * 1024


def test_stance_quality_on_devtest_mt(real, shared_data):
    from training.evaluate import evaluate_file

    report = evaluate_file(real, shared_data / "newsmtsc" / "devtest_mt.jsonl")
    assert report["stance"]["n"] == 1476
    # The floor is 0.78; model 0.4.0 scored 0.7809 here (in metrics.json, measured on an AVX2 CPU). A label
    # that another CPU's fp32 kernels round the other way moves macro-F1 by about 0.001, hence the margin.
    assert report["stance"]["macro_f1"] >= 0.779
    metrics = json.loads((default_model_path() / "metrics.json").read_text())
    assert metrics["dev"]["../shared/data/newsmtsc/devtest_mt.jsonl"]["stance"]["macro_f1"] >= 0.78


def test_relation_head_is_shipped_and_measured(real):
    assert real.config.relation_labels == ["support", "oppose", "neutral"]
    metrics = json.loads((default_model_path() / "metrics.json").read_text())
    assert metrics["relations"]["dev"]["n"] == 2914
    assert metrics["relations"]["dev"]["macro_f1"] > 0.7
    actors = [ActorSpec("Russia", ("Moscow",)), ActorSpec("Ukraine", ("Kyiv",))]
    result = real.predict("Moscow blamed Kyiv for the attack.", actors, detect_actors=False, relations=True).to_dict()
    assert {(r["holder"], r["target"]) for r in result["relations"]} == {("Russia", "Ukraine"), ("Ukraine", "Russia")}


@pytest.fixture(scope="module", params=["int8", "bf16", "int8_compiled"])
def fast(request) -> StancePredictor:
    precision, _, compiled = request.param.partition("_")
    if compiled and not compiler_found():
        pytest.skip("compiling needs a C++ compiler")
    return StancePredictor.load(default_model_path(), precision=precision, compile="on" if compiled else "off")


def test_the_compiled_int8_path_runs_attention_in_the_amx_kernel_where_it_can(fast):
    if not (fast.compiled and fast.precision == "int8"):
        pytest.skip("for the compiled int8 path")
    fused = [layer.attention.self.emit_codes for layer in fast.network.encoder.encoder.layer]
    assert fused == [fused_attention.amx_attention_available()] * 6
    # Then every step runs in the AMX kernels, chained from Python without torch.compile.
    assert isinstance(fast.network.compiled_encoder, AmxEncoder) == fused_attention.amx_attention_available()


def _agreement(fp32: StancePredictor, fast: StancePredictor, pairs) -> float:
    same = fp32.stance_probabilities(pairs).argmax(-1) == fast.stance_probabilities(pairs).argmax(-1)
    return same.float().mean().item()


def test_fast_paths_agree_with_fp32_on_our_articles(real, fast):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "training" / "examples"
    texts = [
        json.loads(line)["text"] for name in ("articles.jsonl", "articles_heldout.jsonl") for line in (examples / name).open()
    ]
    pairs = [pair for text in texts for _, _, pair in real._plan(DocumentInput(text)).pairs]
    assert len(pairs) >= 100
    assert _agreement(real, fast, pairs) >= 0.98


def test_fast_paths_agree_with_fp32_on_devtest_mt(real, fast, shared_data):
    from training.data import load_file

    pairs = [e.pair for e in load_file(shared_data / "newsmtsc" / "devtest_mt.jsonl").stance]
    assert _agreement(real, fast, pairs) >= 0.98
