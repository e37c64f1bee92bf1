"""``rtcal export [--weights PATH] [--out DIR] [--size H W] [--runtime onnx|tensorrt]``."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Export the learned detector for a fixed tile size: ONNX (batch axis dynamic),
checked at once against eager PyTorch through onnxruntime (the largest absolute
differences are printed; the export fails beyond 1e-4 + 1e-4 x max |output|).
With --runtime tensorrt also a TensorRT fp16 engine built from the ONNX file
(needs CUDA and the tensorrt package), compared with eager PyTorch likewise.
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="detector checkpoint (default: the weights shipped in rtcal)")
    p.add_argument("--out", default="exported", metavar="DIR",
                   help="output directory (default ./exported)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="tile size, multiples of 32 (default 256 256)")
    p.add_argument("--runtime", choices=("onnx", "tensorrt"), default="onnx",
                   help="onnx (default) or tensorrt (ONNX, then an engine from it)")
    p.add_argument("--batch", type=int, default=8, metavar="N",
                   help="largest batch of tiles the TensorRT engine takes (default 8)")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="torch.onnx exporter (default torchscript: faster, same graph)")
    return p


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from rtcal.detect.export import FP16_TOLERANCE, FP32_TOLERANCE, export_onnx, parity
    from rtcal.detect.learned import shipped_weights
    from rtcal.detect.model import load_detector
    from rtcal.detect.runtime import model_hash
    from rtcal.detect.runtime_ort import OnnxRuntime

    weights = Path(args.weights) if args.weights else shipped_weights()
    model, _ = load_detector(weights)
    h, w = args.size
    out = Path(args.out)
    onnx_path = out / f"detector-{model_hash(model)[:16]}-{h}x{w}.onnx"
    start = time.perf_counter()
    export_onnx(model, onnx_path, (h, w), exporter=args.exporter)
    print(f"{weights} -> {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB, "
          f"{time.perf_counter() - start:.1f} s)")
    check = parity(OnnxRuntime(onnx_path, "cpu"), model)
    print(f"onnxruntime vs eager PyTorch: {check.describe()}")
    check.check(*FP32_TOLERANCE)
    if args.runtime == "tensorrt":
        from rtcal.detect.runtime_trt import TensorRTRuntime

        start = time.perf_counter()
        engine = TensorRTRuntime(onnx_path, out, max_batch=args.batch)
        print(f"TensorRT engine {engine.engine_path} ({engine.name}, "
              f"{time.perf_counter() - start:.1f} s)")
        check = parity(engine, model)
        print(f"{engine.name} vs eager PyTorch: {check.describe()}")
        check.check(*FP16_TOLERANCE)
    return 0
