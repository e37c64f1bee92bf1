"""The detector network: Swin pieces against plain references, shapes, gradients,
masked-attention fallback, checkpoints, and ONNX parity through onnxruntime."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from rtcal.detect.decoder import DecoderLayer, attention_mask
from rtcal.detect.model import (
    DetectorCheckpointError,
    DetectorConfigError,
    DetectorExport,
    DetectorInputError,
    DetectorNetConfig,
    build_detector,
    load_detector,
    save_checkpoint,
)
from rtcal.detect.swin import (
    SwinTransformerBlock,
    WindowAttention,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

SMALL = DetectorNetConfig(embed_dim=16, depths=(1, 1, 1, 2), num_heads=(1, 1, 2, 2),
                          window_size=4, fpn_dim=32, mask_dim=16, n_queries=12,
                          n_learned_queries=3, n_decoder_layers=3, n_decoder_heads=2,
                          decoder_ffn_dim=32)
ONNX_ATOL = 1e-4  # float32 onnxruntime vs eager PyTorch, logits and mask logits


@pytest.fixture(autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def small_model(seed: int = 0, config: DetectorNetConfig = SMALL):
    torch.manual_seed(seed)
    return build_detector(config)


# --- Swin pieces ------------------------------------------------------------------------

def test_window_partition_round_trip_and_order():
    x = torch.randn(2, 16, 24, 3)
    windows = window_partition(x, 8)
    assert windows.shape == (2 * 2 * 3, 64, 3)
    assert torch.equal(windows[0], x[0, :8, :8].reshape(64, 3))
    assert torch.equal(windows[1], x[0, :8, 8:16].reshape(64, 3))
    assert torch.equal(windows[6], x[1, :8, :8].reshape(64, 3))
    assert torch.equal(window_reverse(windows, 8, 16, 24), x)


def allowed_pairs_reference(height, width, ws, shift):
    """Brute force over token pairs of the padded map (flat index r * Wp + c): True where
    two real tokens share a window of the rolled map and the roll did not wrap them."""
    hp, wp = height + (-height % ws), width + (-width % ws)
    allowed = np.zeros((hp * wp, hp * wp), bool)
    for r1 in range(height):
        for c1 in range(width):
            for r2 in range(height):
                for c2 in range(width):
                    rr1, rr2 = (r1 - shift) % hp, (r2 - shift) % hp
                    cc1, cc2 = (c1 - shift) % wp, (c2 - shift) % wp
                    same = rr1 // ws == rr2 // ws and cc1 // ws == cc2 // ws
                    unwrapped = rr1 - rr2 == r1 - r2 and cc1 - cc2 == c1 - c2
                    allowed[r1 * wp + c1, r2 * wp + c2] = same and unwrapped
    return allowed


def allowed_pairs_from_mask(height, width, ws, shift):
    hp, wp = height + (-height % ws), width + (-width % ws)
    mask = shifted_window_mask(height, width, ws, shift)  # (nW, N, N)
    index = torch.arange(hp * wp).view(1, hp, wp, 1)
    index = torch.roll(index, shifts=(-shift, -shift), dims=(1, 2))
    slots = window_partition(index, ws)[..., 0]  # (nW, N) flat index held by each slot
    allowed = np.zeros((hp * wp, hp * wp), bool)
    for w in range(slots.shape[0]):
        ids = slots[w].numpy()
        allowed[np.ix_(ids, ids)] = (mask[w] == 0).numpy()
    return allowed


@pytest.mark.parametrize("height,width,ws,shift", [(8, 8, 4, 2), (6, 10, 4, 2), (5, 7, 4, 2),
                                                   (5, 7, 4, 0), (12, 8, 4, 2), (3, 9, 4, 2)])
def test_shifted_window_mask_matches_brute_force(height, width, ws, shift):
    ref = allowed_pairs_reference(height, width, ws, shift)
    got = allowed_pairs_from_mask(height, width, ws, shift)
    hp, wp = height + (-height % ws), width + (-width % ws)
    real = np.zeros((hp, wp), bool)
    real[:height, :width] = True
    real = real.ravel()
    rows = real[:, None] | real[None, :]  # pairs with a real token; pad-pad pairs are unused
    assert np.array_equal(got[rows], ref[rows])


@pytest.mark.parametrize("height,width,shift", [(5, 7, 2), (8, 8, 2), (6, 3, 0)])
def test_shifted_block_matches_brute_force_attention(height, width, shift):
    """A whole block (padding, roll, windows, mask, bias) against attention written
    token by token: each real token attends to the real tokens the brute-force
    reference allows, with the bias of their offset in the map."""
    torch.manual_seed(1)
    ws, dim, heads = 4, 8, 2
    block = SwinTransformerBlock(dim, heads, ws, shift).double().eval()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()
    x = torch.randn(1, height, width, dim, dtype=torch.float64)
    with torch.no_grad():
        got = block(x)

        tokens = block.norm1(x).reshape(height * width, dim)  # real tokens, row-major
        q, k, v = block.attn.qkv(tokens).view(-1, 3, heads, dim // heads).unbind(1)
        rc = torch.tensor([(r, c) for r in range(height) for c in range(width)])
        offset = (rc[:, None] - rc[None, :] + ws - 1).clamp(0, 2 * ws - 2)  # (P, P, 2);
        # pairs further apart than a window are blocked, their clamped bias is unused
        table = block.attn.relative_position_bias_table
        bias = table[offset[..., 0] * (2 * ws - 1) + offset[..., 1]].permute(2, 0, 1)
        wp = width + (-width % ws)
        real = [r * wp + c for r in range(height) for c in range(width)]
        allowed = torch.from_numpy(allowed_pairs_reference(height, width, ws, shift)[
            np.ix_(real, real)])
        logits = torch.einsum("phd,qhd->hpq", q * (dim // heads) ** -0.5, k) + bias
        weights = logits.masked_fill(~allowed, float("-inf")).softmax(-1)
        mixed = torch.einsum("hpq,qhd->phd", weights, v).reshape(-1, dim)
        y = x.reshape(-1, dim) + block.attn.proj(mixed)
        expected = (y + block.mlp(block.norm2(y))).view(1, height, width, dim)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    assert allowed.sum() < allowed.numel()  # some pairs are blocked: the test means something


def test_window_attention_equals_multihead_attention_with_bias():
    torch.manual_seed(2)
    ws, dim, heads = 3, 8, 2
    attn = WindowAttention(dim, ws, heads)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()  # make the bias matter
    x = torch.randn(1, ws * ws, dim)
    bias = torch.zeros(heads, ws * ws, ws * ws)
    for i in range(ws * ws):
        for j in range(ws * ws):
            dy, dx = i // ws - j // ws, i % ws - j % ws
            bias[:, i, j] = attn.relative_position_bias_table[
                (dy + ws - 1) * (2 * ws - 1) + dx + ws - 1]
    mha = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
        expected = mha(x, x, x, attn_mask=bias, need_weights=False)[0]
        got = attn(x)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


# --- the whole network ------------------------------------------------------------------

@pytest.mark.parametrize("height,width", [(128, 128), (256, 96)])
def test_output_shapes_and_query_points(height, width):
    model = small_model().eval()
    x = torch.randn(2, 8, height, width)
    with torch.no_grad():
        out = model(x)
    q, h4, w4 = SMALL.n_queries, height // 4, width // 4
    assert out["logits"].shape == (2, q)
    assert out["masks"].shape == (2, q, h4, w4)
    assert out["centre"].shape == (2, 1, h4, w4)
    assert out["query_points"].shape == (2, q, 2)
    assert len(out["aux"]) == SMALL.n_decoder_layers
    for aux in out["aux"]:
        assert aux["logits"].shape == (2, q) and aux["masks"].shape == (2, q, h4, w4)
    points = out["query_points"]
    n_heat = SMALL.n_queries - SMALL.n_learned_queries
    assert torch.all(points[:, n_heat:] == -1)
    heat_points = points[:, :n_heat].long()
    centre = out["centre"][:, 0]
    local_max = nn.functional.max_pool2d(centre, 3, stride=1, padding=1)
    for b in range(2):
        rows, cols = heat_points[b, :, 0], heat_points[b, :, 1]
        assert len(set((rows * w4 + cols).tolist())) == n_heat
        # random inputs give many more local maxima than queries: each query sits on one
        assert torch.equal(centre[b, rows, cols], local_max[b, rows, cols])
        others = centre[b] == local_max[b]
        others[rows, cols] = False
        assert centre[b][others].max() <= centre[b, rows, cols].min()


def test_gradients_reach_every_parameter():
    model = small_model().train()
    out = model(torch.randn(2, 8, 64, 64))
    gen = torch.Generator().manual_seed(3)

    def weighted(t):
        return (t * torch.randn(t.shape, generator=gen)).mean()

    loss = weighted(out["logits"]) + weighted(out["masks"]) + weighted(out["centre"])
    loss = loss + sum(weighted(a["logits"]) + weighted(a["masks"]) for a in out["aux"])
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_attention_mask_blocks_outside_and_falls_back_when_empty():
    logits = torch.full((1, 2, 8, 8), -3.0)
    logits[0, 0, 5, 2] = 1.0  # query 0: one pixel on; query 1: empty
    bias = attention_mask(logits, 2, n_heads=2)  # (B * nH, Q, 16)
    assert bias.shape == (2, 2, 16)
    assert torch.equal(bias[0], bias[1])  # same mask for every head
    open_cells = (bias[0, 0] == 0).nonzero().flatten().tolist()
    assert open_cells == [2 * 4 + 1]  # max-pooled: the 2x2 cell holding (5, 2)
    assert torch.all(bias[0, 1] == 0)  # empty mask -> attend everywhere


def test_decoder_layer_with_empty_masks_equals_unmasked():
    torch.manual_seed(4)
    layer = DecoderLayer(16, 2, 32).eval()
    tgt, pos = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    memory, memory_pos = torch.randn(2, 9, 16), torch.randn(2, 9, 16)
    empty = attention_mask(torch.full((2, 5, 6, 6), -2.0), 2, n_heads=2)
    with torch.no_grad():
        masked = layer(tgt, pos, memory, memory_pos, empty)
        plain = layer(tgt, pos, memory, memory_pos, None)
    assert torch.isfinite(masked).all()
    torch.testing.assert_close(masked, plain)


def test_model_with_every_mask_empty_stays_finite():
    model = small_model().eval()
    with torch.no_grad():  # per-pixel embedding 1, mask embedding -1: every mask logit < 0
        model.fpn.mask_proj.weight.zero_()
        model.fpn.mask_proj.bias.fill_(1.0)
        last = model.decoder.head.mask_embed[-1]
        last.weight.zero_()
        last.bias.fill_(-1.0)
        out = model(torch.randn(1, 8, 64, 64))
    assert torch.all(out["masks"] < 0)
    for value in (out["logits"], out["masks"], out["centre"]):
        assert torch.isfinite(value).all()


def test_eval_outputs_finite_and_repeatable_across_sizes():
    model = small_model().eval()
    inputs = [torch.randn(1, 8, 64, 64), torch.randn(1, 8, 96, 160), torch.zeros(1, 8, 192, 128),
              100 * torch.randn(1, 8, 64, 64)]
    with torch.no_grad():
        first = [model(x) for x in inputs]
        again = [model(x) for x in reversed(inputs)][::-1]  # cached masks reused per size
    for a, b in zip(first, again, strict=True):
        for key in ("logits", "masks", "centre", "query_points"):
            assert torch.isfinite(a[key]).all(), key
            assert torch.equal(a[key], b[key]), key


def test_config_and_input_errors():
    with pytest.raises(DetectorConfigError, match="num_heads"):
        DetectorNetConfig(num_heads=(3, 2, 4, 8))
    with pytest.raises(DetectorConfigError, match="n_learned_queries"):
        DetectorNetConfig(n_queries=10, n_learned_queries=10)
    with pytest.raises(DetectorConfigError, match="patch_size"):
        DetectorNetConfig(patch_size=2)
    model = small_model()
    with pytest.raises(DetectorInputError, match="multiples of 32"):
        model(torch.zeros(1, 8, 64, 80))
    with pytest.raises(DetectorInputError, match=r"\(B, 8, H, W\)"):
        model(torch.zeros(1, 5, 64, 64))


def test_checkpoint_round_trip(tmp_path):
    model = small_model(seed=5).eval()
    path = tmp_path / "det.pt"
    save_checkpoint(path, model, {"steps": 3, "scores": {"f1": 0.5}, "preset": "smoke"})
    loaded, extra = load_detector(path)
    assert loaded.config == SMALL and not loaded.training
    assert extra == {"steps": 3, "scores": {"f1": 0.5}, "preset": "smoke"}
    x = torch.randn(1, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["masks"], model(x)["masks"], atol=0, rtol=0)
    with pytest.raises(DetectorCheckpointError, match="ndarray"):
        save_checkpoint(tmp_path / "bad.pt", model, {"curve": np.zeros(3)})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorCheckpointError):
        load_detector(tmp_path / "junk.pt")
    with pytest.raises(DetectorCheckpointError, match="no detector checkpoint"):
        load_detector(tmp_path / "missing.pt")


def export_onnx(model, x, path):
    """TorchScript-based exporter first; the dynamo exporter where that one is gone."""
    module = DetectorExport(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the shape checks
        try:
            torch.onnx.export(module, (x,), str(path), dynamo=False,
                              input_names=["x"], output_names=["logits", "masks"])
        except (TypeError, RuntimeError, NotImplementedError):
            torch.onnx.export(module, (x,), str(path), dynamo=True,
                              input_names=["x"], output_names=["logits", "masks"])


def test_onnx_export_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = small_model(seed=6).eval()
    x = torch.randn(1, 8, 128, 128)
    path = tmp_path / "detector.onnx"
    export_onnx(model, x, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = torch.randn(1, 8, 128, 128)  # the graph is not specialised to the traced values
    for inp in (x, x2):
        logits, masks = session.run(None, {"x": inp.numpy()})
        with torch.no_grad():
            ref_logits, ref_masks = model.export_forward(inp)
        assert masks.shape == (1, SMALL.n_queries, 32, 32)
        np.testing.assert_allclose(logits, ref_logits.numpy(), atol=ONNX_ATOL, rtol=0)
        np.testing.assert_allclose(masks, ref_masks.numpy(), atol=ONNX_ATOL, rtol=0)


def test_heatmap_and_prediction_head_stay_float32_under_reduced_precision_autocast():
    # The heatmap's top-k picks the queries and the mask logits' signs gate the next
    # layer's attention: both are computed in float32 even under fp16/bf16 autocast
    # (on an H200, fp16 near-ties in the heatmap picked other queries). bf16 on the
    # CPU stands in for fp16 on CUDA: same autocast machinery, coarser rounding.
    from detect_tiny import tiny_model

    model = tiny_model().eval()
    x = torch.randn(2, model.config.in_channels, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast("cpu", torch.bfloat16):
            low = model(x)
    assert low["centre"].dtype == torch.float32
    assert low["masks"].dtype == low["logits"].dtype == torch.float32
    # the backbone and FPN did run in bf16 (else this test would prove nothing)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        feats = model.backbone(x)
    assert any(f.dtype == torch.bfloat16 for f in (feats if isinstance(feats, (list, tuple))
                                                  else feats.values()))
    assert torch.isfinite(low["masks"]).all() and ref["masks"].dtype == torch.float32
