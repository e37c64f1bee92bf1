"""Numba kernels of the rolling-window statistics: arrays in, arrays out.

The live buffer keeps every frame it holds in a ring of slots ``ring`` (R, H, W)
float32, and for each slot two small images computed when the frame arrives:

    bg[s]  (Hb, Wb)  smooth background of the frame: its 8 x 8 block means,
                     Gaussian-blurred (sigma BACKGROUND_SIGMA_PX / 8 blocks,
                     symmetric edges, truncated at 3 sigma);
    act[s] (Ha, Wa)  the background-free frame averaged over 4 x 4 blocks
                     (what key frames are chosen from).

The background-free ("flat") frame is z[i, j] = y[i, j] - bg[i // 8, j // 8].
``fold_rows`` adds weighted frames' contributions to the seven running sums of
``STAT_NAMES`` and to a running maximum, a band of rows at a time, and can keep
a block's contribution so that ``unfold_rows`` takes it out again later; the
plain NumPy definitions of the same quantities are in ``rtcal.buffer.reference``,
and the tests hold the two equal.
"""

from __future__ import annotations

import numba
import numpy as np

BG_SHIFT = 3  # background blocks are 1 << 3 = 8 px square
ACT_SHIFT = 2  # activity blocks are 1 << 2 = 4 px square
BACKGROUND_SIGMA_PX = 20.0  # well above a soma radius (2p 3-7 px, 1p 7-14 px)
TRUNCATE_SIGMAS = 3.0

# The sums, in the order of the first axis of a sums array (7, H, W) float64.
# z_p z_q products pair pixel p = (i, j) with its forward neighbour q = p + (dy, dx)
# and are stored at p (the other four neighbours follow by symmetry).
STAT_NAMES = ("z", "z2", "absdiff", "x_right", "x_downleft", "x_down", "x_downright")
N_STATS = len(STAT_NAMES)
FORWARD_NEIGHBOURS = ((0, 1), (1, -1), (1, 0), (1, 1))  # order of the x_* sums


def coarse_shape(height: int, width: int, shift: int) -> tuple[int, int]:
    """Shape of the block grid of (1 << shift)-px blocks covering (height, width)."""
    step = 1 << shift
    return (height + step - 1) // step, (width + step - 1) // step


def gaussian_taps(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian, radius int(3 sigma + 0.5) (scipy.ndimage's rule). float32."""
    radius = int(TRUNCATE_SIGMAS * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


@numba.njit(cache=True, inline="always")
def _mirror(k: int, n: int) -> int:
    """Index k reflected into [0, n) symmetrically (d c b a | a b c d), any k."""
    period = 2 * n
    k %= period
    if k < 0:
        k += period
    return period - 1 - k if k >= n else k


@numba.njit(cache=True)
def ingest_frame(frame, out, block8, block4) -> bool:
    """Copy ``frame`` (H, W) into ``out`` float32 and write its 8 x 8 and 4 x 4 block
    means into ``block8`` (Hb, Wb) and ``block4`` (Ha, Wa) float32 (edge blocks
    average the pixels they have). Returns False if any pixel is not finite."""
    H, W = frame.shape
    block8[:] = 0.0
    block4[:] = 0.0
    w4 = W >> 2
    total = 0.0
    for i in range(H):
        src = frame[i]
        dst = out[i]
        row4 = block4[i >> 2]
        for c in range(w4):  # whole 4-px blocks: a fixed inner loop vectorises
            acc = np.float32(0.0)
            for u in range(4):
                v = np.float32(src[4 * c + u])
                dst[4 * c + u] = v
                acc += v
            row4[c] += acc
        for j in range(4 * w4, W):
            v = np.float32(src[j])
            dst[j] = v
            row4[j >> 2] += v
    Ha, Wa = block4.shape
    for a in range(Ha):
        n_rows = min(H, 4 * a + 4) - 4 * a
        for b in range(Wa):
            n_cols = min(W, 4 * b + 4) - 4 * b
            s = block4[a, b]
            total += s
            block8[a >> 1, b >> 1] += s
            block4[a, b] = s / (n_rows * n_cols)
    Hb, Wb = block8.shape
    for a in range(Hb):
        n_rows = min(H, 8 * a + 8) - 8 * a
        for b in range(Wb):
            n_cols = min(W, 8 * b + 8) - 8 * b
            block8[a, b] /= n_rows * n_cols
    return np.isfinite(total)


@numba.njit(cache=True)
def blur_background(block8, taps, scratch, padded, out) -> None:
    """Separable Gaussian blur of ``block8`` (Hb, Wb) with symmetric edges into ``out``.
    taps: (2r + 1,) float32; scratch: (Hb, Wb) float32; padded: (Wb + 2r,) float32."""
    Hb, Wb = block8.shape
    n_taps = taps.shape[0]
    r = n_taps // 2
    for a in range(Hb):  # along rows, through a mirror-padded copy of the row
        for k in range(Wb + 2 * r):
            padded[k] = block8[a, _mirror(k - r, Wb)]
        row = scratch[a]
        row[:] = 0.0
        for k in range(n_taps):
            w = taps[k]
            for b in range(Wb):
                row[b] += w * padded[b + k]
    for a in range(Hb):  # along columns, a whole row at a time
        row = out[a]
        row[:] = 0.0
        for k in range(n_taps):
            w = taps[k]
            src = scratch[_mirror(a + k - r, Hb)]
            for b in range(Wb):
                row[b] += w * src[b]


@numba.njit(cache=True)
def flatten_blocks(block4, bg, out) -> None:
    """out = block4 - bg at the 8-px block holding each 4-px block: the 4 x 4 block
    means of the flat frame (each 4-px block lies inside one 8-px block)."""
    Ha, Wa = block4.shape
    for a in range(Ha):
        for b in range(Wa):
            out[a, b] = block4[a, b] - bg[a >> 1, b >> 1]


@numba.njit(cache=True, inline="always")
def _flat_row(ring, bg, ref, s, i, out) -> None:
    """out[:] = flat frame of slot s, row i, minus the reference: ring[s, i] - its 8-px
    background row - ref[i]."""
    W = out.shape[0]
    y = ring[s, i]
    b = bg[s, i >> BG_SHIFT]
    r = ref[i]
    w8 = W >> BG_SHIFT
    for c in range(w8):  # fixed inner length: vectorises (an index j >> 3 would not)
        v = b[c]
        for u in range(8):
            out[8 * c + u] = y[8 * c + u] - v - r[8 * c + u]
    for j in range(8 * w8, W):
        out[j] = y[j] - b[j >> BG_SHIFT] - r[j]


ROW_GROUP = 4  # rows handled together: each frame is read in runs of 5 contiguous rows


@numba.njit(cache=True, fastmath=True)
def fold_rows(ring, bg, ref, slots, bounds, prev_slots, w_frame, w_pair, in_max, r0, r1, sums,
              peak, acc, rows, store, store_run) -> None:
    """Add weighted contributions of runs of consecutive frames to ``sums`` rows [r0, r1).

    Run g is items bounds[g] .. bounds[g + 1] - 1 of ``slots`` (int64 ring slots of
    consecutive frames, oldest first); prev_slots[g] is the slot of the frame before
    the run's first, or -1 if there is none. For item k (frame t) with
    d_t = z_t - ref, the flat frame less a fixed reference image ref (H, W) float32:

        sums[z]       += w_frame[k] d_t          sums[absdiff] += w_pair[k] |d_t - d_{t-1}|
        sums[z2]      += w_frame[k] d_t^2        sums[x_*]     += w_frame[k] d_t[p] d_t[q]
        peak           = max(peak, (z_t + z_{t-1}) / 2)   where in_max[k]

    (the reference keeps the float32 sums small: see ``SummaryAccumulator``).

    Pair terms are skipped for an item with no predecessor. sums: (7, H, W)
    float64; peak: (H, W) float32. Rows are taken ROW_GROUP at a time, all frames
    of a run for each group, so what a group needs stays in cache; each run's
    contributions to a group are summed in float32 in ``acc`` (7, ROW_GROUP, W) and
    then added to ``sums``. Run ``store_run`` (or none if -1) also writes its float32
    contributions to ``store`` (7, H, W), so that ``unfold_rows`` can later take
    exactly the same numbers out again. Scratch ``rows``: (3, ROW_GROUP + 1, W).
    """
    H = ring.shape[1]
    for i0 in range(r0, r1, ROW_GROUP):
        n_rows = min(ROW_GROUP, r1 - i0)
        n_flat = min(n_rows + 1, H - i0)  # the group's rows and the row below it
        for g in range(bounds.shape[0] - 1):
            acc[:, :n_rows] = 0.0
            first, last = bounds[g], bounds[g + 1]
            prv, a, b = 0, 1, 2  # which of the three row buffers holds what
            has_prev = prev_slots[g] >= 0
            if has_prev:
                for u in range(n_rows):
                    _flat_row(ring, bg, ref, prev_slots[g], i0 + u, rows[prv, u])
            k = first
            while k < last:
                # Two frames at a time when they share a weight: the accumulators are
                # read and written once for both (the same pairing every time a run is
                # folded, so adding and removing it still cancel exactly).
                two = k + 1 < last and w_frame[k + 1] == w_frame[k]
                for u in range(n_flat):
                    _flat_row(ring, bg, ref, slots[k], i0 + u, rows[a, u])
                if two:
                    for u in range(n_flat):
                        _flat_row(ring, bg, ref, slots[k + 1], i0 + u, rows[b, u])
                wf = np.float32(w_frame[k])
                if wf != 0.0:
                    for u in range(n_rows):
                        below = u + 1 < n_flat
                        if two:
                            _frame_terms2(rows[a, u], rows[a, u + 1], rows[b, u],
                                          rows[b, u + 1], below, wf, acc, u)
                        else:
                            _frame_terms(rows[a, u], rows[a, u + 1], below, wf, acc, u)
                if k > first or has_prev:
                    _pair_terms(rows[a], rows[prv], n_rows, np.float32(w_pair[k]), in_max[k],
                                acc, peak, ref, i0)
                if two:
                    _pair_terms(rows[b], rows[a], n_rows, np.float32(w_pair[k + 1]),
                                in_max[k + 1], acc, peak, ref, i0)
                    prv, a, b = b, prv, a
                    k += 2
                else:
                    prv, a = a, prv
                    k += 1
            for c in range(N_STATS):
                for u in range(n_rows):
                    dst = sums[c, i0 + u]
                    src = acc[c, u]
                    for j in range(dst.shape[0]):
                        dst[j] += src[j]
                    if g == store_run:
                        store[c, i0 + u] = src


@numba.njit(cache=True)
def unfold_rows(sums, store, r0, r1) -> None:
    """sums[:, r0:r1] -= store[:, r0:r1]: take out a block that ``fold_rows`` stored.
    The float32 values are the ones that were added, so the float64 totals return to
    what they were (no drift over hours)."""
    for c in range(N_STATS):
        for i in range(r0, r1):
            dst = sums[c, i]
            src = store[c, i]
            for j in range(dst.shape[0]):
                dst[j] -= src[j]


@numba.njit(cache=True, fastmath=True, inline="always")
def _pair_terms(cur, prv, n_rows, wp, in_max, acc, peak, ref, i0) -> None:
    """|z_t - z_{t-1}| into acc[absdiff] (weight wp) and the pair-mean peak, per row."""
    W = cur.shape[1]
    for u in range(n_rows):
        c = cur[u]
        z = prv[u]
        if wp != 0.0:
            d = acc[2, u]
            for j in range(W):
                d[j] += wp * abs(c[j] - z[j])
        if in_max:
            pk = peak[i0 + u]
            r = ref[i0 + u]
            for j in range(W):
                pk[j] = max(pk[j], np.float32(0.5) * (c[j] + z[j]) + r[j])


@numba.njit(cache=True, fastmath=True, inline="always")
def _frame_terms2(c0, n0, c1, n1, below, wf, acc, u) -> None:
    """``_frame_terms`` for two frames (rows c0, c1; rows below n0, n1) of one weight."""
    W = c0.shape[0]
    s1 = acc[0, u]
    s2 = acc[1, u]
    for j in range(W):
        z = wf * c0[j]
        y = wf * c1[j]
        s1[j] += z + y
        s2[j] += z * c0[j] + y * c1[j]
    xr = acc[3, u]
    for j in range(W - 1):
        xr[j] += wf * (c0[j] * c0[j + 1] + c1[j] * c1[j + 1])
    if below:
        xdl = acc[4, u]
        xd = acc[5, u]
        xdr = acc[6, u]
        for j in range(W):
            xd[j] += wf * (c0[j] * n0[j] + c1[j] * n1[j])
        for j in range(W - 1):
            xdr[j] += wf * (c0[j] * n0[j + 1] + c1[j] * n1[j + 1])
        for j in range(W - 1):
            xdl[j + 1] += wf * (c0[j + 1] * n0[j] + c1[j + 1] * n1[j])


@numba.njit(cache=True, fastmath=True, inline="always")
def _frame_terms(cur, nxt, below, wf, acc, u) -> None:
    """One flat row's terms: z, z^2 and the products with its forward neighbours."""
    W = cur.shape[0]
    s1 = acc[0, u]
    s2 = acc[1, u]
    for j in range(W):
        z = wf * cur[j]
        s1[j] += z
        s2[j] += z * cur[j]
    xr = acc[3, u]
    for j in range(W - 1):
        xr[j] += wf * cur[j] * cur[j + 1]
    if below:
        xdl = acc[4, u]
        xd = acc[5, u]
        xdr = acc[6, u]
        for j in range(W):
            xd[j] += wf * cur[j] * nxt[j]
        for j in range(W - 1):
            xdr[j] += wf * cur[j] * nxt[j + 1]
        for j in range(W - 1):
            xdl[j + 1] += wf * cur[j + 1] * nxt[j]
