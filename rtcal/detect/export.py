"""ONNX export of the detector at a fixed tile size, checked against eager PyTorch.

``export_onnx`` traces ``DetectorNet.export_forward`` at (1, C, h, w) with
``torch.onnx.export``: h and w are fixed (the Swin padding and attention masks
depend on the map size through Python values, which become constants of the
graph), the batch axis is dynamic. Inputs "x" float32 (B, C, h, w); outputs
"logits" (B, Q), "masks" (B, Q, h/4, w/4). The TorchScript-based exporter is the
default: on this model it takes about 1 s against about 12 s for the dynamo
exporter, with the same outputs within float rounding; ``exporter="dynamo"``
selects the other.

``parity(runtime, model)`` runs a runtime and eager PyTorch on the same random
batch and reports the largest absolute differences; ``Parity.check`` raises
when they exceed ``atol + rtol * max |eager output|``. Stated tolerances:
float32 runtimes (ONNX Runtime) 1e-4 + 1e-4 relative (two libraries summing in
a different order; measured about 1e-6); fp16 runtimes (TensorRT, compiled)
are compared with looser bounds (see ``FP16_TOLERANCE``).
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rtcal.detect.model import DetectorExport, DetectorNet
from rtcal.errors import RtcalError

OPSET = 17
FP32_TOLERANCE = (1e-4, 1e-4)  # (atol, rtol)
FP16_TOLERANCE = (5e-2, 2e-2)


class ExportError(RtcalError):
    """The export failed or its outputs differ from eager PyTorch; the message says how."""


def export_onnx(model: DetectorNet, path: str | Path, tile_shape: tuple[int, int], *,
                exporter: str = "torchscript") -> Path:
    """Write the ONNX export of ``model`` at ``tile_shape`` (h, w) to ``path`` (atomically)."""
    if exporter not in ("torchscript", "dynamo"):
        raise ExportError(f"exporter must be 'torchscript' or 'dynamo', got {exporter!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = (int(s) for s in tile_shape)
    device = next(model.parameters()).device
    x = torch.zeros(1, model.config.in_channels, h, w, device=device)
    model.eval()
    model.check_input(x)
    partial = path.with_suffix(f".{os.getpid()}.part")
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=1024)
        kwargs = {"dynamo": True, "dynamic_shapes": {"x": {0: batch}}}
    else:
        kwargs = {"dynamo": False, "dynamic_axes": {n: {0: "batch"}
                                                    for n in ("x", "logits", "masks")}}
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # tracer warnings about the (constant) shape checks
        torch.onnx.export(DetectorExport(model), (x,), str(partial), input_names=["x"],
                          output_names=["logits", "masks"], opset_version=OPSET, **kwargs)
    partial.replace(path)
    return path


@dataclass(frozen=True)
class Parity:
    """Largest |runtime - eager| of the logits and mask logits on one batch, and the
    largest |eager| of each (the scale the relative tolerance applies to)."""

    runtime: str
    max_abs_logits: float
    max_abs_masks: float
    scale_logits: float
    scale_masks: float

    def within(self, atol: float, rtol: float) -> bool:
        return (self.max_abs_logits <= atol + rtol * self.scale_logits
                and self.max_abs_masks <= atol + rtol * self.scale_masks)

    def check(self, atol: float, rtol: float) -> None:
        if not self.within(atol, rtol):
            raise ExportError(f"{self.runtime} differs from eager PyTorch: {self.describe()} "
                              f"(allowed {atol:g} + {rtol:g} x max |eager|)")

    def describe(self) -> str:
        return (f"max abs diff logits {self.max_abs_logits:.2e} (of {self.scale_logits:.2f}), "
                f"mask logits {self.max_abs_masks:.2e} (of {self.scale_masks:.2f})")


def parity(runtime, model: DetectorNet, *, batch: int = 2, tile_shape: tuple[int, int] | None
           = None, seed: int = 0) -> Parity:
    """Compare ``runtime.infer`` with eager ``model.export_forward`` (float32, CPU) on a
    random batch in the detector's input range."""
    shape = runtime.tile_shape or tile_shape
    if shape is None:
        raise ExportError("parity: the runtime takes any tile shape; pass tile_shape")
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(0.0, 0.3, (batch, model.config.in_channels, *shape)), -1, 3)
    x = x.astype(np.float32)
    logits, masks = runtime.infer(x)
    reference = copy.deepcopy(model).to("cpu").eval()  # the runtime may share `model`
    with torch.inference_mode():
        ref_logits, ref_masks = (t.numpy() for t in reference.export_forward(torch.from_numpy(x)))
    return Parity(runtime.name, float(np.abs(logits - ref_logits).max()),
                  float(np.abs(masks - ref_masks).max()), float(np.abs(ref_logits).max()),
                  float(np.abs(ref_masks).max()))
