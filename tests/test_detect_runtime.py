"""Detector runtimes: eager reference, capability checks, selection and its report."""

import numpy as np
import pytest
import torch
from detect_tiny import tiny_model

from rtcal.detect.runtime import (
    RUNTIME_NAMES,
    EagerRuntime,
    RuntimeInputError,
    RuntimeUnavailableError,
    availability,
    build_runtime,
    min_side,
    model_hash,
    preference_order,
    select_runtime,
)

torch.set_num_threads(1)
HAS_CUDA = torch.cuda.is_available()


def test_eager_matches_the_model_and_splits_batches():
    model = tiny_model()
    runtime = EagerRuntime(model, max_batch=2)
    x = np.random.default_rng(0).normal(0, 0.3, (5, 8, 64, 96)).astype(np.float32)
    logits, masks = runtime.infer(x)
    with torch.inference_mode():
        ref_logits, ref_masks = model.export_forward(torch.from_numpy(x))
    assert logits.shape == (5, 12) and masks.shape == (5, 12, 16, 24)
    assert logits.dtype == np.float32 and masks.dtype == np.float32
    np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(masks, ref_masks.numpy(), atol=1e-5)


def test_runtime_rejects_batches_that_do_not_fit():
    runtime = EagerRuntime(tiny_model())
    assert runtime.min_side == min_side(runtime.model) == 32  # 10 heatmap queries
    with pytest.raises(RuntimeInputError, match=r"\(B, 8, h, w\)"):
        runtime.infer(np.zeros((1, 5, 64, 64), np.float32))
    with pytest.raises(RuntimeInputError, match="multiples of 32"):
        runtime.infer(np.zeros((1, 8, 64, 48), np.float32))
    with pytest.raises(RuntimeInputError, match="float"):
        runtime.infer(np.zeros((1, 8, 64, 64), np.int32))


def test_capability_checks_name_the_reason():
    assert availability("eager", "cpu") is None
    assert "CUDA only" in availability("compile", "cpu")
    assert "CUDA only" in availability("tensorrt", "cpu")
    assert "unknown runtime" in availability("openvino", "cpu")
    if not HAS_CUDA:
        for name in RUNTIME_NAMES:
            assert "CUDA is not available" in availability(name, "cuda")


def test_a_named_runtime_that_cannot_run_raises_clearly(tmp_path):
    model = tiny_model()
    with pytest.raises(RuntimeUnavailableError, match="runtime 'compile' on cpu: runs on CUDA"):
        select_runtime(model, "cpu", "compile", cache_dir=tmp_path)
    with pytest.raises(RuntimeUnavailableError, match="'tensorrt' on cpu"):
        build_runtime("tensorrt", model, "cpu", cache_dir=tmp_path)
    if not HAS_CUDA:
        with pytest.raises(RuntimeUnavailableError, match="CUDA is not available"):
            select_runtime(model, "cuda", "eager")
        with pytest.raises(RuntimeUnavailableError, match="no detector runtime can run here"):
            select_runtime(model, "cuda")


def test_selection_reports_its_choice_and_what_it_skipped(tmp_path, monkeypatch):
    model = tiny_model()
    choice = select_runtime(model, "cpu", "eager", cache_dir=tmp_path)
    assert choice.runtime.name == "eager-cpu" and choice.skipped == ()
    assert choice.describe().startswith("runtime eager-cpu (any tile")
    # Without onnxruntime, auto falls back to eager and says why.
    import rtcal.detect.runtime as rt

    real_has = rt._has
    monkeypatch.setattr(rt, "_has", lambda m: m != "onnxruntime" and real_has(m))
    choice = select_runtime(model, "cpu", cache_dir=tmp_path)
    assert choice.runtime.name == "eager-cpu"
    assert choice.skipped == (("onnx", "onnxruntime is not installed (pip install "
                                       "'rtcal[onnx]')"),)
    assert "skipped onnx: onnxruntime is not installed" in choice.describe()
    assert preference_order("cpu") == ("onnx", "eager")
    assert preference_order("cuda")[0] == "tensorrt"


def test_model_hash_follows_the_weights():
    a, b = tiny_model(0), tiny_model(0)
    assert model_hash(a) == model_hash(b)
    with torch.no_grad():
        b.decoder.head.class_embed.bias.add_(1e-3)
    assert model_hash(a) != model_hash(b)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", ["eager", "compile", "onnx", "tensorrt"])
def test_cuda_runtimes_match_eager_cpu(name, tmp_path):
    from rtcal.detect.export import FP16_TOLERANCE, FP32_TOLERANCE, parity

    reason = availability(name, "cuda")
    if reason:
        pytest.skip(reason)
    model = tiny_model()
    runtime = build_runtime(name, model, "cuda", tile_shape=(64, 64), cache_dir=tmp_path)
    check = parity(runtime, tiny_model(), tile_shape=(64, 64))
    tolerance = FP32_TOLERANCE if name in ("eager", "onnx") else FP16_TOLERANCE
    assert check.within(*tolerance), check.describe()


class _FakeTensorRT:
    """Records the TensorRT 10 builder calls ``build_engine`` makes (no TensorRT here)."""

    class BuilderFlag:
        FP16 = "fp16"

    class MemoryPoolType:
        WORKSPACE = "workspace"

    def __init__(self, parses: bool):
        self.calls, self.parses = [], parses
        fake = self

        class Input:
            name, shape = "x", (-1, 8, 64, 64)

        class Network:
            def get_input(self, i):
                return Input()

        class Parser:
            num_errors = 0 if parses else 1

            def __init__(self, network, logger):
                pass

            def parse(self, data):
                fake.calls.append(("parse", len(data)))
                return fake.parses

            def get_error(self, i):
                return "unsupported op"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("pool", pool))

            def set_flag(self, flag):
                fake.calls.append(("flag", flag))

            def add_optimization_profile(self, profile):
                fake.calls.append(("profile", profile.shapes))

        class Profile:
            def set_shape(self, name, *shapes):
                self.shapes = (name, *shapes)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls.append(("network", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"engine"

        self.Builder, self.OnnxParser = Builder, Parser


def test_tensorrt_engine_build_sequence(tmp_path):
    from rtcal.detect.runtime_trt import EngineBuildError, build_engine

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx-bytes")
    trt = _FakeTensorRT(parses=True)
    assert build_engine(trt, None, onnx, max_batch=4, fp16=True) == b"engine"
    assert trt.calls == [("network", 0), ("parse", 10), ("pool", "workspace"), ("flag", "fp16"),
                         ("profile", ("x", (1, 8, 64, 64), (4, 8, 64, 64), (4, 8, 64, 64)))]
    with pytest.raises(EngineBuildError, match="could not parse .*unsupported op"):
        build_engine(_FakeTensorRT(parses=False), None, onnx, max_batch=4, fp16=True)
