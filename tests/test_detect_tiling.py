"""Tiled inference: the tile grid (pure functions) and the merge of instances across tiles."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcal.detect.tiling import (
    Instance,
    TilingError,
    axis_tiles,
    crop_to_box,
    extract_tiles,
    flexible_tile_shape,
    mask_iou,
    pad_to_grid,
    run_tiled,
    suppress,
    tile_grid,
    upsample_mask_logits,
)
from rtcal.detect.trace_loss import masks_at


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 3000), tile=st.sampled_from([32, 64, 128, 256]),
       overlap_frac=st.floats(0, 0.5))
def test_axis_tiles_cover_overlap_and_partition(length, tile, overlap_frac):
    overlap = min(int(overlap_frac * tile), tile // 2)
    a = axis_tiles(length, tile, overlap)
    starts, core = a.starts, a.core
    assert starts[0] == 0 and np.all(np.diff(starts) > 0)
    if length <= tile:
        assert len(starts) == 1
    else:
        assert starts[-1] == length - tile  # no tile reaches beyond the frame
        assert np.all(starts[:-1] + tile - starts[1:] >= overlap)  # neighbours overlap enough
        assert len(starts) == int(np.ceil((length - overlap) / (tile - overlap)))
    # cores partition [0, length) and each lies inside its tile, >= overlap/2 from inner edges
    assert core[0, 0] == 0 and core[-1, 1] == length
    assert np.all(core[1:, 0] == core[:-1, 1]) and np.all(core[:, 1] > core[:, 0])
    assert np.all(core[:, 0] >= starts) and np.all(core[:, 1] <= starts + tile)
    inner_end = core[:-1, 1]
    assert np.all(starts[:-1] + tile - inner_end >= overlap // 2)
    assert np.all(inner_end - starts[1:] >= overlap // 2)


def test_axis_tiles_examples():
    a = axis_tiles(512, 256, 64)
    assert a.starts.tolist() == [0, 128, 256]
    assert a.core.tolist() == [[0, 192], [192, 320], [320, 512]]
    assert axis_tiles(100, 128, 32).core.tolist() == [[0, 100]]
    with pytest.raises(TilingError, match="overlap"):
        axis_tiles(100, 64, 64)


def test_tile_grid_checks_sizes_and_pads_small_frames():
    grid = tile_grid(100, 300, (128, 128), 32)
    assert grid.padded_shape == (128, 300)
    assert grid.n_tiles == 1 * 3
    assert grid.core(0) == (0, 0, 100, grid.cols.core[0, 1])
    image = np.arange(2 * 100 * 300, dtype=np.float32).reshape(2, 100, 300)
    tiles = extract_tiles(image, grid)
    assert tiles.shape == (3, 2, 128, 128)
    r, c = grid.origin(2)
    np.testing.assert_array_equal(tiles[2, :, :100], image[:, :, c : c + 128])
    assert np.all(tiles[:, :, 100:] == 0)  # zero padding below the frame
    np.testing.assert_array_equal(extract_tiles(pad_to_grid(image, grid), grid, 1, 3),
                                  tiles[1:3])
    with pytest.raises(TilingError, match="multiples of 32"):
        tile_grid(100, 100, (100, 128), 16)
    with pytest.raises(TilingError, match="overlap_px"):
        tile_grid(100, 100, (64, 64), 40)
    with pytest.raises(TilingError, match="grid is for"):
        extract_tiles(image[:, :50], grid)


def test_flexible_tile_shape():
    assert flexible_tile_shape(100, 256, 256, 64, 32) == (128, 256)
    assert flexible_tile_shape(20, 40, 256, 64, 32) == (64, 64)
    assert flexible_tile_shape(512, 2048, 256, 64, 64) == (224, 256)
    for length in range(257, 2100, 37):  # as many tiles as tile_px needs, no more pixels
        side, _ = flexible_tile_shape(length, 64, 256, 64, 48)
        assert side % 32 == 0 and 64 <= side <= 256
        assert len(axis_tiles(length, side, 48).starts) == len(axis_tiles(length, 256, 48).starts)


def test_upsampling_matches_the_training_masks():
    logits = np.random.default_rng(0).normal(0, 3, (5, 16, 12)).astype(np.float32)
    up = upsample_mask_logits(logits, (64, 48))
    probs = masks_at(torch.from_numpy(logits), (64, 48)).numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-up)), probs, atol=1e-6)


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _label_model(n_queries=24):
    """A stand-in network that 'sees' discs: channel 0 holds label ids (0 = none); each
    label present in a tile becomes a query, its mask logit +6 where a 4x4 block is
    mostly that label, -6 elsewhere; unused queries have logit -6."""
    def infer(x):
        B, _, h, w = x.shape
        logits = np.full((B, n_queries), -6.0, np.float32)
        masks = np.full((B, n_queries, h // 4, w // 4), -6.0, np.float32)
        for b in range(B):
            labels = np.rint(x[b, 0]).astype(int)
            for q, lab in enumerate(np.unique(labels[labels > 0])):
                frac = (labels == lab).reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))
                logits[b, q] = 6.0
                masks[b, q] = np.where(frac >= 0.5, 6.0, -6.0)
        return logits, masks
    return infer


def test_instances_straddling_tile_borders_merge_to_one_each():
    H, W, r = 200, 230, 6
    grid = tile_grid(H, W, (96, 96), 32)
    rng = np.random.default_rng(1)
    centres = []
    # every interior tile border gets cells right on it, plus cells anywhere
    for cut in np.r_[grid.rows.starts[1:], grid.rows.starts[:-1] + 96]:
        centres.append((int(cut), int(rng.integers(10, W - 10))))
    for cut in np.r_[grid.cols.starts[1:], grid.cols.starts[:-1] + 96]:
        centres.append((int(rng.integers(10, H - 10)), int(cut)))
    centres += [(int(rng.integers(8, H - 8)), int(rng.integers(8, W - 8))) for _ in range(12)]
    labels = np.zeros((H, W), np.float32)
    kept = []
    for cy, cx in centres:
        disc = _disc((H, W), (cy, cx), r)
        if not (labels[disc] > 0).any():  # non-overlapping discs
            labels[disc] = len(kept) + 1
            kept.append((cy, cx))
    image = np.stack([labels, np.zeros_like(labels)])
    found = run_tiled(_label_model(), image, grid, score_threshold=0.5, merge_iou=0.3,
                      batch_size=3)
    assert len(found) == len(kept)
    for k, (cy, cx) in enumerate(kept):
        truth = crop_to_box(labels == k + 1, 0, 0, 1.0, -1)
        ious = [mask_iou(truth, f) for f in found]
        assert max(ious) >= 0.6, (k, cy, cx, max(ious))  # 1/4-resolution masks


def test_merge_keeps_the_surer_duplicate_across_tiles_only():
    mask = _disc((15, 15), (7, 7), 6)
    a = Instance(40, 40, mask, 0.9, tile=0)
    b = Instance(41, 40, mask, 0.8, tile=1)  # the same cell seen one pixel lower by tile 1
    c = Instance(41, 41, mask, 0.7, tile=0)  # a duplicate within tile 0
    far = Instance(100, 100, mask, 0.95, tile=1)
    assert mask_iou(a, b) > 0.7 and mask_iou(a, far) == 0.0
    assert suppress([a, b, c, far], 0.3, across_tiles_only=True) == [3, 0, 2]
    assert suppress([a, b, c, far], 0.3) == [3, 0]
    assert mask_iou(a, a) == 1.0
