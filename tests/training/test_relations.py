"""Relation head (holder → target) on a frozen model: training, saving, and the document output."""

import json

import pytest

from model.predictor import StancePredictor
from training.relations import balance, main

ROWS = [
    ("[Trump] praised [Kasich] for his courage.", "Trump", "Kasich", 1),
    ("[Kasich] was praised by [Trump] again.", "Kasich", "Trump", 2),
    ("[Trump] blamed [Kasich] for the loss.", "Trump", "Kasich", 3),
    ("[Kasich] was blamed by [Trump] for the loss.", "Kasich", "Trump", 4),
    ("[Trump] met [Kasich] in Ohio.", "Trump", "Kasich", 0),
    ("[Trump] and [Kasich] spoke on Monday.", "Trump", "Kasich", 0),
]


@pytest.fixture()
def directed(tmp_path):
    path = tmp_path / "directed.txt"
    path.write_text("".join(f"{s}\t{p}\t{q}\t{label}\n" for s, p, q, label in ROWS * 3), encoding="utf-8")
    return path


def test_train_relation_head_and_use_it(tiny_model_dir, directed, tmp_path, capsys):
    out = tmp_path / "with-relations"
    assert (
        main(
            ["--model", str(tiny_model_dir), "--train", str(directed), "--dev", str(directed), "--out", str(out), "--epochs", "3"]
        )
        == 0
    )
    assert "relation macro-F1 on " in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["relations"]["dev"]) == {"macro_f1", "accuracy", "per_class", "confusion", "labels", "n"}
    assert metrics["relations"]["dev"]["n"] == 36
    record = json.loads((out / "training.json").read_text())
    assert record["relations"]["command"][:3] == ["python", "-m", "training.relations"]

    predictor = StancePredictor.load(out)
    assert predictor.config.relation_labels == ["support", "oppose", "neutral"]
    text = "Donald Trump praised Acme Corp. Nothing happened."
    result = predictor.predict(text, relations=True).to_dict()
    first = result["sentences"][0]["relations"]
    assert {(r["holder"], r["target"]) for r in first} == {("Donald Trump", "Acme Corp"), ("Acme Corp", "Donald Trump")}
    assert all(r["sentence_index"] == 0 and set(r["scores"]) == {"support", "oppose", "neutral"} for r in first)
    assert result["sentences"][1]["relations"] == []
    summary = {(r["holder"], r["target"]): r for r in result["relations"]}
    assert summary[("Donald Trump", "Acme Corp")]["sentences"] == [0]
    plain = predictor.predict(text).to_dict()
    assert "relations" not in plain and "relations" not in plain["sentences"][0]


def test_relations_need_a_relation_head(tiny_predictor):
    from model.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="this model has no relation head"):
        tiny_predictor.predict("Donald Trump praised Acme Corp.", relations=True)


def test_balance_keeps_every_opinion_and_samples_neutral(directed):
    from training.data import load_file

    examples = load_file(directed).relations
    kept = balance(examples, 1.0, seed=0)
    opinions = [e for e in examples if e.label != "neutral"]
    assert len(kept) == 2 * len(opinions)
    assert all(e in kept for e in opinions)


def test_relation_rows_in_the_labelled_format(tmp_path):
    from training.data import load_file

    path = tmp_path / "rel.jsonl"
    row = {"text": "Moscow blamed Kyiv for the attack.", "holder": "Moscow", "target": "Kyiv", "relation": "oppose",
           "target_start": 14, "target_end": 18}  # fmt: skip
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (example,) = load_file(path).relations
    assert example.label == "oppose"
    assert example.relation.holder_mentions == ((0, 6),) and example.relation.target_mentions == ((14, 18),)


def test_stance_train_and_evaluate_read_relation_rows(tiny_relation_predictor, tmp_path, capsys):
    from service.cli import main as cli

    start = tmp_path / "start"
    tiny_relation_predictor.save(start)
    rows = []
    for holder, target, label in [("Moscow", "Kyiv", "oppose"), ("Kyiv", "Moscow", "neutral"), ("Paris", "Kyiv", "support")] * 4:
        rows.append({"text": f"{holder} spoke about {target} today.", "holder": holder, "target": target, "relation": label})
    data = tmp_path / "rel.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "trained"
    assert cli(["train", "--from", str(start), "--data", str(data), "--out", str(out), "--epochs", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["relations"]["dev"]["n"] == 3
    capsys.readouterr()
    assert cli(["evaluate", "--data", str(data), "--model", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stance"] is None and report["sentiment"] is None
    assert set(report["relations"]) == {"macro_f1", "accuracy", "per_class", "confusion", "labels", "n"}
    assert report["relations"]["n"] == 12
