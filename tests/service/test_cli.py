import json
from pathlib import Path

import pytest

from service.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "training" / "examples"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_json_has_the_classify_shape(capsys, tiny_model_dir):
    code, out, _ = run(
        capsys, "classify", "Donald Trump praised Kyiv.", "--actor", "Ukraine=Kyiv,Kiev", "--json", "--model", str(tiny_model_dir)
    )
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"model", "sentences", "actors"}
    names = {a["actor"] for a in result["actors"]}
    assert {"Ukraine", "Donald Trump"} <= names
    pair = next(a for a in result["sentences"][0]["actors"] if a["actor"] == "Ukraine")
    assert pair["mentions"] == [{"text": "Kyiv", "start": 21, "end": 25}]


def test_classify_table_and_file_input(capsys, tiny_model_dir, tmp_path):
    article = tmp_path / "a.txt"
    article.write_text("Acme Corp grew fast.\nCritics blamed Acme Corp.", encoding="utf-8")
    code, out, _ = run(
        capsys, "classify", "--file", str(article), "--actor", "Acme Corp", "--no-detect", "--model", str(tiny_model_dir)
    )
    assert code == 0
    assert "[0] Acme Corp grew fast." in out and "[1] Critics blamed Acme Corp." in out
    assert "actor" in out and "net" in out


def test_classify_errors_are_clear(capsys, tiny_model_dir, tmp_path):
    code, _, err = run(capsys, "classify", "   ", "--model", str(tiny_model_dir))
    assert (code, err) == (2, "error: text must not be empty\n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe bad")
    code, _, err = run(capsys, "classify", "--file", str(bad), "--model", str(tiny_model_dir))
    assert code == 2 and err.startswith(f"error: {bad}: not valid UTF-8")
    code, _, err = run(capsys, "classify", "Hi.", "--model", str(tmp_path / "missing"))
    assert (code, err) == (3, f"error: cannot load model: model folder not found: {tmp_path / 'missing'}\n")


def test_evaluate_json_shape(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "evaluate", "--data", str(EXAMPLES / "labelled.jsonl"), "--model", str(tiny_model_dir), "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"stance", "sentiment"}
    assert set(report["stance"]) == {"macro_f1", "accuracy", "per_class", "confusion", "labels", "n"}
    assert report["stance"]["n"] == 9 and report["sentiment"]["n"] == 9


def test_evaluate_table(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "evaluate", "--data", str(EXAMPLES / "labelled.csv"), "--model", str(tiny_model_dir))
    assert code == 0
    assert out.startswith("stance: macro-F1 ") and "\nsentiment: macro-F1 " in out and "confusion" in out


def test_evaluate_bad_row_names_file_and_line(capsys, tiny_model_dir, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "A.", "sentiment": "neutral"}\n{"text": "B.", "sentiment": "great"}\n', encoding="utf-8")
    code, _, err = run(capsys, "evaluate", "--data", str(data), "--model", str(tiny_model_dir))
    assert code == 2
    assert (
        err == f"error: {data}:2: field 'sentiment': unknown label 'great'; expected one of ['positive', 'negative', 'neutral']\n"
    )


def test_train_rejects_bad_settings(capsys):
    code, _, err = run(capsys, "train", "--data", str(EXAMPLES / "labelled.jsonl"), "--out", "x", "--epochs", "0")
    assert code == 2 and err == "error: invalid training settings: epochs=0\n"


@pytest.mark.parametrize("value", ["oppose", "=against", "oppose="])
def test_train_rejects_bad_label_maps(capsys, value):
    code, _, err = run(capsys, "train", "--data", str(EXAMPLES / "labelled.jsonl"), "--out", "x", "--label-map", value)
    assert code == 2 and err == f"error: --label-map entry {value!r} is not ours=theirs\n"


def test_evaluate_compares_two_models_and_writes_errors(capsys, tiny_model_dir, tmp_path):
    errors = tmp_path / "errors.jsonl"
    data = str(EXAMPLES / "labelled.jsonl")
    args = ["evaluate", "--data", data, "--model", str(tiny_model_dir), "--model", str(tiny_model_dir)]
    code, out, _ = run(capsys, *args, "--json", "--errors", str(errors))
    assert code == 0
    report = json.loads(out)
    assert report["models"] == [str(tiny_model_dir)] * 2
    assert report["delta"]["stance"]["macro_f1"] == 0.0
    assert set(report["delta"]["stance"]["per_class"]) == {"support", "oppose", "neutral"}
    rows = [json.loads(line) for line in errors.read_text().splitlines()]
    wrong = report["reports"][1]["stance"]["n"] - round(report["reports"][1]["stance"]["accuracy"] * 9)
    assert sum(r["head"] == "stance" for r in rows) == wrong
    for row in rows:
        assert row["gold"] != row["predicted"] and set(row["scores"]) and row["text"]
    code, out, _ = run(capsys, *args)
    assert code == 0 and "stance delta (second − first): macro-F1 +0.0000" in out


def test_classify_takes_an_int8_kernel(capsys, tiny_model_dir, monkeypatch):
    args = ("classify", "Critics blamed Acme Corp.", "--actor", "Acme Corp", "--json", "--model", str(tiny_model_dir))
    code, out, _ = run(capsys, *args, "--precision", "int8", "--int8-kernel", "int_mm")
    assert code == 0 and json.loads(out)["sentences"][0]["actors"][0]["actor"] == "Acme Corp"
    with pytest.raises(SystemExit):
        main([*args, "--int8-kernel", "mkl"])
    assert "invalid choice: 'mkl'" in capsys.readouterr().err
    # The default comes from STANCE_INT8_KERNEL; a kernel this machine cannot run is a clear error (exit 2).
    monkeypatch.setattr("model.fused_attention.amx_available", lambda: False)
    monkeypatch.setenv("STANCE_INT8_KERNEL", "amx")
    code, _, err = run(capsys, *args, "--precision", "int8")
    needs = "AMX's int8 tiles or AVX512-VNNI, and a C++ compiler"
    assert (code, err) == (2, f"error: int8_kernel 'amx' needs {needs}, which this machine lacks\n")
