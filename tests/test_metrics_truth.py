"""Loading ground truth: simulator truth.npz and Neurofinder regions.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtcal.errors import RtcalError
from rtcal.metrics.matching import MAIN, binarise, match_masks, score
from rtcal.metrics.offset import estimate_offset, shift_footprints
from rtcal.metrics.truth import TruthError, dense_to_csr, load_truth, truth_from_arrays

REAL = Path("/work/shared/data/real/neurofinder_subset")
needs_real = pytest.mark.skipif(not (REAL / "regions_crop.json").is_file(),
                                reason="real Neurofinder data not present")


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_dense_to_csr_round_trips_in_chunks():
    rng = np.random.default_rng(0)
    fp = (rng.random((130, 7, 9)) * (rng.random((130, 7, 9)) > 0.8)).astype(np.float32)
    a = dense_to_csr(fp, chunk=16)
    assert a.shape == (130, 63) and a.dtype == np.float32
    np.testing.assert_array_equal(a.toarray().reshape(130, 7, 9), fp)
    assert dense_to_csr(np.zeros((0, 7, 9), np.float32)).shape == (0, 63)


def test_npz_with_all_keys(tmp_path):
    rng = np.random.default_rng(1)
    fp = rng.random((3, 8, 10)).astype(np.float32)
    cal = rng.random((3, 40)).astype(np.float32)
    snr = np.array([1.0, 2.0, 3.0], np.float32)
    path = write_npz(tmp_path / "truth.npz", footprints=fp, calcium=cal, spikes=cal,
                     shifts=np.zeros((40, 2), np.float32), fps=np.float32(30.0), snr=snr)
    t = load_truth(path, 8, 10)
    assert t.kind == "npz" and t.n_neurons == 3 and (t.height, t.width) == (8, 10)
    np.testing.assert_array_equal(t.footprints.toarray().reshape(3, 8, 10), fp)
    np.testing.assert_array_equal(t.calcium, cal)
    np.testing.assert_array_equal(t.snr, snr)


def test_npz_with_footprints_only(tmp_path):
    path = write_npz(tmp_path / "t.npz", footprints=np.ones((2, 4, 4), np.float32))
    t = load_truth(path, 4, 4)
    assert t.calcium is None and t.snr is None and t.n_neurons == 2


def test_npz_of_the_wrong_frame_size_is_rejected(tmp_path):
    path = write_npz(tmp_path / "t.npz", footprints=np.ones((2, 4, 5), np.float32))
    with pytest.raises(TruthError, match=r"shape \(2, 4, 5\).*4x6") as err:
        load_truth(path, 4, 6)
    assert isinstance(err.value, RtcalError)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"calcium": np.ones((3, 5), np.float32)}, "footprints"),
        ({"footprints": np.ones((2, 4, 4)), "calcium": np.ones((3, 5))}, "calcium"),
        ({"footprints": np.ones((2, 4, 4)), "snr": np.ones(3)}, "snr"),
    ],
)
def test_npz_with_bad_contents_is_rejected(tmp_path, arrays, message):
    path = write_npz(tmp_path / "t.npz", **arrays)
    with pytest.raises(TruthError, match=message):
        load_truth(path, 4, 4)


def test_missing_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(TruthError, match="not found"):
        load_truth(tmp_path / "nope.npz", 4, 4)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(TruthError, match="cannot read"):
        load_truth(tmp_path / "bad.npz", 4, 4)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TruthError, match="cannot read"):
        load_truth(tmp_path / "bad.json", 4, 4)
    (tmp_path / "t.tif").write_bytes(b"")
    with pytest.raises(TruthError, match="unknown truth format"):
        load_truth(tmp_path / "t.tif", 4, 4)


def test_synthetic_regions_with_clipping(tmp_path):
    regions = [
        {"id": 7, "coordinates": [[1, 2], [1, 3], [2, 2]]},
        {"id": 8, "coordinates": [[4, 5], [5, 5], [6, 5], [4, -1]]},  # 3 px outside
        {"id": 9, "coordinates": [[10, 10], [-1, 0]]},  # wholly outside
        {"id": 10, "coordinates": [[0, 0], [0, 0], [0, 1]]},  # duplicate coordinate
    ]
    path = tmp_path / "regions.json"
    path.write_text(json.dumps(regions))
    t = load_truth(path, 6, 8)
    assert t.kind == "regions" and t.calcium is None
    assert t.ids.tolist() == [7, 8, 10]
    assert t.n_clipped_px == 4 and t.n_dropped_regions == 1
    masks = t.footprints.toarray().reshape(3, 6, 8)
    assert set(zip(*np.nonzero(masks[0]), strict=True)) == {(1, 2), (1, 3), (2, 2)}
    # rows index axis 0: [4, 5] is row 4, col 5
    assert set(zip(*np.nonzero(masks[1]), strict=True)) == {(4, 5), (5, 5)}
    assert masks[2].sum() == 2.0 and masks.max() == 1.0


def test_regions_json_must_be_a_list_of_regions(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"id": 1}))
    with pytest.raises(TruthError, match="list"):
        load_truth(tmp_path / "a.json", 4, 4)
    (tmp_path / "b.json").write_text(json.dumps([{"id": 1}]))
    with pytest.raises(TruthError, match="coordinates"):
        load_truth(tmp_path / "b.json", 4, 4)


@needs_real
def test_real_neurofinder_crop_regions():
    t = load_truth(REAL / "regions_crop.json", 256, 256)
    assert t.n_neurons == 138 and t.n_clipped_px == 0 and t.n_dropped_regions == 0
    regions = json.loads((REAL / "regions_crop.json").read_text())
    areas = np.diff(t.footprints.indptr)
    assert areas.tolist() == [len({tuple(c) for c in r["coordinates"]}) for r in regions]
    assert np.median(areas) == pytest.approx(67.5)  # README: median area about 67 px
    assert t.ids.tolist() == [r["id"] for r in regions]
    # one labelled pixel per coordinate: regions[0] starts at row 69, col 149
    assert t.footprints[[0], :].toarray().reshape(256, 256)[69, 149] == 1.0


@needs_real
def test_full_regions_clipped_to_the_crop_equal_the_crop_file(tmp_path):
    regions = json.loads((REAL / "regions.json").read_text())
    for r in regions:
        r["coordinates"] = [[row - 224, col - 64] for row, col in r["coordinates"]]
    (tmp_path / "shifted.json").write_text(json.dumps(regions))
    full = load_truth(tmp_path / "shifted.json", 256, 256)
    crop = load_truth(REAL / "regions_crop.json", 256, 256)
    assert full.n_neurons == 138 and full.n_dropped_regions == 330 - 138
    assert full.n_clipped_px > 0
    assert full.ids.tolist() == crop.ids.tolist()
    assert (full.footprints != crop.footprints).nnz == 0


@needs_real
def test_real_regions_match_themselves_and_a_shifted_copy():
    t = load_truth(REAL / "regions_crop.json", 256, 256)
    masks = binarise(t.footprints)
    s = score(match_masks(masks, masks, 256, MAIN))
    assert (s.n_tp, s.f1) == (138, 1.0)
    moved = shift_footprints(t.footprints, 256, 256, -1.0, 2.0)
    off = estimate_offset(t.footprints, moved, 256, 256)
    assert abs(off.dy + 1.0) <= 0.2 and abs(off.dx - 2.0) <= 0.2


def test_truth_from_arrays_validates_shapes():
    with pytest.raises(TruthError, match=r"\(K, H, W\)"):
        truth_from_arrays(np.ones((4, 4)))
    t = truth_from_arrays(np.ones((2, 3, 4)), calcium=np.ones((2, 9)))
    assert t.calcium.dtype == np.float32 and t.ids.tolist() == [0, 1]
