"""How the int8 path's smoothing (model/quant.py) moves labels: label agreement with fp32 and stance macro-F1.

Every encoder linear layer in int8 with per-token activation scales, without smoothing and with smoothing at
several alphas, on three sets of pairs: the pairs the pipeline finds in our own example articles
(training/examples), NewsMTSC devtest_mt, and the 2,000 NewsMTSC train pairs of benchmarks/inference.py. Eager
scoring (compiling changes speed, not labels). `--kernel` picks the int8 GEMM (default: this CPU's, as scoring
does). fbgemm runs its own kernels for each CPU, and on an AVX-512 CPU its labels were not an AVX2 CPU's (model
0.4.0, alpha 0.7: devtest_mt F1 0.7789 here, 0.7767 in inference_avx2.json). Writes
benchmarks/results/int8_variants.json.

    .venv/bin/python benchmarks/int8_variants.py [--alphas none,0.3,0.5,0.7] [--kernel int_mm|fbgemm] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import NEWSMTSC, RESULTS, ROOT, sample_pairs

from model import StancePredictor, default_model_path
from model.predictor import DocumentInput, PairInput
from model.quant import ALPHA, INT8_KERNELS, int8_kernel, quantize_encoder
from training.data import load_file
from training.metrics import classification_report


def article_pairs(predictor: StancePredictor) -> list[PairInput]:
    examples = ROOT / "training" / "examples"
    names = ("articles.jsonl", "articles_heldout.jsonl")
    texts = [json.loads(line)["text"] for name in names for line in (examples / name).open()]
    return [pair for text in texts for _, _, pair in predictor._plan(DocumentInput(text)).pairs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alphas", default="none,0.3,0.5,0.7")
    parser.add_argument("--kernel", choices=INT8_KERNELS, default=int8_kernel())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "int8_variants.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fp32 = StancePredictor.load(default_model_path())
    dev = load_file(NEWSMTSC / "devtest_mt.jsonl").stance
    sets = {"our_articles": article_pairs(fp32), "devtest_mt": [e.pair for e in dev], "train_sample": sample_pairs(2000, 0)}
    reference = {name: fp32.stance_probabilities(pairs).argmax(-1) for name, pairs in sets.items()}
    labels = fp32.config.stance_labels
    gold = [labels.index(e.label) for e in dev]

    def f1(predicted: torch.Tensor) -> float:
        return round(classification_report(gold, predicted.tolist(), labels)["macro_f1"], 4)

    variants = []
    for alpha in args.alphas.split(","):
        predictor = StancePredictor.load(default_model_path())
        quantize_encoder(predictor.network.encoder, None if alpha == "none" else float(alpha), args.kernel)
        predicted = {name: predictor.stance_probabilities(pairs).argmax(-1) for name, pairs in sets.items()}
        variants.append(
            {
                "smoothing_alpha": alpha,
                "agreement_with_fp32": {
                    name: round((predicted[name] == reference[name]).float().mean().item(), 4) for name in sets
                },
                "pairs_moved": sum(int((predicted[name] != reference[name]).sum()) for name in sets),
                "devtest_mt_macro_f1": f1(predicted["devtest_mt"]),
            }
        )
        print(json.dumps(variants[-1]), flush=True)
    out = {
        "pairs": {name: len(pairs) for name, pairs in sets.items()},
        "fp32_devtest_mt_macro_f1": f1(reference["devtest_mt"]),
        "shipped_alpha": ALPHA,
        "kernel": args.kernel,
        "model_version": fp32.config.version,
        "variants": variants,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
