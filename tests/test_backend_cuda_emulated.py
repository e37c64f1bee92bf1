"""The CUDA C of rtcal.backend.cuda, run on CPU threads against the xp-generic kernels.

Without a GPU the fused kernels cannot run for real, but their source can:
compiled as C++20 with a small emulation of the CUDA built-ins (one std::thread
per CUDA thread, std::barrier for __syncthreads and per warp for
__shfl_down_sync, std::atomic_ref for atomicAdd, blocks one after another),
each kernel runs with real concurrency on the test's inputs and is compared with
its xp-generic twin. This checks the kernels' logic (indexing, barriers,
reductions, races between levels); it cannot check CuPy's launch of them or
GPU-specific behaviour, which only the ``gpu`` tests do. Skipped without g++.
"""

import ctypes
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, __file__.rsplit("/", 1)[0])  # the sibling test module's helpers

from test_backend_kernels import _close, _problem, _refine_reference  # noqa: E402

from rtcal.backend import get_backend  # noqa: E402
from rtcal.backend.cuda import _HALS_SOURCE, _MATVEC_SOURCE, _REFINE_SOURCE  # noqa: E402
from rtcal.nmf.hals import hals  # noqa: E402
from rtcal.nmf.shapes import overlap_lists  # noqa: E402
from rtcal.nmf.xp_footprints import device_footprints  # noqa: E402
from rtcal.nmf.xp_hals import hals_schedule  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C++20)")

EMULATION = r"""
#include <atomic>
#include <barrier>
#include <cmath>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

struct Dim { unsigned x = 0, y = 0, z = 0; };
thread_local Dim threadIdx;
Dim blockIdx, blockDim, gridDim;
struct float2 { float x, y; };  // CUDA's built-in vector type (complex64 memory)
using std::isfinite;
static std::unique_ptr<std::barrier<>> block_barrier;
static std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
static std::vector<double> shuffle_slots;
double red[8192];  // the kernels' `extern __shared__ double red[]`

#define __global__
#define __device__
#define __restrict__
#define __shared__

void __syncthreads() { block_barrier->arrive_and_wait(); }

double __shfl_down_sync(unsigned, double v, int offset, int width = 32) {
    const unsigned t = threadIdx.x, segment_lane = t % width;
    std::barrier<>& warp = *warp_barriers[t >> 5];
    shuffle_slots[t] = v;
    warp.arrive_and_wait();
    const double out = segment_lane + offset < unsigned(width) ? shuffle_slots[t + offset] : v;
    warp.arrive_and_wait();
    return out;
}

double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }

static void launch(unsigned grid, unsigned block, const std::function<void()>& body) {
    blockDim.x = block;
    gridDim.x = grid;
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = b;
        block_barrier = std::make_unique<std::barrier<>>(block);
        warp_barriers.clear();
        for (unsigned w = 0; w < (block + 31) / 32; ++w)
            warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
        shuffle_slots.assign(block, 0.0);
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t)
            threads.emplace_back([t, &body] { threadIdx.x = t; body(); });
        for (auto& th : threads) th.join();
    }
}
"""

ENTRY_POINTS = r"""
extern "C" void run_hals(unsigned threads, const double* G, const double* b, double* c,
    const unsigned char* nonneg, const long long* pat_ptr, const long long* pat_idx,
    const long long* lvl_ptr, const long long* lvl_rows, int n_levels, long long n,
    int n_sweeps) {
    launch(1, threads, [=] { rtcal_hals_levels(G, b, c, nonneg, pat_ptr, pat_idx, lvl_ptr,
                                               lvl_rows, n_levels, n, n_sweeps); });
}
extern "C" void run_refine(unsigned threads, float* data, float* at_data, const double* w,
    const double* M, double* G, const double* B64, const long long* indptr,
    const long long* indices, const long long* t_of_a, const long long* pair_ptr,
    const long long* pair_t, const long long* pair_comp, const long long* ov_ptr,
    const long long* ov_idx, const int* order, int n_order, long long K, long long n,
    long long nb, long long P, double min_mkk, double* scratch) {
    launch(1, threads, [=] { rtcal_refine_block(data, at_data, w, M, G, B64, indptr, indices,
        t_of_a, pair_ptr, pair_t, pair_comp, ov_ptr, ov_idx, order, n_order, K, n, nb, P,
        min_mkk, scratch); });
}
extern "C" void run_matvec(int long_rows, const long long* indptr, const long long* indices,
    const float* data, const float* x, float* out, long long n_rows) {
    const unsigned threads = 64;
    if (long_rows) {
        launch((n_rows * 32 + threads - 1) / threads, threads,
               [=] { rtcal_csr_matvec_warp(indptr, indices, data, x, out, n_rows); });
    } else {
        launch((n_rows + threads - 1) / threads, threads,
               [=] { rtcal_csr_matvec_thread(indptr, indices, data, x, out, n_rows); });
    }
}
"""


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda_emulated")
    source = folder / "kernels.cpp"
    source.write_text(EMULATION + _HALS_SOURCE + _REFINE_SOURCE + _MATVEC_SOURCE + ENTRY_POINTS)
    library = folder / "kernels.so"
    subprocess.run(
        [
            "g++",
            "-std=c++20",
            "-O1",
            "-shared",
            "-fPIC",
            "-pthread",
            str(source),
            "-o",
            str(library),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    lib = ctypes.CDLL(str(library))
    return lib


def _p(a):
    return a.ctypes.data_as(ctypes.c_void_p)


@pytest.mark.parametrize("threads", [32, 1024])  # 4 rows at once (several rounds), and 128
def test_fused_hals_kernel_equals_the_sequential_sweep(kernels, threads):
    _, fs, B, _, G, b, c0, nonneg = _problem(seed=1, K=160, H=90, W=100)
    ov_ptr, ov_idx = overlap_lists(fs.csr)
    s = hals_schedule(ov_ptr, ov_idx, B.shape[0])
    widths = np.diff(s.level_ptr)
    assert widths.max() > 32 // 8 and (widths == 1).sum() >= B.shape[0]  # both branches
    c = c0.astype(np.float64)
    nonneg_u8 = nonneg.astype(np.uint8)
    kernels.run_hals(
        ctypes.c_uint(threads),
        _p(G),
        _p(b),
        _p(c),
        _p(nonneg_u8),
        _p(s.pattern_ptr),
        _p(s.pattern_idx),
        _p(s.level_ptr),
        _p(s.level_rows),
        ctypes.c_int(s.n_levels),
        ctypes.c_longlong(len(c)),
        ctypes.c_int(3),
    )
    _close(c.astype(np.float32), hals(G, b, c0, nonneg, 3), 1e-6)


@pytest.mark.parametrize("threads", [32, 128])
def test_fused_refine_kernel_matches_numba(kernels, threads):
    rng, fs, B, _, G, *_ = _problem(seed=6)
    K, P = fs.n_components, fs.csr.shape[1]
    truth = fs.dense().reshape(K, P) * rng.uniform(0.7, 1.3, (K, P)).astype(np.float32)
    C = np.abs(rng.normal(size=(K, 200))) * (rng.random((K, 200)) < 0.3)
    C[3] = 0
    rows = np.repeat(np.arange(K), np.diff(fs.csr.indptr))
    w = ((truth.T @ C) @ C.T)[fs.csr.indices, rows]
    M = C @ C.T
    order = np.r_[np.arange(1, 9), 3, 20, 21, 22].astype(np.int32)
    data_ref, G_ref = _refine_reference(fs, w, M, G, B, order)
    fp = device_footprints(fs.csr, get_backend("cpu"))
    G_out, B64 = G.copy(), B.astype(np.float64)
    scratch = np.zeros(fp.max_row_nnz)
    n = G.shape[0]
    kernels.run_refine(
        ctypes.c_uint(threads),
        _p(fp.data),
        _p(fp.at_data),
        _p(w),
        _p(M),
        _p(G_out),
        _p(B64),
        _p(fp.indptr),
        _p(fp.indices),
        _p(fp.t_of_a),
        _p(fp.pair_ptr),
        _p(fp.pair_t),
        _p(fp.pair_comp),
        _p(fp.ov_ptr),
        _p(fp.ov_idx),
        _p(order),
        ctypes.c_int(len(order)),
        ctypes.c_longlong(K),
        ctypes.c_longlong(n),
        ctypes.c_longlong(B.shape[0]),
        ctypes.c_longlong(P),
        ctypes.c_double(1e-3),
        _p(scratch),
    )
    _close(fp.data, data_ref, 1e-5)
    _close(G_out, G_ref, 1e-5)
    np.testing.assert_array_equal(fp.at_data[fp.t_of_a], fp.data)


def test_fused_matvec_kernels_match_scipy(kernels):
    rng, fs, _, y, *_ = _problem(seed=3)
    fp = device_footprints(fs.csr, get_backend("cpu"))
    out = np.zeros(fs.n_components, np.float32)
    kernels.run_matvec(
        1, _p(fp.indptr), _p(fp.indices), _p(fp.data), _p(y), _p(out), ctypes.c_longlong(len(out))
    )
    _close(out, fs.csr @ y, 1e-5)
    c = rng.random(fs.n_components).astype(np.float32)
    out = np.zeros(fs.csr.shape[1], np.float32)
    kernels.run_matvec(
        0,
        _p(fp.at_indptr),
        _p(fp.at_indices),
        _p(fp.at_data),
        _p(c),
        _p(out),
        ctypes.c_longlong(len(out)),
    )
    _close(out, fs.csr.T @ c, 1e-5)
