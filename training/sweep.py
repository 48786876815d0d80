"""Run many `stance train` runs side by side, within a time budget, and rank them by dev score.

A small encoder leaves a GPU mostly idle, so several runs (seeds, settings) share it well; on a CPU,
give each run its share of the cores with `--threads`. The plan is a JSON file:

    {"common": ["--from", "base", "--data", "train.jsonl", "--dev", "dev.jsonl", "--device", "cuda"],
     "runs": {"A-s13": ["--seed", "13"], "A-s7": ["--seed", "7"], "balanced": ["--class-balance", "1"]}}

    python -m training.sweep plan.json --out runs/sweep --parallel 6 --stop-after 20

Each run is an ordinary `stance train` into OUT/NAME (its log in OUT/NAME.log), so its folder records
its own command; runs that already finished are not run again. OUT/sweep.json ranks every run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.errors import InvalidInputError
from model.io import read_json, write_json

TRAIN_COMMAND = (sys.executable, "-m", "service.cli", "train")


@dataclass
class Plan:
    common: list[str]
    runs: dict[str, list[str]]

    @classmethod
    def read(cls, path: str | Path) -> Plan:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"{path}: cannot read the sweep plan: {exc}") from exc
        runs = data.get("runs") if isinstance(data, dict) else None
        if not isinstance(runs, dict) or not runs:
            raise InvalidInputError(f"{path}: a sweep plan needs a non-empty 'runs' object")
        common = data.get("common", [])
        for name, args in [("common", common), *runs.items()]:
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                raise InvalidInputError(f"{path}: '{name}' must be a list of command-line strings")
        for name in runs:
            if not name or "/" in name or name.startswith("."):
                raise InvalidInputError(f"{path}: run name {name!r} cannot be a folder name")
        if "--out" in common or any("--out" in args for args in runs.values()):
            raise InvalidInputError(f"{path}: leave out --out; each run trains into OUT/NAME")
        return cls(common, runs)


def run_sweep(
    plan: Plan,
    out: Path,
    parallel: int,
    stop_after: float | None = None,
    kill_after: float | None = None,
    command: Sequence[str] = TRAIN_COMMAND,
) -> dict[str, str]:
    """Run the plan's runs, `parallel` at a time. Returns each run's status.

    Status: done (it finished now or earlier), failed (exit code N), killed (past `kill_after` minutes),
    not started (past `stop_after` minutes before its turn).
    """
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    status = {name: "done" for name in plan.runs if (out / name / "metrics.json").is_file()}
    queue = [name for name in plan.runs if name not in status]
    running: dict[str, subprocess.Popen[bytes]] = {}

    def minutes() -> float:
        return (time.monotonic() - started) / 60

    while queue or running:
        for name, proc in list(running.items()):
            code = proc.poll()
            if code is not None:
                status[name] = "done" if code == 0 else f"failed (exit code {code})"
                del running[name]
            elif kill_after is not None and minutes() > kill_after:
                proc.terminate()  # `stance train` unwinds on SIGTERM and leaves no half-written folder
                proc.wait()
                status[name] = "killed"
                del running[name]
        while queue and len(running) < parallel:
            name = queue.pop(0)
            if stop_after is not None and minutes() > stop_after:
                status[name] = "not started"
                continue
            with open(out / f"{name}.log", "wb") as log:
                argv = [*command, *plan.common, *plan.runs[name], "--out", str(out / name)]
                running[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        if running:
            time.sleep(1.0)
    return {name: status[name] for name in plan.runs}


def _stance_scores(metrics: dict[str, Any]) -> dict[str, float]:
    """Stance macro-F1 per dev set, after the fp16 rounding and calibration the folder holds."""
    return {name: heads["stance"]["macro_f1"] for name, heads in metrics.get("dev", {}).items() if "stance" in heads}


def report(plan: Plan, out: Path, status: dict[str, str]) -> dict[str, Any]:
    """Rank the runs by the best epoch's stance macro-F1 on all dev data together (what training selects on)."""
    rows = []
    for name, args in plan.runs.items():
        row: dict[str, Any] = {"name": name, "args": args, "status": status.get(name, "not run")}
        metrics_file = out / name / "metrics.json"
        if metrics_file.is_file():
            metrics = read_json(metrics_file)
            best = metrics["history"][metrics["best_epoch"] - 1] if metrics.get("best_epoch") else {}
            row |= {
                "best_epoch": metrics.get("best_epoch"),
                "dev_stance_macro_f1": best.get("stance", {}).get("macro_f1"),
                "dev_stance_by_epoch": [h["stance"]["macro_f1"] for h in metrics["history"] if "stance" in h],
                "stance_by_dev_set": _stance_scores(metrics),
                "train_seconds": sum(h.get("train_seconds", 0.0) for h in metrics["history"]),
            }
        rows.append(row)
    rows.sort(key=lambda r: -(r.get("dev_stance_macro_f1") or -1.0))
    summary = {"common": plan.common, "runs": rows}
    write_json(out / "sweep.json", summary)
    return summary


def format_report(summary: dict[str, Any]) -> str:
    lines = ["| run | status | best epoch | dev stance macro-F1 | by dev set |", "|---|---|---|---|---|"]
    for row in summary["runs"]:
        score = row.get("dev_stance_macro_f1")
        by_set = ", ".join(f"{Path(k).name} {v:.4f}" for k, v in row.get("stance_by_dev_set", {}).items())
        lines.append(
            f"| {row['name']} | {row['status']} | {row.get('best_epoch', '–')} | "
            f"{'–' if score is None else f'{score:.4f}'} | {by_set or '–'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("plan", help="JSON file: {'common': [...], 'runs': {NAME: [...]}}")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--stop-after", type=float, help="minutes after which no further run starts")
    parser.add_argument("--kill-after", type=float, help="minutes after which runs still going are stopped")
    parser.add_argument("--report-only", action="store_true", help="only rank the runs already in OUT")
    args = parser.parse_args(argv)
    try:
        if args.parallel < 1:
            raise InvalidInputError("--parallel must be at least 1")
        plan = Plan.read(args.plan)
        if args.report_only:
            status = {name: "done" for name in plan.runs if (args.out / name / "metrics.json").is_file()}
        else:
            status = run_sweep(plan, args.out, args.parallel, args.stop_after, args.kill_after)
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report(plan, args.out, status)))
    return 0 if all(s == "done" for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
