"""Our AMX int8 kernel (model/kernels/amx_linear.cpp) against oneDNN's int8 Linear, per linear layer of the encoder
at one compiled batch's rows, timed in turns in one process; and the feed-forward input layer fused with GELU and
the output layer's codes (`amx_gelu_codes`) against the two steps it replaces (our GEMM, then `gelu_codes`). Our
kernel's figure includes dequantising its output (row scale, offset and bias), which oneDNN's products leave to the
next kernel of the compiled pass.

    .venv/bin/python benchmarks/amx_kernel.py [--rows 1536] [--rounds 5] [--calls 50] [--threads 2] [--out FILE]

Each round times --calls calls of each variant, one variant after the other; a variant's figure is the median of
the rounds (µs per call, and GOP/s for the GEMMs), a ratio the median of the rounds' ratios. Needs a CPU with AMX.
Writes benchmarks/results/amx_kernel.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from inference import RESULTS, cpu_model
from torch import nn

from model import fused_attention
from model.predictor import COMPILED_BATCH_TOKENS
from model.quant import UINT8_ZERO, Int8Linear, onednn_int8_linear

# (name, in_features, out_features) of all-MiniLM-L6-v2's linear layers, query, key and value stacked as in
# model/quant.py.
LAYERS = (("qkv", 384, 1152), ("attention_output", 384, 384), ("intermediate", 384, 1536), ("output", 1536, 384))


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Microseconds per call."""
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def in_turns(variants: dict[str, Callable[[], object]], rounds: int, calls: int) -> dict[str, list[float]]:
    """Each variant's µs per call in each round, the variants one after the other within a round."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(per_call(fn, calls))
    return times


def ratio(times: dict[str, list[float]], slower: str, faster: str) -> float:
    return round(statistics.median(s / f for s, f in zip(times[slower], times[faster], strict=True)), 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=COMPILED_BATCH_TOKENS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "amx_kernel.json")
    args = parser.parse_args()
    if not fused_attention.amx_available():
        raise SystemExit("this CPU has no AMX int8 tiles (or no C++ compiler): nothing to compare")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    row_scale, row_offset = torch.rand(args.rows, 1) * 0.01, torch.randn(args.rows, 1) * 0.1
    # What leaves our kernel's output the bare products, as oneDNN's: scale 1, offset 0, no bias.
    bare = (torch.ones(args.rows, 1), torch.zeros(args.rows, 1))
    layers = {}
    for name, k, n in LAYERS:
        amx, onednn = (Int8Linear(nn.Linear(k, n), kernel=kernel) for kernel in ("amx", "onednn"))
        codes = torch.randint(0, 256, (args.rows, k), dtype=torch.uint8)
        gemm = (codes, amx.packed, amx.column_sums, amx.weight_scale)
        times = in_turns(
            {
                "amx": lambda g=gemm, a=amx: fused_attention.amx_int8_linear(
                    *g, row_scale, row_offset, a.weight_sum, a.bias, UINT8_ZERO
                ),
                "onednn": lambda o=onednn, c=codes, n=n: onednn_int8_linear(c, o.packed, o.weight_scale, n),
            },
            args.rounds,
            args.calls,
        )
        ops = 2 * args.rows * k * n
        layers[name] = {
            "shape": [args.rows, k, n],
            "us_per_call": {v: round(statistics.median(t), 1) for v, t in times.items()},
            "gops": {v: round(ops / statistics.median(t) / 1e3, 1) for v, t in times.items()},
            "amx_vs_onednn_speed": ratio(times, "onednn", "amx"),
        }
    layer = Int8Linear(nn.Linear(384, 1536), kernel="amx")
    codes = torch.randint(0, 256, (args.rows, 384), dtype=torch.uint8)
    dequantise = (row_scale, row_offset, layer.weight_sum, layer.bias)
    gemm = (codes, layer.packed, layer.column_sums, layer.weight_scale)
    times = in_turns(
        {
            "fused": lambda: fused_attention.amx_gelu_codes(*gemm, *dequantise, UINT8_ZERO),
            "gemm_then_gelu_codes": lambda: fused_attention.gelu_codes(
                fused_attention.amx_int8_linear(*gemm, *bare, layer.weight_sum, None, UINT8_ZERO),
                None,
                *dequantise,
                UINT8_ZERO,
            ),
        },
        args.rounds,
        args.calls,
    )
    out = {
        "rows": args.rows,
        "threads": args.threads,
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "linear_layers": layers,
        "intermediate_with_gelu_codes": {
            "us_per_call": {v: round(statistics.median(t), 1) for v, t in times.items()},
            "fused_vs_two_steps_speed": ratio(times, "gemm_then_gelu_codes", "fused"),
        },
        "machine": {"processor": cpu_model(), "torch": torch.__version__},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
