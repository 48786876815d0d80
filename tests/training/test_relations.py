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


def _relation_spec(directed, **kwargs):
    from training.pipeline import DataSpec

    return DataSpec(train=kwargs.pop("train", []), relation_train=[str(directed)], relation_dev=[str(directed)], **kwargs)


def test_stance_train_joint_end_to_end(tiny_model_dir, directed, tmp_path, capsys):
    from collections import Counter
    from pathlib import Path

    from service.cli import main as cli
    from training.data import load_file
    from training.relations import NEUTRAL_PER_OTHER

    examples = Path(__file__).resolve().parents[2] / "training" / "examples"
    out = tmp_path / "joint"
    args = ["train", "--from", str(tiny_model_dir), "--out", str(out), "--epochs", "2", "--batch-size", "4",
            "--data", str(examples / "labelled.jsonl"), "--dev", str(examples / "labelled.csv"),
            "--relation-data", str(directed), "--relation-dev", str(directed), "--relation-training", "joint",
            "--relation-per-epoch", "20", "--relation-weight", "0.25"]  # fmt: skip
    assert cli(args) == 0
    err = capsys.readouterr().err
    # The directed file gives only its relation rows: its stance rows stay out of training and dev.
    n_stance = len(load_file(examples / "labelled.jsonl").stance)
    assert f"training on {n_stance} stance pairs" in err and "relation pairs (joint)" in err
    metrics = json.loads((out / "metrics.json").read_text())
    relations = metrics["relations"]
    assert relations["training"] == "joint" and relations["dev"]["n"] == 36
    assert 0 <= relations["dev"]["macro_f1"] <= 1
    assert [h["epoch"] for h in relations["history"]] == [h["epoch"] for h in metrics["history"]]
    assert all("relations" in h and "stance" in h for h in metrics["history"])
    expected = balance(load_file(directed).relations, NEUTRAL_PER_OTHER, seed=13)
    assert relations["train_pairs"] == dict(Counter(e.label for e in expected))
    assert set(metrics["dev"][f"{directed} (relation rows)"]) == {"relations"}
    assert metrics["dev"][f"{directed} (relation rows)"]["relations"]["macro_f1"] == relations["dev"]["macro_f1"]

    predictor = StancePredictor.load(out)
    assert predictor.config.relation_labels == ["support", "oppose", "neutral"]
    assert predictor.config.temperature["relation"] == metrics["calibration"]["relation"]["temperature"]
    assert predictor.predict("Donald Trump praised Acme Corp.", relations=True).to_dict()["relations"]
    record = json.loads((out / "training.json").read_text())
    assert (record["config"]["relation_training"], record["config"]["relation_weight"]) == ("joint", 0.25)
    assert record["data"]["relation_train"] == [str(directed)] and record["data"]["relation_per_epoch"] == 20
    assert str(directed) in record["data"]["sha256"]
    assert "trained jointly with the encoder" in (out / "README.md").read_text()


@pytest.mark.parametrize("mode", ["separate", "joint"])
def test_only_joint_training_moves_the_encoder(tiny_model_dir, directed, tmp_path, mode):
    """No stance or sentiment rows: whatever moves the encoder is the relation loss."""
    import torch

    from training.config import TrainConfig
    from training.pipeline import train_model

    config = TrainConfig(epochs=1, batch_size=4, lr=1e-3, relation_training=mode)
    metrics = train_model(_relation_spec(directed), config, tmp_path / "m", start=str(tiny_model_dir), command=[])
    before = StancePredictor.load(tiny_model_dir).network.state_dict()
    after = StancePredictor.load(tmp_path / "m").network.state_dict()
    encoder = [name for name in before if name.startswith("encoder.")]
    moved = [name for name in encoder if not torch.equal(before[name], after[name])]
    assert bool(moved) == (mode == "joint")
    assert torch.equal(before["stance_head.weight"], after["stance_head.weight"])
    assert "relation_head.0.weight" in after
    # The relation head trained here is the one measured on each dev set, in both modes.
    measured = metrics["dev"][f"{directed} (relation rows)"]["relations"]["macro_f1"]
    assert measured == metrics["relations"]["dev"]["macro_f1"]


def test_joint_relation_batches_per_epoch_are_capped(tiny_predictor, directed):
    import copy

    from training.config import TrainConfig
    from training.data import LabelledData, load_file
    from training.trainer import train

    predictor = copy.deepcopy(tiny_predictor)
    lines: list[str] = []
    rows = load_file(directed).relations
    config = TrainConfig(epochs=1, batch_size=2, relation_training="joint")
    train(predictor, LabelledData(relations=rows), LabelledData(relations=rows), config, relation_per_epoch=3, log=lines.append)
    assert any("step 2/2 " in line for line in lines)  # 3 pairs in batches of 2
    assert "relations macro-F1" in lines[-1]
    assert predictor.config.relation_labels == ["support", "oppose", "neutral"]


def test_joint_training_needs_relation_rows(tiny_model_dir, tmp_path):
    from pathlib import Path

    from model.errors import DataFormatError
    from training.config import TrainConfig
    from training.pipeline import DataSpec, train_model

    labelled = Path(__file__).resolve().parents[2] / "training" / "examples" / "labelled.jsonl"
    with pytest.raises(DataFormatError, match="joint relation training needs relation rows"):
        train_model(DataSpec(train=[str(labelled)]), TrainConfig(relation_training="joint"), tmp_path / "m", command=[])
    assert not (tmp_path / "m").exists()
