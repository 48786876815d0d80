import json
from pathlib import Path

import pytest
import torch

from model.predictor import PairInput, StancePredictor
from training.config import TrainConfig
from training.data import LabelledData, StanceExample, find_mentions
from training.metrics import classification_report, expected_calibration_error, fit_temperature
from training.pipeline import DataSpec, stratified_split, train_model

EXAMPLES = Path(__file__).resolve().parents[2] / "training" / "examples"


def test_tiny_training_writes_a_self_describing_folder(tiny_model_dir, tmp_path):
    out = tmp_path / "trained"
    spec = DataSpec(train=[str(EXAMPLES / "labelled.jsonl")], dev=[str(EXAMPLES / "labelled.csv")])
    config = TrainConfig(epochs=1, batch_size=4, seed=3)
    metrics = train_model(
        spec, config, out, start=str(tiny_model_dir), name="tiny-trained", version="9.9.9", command=["stance", "train"]
    )
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "weights.safetensors",
        "tokenizer",
        "metrics.json",
        "training.json",
        "README.md",
    }
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    dev = saved["dev"][str(EXAMPLES / "labelled.csv")]
    assert dev["stance"]["n"] == 6 and dev["sentiment"]["n"] == 5
    assert 0 <= dev["stance"]["macro_f1"] <= 1
    assert set(saved["calibration"]) == {"stance", "sentiment"}
    record = json.loads((out / "training.json").read_text())
    assert record["command"] == ["stance", "train"]
    assert set(record["data"]["sha256"]) == {str(EXAMPLES / "labelled.jsonl"), str(EXAMPLES / "labelled.csv")}
    assert record["config"]["epochs"] == 1
    card = (out / "README.md").read_text()
    assert "# tiny-trained 9.9.9" in card and "labelled.jsonl` | train | supplied by the user" in card
    loaded = StancePredictor.load(out)
    assert loaded.config.name == "tiny-trained" and loaded.config.version == "9.9.9"
    assert loaded.config.temperature["stance"] == saved["calibration"]["stance"]["temperature"]


def test_same_seed_gives_the_same_metrics(tiny_model_dir, tmp_path):
    spec = DataSpec(train=[str(EXAMPLES / "labelled.jsonl")])
    config = TrainConfig(epochs=1, batch_size=4, seed=5)
    first = train_model(spec, config, tmp_path / "a", start=str(tiny_model_dir), command=[])
    second = train_model(spec, config, tmp_path / "b", start=str(tiny_model_dir), command=[])
    strip = lambda m: [{k: v for k, v in h.items() if k != "train_seconds"} for h in m["history"]]  # noqa: E731
    assert strip(first) == strip(second)
    assert first["dev"] == second["dev"]


def test_stratified_split_holds_out_each_class():
    from training.data import load_file

    data = load_file(EXAMPLES / "labelled.jsonl")
    train, dev = stratified_split(data, 0.1, seed=1)
    assert {e.label for e in dev.stance} == {"support", "oppose", "neutral"}
    assert len(train.stance) + len(dev.stance) == len(data.stance)


def test_invalid_training_settings():
    with pytest.raises(ValueError, match=r"invalid training settings: epochs=0, lr=-1\.0"):
        TrainConfig(lr=-1.0, epochs=0)


def test_relation_training_settings():
    assert (TrainConfig().relation_training, TrainConfig().relation_weight) == ("separate", 0.5)
    with pytest.raises(ValueError, match=r"invalid training settings: relation_training='both', relation_weight=-1\.0"):
        TrainConfig(relation_training="both", relation_weight=-1.0)


def test_classification_report():
    report = classification_report([0, 0, 1, 2], [0, 1, 1, 2], ["a", "b", "c"])
    assert report["accuracy"] == 0.75
    assert report["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert report["macro_f1"] == round((2 / 3 + 2 / 3 + 1) / 3, 4)


def test_temperature_scaling_reduces_calibration_error():
    import torch

    torch.manual_seed(0)
    gold = torch.randint(0, 3, (500,))
    logits = torch.randn(500, 3)
    logits[torch.arange(500), gold] += 1.0
    overconfident = logits * 4
    t = fit_temperature(overconfident, gold)
    assert t > 2
    before = expected_calibration_error(torch.softmax(overconfident, -1), gold)
    after = expected_calibration_error(torch.softmax(overconfident / t, -1), gold)
    assert after < before


def test_soup_averages_like_models(tiny_model_dir, tmp_path):
    import torch

    from training.soup import soup

    spec = DataSpec(train=[str(EXAMPLES / "labelled.jsonl")], dev=[str(EXAMPLES / "labelled.csv")])
    for seed in (1, 2):
        train_model(
            spec,
            TrainConfig(epochs=1, batch_size=4, seed=seed, lr=1e-3),
            tmp_path / f"m{seed}",
            start=str(tiny_model_dir),
            command=[],
        )
    metrics = soup([tmp_path / "m1", tmp_path / "m2"], tmp_path / "soup", ["python", "-m", "training.soup"])
    assert metrics["soup_of"] == [str(tmp_path / "m1"), str(tmp_path / "m2")]
    assert set(metrics["dev"]) == {str(EXAMPLES / "labelled.csv")}
    a, b, s = (StancePredictor.load(tmp_path / n).network.state_dict() for n in ("m1", "m2", "soup"))
    name = "stance_head.weight"
    assert torch.allclose(s[name], ((a[name] + b[name]) / 2).half().float(), atol=1e-3)
    assert json.loads((tmp_path / "soup" / "training.json").read_text())["command"] == ["python", "-m", "training.soup"]


def test_stance_only_data_leaves_the_sentiment_head_alone(tiny_model_dir, tmp_path):
    import torch

    rows = [json.loads(line) for line in (EXAMPLES / "labelled.jsonl").read_text().splitlines()]
    stance_only = tmp_path / "stance.jsonl"
    stance_only.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "sentiment"}) + "\n" for r in rows if "stance" in r)
    )
    train_model(
        DataSpec(train=[str(stance_only)]),
        TrainConfig(epochs=1, batch_size=4),
        tmp_path / "m",
        start=str(tiny_model_dir),
        command=[],
    )
    before = StancePredictor.load(tiny_model_dir).network.state_dict()
    after = StancePredictor.load(tmp_path / "m").network.state_dict()
    assert torch.equal(before["sentiment_head.weight"], after["sentiment_head.weight"])
    assert not torch.equal(before["stance_head.weight"], after["stance_head.weight"])


def test_device_and_class_balance_settings():
    assert (TrainConfig().device, TrainConfig().class_balance) == ("cpu", 0.0)
    TrainConfig(device="cuda:1", class_balance=0.5)
    with pytest.raises(ValueError, match=r"invalid training settings: device='tpu', class_balance=2\.0"):
        TrainConfig(device="tpu", class_balance=2.0)


def test_class_weights_power():
    from training.trainer import class_weights

    assert class_weights([0, 0, 0, 1, 2, 2], 3).tolist() == pytest.approx([2 / 3, 2.0, 1.0])
    assert class_weights([0, 0, 0, 1, 2, 2], 3, power=0.5).tolist() == pytest.approx([(2 / 3) ** 0.5, 2**0.5, 1.0])
    assert class_weights([0, 0, 0, 1, 2, 2], 3, power=0.0).tolist() == [1.0, 1.0, 1.0]


def test_class_balance_changes_what_is_learned(tiny_model_dir, tmp_path):
    rows = [("Acme Corp grew fast.", "support")] * 4 + [("Acme Corp lied.", "oppose"), ("Acme Corp met.", "neutral")]
    data = tmp_path / "skewed.jsonl"
    data.write_text("".join(json.dumps({"text": t, "actor": "Acme Corp", "stance": s}) + "\n" for t, s in rows))
    spec = DataSpec(train=[str(data)], dev=[str(EXAMPLES / "labelled.csv")])
    states = []
    for balance in (0.0, 1.0):
        train_model(
            spec,
            TrainConfig(epochs=1, batch_size=3, seed=2, class_balance=balance),
            tmp_path / f"b{balance}",
            start=str(tiny_model_dir),
            command=[],
        )
        states.append(StancePredictor.load(tmp_path / f"b{balance}").network.stance_head.weight)
    assert not torch.equal(states[0], states[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    from service.cli import main

    out = tmp_path / "m"
    args = ["train", "--from", str(tiny_model_dir), "--data", str(EXAMPLES / "labelled.jsonl"), "--device", "cuda"]
    assert main([*args, "--out", str(out)]) == 2
    assert capsys.readouterr().err == "error: device 'cuda' is not available on this machine (no CUDA GPU found)\n"
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_gives_a_folder_that_loads_on_cpu(tiny_model_dir, tmp_path):
    from model.predictor import PairInput

    spec = DataSpec(train=[str(EXAMPLES / "labelled.jsonl")], dev=[str(EXAMPLES / "labelled.csv")])
    metrics = train_model(
        spec, TrainConfig(epochs=2, batch_size=4, device="cuda"), tmp_path / "gpu", start=str(tiny_model_dir), command=[]
    )
    record = json.loads((tmp_path / "gpu" / "training.json").read_text())
    assert record["config"]["device"] == "cuda" and record["hardware"] == torch.cuda.get_device_name(0)
    cpu = StancePredictor.load(tmp_path / "gpu")
    gpu = StancePredictor.load(tmp_path / "gpu").to("cuda")
    assert next(gpu.network.parameters()).is_cuda and metrics["best_epoch"] >= 1
    pairs = [PairInput("The senator praised Acme Corp.", "Acme Corp", ((19, 28),)), PairInput("Acme fell.", "Acme", ())]
    assert torch.allclose(cpu.stance_probabilities(pairs), gpu.stance_probabilities(pairs), atol=1e-3)
    assert torch.allclose(cpu.sentiment_probabilities(["Good."]), gpu.sentiment_probabilities(["Good."]), atol=1e-3)


def test_multi_actor_pairs_are_repeated_each_epoch(tiny_model_dir):
    from training.trainer import multi_actor_pairs, train

    two = "Acme Corp sued Globex."
    rows = [(two, "Acme Corp", "neutral"), (two, "Globex", "oppose")]
    rows += [(f"Acme Corp grew {i} times.", "Acme Corp", "support") for i in range(3)]
    data = LabelledData(stance=[StanceExample(PairInput(t, a, find_mentions(t, a)), s) for t, a, s in rows])
    assert multi_actor_pairs(data.stance) == [0, 1]
    with pytest.raises(ValueError, match=r"invalid training settings: multi_actor_repeat=0"):
        TrainConfig(multi_actor_repeat=0)
    logged: list[str] = []
    config = TrainConfig(epochs=1, batch_size=1, multi_actor_repeat=3)
    train(StancePredictor.load(tiny_model_dir), data, LabelledData(), config, log=logged.append)
    assert "step 9/9" in logged[-2]  # 5 pairs + 2 repeats of the 2 multi-actor ones, one per step


def test_adversarial_perturbation_has_the_set_norm_per_example(tiny_model_dir):
    from training.trainer import EmbeddingPerturbation

    predictor = StancePredictor.load(tiny_model_dir)
    net = predictor.network.train()
    embeddings = net.encoder.embeddings.word_embeddings
    pairs = [PairInput("The senator praised Acme Corp.", "Acme Corp", ((19, 28),)), PairInput("Globex fell.", "Globex")]
    inputs = predictor.to_batch(predictor.encode_pairs(pairs), False, multiple=1)
    gold = torch.tensor([0, 1])
    perturbation = EmbeddingPerturbation(embeddings, 0.5)
    assert not perturbation.arm()  # no training pass yet
    torch.nn.functional.cross_entropy(net.stance_logits(**inputs), gold).backward()
    assert perturbation.arm()
    assert perturbation.delta.flatten(1).norm(dim=1).tolist() == pytest.approx([0.5, 0.5])
    ids = inputs["input_ids"]
    assert torch.equal(embeddings(ids), torch.nn.functional.embedding(ids, embeddings.weight) + perturbation.delta)
    perturbation.disarm()
    assert torch.equal(embeddings(ids), torch.nn.functional.embedding(ids, embeddings.weight))
    with pytest.raises(ValueError, match=r"invalid training settings: adversarial=-1"):
        TrainConfig(adversarial=-1)


def test_adversarial_training_changes_what_is_learned_and_leaves_no_hook(tiny_model_dir):
    from training.trainer import train

    rows = [("Acme Corp grew fast.", "support"), ("Acme Corp lied.", "oppose"), ("Acme Corp met.", "neutral")] * 2
    data = LabelledData(stance=[StanceExample(PairInput(t, "Acme Corp", find_mentions(t, "Acme Corp")), s) for t, s in rows])
    heads = []
    for eps in (0.0, 1.0):
        predictor = StancePredictor.load(tiny_model_dir)
        train(predictor, data, LabelledData(), TrainConfig(epochs=1, batch_size=3, seed=2, adversarial=eps), log=lambda _: None)
        assert not predictor.network.encoder.embeddings.word_embeddings._forward_hooks
        heads.append(predictor.network.stance_head.weight)
    assert not torch.equal(heads[0], heads[1])
