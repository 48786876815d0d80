"""`stance score --engine ray`: the local engine's rows, relations and error records; resume after a crash."""

import io
import json
import logging
from pathlib import Path

import pytest
from test_score import write_inputs

from model.errors import InvalidInputError
from service.batch_score import ScoreOptions, file_digest, read_rows, run
from service.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def small_ray():
    """A 2-CPU local Ray for this module; the engine uses it instead of starting its own."""
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, logging_level=logging.WARNING
    )
    yield
    ray.shutdown()


def every_input(folder: Path) -> list[str]:
    """Each input format, plus a file with a record without an id, a line that is not JSON and one not an object."""
    inputs = write_inputs(folder)
    odd = folder / "odd.jsonl"
    odd.write_text(json.dumps({"text": "Acme Corp hired people. Donald Trump praised Acme Corp."}) + "\nnot json\n[1]\n")
    return [*map(str, inputs.values()), str(odd)]


def outputs(out: Path) -> tuple[str, str, list[str]]:
    errors = sorted(out.with_name(out.name + ".errors.jsonl").read_text(encoding="utf-8").splitlines())
    return file_digest(read_rows(out)), file_digest(read_rows(out, "relations")), errors


def test_ray_engine_equals_the_local_engine_and_resumes(small_ray, tiny_relation_predictor, tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_relation_predictor.save(model_dir)
    inputs = every_input(tmp_path / "in")
    # fp32: int8 quantises activations per batch, so its rows depend on which documents share a batch.
    settings = {"fmt": "parquet", "relations": True, "chunk_size": 2, "precision": "fp32"}
    local = tmp_path / "local"
    expected = run(ScoreOptions(inputs=tuple(inputs), out=str(local), **settings), model_dir, log=io.StringIO())
    reference = outputs(local)
    assert any(line.startswith('{"id": "odd.jsonl:2"') for line in reference[2])
    assert any(r["doc_id"] == "odd.jsonl:1" for r in read_rows(local))

    out = tmp_path / "ray"
    args = ["score", *inputs, "--out", str(out), "--engine", "ray", "--format", "parquet", "--relations", "--batch-size", "2"]
    assert main([*args, "--precision", "fp32", "--model", str(model_dir)]) == 0
    counts = "  ".join(f"{k} {expected[k]}" for k in ("documents", "sentences", "pairs", "failures"))
    assert capsys.readouterr().out.startswith(counts)
    assert outputs(out) == reference
    manifest = json.loads((out / "manifest.json").read_text())
    markers = sorted(out.glob("done-*.json"))
    assert manifest["fingerprint"]["engine"] == "ray" and len(manifest["completed"]) == len(markers) > 3
    assert manifest["summary"]["documents"] == 23

    # A crash after one batch's part files but before its done- file, and before another batch was written at all.
    uncommitted, unwritten = (json.loads(m.read_text()) for m in markers[:2])
    markers[0].unlink()
    for path in out.glob(f"*{markers[1].stem.removeprefix('done-')}*"):
        path.unlink()
    summary = run(ScoreOptions(inputs=tuple(inputs), out=str(out), engine="ray", **settings), model_dir, log=io.StringIO())
    assert summary["resumed_documents"] == 23 - uncommitted["documents"] - unwritten["documents"]
    assert summary["documents"] == 23
    assert outputs(out) == reference
    committed = {m.stem.removeprefix("done-") for m in out.glob("done-*.json")}
    assert {p.name.split(".")[0].removeprefix("part-") for p in out.glob("part-*")} == committed

    with pytest.raises(InvalidInputError, match=r"\(engine differ\)"):
        run(ScoreOptions(inputs=tuple(inputs), out=str(out), **settings), model_dir, log=io.StringIO())
