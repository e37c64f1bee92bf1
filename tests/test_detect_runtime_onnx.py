"""ONNX export of the detector: parity with eager PyTorch through onnxruntime.

Tolerance (rtcal.detect.export.FP32_TOLERANCE): |onnxruntime - eager| <= 1e-4 +
1e-4 x max |eager| for the logits and the mask logits, at two exported tile
sizes (each export is fixed-size) and two batch sizes (the batch axis is dynamic).
"""

import shutil

import numpy as np
import pytest
import torch
from detect_tiny import tiny_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from rtcal.detect.export import FP32_TOLERANCE, ExportError, Parity, export_onnx, parity  # noqa: E402
from rtcal.detect.runtime import (  # noqa: E402
    RuntimeInputError,
    cached_onnx,
    model_hash,
    select_runtime,
)
from rtcal.detect.runtime_ort import OnnxRuntime  # noqa: E402

torch.set_num_threads(1)
TILES = ((64, 64), (96, 128))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """tile -> ONNX export of tiny_model(seed=1) at that tile (exports are the slow part)."""
    root = tmp_path_factory.mktemp("onnx")
    return {tile: export_onnx(tiny_model(seed=1), root / f"tiny-{tile[0]}x{tile[1]}.onnx", tile)
            for tile in TILES}


@pytest.mark.parametrize("tile", TILES)
def test_onnx_matches_eager_at_two_tile_sizes(exported, tile):
    model = tiny_model(seed=1)
    runtime = OnnxRuntime(exported[tile], threads=1)
    assert runtime.tile_shape == tile and runtime.in_channels == 8
    for batch in (1, 3):
        check = parity(runtime, model, batch=batch, seed=batch)
        check.check(*FP32_TOLERANCE)
        assert check.scale_logits > 0.1 and check.scale_masks > 0.1  # non-trivial outputs
    with pytest.raises(RuntimeInputError, match="built for"):
        runtime.infer(np.zeros((1, 8, 32, 32), np.float32))


def test_parity_check_fails_on_a_different_model(exported):
    check = parity(OnnxRuntime(exported[64, 64], threads=1), tiny_model(seed=2))
    with pytest.raises(ExportError, match="differs from eager"):
        check.check(*FP32_TOLERANCE)
    assert not Parity("x", 1.0, 0.0, 1.0, 1.0).within(1e-4, 1e-4)


def test_auto_selection_on_cpu_picks_onnxruntime_from_the_cache(exported, tmp_path):
    model = tiny_model(seed=1)
    cached = tmp_path / f"detector-{model_hash(model)[:16]}-64x64.onnx"
    shutil.copy(exported[64, 64], cached)
    stamp = cached.stat().st_mtime_ns
    choice = select_runtime(model, "cpu", tile_shape=(64, 64), cache_dir=tmp_path, threads=1)
    assert choice.runtime.name == "onnxruntime-cpu" and choice.skipped == ()
    assert "onnxruntime-cpu (64x64 tiles" in choice.describe()
    assert choice.runtime.path == cached_onnx(model, (64, 64), tmp_path) == cached
    assert cached.stat().st_mtime_ns == stamp  # reused, not exported again
    parity(choice.runtime, model).check(*FP32_TOLERANCE)
