"""The fused attention kernel (model/kernels/attention.cpp) against its source at a git revision, on the same
inputs, timed in turns in one process.

    .venv/bin/python benchmarks/attention_kernel.py --against REV [--batch 40] [--length 37] [--rounds 5]
        [--calls 100] [--threads 2] [--out FILE]

The inputs are shaped as the int8 encoder gives them: query, key and value side by side in one [batch, length,
3 x 384] tensor, 12 heads of 32, a third of the sequences padded. Each round times --calls calls of each build;
the figure per build is the median of the rounds, the ratio the median of the rounds' ratios. REV's kernel must
take the same arguments as the working tree's (its row stride came in session 16). Writes
benchmarks/results/attention_kernel.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from in_turns import exported
from inference import RESULTS, cpu_model

from model import fused_attention

HEADS, HEAD_SIZE = 12, 32


def timed(kernel: Callable[..., None], inputs: tuple[torch.Tensor, ...], calls: int) -> float:
    """Microseconds per call of `kernel` on `inputs`."""
    started = time.perf_counter()
    for _ in range(calls):
        fused_attention.run(kernel, *inputs, HEADS, HEAD_SIZE**-0.5)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", required=True, help="the git revision whose kernel source to compare with")
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--length", type=int, default=37)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "attention_kernel.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compiler = fused_attention.cxx_compiler()
    if compiler is None:
        parser.error("the kernel needs a C++ compiler")
    source = fused_attention.SOURCE.relative_to(Path(__file__).resolve().parent.parent)
    torch.manual_seed(0)
    qkv = torch.randn(args.batch, args.length, 3 * HEADS * HEAD_SIZE)
    mask = torch.zeros(args.batch, args.length)
    mask[::3, args.length * 3 // 4 :] = torch.finfo(torch.float32).min
    inputs = (*qkv.chunk(3, dim=-1), mask)
    with tempfile.TemporaryDirectory() as folder:
        commit = exported(args.against, Path(folder))  # with the headers the source includes
        old_source = Path(folder) / source
        # Built and bound here: `_kernel()` loads the working tree's source only.
        kernels = {"working_tree": fused_attention.SOURCE, "revision": old_source}
        kernels = {name: fused_attention.bind(fused_attention.build(compiler, path)) for name, path in kernels.items()}
        outputs = {name: fused_attention.run(k, *inputs, HEADS, HEAD_SIZE**-0.5) for name, k in kernels.items()}
        for kernel in kernels.values():
            timed(kernel, inputs, args.calls)  # warm-up
        micros: dict[str, list[float]] = {name: [] for name in kernels}
        for _ in range(args.rounds):
            for name, kernel in kernels.items():
                micros[name].append(timed(kernel, inputs, args.calls))
    out = {
        "against": commit,
        "batch": args.batch,
        "length": args.length,
        "heads": HEADS,
        "head_size": HEAD_SIZE,
        "threads": args.threads,
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "microseconds_per_call_median": {name: round(statistics.median(m), 1) for name, m in micros.items()},
        "microseconds_per_call_rounds": {name: [round(v, 1) for v in m] for name, m in micros.items()},
        "working_tree_time_vs_revision_median_of_rounds": round(
            statistics.median(a / b for a, b in zip(micros["working_tree"], micros["revision"], strict=True)), 3
        ),
        "max_abs_difference": float((outputs["working_tree"] - outputs["revision"]).abs().max()),
        "machine": {"cpu": cpu_model(), "torch": torch.__version__},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
