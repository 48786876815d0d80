"""Alternating A/B timing in one process: the machine's speed drifts by 10-20% between runs, so variants are
timed in turns, round after round, and compared by their medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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
