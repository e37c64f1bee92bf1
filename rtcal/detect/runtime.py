"""Runtimes of the detector network: one interface, several backends, one chooser.

Every runtime maps a batch of tiles to the network's last-layer outputs,

    infer(x float32 (B, C, h, w)) -> (logits float32 (B, Q), mask logits float32 (B, Q, h/4, w/4))

as ``DetectorNet.export_forward`` does, and says what it accepts: ``in_channels``,
``tile_shape`` (a fixed (h, w), or None for any multiple of 32 that is at least
``min_side`` px) and ``max_batch`` (larger batches are split).

Backends, best first on each device:

- ``tensorrt`` (CUDA): a TensorRT engine built from the ONNX export, fp16,
  cached on disk (``rtcal.detect.runtime_trt``);
- ``compile`` (CUDA): ``torch.compile`` of the network at a fixed tile shape,
  fp16 autocast. AOTInductor is not used: it would only save the compile time at
  start-up (the kernels are the same Inductor kernels), and the engine compiles
  once per process, off the frame loop;
- ``onnx``: ONNX Runtime on the ONNX export, CPU or CUDA execution provider
  (``rtcal.detect.runtime_ort``);
- ``eager``: plain PyTorch, CPU or CUDA; the reference the others are tested against.

``select_runtime(model, device, prefer)`` builds the best available one, or the
one named, and reports what it picked and why the others were skipped. Naming a
runtime that cannot run here raises ``RuntimeUnavailableError`` with the reason.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from rtcal.detect.model import INPUT_MULTIPLE, DetectorExport, DetectorNet
from rtcal.errors import RtcalError

RUNTIME_NAMES = ("tensorrt", "compile", "onnx", "eager")
DEFAULT_TILE = (256, 256)


class RuntimeUnavailableError(RtcalError):
    """A named runtime cannot run on this machine; the message says why."""


class RuntimeInputError(RtcalError, ValueError):
    """A batch does not fit the runtime (shape, channels, tile size)."""


class DetectorRuntime(Protocol):
    """What every backend offers (see the module docstring)."""

    name: str
    in_channels: int
    tile_shape: tuple[int, int] | None
    min_side: int
    max_batch: int

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def min_side(model: DetectorNet) -> int:
    """Smallest square input side (multiple of 32) with a 1/4 pixel per heatmap query."""
    side = 4 * math.ceil(math.sqrt(model.config.n_heatmap_queries))
    return max(INPUT_MULTIPLE, -(-side // INPUT_MULTIPLE) * INPUT_MULTIPLE)


def check_batch(runtime: DetectorRuntime, x: np.ndarray) -> np.ndarray:
    """x as a C-contiguous float32 (B, C, h, w) that ``runtime`` accepts, else
    RuntimeInputError naming the mismatch."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != runtime.in_channels or x.dtype.kind != "f":
        raise RuntimeInputError(f"{runtime.name}: input must be float (B, {runtime.in_channels}, "
                                f"h, w), got {x.dtype} {x.shape}")
    h, w = x.shape[2:]
    if runtime.tile_shape is not None and (h, w) != tuple(runtime.tile_shape):
        raise RuntimeInputError(f"{runtime.name}: built for {runtime.tile_shape[0]} x "
                                f"{runtime.tile_shape[1]} tiles, got {h} x {w}")
    if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE or min(h, w) < runtime.min_side:
        raise RuntimeInputError(f"{runtime.name}: tile {h} x {w} must be multiples of "
                                f"{INPUT_MULTIPLE} and at least {runtime.min_side} px")
    return np.ascontiguousarray(x, np.float32)


def in_batches(run, x: np.ndarray, max_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``run(chunk) -> (logits, masks)`` over chunks of at most max_batch."""
    parts = [run(x[i : i + max_batch]) for i in range(0, len(x), max_batch)]
    if not parts:
        raise RuntimeInputError("empty batch")
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


class EagerRuntime:
    """Plain PyTorch on ``device`` (CPU or CUDA); fp16 autocast on CUDA if asked."""

    def __init__(self, model: DetectorNet, device: str = "cpu", *, fp16: bool = False,
                 max_batch: int = 8) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeUnavailableError("eager on CUDA: CUDA is not available in this "
                                          "torch build or machine")
        if fp16 and self.device.type != "cuda":
            raise RuntimeUnavailableError("eager fp16 runs on CUDA only")
        self.model = model.to(self.device).eval()
        self.fp16 = fp16
        self.name = f"eager-{self.device.type}" + ("-fp16" if fp16 else "")
        self.in_channels = model.config.in_channels
        self.tile_shape = None
        self.min_side = min_side(model)
        self.max_batch = max_batch

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode(), torch.autocast(self.device.type, torch.float16,
                                                    enabled=self.fp16):
            logits, masks = self.model.export_forward(torch.from_numpy(x).to(self.device))
        return logits.float().cpu().numpy(), masks.float().cpu().numpy()

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return in_batches(self._run, check_batch(self, x), self.max_batch)


class CompiledRuntime:
    """``torch.compile`` of the network on CUDA at one tile shape, fp16 autocast.

    Batches are padded up to ``max_batch`` so that one compiled graph serves every
    call (a new shape would recompile). Compiles on construction (a warm-up call).
    mode "reduce-overhead" replays the whole forward as CUDA graphs (the network is
    many small kernels; launch overhead dominates at batch 8); the outputs are
    copied to the host at once, before a replay could overwrite them.
    """

    def __init__(self, model: DetectorNet, device: str = "cuda", *,
                 tile_shape: tuple[int, int] = DEFAULT_TILE, fp16: bool = True,
                 max_batch: int = 8, mode: str = "reduce-overhead") -> None:
        reason = availability("compile", device)
        if reason:
            raise RuntimeUnavailableError(f"compile: {reason}")
        self.device = torch.device(device)
        self.fp16 = fp16
        self.name = "compile-cuda" + ("-fp16" if fp16 else "")
        self.in_channels = model.config.in_channels
        self.tile_shape = (int(tile_shape[0]), int(tile_shape[1]))
        self.min_side = min_side(model)
        self.max_batch = max_batch
        module = DetectorExport(model.to(self.device).eval())
        warm = torch.zeros(max_batch, self.in_channels, *self.tile_shape, device=self.device)
        with torch.inference_mode():
            module(warm)  # eager first: fills the Swin attention-mask caches
        self.compiled = torch.compile(module, mode=mode, dynamic=False, fullgraph=False)
        self._run(np.zeros((1, self.in_channels, *self.tile_shape), np.float32))

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(x)
        batch = torch.zeros(self.max_batch, *x.shape[1:], device=self.device)
        batch[:n] = torch.from_numpy(x).to(self.device)
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=self.fp16):
            logits, masks = self.compiled(batch)
        return logits[:n].float().cpu().numpy(), masks[:n].float().cpu().numpy()

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return in_batches(self._run, check_batch(self, x), self.max_batch)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def availability(name: str, device: str) -> str | None:
    """None if runtime ``name`` can run on ``device`` here, else the reason it cannot."""
    if name not in RUNTIME_NAMES:
        return f"unknown runtime {name!r}; known: {', '.join(RUNTIME_NAMES)}"
    on_cuda = torch.device(device).type == "cuda"
    if torch.device(device).type not in ("cpu", "cuda"):
        return f"device {device!r}: only cpu and cuda are supported"
    if on_cuda and not torch.cuda.is_available():
        return "CUDA is not available in this torch build or machine"
    if name == "eager":
        return None
    if name in ("compile", "tensorrt") and not on_cuda:
        return "runs on CUDA only (device is cpu)"
    if name == "compile":
        return None if _has("triton") else "torch.compile on CUDA needs triton, not installed"
    if not _has("onnx"):
        return "the ONNX exporter needs the onnx package (pip install 'rtcal[onnx]')"
    if name == "onnx":
        if not _has("onnxruntime"):
            return "onnxruntime is not installed (pip install 'rtcal[onnx]')"
        if on_cuda:
            import onnxruntime

            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                return ("onnxruntime has no CUDAExecutionProvider here (install "
                        "onnxruntime-gpu)")
        return None
    if not _has("tensorrt"):
        return "tensorrt is not installed (pip install 'rtcal[tensorrt]')"
    return None


def model_hash(model: DetectorNet) -> str:
    """SHA-256 (hex) of the architecture and every weight: the cache key of exports."""
    h = hashlib.sha256(json.dumps(asdict(model.config), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """Where exports are cached: $RTCAL_CACHE_DIR/detector, else ~/.cache/rtcal/detector."""
    root = os.environ.get("RTCAL_CACHE_DIR") or Path.home() / ".cache" / "rtcal"
    return Path(root) / "detector"


def cached_onnx(model: DetectorNet, tile_shape: tuple[int, int], cache_dir: Path) -> Path:
    """The ONNX export of ``model`` at ``tile_shape`` in ``cache_dir``, exported if absent."""
    from rtcal.detect.export import export_onnx

    h, w = tile_shape
    path = Path(cache_dir) / f"detector-{model_hash(model)[:16]}-{h}x{w}.onnx"
    if not path.is_file():
        export_onnx(model, path, (h, w))
    return path


@dataclass(frozen=True)
class RuntimeChoice:
    """runtime: the one built; skipped: (name, why) of the better ones passed over."""

    runtime: DetectorRuntime
    skipped: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        r = self.runtime
        tile = "any tile" if r.tile_shape is None else f"{r.tile_shape[0]}x{r.tile_shape[1]} tiles"
        text = f"runtime {r.name} ({tile}, batch <= {r.max_batch})"
        if self.skipped:
            text += "; skipped " + "; ".join(f"{n}: {why}" for n, why in self.skipped)
        return text


def build_runtime(name: str, model: DetectorNet, device: str = "cpu", *,
                  tile_shape: tuple[int, int] = DEFAULT_TILE, max_batch: int = 8,
                  cache_dir: str | Path | None = None, threads: int | None = None
                  ) -> DetectorRuntime:
    """Runtime ``name`` for ``model`` on ``device``; RuntimeUnavailableError if it cannot run."""
    reason = availability(name, device)
    if reason:
        raise RuntimeUnavailableError(f"runtime {name!r} on {device}: {reason}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name == "eager":
        return EagerRuntime(model, device, max_batch=max_batch)
    if name == "compile":
        return CompiledRuntime(model, device, tile_shape=tile_shape, max_batch=max_batch)
    onnx_path = cached_onnx(model, tile_shape, cache)
    if name == "onnx":
        from rtcal.detect.runtime_ort import OnnxRuntime

        return OnnxRuntime(onnx_path, device, max_batch=max_batch, threads=threads)
    from rtcal.detect.runtime_trt import TensorRTRuntime

    return TensorRTRuntime(onnx_path, cache, max_batch=max_batch, device=device)


def preference_order(device: str) -> tuple[str, ...]:
    """Runtimes to try on ``device``, best first (CPU: ONNX Runtime beats eager PyTorch
    on small batches; CUDA: TensorRT fp16, then compiled, ONNX Runtime, eager)."""
    if torch.device(device).type == "cuda":
        return RUNTIME_NAMES
    return ("onnx", "eager")


def select_runtime(model: DetectorNet, device: str = "cpu", prefer: str | None = None, *,
                   tile_shape: tuple[int, int] = DEFAULT_TILE, max_batch: int = 8,
                   cache_dir: str | Path | None = None, threads: int | None = None
                   ) -> RuntimeChoice:
    """The runtime named by ``prefer`` (None or "auto": the best that builds here).

    A named runtime that cannot run raises RuntimeUnavailableError with the reason;
    under "auto" such runtimes, and those whose build fails with an RtcalError, are
    skipped and listed in the choice.
    """
    if prefer not in (None, "auto"):
        return RuntimeChoice(build_runtime(prefer, model, device, tile_shape=tile_shape,
                                           max_batch=max_batch, cache_dir=cache_dir,
                                           threads=threads), ())
    skipped: list[tuple[str, str]] = []
    for name in preference_order(device):
        reason = availability(name, device)
        if reason:
            skipped.append((name, reason))
            continue
        try:
            runtime = build_runtime(name, model, device, tile_shape=tile_shape,
                                    max_batch=max_batch, cache_dir=cache_dir, threads=threads)
        except RtcalError as err:
            skipped.append((name, f"build failed: {err}"))
            continue
        return RuntimeChoice(runtime, tuple(skipped))
    raise RuntimeUnavailableError("no detector runtime can run here: "
                                  + "; ".join(f"{n}: {why}" for n, why in skipped))
