"""Alternating A/B timing in one process: the machine's speed drifts by 10-20% between runs, so variants are
timed in turns, round after round, and compared by their medians."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference import sample_pairs

from model import StancePredictor, default_model_path
from model.predictor import COMPILE_MODES


def alternate(
    variants: dict[str, Callable[[], None]], score: Callable[[], object], items: int, repeats: int
) -> dict[str, dict[str, float | list[float]]]:
    """For each round, each variant in turn: `variants[name]()` sets it up, then one timed `score()` of `items`.

    Returns items/s per variant: the median and every round's figure.
    """
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, set_up in variants.items():
            set_up()
            start = time.perf_counter()
            score()
            rates[name].append(items / (time.perf_counter() - start))
    return {name: {"median": round(statistics.median(r), 1), "runs": [round(v, 1) for v in r]} for name, r in rates.items()}


def compare_settings(description: str, variants: dict[str, dict[str, Any]], out: Path, repeats: int) -> int:
    """The command line of a settings comparison: the `auto` stance path on benchmarks/inference.py's pairs, with
    each variant's predictor attributes set in turn. Writes `out` (`<stem>_compiled.json` when compiled)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--compile", default="off", choices=COMPILE_MODES)
    args = parser.parse_args()
    pairs = sample_pairs(args.pairs, 0)
    predictor = StancePredictor.load(default_model_path(), precision="auto", compile=args.compile)
    default = {key: getattr(predictor, key) for settings in variants.values() for key in settings}
    predictor.stance_logits(pairs)  # warm-up: tokenisation cache and kernels

    def use(settings: dict[str, Any]) -> Callable[[], None]:
        def set_up() -> None:
            for key, value in settings.items():
                setattr(predictor, key, value)

        return set_up

    rates = alternate(
        {name: use(s) for name, s in variants.items()}, lambda: predictor.stance_logits(pairs), len(pairs), args.repeats
    )
    result = {
        "pairs": len(pairs),
        "precision": predictor.precision,
        "compiled": predictor.compiled,
        "default": default,
        "variants": variants,
        "pairs_per_s_median": {name: r["median"] for name, r in rates.items()},
        "pairs_per_s_runs": {name: r["runs"] for name, r in rates.items()},
    }
    path = out.with_name(f"{out.stem}_compiled.json") if predictor.compiled else out
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["pairs_per_s_median"]))
    return 0
