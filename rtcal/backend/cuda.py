"""Everything that touches CuPy: the capability check, fused kernels and CUDA graphs.

This is the only module of rtcal that imports CuPy, and it does so lazily
(:func:`import_cupy`), so that ``import rtcal`` and the "cpu" backend never
need it. The per-frame kernels are xp-generic (``rtcal.motion.xp_rigid``,
``rtcal.nmf.xp_*``); what lives here are the alternatives that pay on a GPU:

- :func:`hals_levels_fused`: the level-scheduled trace HALS of
  :func:`rtcal.nmf.xp_hals.hals_levels` in one single-block kernel (8 threads
  per component, the whole block for a one-row level, ``__syncthreads``
  between levels), instead of ~5 launches per level and sweep;
- :func:`refine_block_fused`: one block of footprint HALS
  (:func:`rtcal.nmf.xp_shapes.refine_block`) in one kernel that reads the
  round-robin order from device memory, so it can sit inside a CUDA graph;
- :func:`csr_matvec`: CSR x dense vector (A y and A^T c) without cuSPARSE,
  which CuPy refuses inside a graph capture;
- :func:`motion_launcher`: launches the fused rigid-registration kernels of
  :mod:`rtcal.backend.cuda_motion`;
- :class:`CapturedGraph`: capture a function of static buffers once and replay
  it with one launch.

None of this has run on hardware yet (see docs/gpu.md); the GPU tests
(``pytest -m gpu``) compare every kernel here with its xp-generic twin.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

from rtcal.backend import BackendUnavailableError

_CUPY = None
INSTALL_HINT = "install it with `pip install -e .[gpu]` (cupy-cuda12x, needs a CUDA 12 driver)"


def import_cupy():
    """The cupy module, imported on first use; BackendUnavailableError if it cannot be."""
    global _CUPY
    if _CUPY is None:
        try:
            import cupy
        except (ImportError, OSError, RuntimeError) as e:
            raise BackendUnavailableError(
                f"the 'cuda' backend needs CuPy, which is not importable here ({e}); {INSTALL_HINT}"
            ) from e
        _CUPY = cupy
    return _CUPY


def device_count() -> int:
    """Number of visible CUDA devices (0 if the driver or runtime cannot be reached)."""
    cp = import_cupy()
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except cp.cuda.runtime.CUDARuntimeError:
        return 0


def require_device():
    """cupy, after checking that a CUDA device is visible; else BackendUnavailableError."""
    cp = import_cupy()
    if device_count() == 0:
        raise BackendUnavailableError(
            "CuPy is installed but no CUDA device is visible (cudaGetDeviceCount found none: "
            "check the driver, nvidia-smi and CUDA_VISIBLE_DEVICES); use --backend cpu"
        )
    return cp


def available() -> bool:
    """Whether CuPy imports and a CUDA device is visible."""
    try:
        require_device()
    except BackendUnavailableError:
        return False
    return True


def synchronize() -> None:
    """Wait for all work queued on the current device."""
    import_cupy().cuda.Device().synchronize()


def pool_bytes() -> int:
    """Bytes held by CuPy's default device memory pool (freed blocks stay held, so this
    is close to the peak of what was in use at once)."""
    return int(import_cupy().get_default_memory_pool().total_bytes())


def sparse_module():
    """cupyx.scipy.sparse."""
    import_cupy()
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse


# ------------------------------------------------------------------ kernels
_HALS_SOURCE = r"""
#define RTCAL_GROUP 8
extern "C" __global__ void rtcal_hals_levels(
    const double* __restrict__ G, const double* __restrict__ b, double* c,
    const unsigned char* __restrict__ nonneg, const long long* __restrict__ pat_ptr,
    const long long* __restrict__ pat_idx, const long long* __restrict__ lvl_ptr,
    const long long* __restrict__ lvl_rows, const int n_levels, const long long n,
    const int n_sweeps)
{
    // One block, blockDim a power of two >= 32, blockDim doubles of dynamic shared memory.
    // Rows of one level never read each other (G_kj = 0 between them), so a level is
    // updated at once: RTCAL_GROUP threads per row (footprint rows read ~10-30 columns),
    // or the whole block for a level of one row (the background rows read all n).
    // __syncthreads orders the levels.
    extern __shared__ double red[];
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const int lane = tid % RTCAL_GROUP;
    const int group = tid / RTCAL_GROUP;
    const int n_groups = nt / RTCAL_GROUP;
    for (int sweep = 0; sweep < n_sweeps; ++sweep) {
        for (int level = 0; level < n_levels; ++level) {
            const long long lo = lvl_ptr[level], hi = lvl_ptr[level + 1];
            if (hi - lo == 1) {  // the same for every thread
                const long long k = lvl_rows[lo];
                double acc = 0.0;
                for (long long q = pat_ptr[k] + tid; q < pat_ptr[k + 1]; q += nt) {
                    const long long j = pat_idx[q];
                    acc += G[k * n + j] * c[j];
                }
                red[tid] = acc;
                __syncthreads();
                for (int s = nt >> 1; s > 0; s >>= 1) {
                    if (tid < s) red[tid] += red[tid + s];
                    __syncthreads();
                }
                if (tid == 0) {
                    const double gkk = G[k * n + k];
                    if (gkk > 0.0) {
                        double ck = c[k] + (b[k] - red[0]) / gkk;
                        if (nonneg[k] && ck < 0.0) ck = 0.0;
                        c[k] = ck;
                    }
                }
            } else {
                // The same trip count for every thread, so that whole warps shuffle.
                for (long long base = lo; base < hi; base += n_groups) {
                    const long long r = base + group;
                    const bool active = r < hi;
                    const long long k = active ? lvl_rows[r] : 0;
                    double acc = 0.0;
                    if (active) {
                        for (long long q = pat_ptr[k] + lane; q < pat_ptr[k + 1];
                             q += RTCAL_GROUP) {
                            const long long j = pat_idx[q];
                            acc += G[k * n + j] * c[j];
                        }
                    }
                    for (int off = RTCAL_GROUP / 2; off > 0; off >>= 1)
                        acc += __shfl_down_sync(0xffffffffu, acc, off, RTCAL_GROUP);
                    if (active && lane == 0) {
                        const double gkk = G[k * n + k];
                        if (gkk > 0.0) {
                            double ck = c[k] + (b[k] - acc) / gkk;
                            if (nonneg[k] && ck < 0.0) ck = 0.0;
                            c[k] = ck;
                        }
                    }
                }
            }
            __syncthreads();
        }
    }
}
"""

_REFINE_SOURCE = r"""
extern "C" __global__ void rtcal_refine_block(
    float* data, float* at_data, const double* __restrict__ w, const double* __restrict__ M,
    double* G, const double* __restrict__ B64, const long long* __restrict__ indptr,
    const long long* __restrict__ indices, const long long* __restrict__ t_of_a,
    const long long* __restrict__ pair_ptr, const long long* __restrict__ pair_t,
    const long long* __restrict__ pair_comp, const long long* __restrict__ ov_ptr,
    const long long* __restrict__ ov_idx, const int* __restrict__ order, const int n_order,
    const long long K, const long long n, const long long nb, const long long P,
    const double min_mkk, double* scratch)
{
    // One block, blockDim a power of two, blockDim doubles of dynamic shared memory.
    extern __shared__ double red[];
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    for (int o = 0; o < n_order; ++o) {
        const long long k = order[o];
        if (k < 0) continue;  // an empty slot (the same for every thread: barrier-safe)
        const long long lo = indptr[k], hi = indptr[k + 1];
        const double mkk = M[k * K + k];
        if (mkk >= min_mkk) {  // the same for every thread: the barriers below are safe
            // a_k <- max(0, a_k + (W_k - A^T M_k) / M_kk) on k's support
            for (long long q = lo + tid; q < hi; q += nt) {
                double z = 0.0;
                for (long long p = pair_ptr[q]; p < pair_ptr[q + 1]; ++p)
                    z += M[pair_comp[p] * K + k] * (double)at_data[pair_t[p]];
                const double v = (double)data[q] + (w[q] - z) / mkk;
                scratch[q - lo] = v > 0.0 ? v : 0.0;
            }
            __syncthreads();
            for (long long q = lo + tid; q < hi; q += nt) {
                const float v = (float)scratch[q - lo];
                data[q] = v;
                at_data[t_of_a[q]] = v;
            }
            for (long long e = ov_ptr[k] + tid; e < ov_ptr[k + 1]; e += nt)
                G[k * n + ov_idx[e]] = 0.0;
            __syncthreads();
            // Gram row k: G_kj = sum over shared pixels of a_k a_j
            for (long long q = lo + tid; q < hi; q += nt) {
                const double a = (double)data[q];
                for (long long p = pair_ptr[q]; p < pair_ptr[q + 1]; ++p)
                    atomicAdd(&G[k * n + pair_comp[p]], a * (double)at_data[pair_t[p]]);
            }
            __syncthreads();
            for (long long e = ov_ptr[k] + tid; e < ov_ptr[k + 1]; e += nt) {
                const long long j = ov_idx[e];
                G[j * n + k] = G[k * n + j];
            }
        }
        // Footprint x background block: G_k,K+i = b_i . a_k (always, as OnlineNMF does)
        for (long long i = 0; i < nb; ++i) {
            double acc = 0.0;
            for (long long q = lo + tid; q < hi; q += nt)
                acc += B64[i * P + indices[q]] * (double)data[q];
            red[tid] = acc;
            __syncthreads();
            for (int s = nt >> 1; s > 0; s >>= 1) {
                if (tid < s) red[tid] += red[tid + s];
                __syncthreads();
            }
            if (tid == 0) {
                G[k * n + K + i] = red[0];
                G[(K + i) * n + k] = red[0];
            }
            __syncthreads();
        }
    }
}
"""

_MATVEC_SOURCE = r"""
extern "C" __global__ void rtcal_csr_matvec_warp(
    const long long* __restrict__ indptr, const long long* __restrict__ indices,
    const float* __restrict__ data, const float* __restrict__ x, float* out,
    const long long n_rows)
{
    // A warp per row: rows with hundreds of entries (footprints).
    const long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= n_rows) return;  // whole warps leave together
    double acc = 0.0;
    for (long long p = indptr[row] + lane; p < indptr[row + 1]; p += 32)
        acc += (double)data[p] * (double)x[indices[p]];
    for (int off = 16; off > 0; off >>= 1)
        acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) out[row] = (float)acc;
}

extern "C" __global__ void rtcal_csr_matvec_thread(
    const long long* __restrict__ indptr, const long long* __restrict__ indices,
    const float* __restrict__ data, const float* __restrict__ x, float* out,
    const long long n_rows)
{
    // A thread per row: rows with a few entries (pixels of A^T).
    const long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= n_rows) return;
    double acc = 0.0;
    for (long long p = indptr[row]; p < indptr[row + 1]; ++p)
        acc += (double)data[p] * (double)x[indices[p]];
    out[row] = (float)acc;
}
"""

_KERNELS: dict[str, object] = {}


def _kernel(source: str, name: str):
    """A compiled RawKernel, cached per process."""
    if name not in _KERNELS:
        cp = import_cupy()
        _KERNELS[name] = cp.RawKernel(source, name, options=("--std=c++14",))
    return _KERNELS[name]


HALS_THREADS = 1024
REFINE_THREADS = 256


def hals_levels_fused(G, b, c64, nonneg_u8, schedule, n_sweeps: int) -> None:
    """In place on c64 (float64 (n,)): the same sweeps as
    :func:`rtcal.nmf.xp_hals.hals_levels`. schedule: a
    :class:`rtcal.nmf.xp_hals.DeviceSchedule` (int64 device arrays)."""
    n = c64.shape[0]
    if n == 0:
        return
    kernel = _kernel(_HALS_SOURCE, "rtcal_hals_levels")
    kernel(
        (1,),
        (HALS_THREADS,),
        (
            G,
            b,
            c64,
            nonneg_u8,
            schedule.pattern_ptr,
            schedule.pattern_idx,
            schedule.level_ptr,
            schedule.level_rows,
            np.int32(schedule.n_levels),
            np.int64(n),
            np.int32(n_sweeps),
        ),
        shared_mem=HALS_THREADS * 8,
    )


def refine_block_fused(fp, w, M, G, B64, order_dev, n_order: int, min_mkk: float) -> None:
    """In place on fp.data, fp.at_data and G: the block of
    :func:`rtcal.nmf.xp_shapes.refine_block` for the int32 component indices in
    ``order_dev[:n_order]`` (device memory, so a captured graph reads each frame's order;
    a negative entry is an empty slot, skipped)."""
    if n_order == 0:
        return
    cp = import_cupy()
    K = fp.n_components
    n, nb, P = G.shape[0], B64.shape[0], B64.shape[1]
    scratch = cp.empty(max(fp.max_row_nnz, 1), cp.float64)
    kernel = _kernel(_REFINE_SOURCE, "rtcal_refine_block")
    kernel(
        (1,),
        (REFINE_THREADS,),
        (
            fp.data,
            fp.at_data,
            w,
            M,
            G,
            B64,
            fp.indptr,
            fp.indices,
            fp.t_of_a,
            fp.pair_ptr,
            fp.pair_t,
            fp.pair_comp,
            fp.ov_ptr,
            fp.ov_idx,
            order_dev,
            np.int32(n_order),
            np.int64(K),
            np.int64(n),
            np.int64(nb),
            np.int64(P),
            np.float64(min_mkk),
            scratch,
        ),
        shared_mem=REFINE_THREADS * 8,
    )


def csr_matvec(indptr, indices, data, x, out, *, long_rows: bool) -> None:
    """out (float32 (n_rows,)) = CSR (indptr, indices int64; data float32) @ x (float32),
    float64 accumulation; long_rows: a warp per row (else a thread per row)."""
    n_rows = out.shape[0]
    if n_rows == 0:
        return
    if long_rows:
        kernel = _kernel(_MATVEC_SOURCE, "rtcal_csr_matvec_warp")
        threads = 256
        blocks = (n_rows * 32 + threads - 1) // threads
    else:
        kernel = _kernel(_MATVEC_SOURCE, "rtcal_csr_matvec_thread")
        threads = 256
        blocks = (n_rows + threads - 1) // threads
    kernel((blocks,), (threads,), (indptr, indices, data, x, out, np.int64(n_rows)))


def motion_launcher():
    """A :data:`rtcal.backend.cuda_motion.Launcher` for the fused motion kernels: their
    module compiled once per process, each launch on the current stream."""
    from rtcal.backend.cuda_motion import MOTION_SOURCE, typed_args

    if "motion" not in _KERNELS:
        cp = import_cupy()
        _KERNELS["motion"] = cp.RawModule(code=MOTION_SOURCE, options=("--std=c++14",))
    module = _KERNELS["motion"]

    def launch(name: str, blocks: int, threads: int, args: tuple, shared_bytes: int) -> None:
        module.get_function(name)((int(blocks),), (int(threads),), typed_args(name, args),
                                  shared_mem=int(shared_bytes))

    return launch


# ------------------------------------------------------------------ graphs
class CapturedGraph:
    """``fn()`` captured once as a CUDA graph; :meth:`launch` replays it.

    fn must read and write only arrays that outlive the graph (static buffers,
    updated in place) and must not synchronise with the host or call cuBLAS /
    cuSPARSE (CuPy refuses those during capture). Its temporaries come from a
    private memory pool held by this object, so no other allocation can reuse
    their addresses between replays. Capture needs every kernel compiled and
    every FFT plan made: run fn once eagerly before capturing it.
    """

    def __init__(self, fn: Callable[[], None]) -> None:
        cp = import_cupy()
        self._pool = cp.cuda.MemoryPool()
        self._stream = cp.cuda.Stream(non_blocking=True)
        cp.cuda.get_current_stream().synchronize()  # the inputs must be ready
        with cp.cuda.using_allocator(self._pool.malloc), self._stream:
            self._stream.begin_capture()
            try:
                fn()
            except BaseException:
                with contextlib.suppress(Exception):
                    self._stream.end_capture()
                raise
            self._graph = self._stream.end_capture()

    def launch(self) -> None:
        """Replay on the current stream (ordered after what was queued there)."""
        self._graph.launch()
