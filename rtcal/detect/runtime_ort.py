"""ONNX Runtime backend of the detector (``rtcal.detect.runtime``).

Runs the ONNX export of ``DetectorNet.export_forward`` (``rtcal.detect.export``):
input "x" float32 (B, C, h, w) with h, w fixed at export and B free; outputs
"logits" (B, Q) and "masks" (B, Q, h/4, w/4). CPU execution provider, or CUDA's
when onnxruntime-gpu provides it. Parity with eager PyTorch is checked at export
and in tests/test_detect_runtime_onnx.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rtcal.detect.model import INPUT_MULTIPLE
from rtcal.detect.runtime import (
    RuntimeUnavailableError,
    availability,
    check_batch,
    in_batches,
)


class OnnxRuntime:
    """An onnxruntime InferenceSession on one exported tile shape.

    threads: intra-op threads on the CPU (None: onnxruntime's default, every core).
    """

    def __init__(self, onnx_path: str | Path, device: str = "cpu", *, max_batch: int = 8,
                 threads: int | None = None) -> None:
        reason = availability("onnx", device)
        if reason:
            raise RuntimeUnavailableError(f"onnx on {device}: {reason}")
        import onnxruntime as ort

        on_cuda = torch.device(device).type == "cuda"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if on_cuda else [
            "CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        path = Path(onnx_path)
        if not path.is_file():
            raise RuntimeUnavailableError(f"onnx: no ONNX file at {path}")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        if on_cuda and "CUDAExecutionProvider" not in self.session.get_providers():
            raise RuntimeUnavailableError("onnx on cuda: the CUDA execution provider did not "
                                          "load (check the CUDA / cuDNN libraries)")
        shape = self.session.get_inputs()[0].shape  # [batch, C, h, w]
        if len(shape) != 4 or not all(isinstance(s, int) for s in shape[1:]):
            raise RuntimeUnavailableError(f"onnx: {path} has input shape {shape}; expected "
                                          "(batch, C, h, w) with fixed C, h, w")
        self.name = "onnxruntime-" + ("cuda" if on_cuda else "cpu")
        self.in_channels = int(shape[1])
        self.tile_shape = (int(shape[2]), int(shape[3]))
        self.min_side = INPUT_MULTIPLE  # the export itself fixed the tile shape
        self.max_batch = max_batch
        self.path = path

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, masks = self.session.run(["logits", "masks"], {"x": x})
        return logits.astype(np.float32, copy=False), masks.astype(np.float32, copy=False)

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return in_batches(self._run, check_batch(self, x), self.max_batch)
