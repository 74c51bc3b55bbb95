"""Inference engines for a locked tower: compute its fixed function once per input, fast.

A locked tower never changes, so what runs it is free to choose: torch (always available), OpenVINO
or ONNX Runtime (``pip install openvino`` / ``onnxruntime``). Measured on this project's 2-core AVX2
machine, EfficientNet-Lite0 runs about 3.8x faster under OpenVINO than under torch (channels-last
fp32), and MiniLM about 2-3x (docs/benchmarks.md, benchmarks/bench_ttq.py).

    run = image_engine(tower, "openvino")      # uint8 pixels (B, 3, H, W) -> features (B, D) float32
    run = text_engine(tower, "openvino")       # token ids, mask (B, T)   -> pooled features (B, D)

Every engine computes the same fp32 function; normalisation is folded into the image graph so the
decode workers hand over 8-bit pixels. What training reads (a cache an engine filled) must be what
inference computes (torch: zero-shot prompts, classify, the web app), so engines other than torch are
checked against torch on their first inputs, row by row: the relative deviation
``|engine - torch| / |torch|`` (L2 over the feature) must stay within ``MAX_REL_DEVIATION`` = 2.5e-5,
a tenth of what float16 storage of the features changes anyway. Measured on this project's towers
(busy 2-core machine; EfficientNet-Lite0 on 40 flowers photos, MiniLM on 64 Flickr8k captions):
OpenVINO deviates by at most 2.6e-6 (image) and 1.1e-6 (text), ONNX Runtime by 2.0e-6 and 9.5e-7,
while rounding to float16 moves the same rows by 2.1e-4 (median) to 2.6e-4 (max). A larger deviation
fails the embed with ``EngineMismatch`` naming the largest one, so a faulty conversion never fills a
cache; within it, caches made by different engines are interchangeable (the manifest records which
one ran).

A text tower may be asked to fill its caches in bfloat16 (``model.text.cache_precision: bf16``, or
``auto``: bf16 where the CPU runs it natively, AMX or AVX512-BF16). That is another function, not a
faster engine for the same one: the text cache records the precision in its identity, so fp32 and
bf16 caches never mix, and the self-check holds bf16 engines to ``MAX_REL_DEVIATION_BF16`` from torch
fp32 instead. Measured here (AMX, 2 cores, 3,000 Flickr8k captions, OpenVINO): MPNet 84 -> 324
captions/s, deviating from fp32 by 5.6e-3 (mean) and 2.2e-2 (max); MiniLM 448 -> 905, 5.1e-3 and
7.6e-3. An image tower may fill its caches in bf16 too (``model.image.cache_precision``): Lite0 +
Lite2 embed 1.9x faster and move by 3.5e-2 on average (8.4e-2 worst of 256 flowers photos for Lite0),
which the bf16 tolerance admits; a model trained on them scores as one trained on fp32 features, on
either (docs/studies.md, the MPNet study).
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections import OrderedDict
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..registry import Registry

ENGINES: Registry[Callable] = Registry("engine")
MAX_REL_DEVIATION = 2.5e-5  # per row, relative L2; float16 storage rounding is ~2e-4 (module docstring)
# bf16 keeps 8 significant bits (rounding 2^-9 = 2e-3 per operation); through a deep network the measured
# worst rows are 2.2e-2 (MPNet) and 8.4e-2 (EfficientNet-Lite0; module docstring). A faulty conversion lands
# at O(1).
MAX_REL_DEVIATION_BF16 = 0.15
# precision -> (the self-check's limit, why that limit), for the error message
TOLERANCES = {"fp32": (MAX_REL_DEVIATION, "a tenth of float16 storage rounding"),
              "bf16": (MAX_REL_DEVIATION_BF16, "what bf16 rounding moves")}
PRECISIONS = tuple(TOLERANCES)
CHECK_ROWS = 8  # rows of the first batch run through torch too
INSTALL = {"openvino": "pip install openvino", "onnx": "pip install onnxruntime onnx"}


class EngineMismatch(RuntimeError):
    pass


class EngineUnavailable(ValueError):
    pass


def available(name: str) -> bool:
    module = {"openvino": "openvino", "onnx": "onnxruntime"}.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def resolve_engine(name: str) -> str:
    """'auto': OpenVINO where installed (the fastest measured here), else torch. A named engine that
    is not installed is an error with the install hint; torch always works."""
    if name == "auto":
        return "openvino" if available("openvino") else "torch"
    ENGINES.resolve(name)  # unknown names: "Did you mean ...?"
    if not available(name):
        raise EngineUnavailable(f"engine '{name}' is not installed here: {INSTALL[name]} (or use --engine torch)")
    return name


class _Pixels(nn.Module):
    """uint8 pixels -> the tower's features, with the tower's normalisation folded in."""

    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) or (B, N) packed uint8 -> (B, D)
        # The preprocessing's own arithmetic: under torch, bit-identical to tower(transform(image)).
        return self.tower.features(self.tower.preprocess.normalize(pixels))


class _Pooled(nn.Module):
    """(ids, mask) -> the text tower's pooled features (the text cache's rows)."""

    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T) x2 -> (B, D)
        return self.tower.features(ids, mask)


# ---- engines: each takes (module, example inputs, threads, precision) and returns f(*numpy inputs) -> numpy
@ENGINES.register("torch", description="PyTorch eager, fp32 or bf16 autocast (channels-last for convolutions)")
def _torch(module: nn.Module, example: tuple, threads: int | None, precision: str = "fp32") -> Callable:
    module.eval()

    @torch.inference_mode()
    def run(*inputs: np.ndarray) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return module(*(torch.from_numpy(x) for x in inputs)).float().numpy()

    return run


@contextlib.contextmanager
def _quiet_conversion() -> Iterator[None]:
    """Tracing probes every attribute of the module, and torch and transformers then warn about
    things no user did (transformers: "`loss_type=None` was set in the config but it is
    unrecognized"). Silence both for the conversion only; the self-check judges the result."""
    library = logging.getLogger("transformers")
    level = library.level
    library.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        library.setLevel(level)


@ENGINES.register("openvino", description="OpenVINO runtime, fp32 or bf16 (pip install openvino)")
def _openvino(module: nn.Module, example: tuple, threads: int | None, precision: str = "fp32") -> Callable:
    import openvino as ov

    # pixels: the batch varies ((B, 3, H, W), or (B, N) packed: towers/composite.py); tokens: batch and length
    dynamic = [ov.PartialShape([-1] + list(x.shape[1:])) if x.dtype == torch.uint8 else ov.PartialShape([-1, -1])
               for x in example]
    types = [ov.Type.u8 if x.dtype == torch.uint8 else ov.Type.i64 for x in example]
    with _quiet_conversion():
        model = ov.convert_model(module.eval(), example_input=example,
                                 input=list(zip(dynamic, types)))
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision]}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(model, "CPU", config)
    return lambda *inputs: np.asarray(compiled(inputs)[0], dtype=np.float32)


@ENGINES.register("onnx", description="ONNX Runtime, fp32 (pip install onnxruntime onnx)")
def _onnx(module: nn.Module, example: tuple, threads: int | None, precision: str = "fp32") -> Callable:
    import io

    if precision != "fp32":
        raise EngineUnavailable(f"engine 'onnx' runs fp32 only, not {precision}: use --engine openvino or torch")

    import onnxruntime as ort

    names = [f"input{i}" for i in range(len(example))]
    axes = {n: ({0: "batch"} if x.dtype == torch.uint8 else {0: "batch", 1: "tokens"}) for n, x in zip(names, example)}
    buf = io.BytesIO()
    with _quiet_conversion():
        torch.onnx.export(module.eval(), example, buf, input_names=names, output_names=["features"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    return lambda *inputs: session.run(None, dict(zip(names, inputs)))[0].astype(np.float32)


# Converting a tower costs seconds (OpenVINO: ~10-20 s for Lite0 or MiniLM on 2 cores), and one process
# often runs the same locked tower over several data sets (the demo: five image caches, three text
# caches), each time from a freshly built tower object. Compiled engines are kept per process, keyed by
# what fixes the function: the factory, the wrapper, the tower's name, pooling and preprocessing, its
# weights' fingerprint, the inputs' dtypes and ranks, and the threads. Each new Engine still checks
# itself against its own module's torch forward on its first inputs.
_COMPILED: "OrderedDict[tuple, Callable]" = OrderedDict()
_COMPILED_MAX = 4


def _compiled(name: str, module: nn.Module, example: tuple, threads: int | None, precision: str) -> Callable:
    from .lock import fingerprint

    factory = ENGINES.resolve(name)[0].factory
    if name == "torch":  # runs the module itself: nothing to share
        return factory(module, example, threads, precision=precision)
    tower = getattr(module, "tower", module)
    key = (factory, type(module).__name__, type(tower).__name__, getattr(tower, "name", None),
           getattr(tower, "pooling", None), repr(getattr(tower, "preprocess", None)), fingerprint(module),
           tuple((x.dtype, x.dim(), tuple(x.shape[1:]) if x.dtype == torch.uint8 else ()) for x in example), threads,
           precision)
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    run = _COMPILED[key] = factory(module, example, threads, precision=precision)
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return run


def check_deviation(name: str, ref: np.ndarray, got: np.ndarray, precision: str = "fp32") -> float:
    """(n, D) torch fp32 features ``ref`` and an engine's ``got`` (computed in ``precision``): the largest
    per-row relative deviation, or ``EngineMismatch`` naming it (row, deviation, largest element
    difference) beyond that precision's limit (``TOLERANCES``)."""
    limit, why = TOLERANCES[precision]
    rel = np.linalg.norm(got - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-12)  # (n,)
    worst = int(np.argmax(rel)) if len(rel) else 0
    if len(rel) and not (rel[worst] <= limit):  # NaN fails too
        raise EngineMismatch(f"engine '{name}' disagrees with torch on this tower: row {worst} deviates by "
                             f"{rel[worst]:.2e} (relative L2; largest element difference "
                             f"{np.abs(got[worst] - ref[worst]).max():.2e}) > {limit:.1e}, the stated tolerance "
                             f"({why}); use --engine torch")
    return float(rel[worst]) if len(rel) else 0.0


def resolve_cache_precision(precision: str, lock: str = "L") -> str:
    """What a tower with ``lock`` fills its caches in: 'auto' is bf16 where this CPU runs it natively
    (AMX or AVX512-BF16), else fp32; a tower that trains (lock other than L) fills none: fp32."""
    from ..distributed import resolve_precision

    if precision not in PRECISIONS + ("auto",):
        raise ValueError(f"cache precision '{precision}': expected one of fp32, bf16, auto")
    return resolve_precision(precision, torch.device("cpu")) if lock == "L" else "fp32"


class Engine:
    """A compiled tower: ``engine(*numpy inputs) -> (B, D) float32``, self-checked against torch fp32
    (within ``MAX_REL_DEVIATION``, or ``MAX_REL_DEVIATION_BF16`` for a bf16 engine)."""

    def __init__(self, name: str, module: nn.Module, example: tuple, threads: int | None = None,
                 precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"engine precision '{precision}': expected one of {', '.join(PRECISIONS)}")
        self.name, self.module, self.precision = name, module, precision
        self._run = _compiled(name, module, example, threads, precision)
        self._checked = name == "torch" and precision == "fp32"

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        out = self._run(*inputs)
        if not self._checked:  # the first inputs (a few rows) through torch too
            n = min(CHECK_ROWS, len(out))
            with torch.inference_mode():
                ref = self.module(*(torch.from_numpy(x[:n]) for x in inputs)).float().numpy()
            check_deviation(self.name, ref, out[:n], self.precision)
            self._checked = True
        return out


def image_engine(tower, name: str = "auto", threads: int | None = None) -> Engine:
    """Engine for a locked image tower: uint8 (B, 3, S, S) (or (B, N) packed views) -> (B, D) features, in
    the tower's ``cache_precision``."""
    shape = tower.preprocess.pixel_shape
    return Engine(resolve_engine(name), _Pixels(tower).eval(), (torch.zeros(2, *shape, dtype=torch.uint8),), threads,
                  precision=getattr(tower, "cache_precision", "fp32"))


def text_engine(tower, name: str = "auto", threads: int | None = None) -> Engine:
    """Engine for a locked text tower: (ids (B, T), mask (B, T)) int64 -> (B, D) pooled features, in the
    tower's ``cache_precision`` (fp32 unless its config asks for bf16)."""
    example = tower.tokenizer(["a photo of a dog on the grass", "two people"])
    return Engine(resolve_engine(name), _Pooled(tower).eval(),
                  (example["input_ids"].long(), example["attention_mask"].long()), threads,
                  precision=getattr(tower, "cache_precision", "fp32"))
