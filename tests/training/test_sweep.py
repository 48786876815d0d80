"""`python -m training.sweep`: runs side by side, a time budget, and a ranking of the finished runs."""

import json
import sys
from pathlib import Path

import pytest

from model.errors import InvalidInputError
from training.sweep import Plan, format_report, main, report, run_sweep

EXAMPLES = Path(__file__).resolve().parents[2] / "training" / "examples"


def write_plan(path: Path, plan: dict) -> Path:
    path.write_text(json.dumps(plan), encoding="utf-8")
    return path


def test_two_runs_side_by_side_are_ranked(tiny_model_dir, tmp_path, capsys):
    common = ["--from", str(tiny_model_dir), "--data", str(EXAMPLES / "labelled.jsonl")]
    common += ["--dev", str(EXAMPLES / "labelled.csv"), "--epochs", "1", "--batch-size", "4", "--threads", "1"]
    plan = write_plan(tmp_path / "plan.json", {"common": common, "runs": {"s1": ["--seed", "1"], "bad": ["--epochs", "0"]}})
    out = tmp_path / "sweep"
    assert main([str(plan), "--out", str(out), "--parallel", "2"]) == 1  # one run failed
    summary = json.loads((out / "sweep.json").read_text())
    rows = {r["name"]: r for r in summary["runs"]}
    assert rows["bad"]["status"] == "failed (exit code 2)"
    assert "invalid training settings: epochs=0" in (out / "bad.log").read_text()
    assert rows["s1"]["status"] == "done" and rows["s1"]["best_epoch"] == 1
    assert [r["name"] for r in summary["runs"]] == ["s1", "bad"]
    assert set(rows["s1"]["stance_by_dev_set"]) == {str(EXAMPLES / "labelled.csv")}
    assert 0 <= rows["s1"]["dev_stance_macro_f1"] <= 1
    record = json.loads((out / "s1" / "training.json").read_text())
    assert record["command"] == ["stance", "train", *common, "--seed", "1", "--out", str(out / "s1")]
    assert record["config"]["seed"] == 1 and record["hardware"].endswith("torch threads")
    table = capsys.readouterr().out
    assert "| s1 | done | 1 |" in table and "| bad | failed (exit code 2) | – | – | – |" in table


def test_finished_runs_are_not_run_again(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text("{}")
    plan = Plan([], {"old": [], "new": []})
    command = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert run_sweep(plan, tmp_path, parallel=1, command=command) == {"old": "done", "new": "failed (exit code 3)"}


def test_time_budget_stops_and_kills_runs(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    plan = Plan([], {"a": [], "b": []})
    assert run_sweep(plan, tmp_path, parallel=1, stop_after=0.0, command=sleeper) == {"a": "not started", "b": "not started"}
    status = run_sweep(plan, tmp_path, parallel=1, kill_after=0.02, command=sleeper)
    assert status == {"a": "killed", "b": "killed"}
    summary = report(plan, tmp_path, status)
    assert [r["status"] for r in summary["runs"]] == ["killed", "killed"]
    assert "| a | killed | – | – | – |" in format_report(summary)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"runs": {}}, "a sweep plan needs a non-empty 'runs' object"),
        ({"runs": {"a": "--seed 1"}}, "'a' must be a list of command-line strings"),
        ({"runs": {"../a": []}}, "run name '../a' cannot be a folder name"),
        ({"common": ["--out", "x"], "runs": {"a": []}}, "leave out --out; each run trains into OUT/NAME"),
    ],
)
def test_bad_plans(tmp_path, plan, message):
    path = write_plan(tmp_path / "plan.json", plan)
    with pytest.raises(InvalidInputError) as err:
        Plan.read(path)
    assert str(err.value) == f"{path}: {message}"


def test_bad_plan_exit_code(tmp_path, capsys):
    path = write_plan(tmp_path / "plan.json", {"runs": {}})
    assert main([str(path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"error: {path}: a sweep plan needs a non-empty 'runs' object\n"
