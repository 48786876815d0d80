"""`stance score`: every input format and granularity, error rows, kill -9 and resume, option-change refusal."""

import csv
import gzip
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.batch_score import ScoreOptions, file_digest, read_rows, run
from service.cli import main

DOCS = [
    {"id": "d1", "text": "Donald Trump praised Acme Corp. Critics blamed Acme Corp for the losses."},
    {"id": "d2", "text": "   "},
    {"id": "d3", "text": "Russia warned Ukraine on Tuesday.\nUkraine's army pushed back."},
    {"id": "d4", "text": "Donald Trump praised Acme Corp. Critics blamed Acme Corp for the losses."},
]


def write_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / "docs.jsonl"
    jsonl.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    gz = folder / "docs.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    with (folder / "docs.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["id", "text"])
        writer.writeheader()
        writer.writerows(DOCS)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(DOCS), folder / "docs.parquet")
    texts = folder / "texts"
    texts.mkdir(exist_ok=True)
    for d in DOCS:
        (texts / f"{d['id']}.txt").write_text(d["text"], encoding="utf-8")
    return {"jsonl": jsonl, "gz": gz, "csv": folder / "docs.csv", "parquet": folder / "docs.parquet", "txt": texts}


def score(tiny_model_dir, out: Path, *inputs: Path, **kw) -> dict:
    options = ScoreOptions(inputs=tuple(map(str, inputs)), out=str(out), **kw)
    return run(options, tiny_model_dir, log=io.StringIO())


@pytest.mark.parametrize("kind", ["jsonl", "gz", "csv", "parquet", "txt"])
def test_every_input_format_gives_the_same_rows(tiny_model_dir, tmp_path, kind):
    inputs = write_inputs(tmp_path / "in")
    summary = score(tiny_model_dir, tmp_path / "out", inputs[kind])
    assert summary["documents"] == 4 and summary["failures"] == 1
    rows = read_rows(tmp_path / "out")
    reference = tmp_path / "ref"
    score(tiny_model_dir, reference, inputs["jsonl"])
    assert file_digest(rows) == file_digest(read_rows(reference))
    assert {r["doc_id"] for r in rows} == {"d1", "d3", "d4"}
    errors = [json.loads(line) for line in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert errors == [{"id": "d2", "error": "text must not be empty", "error_type": "invalid_input"}]


def test_pair_rows(tiny_model_dir, tmp_path):
    inputs = write_inputs(tmp_path / "in")
    score(tiny_model_dir, tmp_path / "out", inputs["jsonl"])
    rows = read_rows(tmp_path / "out")
    first = next(r for r in rows if r["doc_id"] == "d1" and r["actor"] == "Acme Corp")
    assert set(first) == {
        "doc_id", "sentence_index", "sentence_start", "sentence_end", "actor", "mentioned", "stance", "p_support", "p_oppose",
        "p_neutral", "sentiment", "p_sentiment_positive", "p_sentiment_negative", "p_sentiment_neutral", "model", "model_version",
    }  # fmt: skip
    assert first["model"] == "tiny-test"
    same = [(r["sentence_index"], r["actor"], r["p_support"]) for r in rows if r["doc_id"] == "d4"]
    assert same == [(r["sentence_index"], r["actor"], r["p_support"]) for r in rows if r["doc_id"] == "d1"]


@pytest.mark.parametrize("granularity", ["sentence", "document"])
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_granularities_and_formats(tiny_model_dir, tmp_path, granularity, fmt):
    inputs = write_inputs(tmp_path / "in")
    score(tiny_model_dir, tmp_path / "out", inputs["jsonl"], granularity=granularity, fmt=fmt)
    rows = read_rows(tmp_path / "out")
    if granularity == "sentence":
        assert sorted((r["doc_id"], r["sentence_index"]) for r in rows) == [
            ("d1", 0),
            ("d1", 1),
            ("d3", 0),
            ("d3", 1),
            ("d4", 0),
            ("d4", 1),
        ]
        assert all(isinstance(r["actors"], list) for r in rows)
    else:
        assert sorted(r["doc_id"] for r in rows) == ["d1", "d3", "d4"]
        d1 = next(r for r in rows if r["doc_id"] == "d1")
        assert {a["actor"] for a in d1["actors"]} >= {"Acme Corp", "Donald Trump"}


def test_actors_file_and_options_change_refusal(tiny_model_dir, tmp_path, capsys):
    inputs = write_inputs(tmp_path / "in")
    actors = tmp_path / "actors.txt"
    actors.write_text("Moscow=Russia,Kremlin\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["score", str(inputs["jsonl"]), "--out", str(out), "--model", str(tiny_model_dir), "--actors-file", str(actors)]
    assert main(args) == 0
    assert "documents 4  sentences 6  pairs " in capsys.readouterr().out
    assert any(r["actor"] == "Moscow" for r in read_rows(out))
    assert main([*args, "--granularity", "document"]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {out} was written with other settings (granularity differ); use --force to start over\n"
    )
    assert main([*args, "--granularity", "document", "--force"]) == 0
    assert all("sentences" in r for r in read_rows(out))


def test_kill_and_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    docs = tmp_path / "many.jsonl"
    with docs.open("w", encoding="utf-8") as handle:
        for i in range(60):
            handle.write(
                json.dumps({"id": f"n{i}", "text": f"Acme Corp hired {i} people. Donald Trump praised Acme Corp in week {i}."})
                + "\n"
            )
    reference = tmp_path / "reference"
    score(tiny_model_dir, reference, docs, chunk_size=2)

    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "score",
        str(docs),
        "--out",
        str(out),
        "--model",
        str(tiny_model_dir),
        "--batch-size",
        "2",
    ]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if manifest.is_file() and len(json.loads(manifest.read_text())["completed"]) >= 3:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    completed = len(json.loads(manifest.read_text())["completed"])
    assert 3 <= completed < 30, "the run was not killed mid-way"

    summary = score(tiny_model_dir, out, docs, chunk_size=2)
    assert summary["resumed_documents"] == 2 * completed
    rows = read_rows(out)
    assert len(rows) == len(read_rows(reference))
    assert file_digest(rows) == file_digest(read_rows(reference))


def test_missing_input_and_ray_options(tiny_model_dir, tmp_path, capsys, monkeypatch):
    args = ["score", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o"), "--model", str(tiny_model_dir)]
    assert main(args) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.jsonl'}: input not found\n"
    assert main([*args, "--ray-address", "127.0.0.1:6379"]) == 2
    assert capsys.readouterr().err == "error: --ray-address needs --engine ray\n"

    import service

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "service.ray_engine", raising=False)
    monkeypatch.delattr(service, "ray_engine", raising=False)
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps(DOCS[0]) + "\n", encoding="utf-8")
    assert main(["score", str(docs), "--out", str(tmp_path / "o"), "--engine", "ray", "--model", str(tiny_model_dir)]) == 2
    assert capsys.readouterr().err == "error: --engine ray needs Ray: pip install 'actor-stance[ray]'\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_relations_table(tiny_relation_predictor, tmp_path, fmt):
    model_dir = tmp_path / "relation-model"
    tiny_relation_predictor.save(model_dir)
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "r1", "text": "Moscow blamed Kyiv.", "actors": ["Russia=Moscow", "Ukraine=Kyiv"]}) + "\n")
    run(
        ScoreOptions(inputs=(str(docs),), out=str(tmp_path / "out"), fmt=fmt, relations=True),
        model_dir,
        log=io.StringIO(),
    )
    relations = read_rows(tmp_path / "out", "relations")
    assert {(r["holder"], r["target"]) for r in relations} >= {("Russia", "Ukraine"), ("Ukraine", "Russia")}
    assert set(relations[0]) == {"doc_id", "sentence_index", "holder", "target", "relation", "p_support", "p_oppose", "p_neutral",
                                 "model", "model_version"}  # fmt: skip
    assert all("holder" not in r for r in read_rows(tmp_path / "out"))


def test_compile_on_without_a_compiler_fails_before_any_worker_starts(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps(DOCS[0]) + "\n", encoding="utf-8")
    args = ["score", str(docs), "--out", str(tmp_path / "o"), "--model", str(tiny_model_dir), "--workers", "2"]
    assert main([*args, "--compile", "on"]) == 2
    assert capsys.readouterr().err == "error: compile=on needs a C++ compiler (g++, c++ or clang++, or $CXX); none was found\n"
    assert not (tmp_path / "o").exists()


def test_an_int8_kernel_that_cannot_run_here_fails_before_scoring(tiny_model_dir, tmp_path, capsys, monkeypatch):
    inputs = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    monkeypatch.setattr("model.fused_attention.amx_available", lambda: False)
    args = ["score", str(inputs["jsonl"]), "--out", str(out), "--model", str(tiny_model_dir), "--precision", "int8"]
    assert main([*args, "--int8-kernel", "amx", "--compile", "off"]) == 2
    message = "error: int8_kernel 'amx' needs AMX's int8 tiles or AVX512-VNNI, and a C++ compiler, which this machine lacks\n"
    assert capsys.readouterr().err == message
    assert not out.exists()
    # The kernel is one of the settings a rerun must match.
    assert main([*args, "--int8-kernel", "int_mm", "--compile", "off"]) == 0
    capsys.readouterr()
    assert main([*args, "--int8-kernel", "auto", "--compile", "off"]) == 2
    assert "(int8_kernel differ)" in capsys.readouterr().err
