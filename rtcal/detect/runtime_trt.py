"""TensorRT backend of the detector (``rtcal.detect.runtime``), TensorRT 10 API.

The engine is built from the ONNX export (input "x" (B, C, h, w), B dynamic;
outputs "logits", "masks"): builder, network from the ONNX parser, one
optimisation profile for batches 1..max_batch, the FP16 builder flag (weakly
typed fp16: TensorRT picks fp16 kernels where they are faster; I/O stays fp32),
serialised, cached, deserialised, and run with ``execute_async_v3`` on torch
CUDA tensors as the I/O buffers, on torch's current stream.

Engines are cached in ``cache_dir`` under a key of the ONNX file's SHA-256 (the
model's weights, architecture and tile shape), the GPU's name and compute
capability, the TensorRT version, the precision and max_batch: an engine is
only valid for the GPU and TensorRT version that built it.

TensorRT 11 removed the FP16 flag (strong typing only); there the engine is
built in fp32 and the runtime's name says so.

Not exercised by the test suite (no TensorRT on the CI machines); the export
command (``rtcal export --runtime tensorrt``) compares its outputs with eager
PyTorch when it builds one.
"""

from __future__ import annotations

import hashlib
import os
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
from rtcal.errors import RtcalError

WORKSPACE_BYTES = 2 << 30


class EngineBuildError(RtcalError):
    """TensorRT could not parse the ONNX file or build an engine; the message says why."""


def engine_key(onnx_path: Path, fp16: bool, max_batch: int, trt_version: str) -> str:
    """Hex key of an engine: ONNX bytes, GPU, TensorRT version, precision, max batch."""
    h = hashlib.sha256(Path(onnx_path).read_bytes())
    major, minor = torch.cuda.get_device_capability()
    gpu = f"{torch.cuda.get_device_name()}|sm{major}{minor}"
    h.update(f"|{gpu}|trt{trt_version}|fp16={fp16}|batch={max_batch}".encode())
    return h.hexdigest()


def build_engine(trt, logger, onnx_path: Path, max_batch: int, fp16: bool) -> bytes:
    """Serialised engine for ``onnx_path`` with batches 1..max_batch."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    x = network.get_input(0)
    _, c, h, w = tuple(x.shape)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(x.name, (1, c, h, w), (max_batch, c, h, w), (max_batch, c, h, w))
    config.add_optimization_profile(profile)
    serialised = builder.build_serialized_network(network, config)
    if serialised is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} "
                               "(see the TensorRT log above)")
    return bytes(serialised)


class TensorRTRuntime:
    """A TensorRT engine of the ONNX export, built once per GPU / TensorRT version."""

    def __init__(self, onnx_path: str | Path, cache_dir: str | Path, *, max_batch: int = 8,
                 fp16: bool = True, device: str = "cuda") -> None:
        reason = availability("tensorrt", device)
        if reason:
            raise RuntimeUnavailableError(f"tensorrt: {reason}")
        import tensorrt as trt

        self.device = torch.device(device)
        fp16 = fp16 and hasattr(trt.BuilderFlag, "FP16")
        self.logger = trt.Logger(trt.Logger.WARNING)
        key = engine_key(Path(onnx_path), fp16, max_batch, trt.__version__)
        self.engine_path = Path(cache_dir) / f"detector-{key[:16]}.engine"
        blob = self._load_or_build(trt, Path(onnx_path), max_batch, fp16)
        self._trt_runtime = trt.Runtime(self.logger)  # must outlive the engine
        self.engine = self._trt_runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise EngineBuildError(f"TensorRT could not deserialise {self.engine_path}; "
                                   "delete it to rebuild")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names
                               if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        _, c, h, w = tuple(self.engine.get_tensor_shape(self.input_name))
        self.name = "tensorrt-" + ("fp16" if fp16 else "fp32")
        self.in_channels = int(c)
        self.tile_shape = (int(h), int(w))
        self.min_side = INPUT_MULTIPLE
        self.max_batch = max_batch

    def _load_or_build(self, trt, onnx_path: Path, max_batch: int, fp16: bool) -> bytes:
        if self.engine_path.is_file():
            return self.engine_path.read_bytes()
        blob = build_engine(trt, self.logger, onnx_path, max_batch, fp16)
        self.engine_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.engine_path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(blob)
        partial.replace(self.engine_path)  # atomic: a reader never sees half an engine
        return blob

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stream = torch.cuda.current_stream(self.device)
        inp = torch.from_numpy(x).to(self.device, self.dtypes[self.input_name]).contiguous()
        self.context.set_input_shape(self.input_name, tuple(inp.shape))
        self.context.set_tensor_address(self.input_name, inp.data_ptr())
        outputs = {}
        for name in ("logits", "masks"):
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineBuildError("TensorRT execute_async_v3 failed")
        stream.synchronize()
        return (outputs["logits"].float().cpu().numpy(), outputs["masks"].float().cpu().numpy())

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return in_batches(self._run, check_batch(self, x), self.max_batch)


def _torch_dtype(trt, dtype) -> torch.dtype:
    """The torch dtype of a TensorRT I/O tensor's DataType."""
    names = {"FLOAT": torch.float32, "HALF": torch.float16, "INT32": torch.int32,
             "INT64": torch.int64, "BOOL": torch.bool}
    for name, torch_dtype in names.items():
        if getattr(trt.DataType, name, None) == dtype:
            return torch_dtype
    raise EngineBuildError(f"engine tensor of unsupported dtype {dtype}")
