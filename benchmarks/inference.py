"""CPU inference speed: the predictor's scoring paths against a naive transformers pipeline, and the GEMM ceiling.

On the same sampled NewsMTSC pairs, in one run:
- naive: `transformers.pipeline("text-classification")` on the same fp32 encoder weights (the markers inserted
  as text), batch_size 32, in sample order (no length sorting);
- the predictor's stance path in fp32, bf16 (only where the CPU has native bf16) and int8 (length-sorted batches,
  dynamic padding), eager, and the default path (DEFAULT_PRECISION with DEFAULT_COMPILE: with a compiled encoder
  where a C++ compiler is found, int8 where the CPU has VNNI, else fp32) with its compile time, and compiled, the
  same path with widths rounded up to PAD_MULTIPLE and with batches of BATCH_SIZE pairs instead of its token
  budget (benchmarks/batching.py compares budgets), and compiled int8 where the default is not int8;
- a GEMM probe: sustained fp32 and bf16 matmul rates and the int8 GEMMs' rates at the encoder's shapes, run before
  the paths are loaded and again after they are timed, and from the faster of the two runs of each rate the best
  possible pairs/s for this sample's token lengths (the int8 ceiling);
- stance macro-F1 on devtest_mt per path, and label agreement of each fast path against fp32;
- `stance serve`: cold start (process start to /ready 200), the time until its background compile is done, and
  peak RSS after scoring five articles, medians of --starts starts.
Every speed is the median of --repeats timed runs after one warm-up; the default path's ratio to the naive pipeline is
also the median of --rounds rounds that time one after the other, and its ratio to the int8 ceiling the median of
--rounds rounds of a one-second probe and then two passes, of the second (the first's beside it). Writes
benchmarks/results/inference.json (or --out; inference_avx2.json is a run on an AVX2-only CPU). With oneDNN's ISA cap
below AMX (`ONEDNN_MAX_CPU_ISA=AVX10_1_512`) every path runs as on the same CPU without AMX, our kernels on emulated
tiles (`model.fused_attention.tiles`): inference_no_amx.json (inference_no_amx_int_mm.json: before they ran there).

    .venv/bin/python benchmarks/inference.py [--pairs 2000] [--repeats 3] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import free_port, wait_ready
from synthetic import article

from model import StancePredictor, default_model_path, fused_attention
from model.encoding import MARKER_TOKENS
from model.predictor import (
    BATCH_SIZE,
    DEFAULT_COMPILE,
    DEFAULT_PRECISION,
    PAD_MULTIPLE,
    PairInput,
    cpu_features,
    native_bf16,
    resolve_compile,
    resolve_precision,
)
from model.quant import UINT8_ZERO, onednn_int8_linear
from training.data import load_file
from training.metrics import classification_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NEWSMTSC = ROOT.parent / "shared" / "data" / "newsmtsc"


def elapsed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` runs after one untimed warm-up."""
    fn()
    return statistics.median(elapsed(fn) for _ in range(repeats))


def gemm_probe(tokens: int = 2048, hidden: int = 384, inner: int = 1536, seconds: float = 2.0) -> dict[str, float]:
    """Sustained rates (G(FL)OP/s) of fp32 and bf16 matmul and of the int8 GEMMs (torch's dynamic-quantised Linear,
    `_int_mm`, oneDNN's prepacked Linear and, where the CPU has AMX, our AMX kernel), at the encoder's shapes."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    x = torch.randn(tokens, hidden)
    w = torch.randn(hidden, inner)
    xb, wb = x.bfloat16(), w.bfloat16()
    xi = torch.randint(-127, 128, (tokens, hidden), dtype=torch.int8)
    wi = torch.randint(-127, 128, (hidden, inner), dtype=torch.int8)
    qlinear = QLinear(hidden, inner, dtype=torch.qint8)
    qlinear.set_weight_bias(torch.quantize_per_tensor(torch.randn(inner, hidden), 0.05, 0, torch.qint8), None)
    xu = (xi.to(torch.int16) + UINT8_ZERO).to(torch.uint8)
    packed = torch.ops.onednn.qlinear_prepack(wi.t().contiguous(), None)
    weight_scale = torch.full((inner,), 0.01)
    column_sums = wi.sum(dim=0, dtype=torch.int32)
    ops = 2 * tokens * hidden * inner
    rates = {}
    probes = {
        "fp32_gflops": lambda: x @ w,
        "bf16_gflops": lambda: xb @ wb,
        "int8_gops": lambda: qlinear(x),  # torch's dynamic int8 Linear, quantising x included
        # The int8 path's GEMMs (model/quant.py): "int_mm" and, where the CPU has AMX, "onednn" and "amx".
        "int8_int_mm_gops": lambda: torch._int_mm(xi, wi),
        "int8_onednn_gops": lambda: onednn_int8_linear(xu, packed, weight_scale, inner),
    }
    if fused_attention.amx_available():
        tiles = fused_attention.amx_pack(wi)
        # Scale 1, offset 0 and no bias: the bare products, as oneDNN's (the kernel still does the arithmetic).
        rows = (torch.ones(tokens, 1), torch.zeros(tokens, 1), torch.zeros(inner), None)
        probes["int8_amx_gops"] = lambda: fused_attention.amx_int8_linear(xu, tiles, column_sums, weight_scale, *rows, UINT8_ZERO)
    for name, fn in probes.items():
        fn()
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            fn()
            n += 1
        rates[name] = round(ops * n / (time.perf_counter() - started) / 1e9, 1)
    return rates


def encoder_ops(length: int, config) -> tuple[float, float]:
    """(ops in the linear layers, ops in attention's two batched matmuls) for one sequence of `length` tokens."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    linear = layers * length * (8 * h * h + 4 * h * i)
    attention = layers * 4 * length * length * h
    return linear, attention


def ceilings(rates: dict[str, float], ops: list[tuple[float, float]]) -> dict[str, float]:
    """The best pairs/s the probe's `rates` allow for sequences of `ops` (encoder_ops): int8 (the fastest int8 probe
    for the linear layers, fp32 for attention's matmuls), bf16 and fp32."""
    int8_rate = max(rate for name, rate in rates.items() if name.startswith("int8_"))
    seconds_int8 = sum(lin / (int8_rate * 1e9) + att / (rates["fp32_gflops"] * 1e9) for lin, att in ops)
    seconds_fp32 = sum((lin + att) / (rates["fp32_gflops"] * 1e9) for lin, att in ops)
    seconds_bf16 = sum((lin + att) / (rates["bf16_gflops"] * 1e9) for lin, att in ops)
    return {
        "int8_pairs_per_s": round(len(ops) / seconds_int8, 1),
        "bf16_pairs_per_s": round(len(ops) / seconds_bf16, 1),
        "fp32_pairs_per_s": round(len(ops) / seconds_fp32, 1),
    }


def sample_pairs(n: int, seed: int) -> list[PairInput]:
    examples = load_file(NEWSMTSC / "train.jsonl").stance
    return [e.pair for e in random.Random(seed).sample(examples, min(n, len(examples)))]


def naive_pipeline(predictor: StancePredictor, folder: Path):
    """A stock text-classification pipeline over the predictor's fp32 encoder weights (a fresh linear head)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, pipeline

    config = BertConfig(**predictor.config.encoder, num_labels=len(predictor.config.stance_labels))
    model = BertForSequenceClassification(config)
    model.bert.load_state_dict(predictor.network.encoder.state_dict(), strict=False)
    model.save_pretrained(folder)
    predictor.tokenizer.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, additional_special_tokens=list(MARKER_TOKENS))
    return pipeline("text-classification", model=str(folder), tokenizer=tokenizer, device=-1, batch_size=32)


def marked_text(pair: PairInput) -> str:
    """The sentence with the markers around each mention, as plain text."""
    text, pieces, last = pair.text, [], 0
    for start, end in sorted(pair.mentions):
        pieces += [text[last:start], f"{MARKER_TOKENS[0]} ", text[start:end], f" {MARKER_TOKENS[1]}"]
        last = end
    return "".join([*pieces, text[last:]])


def stance_f1(predictor: StancePredictor) -> float:
    examples = load_file(NEWSMTSC / "devtest_mt.jsonl").stance
    labels = predictor.config.stance_labels
    predicted = predictor.stance_probabilities([e.pair for e in examples]).argmax(-1).tolist()
    return classification_report([labels.index(e.label) for e in examples], predicted, labels)["macro_f1"]


def serve_figures(precision: str, compile_mode: str, threads: int) -> dict[str, float]:
    """Cold start of `stance serve` (process start to /ready 200), the time until its background compile is over,
    and its peak RSS after scoring five articles."""
    port = free_port()
    env = os.environ | {"STANCE_PRECISION": precision, "STANCE_COMPILE": compile_mode, "STANCE_THREADS": str(threads)}
    stance = Path(sys.executable).with_name("stance")
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(stance), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, timeout=120, poll=0.05)
        cold_start = time.perf_counter() - started
        wait_ready(url, server, timeout=300, poll=0.2, compiled=True)
        settled = time.perf_counter() - started
        rng = random.Random(3)
        for _ in range(5):
            httpx.post(f"{url}/classify", json={"text": article(rng, 600)}, timeout=120).raise_for_status()
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"cold_start_s": round(cold_start, 2), "compiled_after_s": round(settled, 2), "peak_rss_mb": round(peak_kb / 1024, 1)}


def serve_medians(precision: str, compile_mode: str, threads: int, starts: int) -> dict[str, float]:
    """Medians over `starts` server starts (the first start after heavy work can wait on the disk cache)."""
    runs = [serve_figures(precision, compile_mode, threads) for _ in range(starts)]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {"starts": starts}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the naive pipeline (or probe), then the default path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--starts", type=int, default=3, help="server starts per precision for cold start and RSS")
    parser.add_argument("--out", type=Path, default=RESULTS / "inference.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Once before anything is loaded or compiled (after a compile, a probe of torch's int8 Linear once measured 263
    # GOP/s instead of about 700), once after the timed paths (on a drifting machine one probe minutes before them
    # does not bound them: the int8 rate once halved between two runs while the default path got faster).
    probe_before = gemm_probe()
    pairs = sample_pairs(args.pairs, seed=0)
    # Emulated bf16 (no AVX512-BF16 or AMX; see the bf16 probe) is a path auto never takes, and slow: skipped there.
    eager = ("fp32", "bf16", "int8") if native_bf16() else ("fp32", "int8")
    predictors = {p: StancePredictor.load(default_model_path(), precision=p) for p in eager}
    fp32 = predictors["fp32"]
    compiled = resolve_compile(DEFAULT_COMPILE)
    default_precision = resolve_precision(DEFAULT_PRECISION, compiled)
    default_name = f"{default_precision}_compiled" if compiled else default_precision
    started = time.perf_counter()
    predictors[default_name] = StancePredictor.load(default_model_path(), DEFAULT_PRECISION, DEFAULT_COMPILE)
    load_seconds = time.perf_counter() - started
    if compiled:
        # Compiled fp32 and int8 both, whichever of them auto took.
        for precision in ("fp32", "int8"):
            if f"{precision}_compiled" not in predictors:
                predictors[f"{precision}_compiled"] = StancePredictor.load(default_model_path(), precision, "on")
        # The default path with widths rounded up to PAD_MULTIPLE, as the compiled path padded before session 5.
        padded = StancePredictor.load(default_model_path(), DEFAULT_PRECISION, DEFAULT_COMPILE)
        padded.pad_multiple = PAD_MULTIPLE
        predictors[f"{default_name}_widths_to_{PAD_MULTIPLE}"] = padded
        # The default path with batches of BATCH_SIZE pairs instead of COMPILED_BATCH_TOKENS tokens, as before session 6.
        counted = StancePredictor.load(default_model_path(), DEFAULT_PRECISION, DEFAULT_COMPILE)
        counted.batch_size, counted.batch_tokens = BATCH_SIZE, None
        predictors[f"{default_name}_{BATCH_SIZE}_pair_batches"] = counted
    lengths = [len(e.input_ids) for e in fp32.encode_pairs(pairs)]

    with tempfile.TemporaryDirectory() as folder:
        classify = naive_pipeline(fp32, Path(folder))
        texts = [marked_text(p) for p in pairs]
        naive = len(pairs) / timed(lambda: classify(texts), args.repeats)

        # Each path with its own batches: BATCH_SIZE pairs eagerly, up to COMPILED_BATCH_TOKENS tokens compiled.
        paths = {
            name: round(len(pairs) / timed(lambda p=predictor: p.stance_probabilities(pairs), args.repeats), 1)
            for name, predictor in predictors.items()
        }
        default = paths[default_name]
        # The naive pipeline's pairs/s moved by up to 20% between runs of the same code, and the ratio with it; in
        # rounds of one after the other both see about the same machine (it ran slower there: benchmarks/PROFILE.md).
        rounds = [
            (elapsed(lambda: classify(texts)), elapsed(lambda: predictors[default_name].stance_probabilities(pairs)))
            for _ in range(args.rounds)
        ]
    probe_after = gemm_probe()
    # Each rate's faster run, and the fastest of the int8 probes, so the ceiling is the stricter one.
    rates = {name: max(probe_before[name], probe_after[name]) for name in probe_before}
    ops = [encoder_ops(n, fp32.network.encoder.config) for n in lengths]
    ceiling = ceilings(rates, ops)
    # The probe and the default path in turns, a ratio a round: on a machine whose speed drifts within a run (the
    # AMX probe once fell from 3,876 to 2,927 GOP/s between its two runs), the ratio above can pair the probe's fast
    # run with the default path's slow one, or the other way round (benchmarks/PROFILE.md, session 21). A round times
    # two passes: the first after the probe ran 6-16% slower than passes one after another (as after a second's
    # sleep, or other work), while the probe times its GEMM only after an untimed call (session 22); the ratio is
    # the second's, as the headline's is of passes after a warm-up, and the first's is kept beside it.
    ceiling_rounds = []
    for _ in range(args.rounds):
        round_ceiling = ceilings(gemm_probe(seconds=1.0), ops)["int8_pairs_per_s"]
        first, second = (elapsed(lambda: predictors[default_name].stance_probabilities(pairs)) for _ in range(2))
        ceiling_rounds.append((round_ceiling, len(pairs) / second, len(pairs) / first))

    labels = {name: p.stance_probabilities(pairs).argmax(-1) for name, p in predictors.items()}
    agree = {name: round((labels[name] == labels["fp32"]).float().mean().item(), 4) for name in predictors if name != "fp32"}
    f1 = {name: stance_f1(p) for name, p in predictors.items()}
    out = {
        "pairs": len(pairs),
        "source": "newsmtsc/train.jsonl, random.Random(0).sample",
        "tokens_per_pair": {
            "mean": round(statistics.mean(lengths), 1),
            "median": statistics.median(lengths),
            "max": max(lengths),
        },
        "threads": args.threads,
        "repeats": args.repeats,
        "gemm_probe": rates,
        "gemm_probe_runs": {"before_loading": probe_before, "after_timing": probe_after},
        "ceiling": ceiling,
        "pairs_per_s": {
            "naive_pipeline_fp32_bs32_unsorted": round(naive, 1),
            **paths,
        },
        "default_path": {
            "precision": f"{DEFAULT_PRECISION}: {default_precision} here",
            "compile": f"{DEFAULT_COMPILE}: {'on' if compiled else 'off'} here",
            "load_and_compile_s": round(load_seconds, 1),
            "batch_size": predictors[default_name].batch_size,
            "batch_tokens": predictors[default_name].batch_tokens,
            "pad_multiple": predictors[default_name].pad_multiple,
            "pairs_per_s": default,
        },
        "default_vs_naive": round(default / naive, 2),
        "default_vs_naive_in_rounds": {
            "median": round(statistics.median(naive_s / default_s for naive_s, default_s in rounds), 2),
            "naive_pairs_per_s": [round(len(pairs) / naive_s, 1) for naive_s, _ in rounds],
            "default_pairs_per_s": [round(len(pairs) / default_s, 1) for _, default_s in rounds],
        },
        "default_vs_int8_ceiling": round(default / ceiling["int8_pairs_per_s"], 3),
        "default_vs_int8_ceiling_in_rounds": {
            "median": round(statistics.median(speed / limit for limit, speed, _ in ceiling_rounds), 3),
            "median_first_pass_after_probe": round(statistics.median(cold / limit for limit, _, cold in ceiling_rounds), 3),
            "int8_ceiling_pairs_per_s": [round(limit, 1) for limit, _, _ in ceiling_rounds],
            "default_pairs_per_s": [round(speed, 1) for _, speed, _ in ceiling_rounds],
            "first_pass_after_probe_pairs_per_s": [round(cold, 1) for _, _, cold in ceiling_rounds],
        },
        "default_vs_bf16_ceiling": round(default / ceiling["bf16_pairs_per_s"], 3),
        "stance_macro_f1_devtest_mt": f1,
        "label_agreement_with_fp32": agree,
        "serve": {
            "default": serve_medians(DEFAULT_PRECISION, DEFAULT_COMPILE, args.threads, args.starts),
            "fp32": serve_medians("fp32", "off", args.threads, args.starts),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "processor": cpu_model(),
            **cpu_features(),
            "onednn_max_cpu_isa": fused_attention.isa_cap(),
            "torch": torch.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
