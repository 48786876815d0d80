"""`stance train` on bad input: a clear error naming file, line and field, exit code 2, and no model written."""

import json
from pathlib import Path

import pytest

from service.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "training" / "examples"
GOOD = '{"text": "Acme Corp grew.", "actor": "Acme Corp", "stance": "support", "sentiment": "positive"}\n'


def train(capsys, tiny_model_dir, out: Path, *args: str) -> tuple[int, str]:
    code = main(["train", "--from", str(tiny_model_dir), "--out", str(out), "--epochs", "1", "--batch-size", "4", *args])
    return code, capsys.readouterr().err


CASES = [
    ("empty.jsonl", b"", "{p}: file is empty"),
    ("nocols.csv", b"words,label\nhello,positive\n", "{p}: missing column 'text' (columns: ['label', 'words'])"),
    (
        "label.jsonl",
        GOOD.encode() + b'{"text": "A b.", "actor": "A", "stance": "against"}\n',
        "{p}:2: field 'stance': unknown label 'against'; expected one of ['support', 'oppose', 'neutral']",
    ),
    (
        "offsets.jsonl",
        GOOD.encode() + b'{"text": "A b.", "actor": "A", "start": 2, "end": 9, "stance": "support"}\n',
        "{p}:2: fields 'start'/'end' (2, 9) are outside the text",
    ),
    (
        "mention.jsonl",
        GOOD.encode() + b'{"text": "A b.", "actor": "A", "start": 0, "end": 1, "mention": "b", "stance": "support"}\n',
        "{p}:2: field 'mention' 'b' does not match text[0:1]",
    ),
    ("utf8.jsonl", GOOD.encode() + b'{"text": "caf\xe9", "sentiment": "neutral"}\n', "{p}:2: invalid UTF-8 at byte 109"),
]


@pytest.mark.parametrize(("name", "content", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_training_files(capsys, tiny_model_dir, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "model"
    code, err = train(capsys, tiny_model_dir, out, "--data", str(path))
    assert code == 2
    assert err == f"error: {message.format(p=path)}\n"
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


def test_missing_file(capsys, tiny_model_dir, tmp_path):
    code, err = train(capsys, tiny_model_dir, tmp_path / "m", "--data", str(tmp_path / "nope.jsonl"))
    assert (code, err) == (2, f"error: {tmp_path / 'nope.jsonl'}: file not found\n")


def test_dev_set_missing_a_class(capsys, tiny_model_dir, tmp_path):
    dev = tmp_path / "dev.jsonl"
    dev.write_text(GOOD + GOOD.replace('"support"', '"oppose"'), encoding="utf-8")
    code, err = train(capsys, tiny_model_dir, tmp_path / "m", "--data", str(EXAMPLES / "labelled.jsonl"), "--dev", str(dev))
    assert code == 2
    assert err == f"error: {dev}: dev set has no stance rows labelled ['neutral']; every class needs at least one\n"
    assert not (tmp_path / "m").exists()


def test_skip_invalid_reports_skipped_rows(capsys, tiny_model_dir, tmp_path):
    data = tmp_path / "mixed.jsonl"
    data.write_text(
        (EXAMPLES / "labelled.jsonl").read_text() + '{"text": "A b.", "actor": "A", "stance": "meh"}\n', encoding="utf-8"
    )
    out = tmp_path / "m"
    code = main(
        ["train", "--from", str(tiny_model_dir), "--out", str(out), "--epochs", "1", "--data", str(data), "--skip-invalid"]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out)["skipped_rows"] == 1
    assert "skipped 1 invalid rows; first: " in captured.err
    assert json.loads((out / "metrics.json").read_text())["skipped_rows"] == 1


def test_label_map_and_parquet(capsys, tiny_model_dir, tmp_path):
    import datasets

    rows = [
        {"text": f"Acme Corp {w}.", "actor": "Acme Corp", "stance": s}
        for w, s in [("grew", "favor"), ("lied", "against"), ("met", "none")] * 4
    ]
    path = tmp_path / "mine.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    out = tmp_path / "m"
    code, err = train(
        capsys, tiny_model_dir, out, "--data", str(path), "--label-map", "support=favor,oppose=against,neutral=none"
    )
    assert code == 0, err
    record = json.loads((out / "training.json").read_text())
    assert record["data"]["label_map"] == {"favor": "support", "against": "oppose", "none": "neutral"}
    assert json.loads((out / "metrics.json").read_text())["dev"]["held-out 10% of the training data"]["stance"]["n"] == 3


def test_failed_save_leaves_the_previous_model_untouched(capsys, tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from model import io

    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def broken(path, packed):
        path.write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "save_weights", broken)
    assert train(capsys, tiny_model_dir, out, "--data", str(EXAMPLES / "labelled.jsonl"))[0] == 130
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_sigterm_during_training_writes_nothing(tiny_model_dir, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    data = tmp_path / "big.jsonl"
    data.write_text((EXAMPLES / "labelled.jsonl").read_text() * 50, encoding="utf-8")
    out = tmp_path / "model"
    command = [sys.executable, "-m", "service.cli", "train", "--from", str(tiny_model_dir), "--out", str(out),
               "--epochs", "50", "--batch-size", "2", "--data", str(data)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # wait until it is training
        if line.startswith("training on"):
            break
    time.sleep(1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl"]


def test_sigterm_inside_exec_still_exits_130(tmp_path):
    """The flaky case of the test above made certain: SIGTERM lands in code that exec() runs from a string, under
    `python -m`, whose exit code CPython replaces by SIGINT after a bare KeyboardInterrupt passed through such code."""
    import os
    import subprocess
    import sys

    (tmp_path / "sigterm_in_exec.py").write_text(
        "import os, signal, sys\n"
        "from service.cli import _interrupt\n"
        "signal.signal(signal.SIGTERM, _interrupt)\n"
        "try:\n"
        "    exec('os.kill(os.getpid(), signal.SIGTERM)')\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    assert subprocess.run([sys.executable, "-m", "sigterm_in_exec"], env=env, check=False).returncode == 130


def test_relation_training_flags():
    from service.cli import build_parser

    argv = ["train", "--out", "m", "--relation-training", "joint", "--relation-data", "a.txt", "--relation-data", "b.jsonl",
            "--relation-dev", "c.txt", "--relation-per-epoch", "100", "--relation-weight", "0.25"]  # fmt: skip
    args = build_parser().parse_args(argv)
    assert (args.relation_training, args.relation_per_epoch, args.relation_weight) == ("joint", 100, 0.25)
    assert (args.relation_data, args.relation_dev) == (["a.txt", "b.jsonl"], ["c.txt"])
    defaults = build_parser().parse_args(["train", "--out", "m"])
    assert (defaults.relation_training, defaults.relation_per_epoch, defaults.relation_weight) == ("separate", 4000, 0.5)
    assert defaults.relation_data is None and defaults.relation_dev is None


def test_unknown_relation_training_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "m"), "--data", "x.jsonl", "--relation-training", "both"])
    assert exit_info.value.code == 2
    assert "--relation-training: invalid choice: 'both'" in capsys.readouterr().err


def test_relation_data_alone_is_enough_to_train(capsys, tiny_model_dir, tmp_path):
    directed = tmp_path / "directed.txt"
    directed.write_text(
        "[Trump] praised [Kasich] today.\tTrump\tKasich\t1\n[Trump] blamed [Kasich] today.\tTrump\tKasich\t3\n"
        "[Trump] met [Kasich] today.\tTrump\tKasich\t0\n",
        encoding="utf-8",
    )
    out = tmp_path / "m"
    code, err = train(capsys, tiny_model_dir, out, "--relation-data", str(directed), "--relation-dev", str(directed))
    assert code == 0, err
    assert "training on 0 stance pairs" in err
    assert json.loads((out / "metrics.json").read_text())["relations"]["dev"]["n"] == 6
