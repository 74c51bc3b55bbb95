"""Inference engines for a locked tower: compute its fixed function once per input, fast.

A locked tower never changes, so what runs it is free to choose: torch (always available), OpenVINO
or ONNX Runtime (``pip install openvino`` / ``onnxruntime``). Measured on this project's 2-core AVX2
machine, EfficientNet-Lite0 runs about 3.8x faster under OpenVINO than under torch (channels-last
fp32), and MiniLM about 2-3x (docs/benchmarks.md, benchmarks/bench_ttq.py).

    run = image_engine(tower, "openvino")      # uint8 pixels (B, 3, H, W) -> features (B, D) float32
    run = text_engine(tower, "openvino")       # token ids, mask (B, T)   -> pooled features (B, D)

Every engine computes the same fp32 function; normalisation is folded into the image graph so the
decode workers hand over 8-bit pixels. Engines other than torch are checked against torch on their
first inputs (cosine >= 0.999 for every row, else ``EngineMismatch``), so a faulty conversion can
never fill a cache silently. Because they agree to that tolerance (far inside the float16 storage
rounding), caches made by different engines are interchangeable; the manifest records which one ran.
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
MIN_COSINE = 0.999
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

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) uint8 -> (B, D)
        # The preprocessing's own arithmetic: under torch, bit-identical to tower(transform(image)).
        return self.tower.features(self.tower.preprocess.normalize(pixels))


class _Pooled(nn.Module):
    """(ids, mask) -> the text tower's pooled features (the text cache's rows)."""

    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T) x2 -> (B, D)
        return self.tower.features(ids, mask)


# ---- engines: each takes (module, example inputs, threads) and returns f(*numpy inputs) -> numpy ---
@ENGINES.register("torch", description="PyTorch eager, fp32 (channels-last for convolutions)")
def _torch(module: nn.Module, example: tuple, threads: int | None) -> Callable:
    module.eval()

    @torch.inference_mode()
    def run(*inputs: np.ndarray) -> np.ndarray:
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


@ENGINES.register("openvino", description="OpenVINO runtime, fp32 (pip install openvino)")
def _openvino(module: nn.Module, example: tuple, threads: int | None) -> Callable:
    import openvino as ov

    dynamic = [ov.PartialShape([-1] + list(x.shape[1:])) if x.dim() == 4 else ov.PartialShape([-1, -1])
               for x in example]
    types = [ov.Type.u8 if x.dtype == torch.uint8 else ov.Type.i64 for x in example]
    with _quiet_conversion():
        model = ov.convert_model(module.eval(), example_input=example,
                                 input=list(zip(dynamic, types)))
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(model, "CPU", config)
    return lambda *inputs: np.asarray(compiled(inputs)[0], dtype=np.float32)


@ENGINES.register("onnx", description="ONNX Runtime, fp32 (pip install onnxruntime onnx)")
def _onnx(module: nn.Module, example: tuple, threads: int | None) -> Callable:
    import io

    import onnxruntime as ort

    names = [f"input{i}" for i in range(len(example))]
    axes = {n: ({0: "batch"} if x.dim() == 4 else {0: "batch", 1: "tokens"}) for n, x in zip(names, example)}
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


def _compiled(name: str, module: nn.Module, example: tuple, threads: int | None) -> Callable:
    from .lock import fingerprint

    factory = ENGINES.resolve(name)[0].factory
    if name == "torch":  # runs the module itself: nothing to share
        return factory(module, example, threads)
    tower = getattr(module, "tower", module)
    key = (factory, type(module).__name__, type(tower).__name__, getattr(tower, "name", None),
           getattr(tower, "pooling", None), repr(getattr(tower, "preprocess", None)), fingerprint(module),
           tuple((x.dtype, x.dim(), tuple(x.shape[1:]) if x.dim() == 4 else ()) for x in example), threads)
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    run = _COMPILED[key] = factory(module, example, threads)
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return run


class Engine:
    """A compiled tower: ``engine(*numpy inputs) -> (B, D) float32``, self-checked against torch."""

    def __init__(self, name: str, module: nn.Module, example: tuple, threads: int | None = None):
        self.name, self.module = name, module
        self._run = _compiled(name, module, example, threads)
        self._checked = name == "torch"

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        out = self._run(*inputs)
        if not self._checked:  # the first inputs (a few rows) through torch too
            n = min(4, len(out))
            with torch.inference_mode():
                ref = self.module(*(torch.from_numpy(x[:n]) for x in inputs)).float().numpy()
            cos = (ref * out[:n]).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out[:n], axis=1) + 1e-12)
            if not (cos >= MIN_COSINE).all():
                raise EngineMismatch(f"engine '{self.name}' disagrees with torch on this tower (cosine "
                                     f"{cos.min():.5f} < {MIN_COSINE}); use --engine torch")
            self._checked = True
        return out


def image_engine(tower, name: str = "auto", threads: int | None = None) -> Engine:
    """Engine for a locked image tower: uint8 (B, 3, S, S) -> (B, D) features."""
    s = tower.preprocess.input_size
    return Engine(resolve_engine(name), _Pixels(tower).eval(), (torch.zeros(2, 3, s, s, dtype=torch.uint8),), threads)


def text_engine(tower, name: str = "auto", threads: int | None = None) -> Engine:
    """Engine for a locked text tower: (ids (B, T), mask (B, T)) int64 -> (B, D) pooled features."""
    example = tower.tokenizer(["a photo of a dog on the grass", "two people"])
    return Engine(resolve_engine(name), _Pooled(tower).eval(),
                  (example["input_ids"].long(), example["attention_mask"].long()), threads)
