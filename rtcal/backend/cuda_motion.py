"""Rigid registration of one frame in a few fused CUDA kernels instead of ~100 small launches.

On the H200 the xp-generic motion stage (:mod:`rtcal.motion.xp_rigid`) took
5.4 ms per frame at any frame size: a few hundred small CuPy launches and
host-to-device copies of scalars, not arithmetic (docs/gpu.md). This module
does the same computation in seven kernels and four cuFFT calls, with every
intermediate in buffers allocated once:

1. ``rtcal_frame_stats``: sum of the finite pixels, their count and the
   saturated count (block reductions, one atomic add per block);
2. ``rtcal_centre_bin``: the centred, b x b binned image (non-finite pixels at
   the mean), and the two wrap-around differences of Moisan's periodic part;
3. cuFFT: ``rfft2`` of the image, ``rfft`` and ``fft`` of the two differences;
4. ``rtcal_band_product``: band-passed spectrum of the periodic part, its
   power, and the cross-power spectrum with the template's conjugate;
5. cuFFT: ``irfft2`` of the cross-power spectrum;
6. ``rtcal_coarse_peak``: integer peak within +-max_shift_px (one block);
7. ``rtcal_dft_tables`` + ``rtcal_dft_partial`` + ``rtcal_dft_grid_peak``:
   the upsampled DFT of Guizar-Sicairos et al. (2008) around it, the peak of
   that grid with a parabola per axis, the bounded shift and the normalised
   score (the last one in one block).

The host then downloads eight numbers (one synchronisation) and decides
whether to trust the frame, as :class:`rtcal.motion.device_corrector.
DeviceMotionCorrector` does on the generic path; ``rtcal_shift_bilinear``
applies the shift (non-finite pixels filled) into a preallocated frame.

The orchestration (:class:`FusedRigid`) is written against a launcher and an
array module, so the tests run it on the CPU: the CUDA C below compiled with
g++ against an emulation of the CUDA built-ins, NumPy for the FFTs
(``tests/test_backend_cuda_emulated.py``), compared with the generic kernels.
On a GPU the launcher is :func:`cupy_launcher` (``pytest -m gpu``).
This module does not import CuPy; :mod:`rtcal.backend.cuda` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Each kernel's parameters as C types, in order: the one description from which the CuPy
# launcher converts Python scalars and the tests declare their ctypes entry points.
KERNEL_PARAMS: dict[str, tuple[str, ...]] = {
    "rtcal_frame_stats": ("const float*", "long long", "float", "double*"),
    "rtcal_centre_bin": ("const float*", "int", "int", "int", "int", "int", "const double*",
                         "float*", "float*", "float*"),
    "rtcal_band_product": ("float2*", "const float2*", "const float2*", "const float*",
                           "const float2*", "const float2*", "const float2*", "float2*",
                           "double*", "int", "int", "int"),
    "rtcal_coarse_peak": ("const float*", "int", "int", "int", "double*"),
    "rtcal_dft_tables": ("const float2*", "const double*", "const float2*", "const double*",
                         "const double*", "const double*", "float2*", "float2*", "int", "int",
                         "int"),
    "rtcal_dft_partial": ("const float2*", "const float2*", "float2*", "int", "int", "int"),
    "rtcal_dft_grid_peak": ("const float2*", "const float2*", "double*", "int", "int", "int",
                            "int", "int", "int", "double", "double"),
    "rtcal_shift_bilinear": ("const float*", "float*", "int", "int", "double", "double",
                             "float", "int"),
}

# Slots of the per-frame statistics buffer (float64).
SUM, N_FINITE, N_SATURATED, POWER, DY, DX, PEAK, SCORE, COARSE_Y, COARSE_X = range(10)
N_STATS = 16
N_CLEARED = 4  # the accumulated slots, zeroed before each frame

MOTION_SOURCE = r"""
#define RTCAL_PI 3.14159265358979323846

__device__ void rtcal_block_sum(double* values, const int tid, const int nt) {
    // In place over values[0:nt) (nt a power of two); the sum ends in values[0].
    __syncthreads();
    for (int s = nt >> 1; s > 0; s >>= 1) {
        if (tid < s) values[tid] += values[tid + s];
        __syncthreads();
    }
}

extern "C" __global__ void rtcal_frame_stats(
    const float* __restrict__ f, const long long n, const float saturation, double* stats)
{
    // stats[0] += sum of finite pixels, stats[1] += their count, stats[2] += saturated count.
    extern __shared__ double red[];
    const int tid = threadIdx.x, nt = blockDim.x;
    double total = 0.0, n_finite = 0.0, n_saturated = 0.0;
    for (long long i = (long long)blockIdx.x * nt + tid; i < n; i += (long long)gridDim.x * nt) {
        const float v = f[i];
        if (isfinite(v)) {
            total += (double)v;
            n_finite += 1.0;
            if (v >= saturation) n_saturated += 1.0;
        }
    }
    double* r0 = red;
    double* r1 = red + nt;
    double* r2 = red + 2 * nt;
    r0[tid] = total; r1[tid] = n_finite; r2[tid] = n_saturated;
    rtcal_block_sum(r0, tid, nt);
    rtcal_block_sum(r1, tid, nt);
    rtcal_block_sum(r2, tid, nt);
    if (tid == 0) {
        atomicAdd(&stats[0], r0[0]);
        atomicAdd(&stats[1], r1[0]);
        atomicAdd(&stats[2], r2[0]);
    }
}

__device__ float rtcal_centred(const float* f, const int W0, const int b, const float m32,
                               const int y, const int x) {
    // Mean of the b x b block (y, x) of the centred frame; non-finite pixels count as 0.
    float acc = 0.0f;
    for (int i = 0; i < b; ++i)
        for (int j = 0; j < b; ++j) {
            const float v = f[(long long)(y * b + i) * W0 + x * b + j];
            acc += isfinite(v) ? v - m32 : 0.0f;
        }
    return b == 1 ? acc : acc * (1.0f / (float)(b * b));
}

extern "C" __global__ void rtcal_centre_bin(
    const float* __restrict__ f, const int H0, const int W0, const int b, const int H,
    const int W, const double* __restrict__ stats, float* out, float* row_diff,
    float* col_diff)
{
    // out (H, W): centred and binned; row_diff (W) = out[H-1] - out[0];
    // col_diff (H) = out[:, W-1] - out[:, 0].
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)H * W) return;
    const int y = (int)(i / W), x = (int)(i % W);
    const float m32 = stats[1] > 0.0 ? (float)(stats[0] / stats[1]) : 0.0f;
    const float v = rtcal_centred(f, W0, b, m32, y, x);
    out[i] = v;
    if (y == 0) row_diff[x] = rtcal_centred(f, W0, b, m32, H - 1, x) - v;
    if (x == 0) col_diff[y] = rtcal_centred(f, W0, b, m32, y, W - 1) - v;
}

extern "C" __global__ void rtcal_band_product(
    float2* spectrum, const float2* __restrict__ a, const float2* __restrict__ bq,
    const float* __restrict__ transfer, const float2* __restrict__ g_a,
    const float2* __restrict__ g_b, const float2* __restrict__ conj_t, float2* product,
    double* stats, const int H, const int K, const int W)
{
    // spectrum <- spectrum x transfer - a[k] g_a - b[q] g_b (in place); its full-spectrum
    // power |X|^2 added to stats[3]; product = spectrum x conj_t (the template's conjugate).
    extern __shared__ double red[];
    const int tid = threadIdx.x, nt = blockDim.x;
    const long long i = (long long)blockIdx.x * nt + tid;
    double p = 0.0;
    if (i < (long long)H * K) {
        const int q = (int)(i / K), r = (int)(i % K);
        const float2 s = spectrum[i], ga = g_a[i], gb = g_b[i], ar = a[r], bb = bq[q];
        const float t = transfer[i];
        float2 z;
        z.x = s.x * t - (ar.x * ga.x - ar.y * ga.y) - (bb.x * gb.x - bb.y * gb.y);
        z.y = s.y * t - (ar.x * ga.y + ar.y * ga.x) - (bb.x * gb.y + bb.y * gb.x);
        spectrum[i] = z;
        const double weight = (r == 0 || (W % 2 == 0 && r == K - 1)) ? 1.0 : 2.0;
        p = weight * (double)(z.x * z.x + z.y * z.y);
        const float2 c = conj_t[i];
        float2 w;
        w.x = z.x * c.x - z.y * c.y;
        w.y = z.x * c.y + z.y * c.x;
        product[i] = w;
    }
    red[tid] = p;
    rtcal_block_sum(red, tid, nt);
    if (tid == 0) atomicAdd(&stats[3], red[0]);
}

extern "C" __global__ void rtcal_coarse_peak(
    const float* __restrict__ xc, const int H, const int W, const int m, double* stats)
{
    // One block. The first maximum (row-major over lags -m..m) of the circular
    // cross-correlation: stats[8], stats[9] = integer lag, stats[6] = value.
    extern __shared__ double red[];
    const int tid = threadIdx.x, nt = blockDim.x;
    const int n = 2 * m + 1;
    double* best = red;
    double* where = red + nt;
    double v_best = -1.0e300, i_best = 1.0e300;
    for (int j = tid; j < n * n; j += nt) {
        const int ly = j / n - m, lx = j % n - m;
        const double v = (double)xc[(long long)((ly + H) % H) * W + (lx + W) % W];
        if (v > v_best) { v_best = v; i_best = (double)j; }
    }
    best[tid] = v_best; where[tid] = i_best;
    __syncthreads();
    for (int s = nt >> 1; s > 0; s >>= 1) {
        if (tid < s) {
            const double vo = best[tid + s], io = where[tid + s];
            if (vo > best[tid] || (vo == best[tid] && io < where[tid])) {
                best[tid] = vo; where[tid] = io;
            }
        }
        __syncthreads();
    }
    if (tid == 0) {
        const int j = (int)where[0];
        stats[8] = (double)(j / n - m);
        stats[9] = (double)(j % n - m);
        stats[6] = best[0];
    }
}

extern "C" __global__ void rtcal_dft_tables(
    const float2* __restrict__ phase_y, const double* __restrict__ ky,
    const float2* __restrict__ phase_x, const double* __restrict__ kx,
    const double* __restrict__ half_weights, const double* __restrict__ stats, float2* row,
    float2* col, const int n, const int H, const int K)
{
    // row (n, H) = phase_y x exp(2 pi i cy ky); col (n, K) = phase_x x exp(2 pi i cx kx)
    // x half_weights, for the coarse lag (cy, cx) = stats[8], stats[9].
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long n_row = (long long)n * H;
    if (i < n_row) {
        const int y = (int)(i % H);
        const double angle = 2.0 * RTCAL_PI * stats[8] * ky[y];
        float2 base; base.x = (float)cos(angle); base.y = (float)sin(angle);
        const float2 p = phase_y[i];
        float2 out; out.x = p.x * base.x - p.y * base.y; out.y = p.x * base.y + p.y * base.x;
        row[i] = out;
    } else if (i < n_row + (long long)n * K) {
        const long long j = i - n_row;
        const int k = (int)(j % K);
        const double angle = 2.0 * RTCAL_PI * stats[9] * kx[k];
        float2 base;
        base.x = (float)(cos(angle) * half_weights[k]);
        base.y = (float)(sin(angle) * half_weights[k]);
        const float2 p = phase_x[j];
        float2 out; out.x = p.x * base.x - p.y * base.y; out.y = p.x * base.y + p.y * base.x;
        col[j] = out;
    }
}

extern "C" __global__ void rtcal_dft_partial(
    const float2* __restrict__ product, const float2* __restrict__ row, float2* partial,
    const int n, const int H, const int K)
{
    // partial (n, K) = row (n, H) @ product (H, K), float64 accumulation.
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n * K) return;
    const int r = (int)(i / K), k = (int)(i % K);
    double re = 0.0, im = 0.0;
    for (int y = 0; y < H; ++y) {
        const float2 a = row[(long long)r * H + y], p = product[(long long)y * K + k];
        re += (double)a.x * p.x - (double)a.y * p.y;
        im += (double)a.x * p.y + (double)a.y * p.x;
    }
    float2 out; out.x = (float)re; out.y = (float)im;
    partial[i] = out;
}

__device__ double rtcal_parabola(const double left, const double centre, const double right) {
    const double denom = left - 2.0 * centre + right;
    if (!(denom < 0.0)) return 0.0;
    double o = 0.5 * (left - right) / denom;
    return o < -0.5 ? -0.5 : (o > 0.5 ? 0.5 : o);
}

extern "C" __global__ void rtcal_dft_grid_peak(
    const float2* __restrict__ partial, const float2* __restrict__ col, double* stats,
    const int n, const int K, const int H, const int W, const int upsample, const int half,
    const double bound, const double power_t)
{
    // One block, n*n doubles of shared memory (n = 0: no refinement). The correlation on
    // the n x n grid of lags coarse + (i - half) / upsample, its first maximum refined by
    // a parabola per axis; stats[4], stats[5] = shift (bounded), stats[6] = peak,
    // stats[7] = normalised score against the template's power.
    extern __shared__ double red[];
    const int tid = threadIdx.x, nt = blockDim.x;
    for (int g = tid; g < n * n; g += nt) {
        const int i = g / n, j = g % n;
        double acc = 0.0;
        for (int k = 0; k < K; ++k) {
            const float2 a = partial[(long long)i * K + k], c = col[(long long)j * K + k];
            acc += (double)a.x * c.x - (double)a.y * c.y;
        }
        red[g] = acc / ((double)H * (double)W);
    }
    __syncthreads();
    if (tid != 0) return;
    double dy = stats[8], dx = stats[9], peak = stats[6];
    if (n > 0) {
        int best = 0;
        for (int g = 1; g < n * n; ++g)
            if (red[g] > red[best]) best = g;
        const int iy = best / n, ix = best % n;
        const int iy_in = iy < 1 ? 1 : (iy > n - 2 ? n - 2 : iy);
        const int ix_in = ix < 1 ? 1 : (ix > n - 2 ? n - 2 : ix);
        double oy = rtcal_parabola(red[(iy_in - 1) * n + ix], red[iy_in * n + ix],
                                   red[(iy_in + 1) * n + ix]);
        double ox = rtcal_parabola(red[iy * n + ix_in - 1], red[iy * n + ix_in],
                                   red[iy * n + ix_in + 1]);
        if (iy != iy_in) oy = 0.0;
        if (ix != ix_in) ox = 0.0;
        dy += (iy - half + oy) / upsample;
        dx += (ix - half + ox) / upsample;
        dy = dy < -bound ? -bound : (dy > bound ? bound : dy);
        dx = dx < -bound ? -bound : (dx > bound ? bound : dx);
        if (red[best] > peak) peak = red[best];
    }
    const double energy = sqrt(stats[3] * power_t);
    stats[4] = dy;
    stats[5] = dx;
    stats[6] = peak;
    stats[7] = energy > 0.0 ? peak * ((double)H * (double)W) / energy : 0.0;
}

extern "C" __global__ void rtcal_shift_bilinear(
    const float* __restrict__ f, float* out, const int H, const int W, const double dy,
    const double dx, const float fill, const int fill_nonfinite)
{
    // out[y, x] = f(y - dy, x - dx), bilinear, coordinates clamped to the frame;
    // non-finite source pixels read as `fill` when fill_nonfinite.
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)H * W) return;
    const int y = (int)(i / W), x = (int)(i % W);
    double sy = (double)y - dy, sx = (double)x - dx;
    sy = sy < 0.0 ? 0.0 : (sy > H - 1.0 ? H - 1.0 : sy);
    sx = sx < 0.0 ? 0.0 : (sx > W - 1.0 ? W - 1.0 : sx);
    const int y0 = (int)floor(sy), x0 = (int)floor(sx);
    const int y1 = y0 + 1 < H ? y0 + 1 : H - 1, x1 = x0 + 1 < W ? x0 + 1 : W - 1;
    const float wy = (float)(sy - y0), wx = (float)(sx - x0);
    float v00 = f[(long long)y0 * W + x0], v01 = f[(long long)y0 * W + x1];
    float v10 = f[(long long)y1 * W + x0], v11 = f[(long long)y1 * W + x1];
    if (fill_nonfinite) {
        if (!isfinite(v00)) v00 = fill;
        if (!isfinite(v01)) v01 = fill;
        if (!isfinite(v10)) v10 = fill;
        if (!isfinite(v11)) v11 = fill;
    }
    const float top = v00 * (1.0f - wx) + v01 * wx;
    const float bottom = v10 * (1.0f - wx) + v11 * wx;
    out[i] = top * (1.0f - wy) + bottom * wy;
}
"""

Launcher = Callable[[str, int, int, tuple, int], None]
"""launch(kernel name, blocks, threads per block, arguments, shared-memory bytes).

A launcher may carry ``threads`` and ``stats_blocks`` attributes: the launch geometry
:class:`FusedRigid` then uses unless told otherwise (the tests' CPU emulation, which
runs a thread per CUDA thread, asks for small blocks)."""

THREADS = 256
STATS_BLOCKS = 128
MAX_SHARED_BYTES = 48 * 1024  # what a block gets without opting in to more


def refinement_grid(tables) -> int:
    """n: the side of the refinement grid (0 without refinement)."""
    return int(tables.phase_y.shape[0]) if tables.upsample > 1 else 0


def fits(tables) -> bool:
    """Whether the fused kernels can register with these tables: the refinement grid
    (n x n doubles) must fit one block's shared memory (upsample <= ~36)."""
    return refinement_grid(tables) ** 2 * 8 <= MAX_SHARED_BYTES


@dataclass(frozen=True)
class Measured:
    """One frame's registration numbers, on the host: mean of the finite pixels (NaN if
    none), non-finite and saturated pixel counts, band-passed power, shift (dy, dx) in
    correlated px, normalised score."""

    mean: float
    n_nonfinite: int
    n_saturated: int
    power: float
    dy: float
    dx: float
    score: float


class FusedRigid:
    """The fused kernels' buffers and launch order for one frame shape.

    tables: :class:`rtcal.motion.xp_rigid.RigidTables` on the same array module ``xp``;
    raw_shape: (H0, W0) of the frames; bin_px: the binning b (tables.shape = (H0//b, W0//b));
    launch: a :data:`Launcher`; fft: that module's FFT functions (``rfft2``, ``rfft``,
    ``fft``, ``irfft2``); to_host: device array -> NumPy array; threads: per block (a
    power of two); stats_blocks: blocks of the frame-statistics reduction (both default
    to the launcher's attributes of those names, else 256 and 128).
    """

    def __init__(self, tables, raw_shape: tuple[int, int], bin_px: int, xp, fft,
                 launch: Launcher, to_host: Callable, threads: int | None = None,
                 stats_blocks: int | None = None) -> None:
        if threads is None:
            threads = getattr(launch, "threads", THREADS)
        if stats_blocks is None:
            stats_blocks = getattr(launch, "stats_blocks", STATS_BLOCKS)
        if threads < 32 or threads & (threads - 1):
            raise ValueError(f"threads={threads}: a power of two >= 32 (block reductions)")
        self.threads, self.stats_blocks = int(threads), int(stats_blocks)
        self.tables = tables
        self.raw_shape = (int(raw_shape[0]), int(raw_shape[1]))
        self.bin_px = int(bin_px)
        self.xp, self.fft, self.launch, self.to_host = xp, fft, launch, to_host
        H, W = tables.shape
        K = W // 2 + 1
        if not fits(tables):
            raise ValueError(f"upsample={tables.upsample}: the refinement grid does not fit "
                             "a block's shared memory")
        n = refinement_grid(tables)
        self._n = n
        self._m = int(tables.window_rows.shape[0] - 1) // 2
        self.stats = xp.zeros(N_STATS, xp.float64)
        self.image = xp.zeros((H, W), xp.float32)
        self.row_diff = xp.zeros(W, xp.float32)
        self.col_diff = xp.zeros(H, xp.float32)
        self.product = xp.zeros((H, K), xp.complex64)
        self.row = xp.zeros((max(n, 1), H), xp.complex64)
        self.col = xp.zeros((max(n, 1), K), xp.complex64)
        self.partial = xp.zeros((max(n, 1), K), xp.complex64)

    def _blocks(self, count: int) -> int:
        return max(1, (int(count) + self.threads - 1) // self.threads)

    def measure(self, frame32, saturation: float, template_conj, template_power: float
                ) -> Measured:
        """Register a float32 (H0, W0) device frame against the template (its spectrum's
        conjugate, complex64 (H, K), and its power); one download of eight numbers."""
        xp, fft, launch, t = self.xp, self.fft, self.launch, self.tables
        H, W = t.shape
        K = W // 2 + 1
        H0, W0 = self.raw_shape
        n, m = self._n, self._m
        threads = self.threads
        self.stats[:N_CLEARED] = 0
        launch("rtcal_frame_stats", self.stats_blocks, threads,
               (frame32, H0 * W0, float(saturation), self.stats), 3 * threads * 8)
        launch("rtcal_centre_bin", self._blocks(H * W), threads,
               (frame32, H0, W0, self.bin_px, H, W, self.stats, self.image, self.row_diff,
                self.col_diff), 0)
        spectrum = fft.rfft2(self.image).astype(xp.complex64, copy=False)
        a = fft.rfft(self.row_diff).astype(xp.complex64, copy=False)
        b = fft.fft(self.col_diff).astype(xp.complex64, copy=False)
        launch("rtcal_band_product", self._blocks(H * K), threads,
               (spectrum, a, b, t.transfer, t.g_a, t.g_b, template_conj, self.product,
                self.stats, H, K, W), threads * 8)
        xc = fft.irfft2(self.product, s=(H, W)).astype(xp.float32, copy=False)
        launch("rtcal_coarse_peak", 1, threads, (xc, H, W, m, self.stats), 2 * threads * 8)
        if n > 0:
            launch("rtcal_dft_tables", self._blocks(n * (H + K)), threads,
                   (t.phase_y, t.ky, t.phase_x, t.kx, t.half_weights, self.stats, self.row,
                    self.col, n, H, K), 0)
            launch("rtcal_dft_partial", self._blocks(n * K), threads,
                   (self.product, self.row, self.partial, n, H, K), 0)
        launch("rtcal_dft_grid_peak", 1, threads,
               (self.partial, self.col, self.stats, n, K, H, W, t.upsample, t.half,
                t.max_shift_px, float(template_power)), max(n * n, 1) * 8)
        s = np.asarray(self.to_host(self.stats[:8]), np.float64)
        mean = s[SUM] / s[N_FINITE] if s[N_FINITE] > 0 else float("nan")
        return Measured(float(mean), int(H0 * W0 - s[N_FINITE]), int(s[N_SATURATED]),
                        float(s[POWER]), float(s[DY]), float(s[DX]), float(s[SCORE]))

    def shift(self, frame32, dy: float, dx: float, fill: float | None):
        """out[y, x] = frame(y - dy, x - dx), bilinear, edges replicated, a new float32
        (H0, W0) array; non-finite pixels read as ``fill`` unless it is None."""
        H0, W0 = self.raw_shape
        out = self.xp.empty(self.raw_shape, self.xp.float32)
        self.launch("rtcal_shift_bilinear", self._blocks(H0 * W0), self.threads,
                    (frame32, out, H0, W0, float(dy), float(dx),
                     0.0 if fill is None else float(fill), 0 if fill is None else 1), 0)
        return out


_NUMPY_SCALARS = {"int": np.int32, "long long": np.int64, "float": np.float32,
                  "double": np.float64}


def typed_args(name: str, args: tuple) -> tuple:
    """Arguments of kernel ``name`` with each scalar as the NumPy type its C parameter
    needs (arrays and None pass through)."""
    params = KERNEL_PARAMS[name]
    if len(params) != len(args):
        raise TypeError(f"{name} takes {len(params)} arguments, got {len(args)}")
    out = []
    for c_type, value in zip(params, args, strict=True):
        out.append(_NUMPY_SCALARS[c_type](value) if c_type in _NUMPY_SCALARS else value)
    return tuple(out)
