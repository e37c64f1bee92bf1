"""The detector input: layout, range, key-frame channels, and 1p/2p normalisation."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from rtcal.buffer.channels import CLIP_SIGMAS, OUTPUT_SCALE
from rtcal.detect.inputs import N_SUMMARY, SUMMARY_NAMES, input_channels

SIZE, N_CELLS, N_FRAMES = 96, 30, 200


def _cells(seed=0):
    """The same cells for both modes: footprints (K, S, S) and calcium (K, T)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    centres = rng.uniform(6, SIZE - 6, (N_CELLS, 2))
    A = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 18.0)
    spikes = rng.random((N_CELLS, N_FRAMES)) < 0.03
    C = np.zeros((N_CELLS, N_FRAMES))
    for t in range(N_FRAMES):
        C[:, t] = (0.9 * C[:, t - 1] if t else 0.0) + spikes[:, t]
    return A, C


def _movie(mode, seed=0):
    """2p: dim cells on a dark, flat background. 1p: the same cells, 10x brighter
    background with large-scale structure that flickers, cells a few % above it."""
    A, C = _cells(seed)
    rng = np.random.default_rng(seed + 1)
    activity = np.einsum("kt,khw->thw", C, A)
    rest = A.sum(axis=0)
    if mode == "2p":
        rate = 20.0 + 40.0 * rest + 80.0 * activity
        return (2.0 * rng.poisson(rate) + 100.0).astype(np.float32), A
    field = gaussian_filter(rng.standard_normal((SIZE, SIZE)), 40, mode="wrap")
    field = (field - field.mean()) / field.std()
    flicker = 1.0 + 0.3 * gaussian_filter(rng.standard_normal(N_FRAMES), 3)[:, None, None]
    rate = 1500.0 * (1.0 + 0.3 * field) * flicker + 120.0 * rest + 150.0 * activity
    return rng.poisson(rate).astype(np.float32), A


def test_layout_and_range():
    Y, _ = _movie("2p")
    for n_key in (1, 3, 6):
        channels = input_channels(Y[:60], n_key=n_key)
        assert channels.shape == (N_SUMMARY + n_key, SIZE, SIZE)
        assert channels.dtype == np.float32
        low, high = (c / OUTPUT_SCALE for c in CLIP_SIGMAS)
        assert channels.min() >= low and channels.max() <= high
    assert SUMMARY_NAMES == ("mean", "std", "corr", "pnr", "hp_max")
    # Integer movies are accepted and give the same input as their float32 copy.
    as_int = np.round(Y[:30]).astype(np.uint16)
    np.testing.assert_array_equal(input_channels(as_int), input_channels(as_int.astype(np.float32)))


def test_key_frame_channel_shows_the_cell_that_fired():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:48, :48]
    cell = np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / 10.0)
    Y = 200.0 + rng.normal(0, 4, (80, 48, 48))
    Y[40:] += 80.0 * cell * np.exp(-np.arange(40) / 5.0)[:, None, None]
    channels = input_channels(Y.astype(np.float32), n_key=1)
    key = channels[N_SUMMARY]
    assert np.unravel_index(np.argmax(key), key.shape) in {(20, 30), (19, 30), (21, 30),
                                                           (20, 29), (20, 31)}
    assert key[20, 30] > 2.0  # strongly positive (clipped range tops at 3)
    assert abs(np.median(key)) < 0.1


@pytest.fixture(scope="module")
def both_modes():
    out = {}
    for mode in ("2p", "1p"):
        Y, A = _movie(mode)
        out[mode] = (Y, input_channels(Y))
    return out, _cells()[0].max(axis=0) > 0.5


def test_normalisation_makes_1p_and_2p_look_alike(both_modes):
    movies, cells = both_modes
    (Y2, ch2), (Y1, ch1) = movies["2p"], movies["1p"]
    # The raw movies differ by an order of magnitude in level and in cell contrast ...
    assert Y1.mean() > 5 * Y2.mean()
    for ch in (ch1, ch2):
        for c in range(N_SUMMARY):
            background = ch[c][~cells]
            # ... the normalised background is centred with the same spread in both ...
            assert abs(np.median(background)) < 0.06, SUMMARY_NAMES[c]
            iqr = np.subtract(*np.percentile(background, [75, 25]))
            assert 0.15 < iqr < 0.4, SUMMARY_NAMES[c]
    # ... and the activity channels show the same cells in both modes.
    for c in range(1, N_SUMMARY):
        name = SUMMARY_NAMES[c]
        assert np.median(ch2[c][cells]) > 0.3, name
        assert np.median(ch1[c][cells]) > 0.2, name  # 1p: shot noise of the background
        assert np.corrcoef(ch1[c].ravel(), ch2[c].ravel())[0, 1] > 0.35, name
    assert np.median(ch2[0][cells]) > 0.5  # resting cells in the 2p mean image


def test_raw_statistics_differ_without_normalisation(both_modes):
    """The check above is not trivial: before normalisation the two differ a lot."""
    movies, cells = both_modes
    std2 = movies["2p"][0].std(axis=0)
    std1 = movies["1p"][0].std(axis=0)
    assert np.median(std1[~cells]) > 5 * np.median(std2[~cells])
