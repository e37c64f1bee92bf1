"""Footprint matching: binarise, IoU, Hungarian assignment, counts.

The convention (DESIGN.md): binarise each footprint at 0.2 x its maximum,
pair estimated with true neurons by the Hungarian algorithm on IoU, and count a
pair as a true positive at IoU >= 0.5. The CaImAn convention
(``caiman.base.rois.nf_match_neurons_in_binary_masks``) counts IoU > 0.3 with
centroids less than 10 px apart; here pairs violating either test may not be
matched at all, and the assignment maximises IoU over the pairs that may.

Only overlapping pairs ever have IoU > 0, so the IoU matrix is sparse
(intersection = M_est M_true^T, one sparse product) and the assignment
problem splits into the connected components of the overlap graph, each solved
exactly by ``scipy.optimize.linear_sum_assignment``. K ~ 1500 x 1500 at
1024 x 1024 takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

# Added to the weight of pairs that count as true positives, so that between
# assignments of equal total IoU the one with more true positives wins
# whatever the order of the components. Far below any real IoU difference.
_TIE_BONUS = 1e-9


@dataclass(frozen=True)
class Convention:
    """A matching rule.

    min_iou: IoU threshold for a true positive
    strict: True for IoU > min_iou, False for IoU >= min_iou
    max_centroid_px: pairs with centroid distance >= this may not match (None: no test)
    gate_before_matching: True: pairs failing the tests are excluded from the
        assignment; False: assign over all overlapping pairs, then test
    """

    name: str
    min_iou: float
    strict: bool
    max_centroid_px: float | None
    gate_before_matching: bool


MAIN = Convention("main", min_iou=0.5, strict=False, max_centroid_px=None,
                  gate_before_matching=False)
CAIMAN = Convention("caiman", min_iou=0.3, strict=True, max_centroid_px=10.0,
                    gate_before_matching=True)

BINARISE_FRACTION = 0.2


def binarise(footprints: sp.csr_array, fraction: float = BINARISE_FRACTION) -> sp.csr_array:
    """Masks M[k, p] = A[k, p] >= fraction * max_p A[k, p] and A[k, p] > 0.

    footprints: csr_array (K, P) float. Returns csr_array bool (K, P); an
    all-zero (or non-positive) footprint gives an empty mask.
    """
    a = sp.csr_array(footprints)
    a.sum_duplicates()
    row_of_entry = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    row_max = np.zeros(a.shape[0], np.float64)
    np.maximum.at(row_max, row_of_entry, a.data)
    keep = (a.data > 0) & (a.data >= fraction * row_max[row_of_entry])
    return sp.csr_array(
        (np.ones(int(keep.sum()), bool), (row_of_entry[keep], a.indices[keep])),
        shape=a.shape,
    )


def mask_areas(masks: sp.csr_array) -> np.ndarray:
    """Pixel count of each mask: int64 (K,)."""
    return np.diff(sp.csr_array(masks).indptr).astype(np.int64)


def mask_centroids(masks: sp.csr_array, width: int) -> np.ndarray:
    """Centre of mass (row, col) of each binary mask: float64 (K, 2); NaN if empty.

    Pixel index p = row * width + col.
    """
    m = sp.csr_array(masks)
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    area = np.bincount(rows, minlength=m.shape[0]).astype(np.float64)
    sum_r = np.bincount(rows, weights=m.indices // width, minlength=m.shape[0])
    sum_c = np.bincount(rows, weights=m.indices % width, minlength=m.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([sum_r / area, sum_c / area], axis=1)


def iou_pairs(est_masks: sp.csr_array, true_masks: sp.csr_array) -> sp.coo_array:
    """IoU of every overlapping (estimated, true) pair.

    IoU_ij = |M_i & T_j| / (|M_i| + |T_j| - |M_i & T_j|), intersections from the
    sparse product M T^T. Returns coo_array float64 (K_est, K_true) holding only
    pairs with IoU > 0.
    """
    m = sp.csr_array(est_masks, dtype=np.int64)
    t = sp.csr_array(true_masks, dtype=np.int64)
    inter = sp.coo_array(m @ t.T)
    inter.sum_duplicates()
    keep = inter.data > 0
    r, c, n = inter.row[keep], inter.col[keep], inter.data[keep].astype(np.float64)
    union = mask_areas(m)[r] + mask_areas(t)[c] - n
    return sp.coo_array((n / union, (r, c)), shape=(m.shape[0], t.shape[0]))


def passes(iou: np.ndarray, convention: Convention) -> np.ndarray:
    """Whether each IoU value clears the convention's threshold: bool, same shape."""
    return iou > convention.min_iou if convention.strict else iou >= convention.min_iou


@dataclass(frozen=True)
class Matching:
    """The pairs the assignment chose.

    est_index, true_index: int64 (M,) matched pairs, sorted by true_index
    iou: float64 (M,) their IoU (> 0)
    is_tp: bool (M,) whether each pair is a true positive under the convention
    n_est, n_true: numbers of estimated and true neurons
    convention: the rule the pairs were chosen and judged by
    """

    est_index: np.ndarray
    true_index: np.ndarray
    iou: np.ndarray
    is_tp: np.ndarray
    n_est: int
    n_true: int
    convention: Convention

    @property
    def n_tp(self) -> int:
        return int(np.count_nonzero(self.is_tp))


def _max_weight_matching(
    rows: np.ndarray, cols: np.ndarray, weight: np.ndarray, n_rows: int, n_cols: int
) -> np.ndarray:
    """Maximum-weight bipartite matching over the given edges (weights > 0).

    Solved exactly per connected component of the edge graph by the Hungarian
    algorithm; an absent edge is weight 0, so it never adds to the total.
    Returns int64 (M,) the indices of the chosen edges.
    """
    if rows.size == 0:
        return np.zeros(0, np.int64)
    graph = sp.coo_array(
        (np.ones(rows.size), (rows, cols + n_rows)), shape=(n_rows + n_cols,) * 2
    )
    _, label = connected_components(graph, directed=False)
    edge_label = label[rows]
    order = np.argsort(edge_label, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_label[order])) + 1
    chosen = []
    for group in np.split(order, bounds):
        _, r_local = np.unique(rows[group], return_inverse=True)
        _, c_local = np.unique(cols[group], return_inverse=True)
        shape = (r_local.max() + 1, c_local.max() + 1)
        dense = np.zeros(shape)
        dense[r_local, c_local] = weight[group]
        edge = np.full(shape, -1, np.int64)
        edge[r_local, c_local] = group
        ri, ci = linear_sum_assignment(dense, maximize=True)
        chosen.append(edge[ri, ci][edge[ri, ci] >= 0])
    return np.concatenate(chosen)


def match_masks(
    est_masks: sp.csr_array,
    true_masks: sp.csr_array,
    width: int,
    convention: Convention = MAIN,
) -> Matching:
    """Hungarian matching of binary masks (K_est, P) to (K_true, P) under ``convention``.

    Maximises the summed IoU of the matched pairs (= minimises the summed 1 - IoU
    of a full assignment); among equal totals, more true positives win.
    """
    iou = iou_pairs(est_masks, true_masks)
    r, c, v = iou.row.astype(np.int64), iou.col.astype(np.int64), iou.data
    ok = passes(v, convention)
    if convention.max_centroid_px is not None:
        ce, ct = mask_centroids(est_masks, width), mask_centroids(true_masks, width)
        ok &= np.hypot(*(ce[r] - ct[c]).T) < convention.max_centroid_px
    if convention.gate_before_matching:
        r, c, v, ok = r[ok], c[ok], v[ok], ok[ok]
    chosen = _max_weight_matching(r, c, v + _TIE_BONUS * ok, iou.shape[0], iou.shape[1])
    idx = chosen[np.argsort(c[chosen], kind="stable")]
    return Matching(
        est_index=r[idx], true_index=c[idx], iou=v[idx], is_tp=ok[idx],
        n_est=int(iou.shape[0]), n_true=int(iou.shape[1]), convention=convention,
    )


@dataclass(frozen=True)
class Scores:
    """Detection scores of one matching.

    precision = n_tp / n_est, recall = n_tp / n_true,
    f1 = 2 n_tp / (n_est + n_true) (the harmonic mean of the two; 0 when n_tp = 0).
    Ratios with a zero denominator are NaN. median_iou over true positives (NaN if none).
    """

    n_true: int
    n_est: int
    n_tp: int
    precision: float
    recall: float
    f1: float
    median_iou: float

    @property
    def n_fp(self) -> int:
        return self.n_est - self.n_tp

    @property
    def n_fn(self) -> int:
        return self.n_true - self.n_tp


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else float("nan")


def score(matching: Matching) -> Scores:
    """Counts and precision / recall / F1 of a matching."""
    tp = matching.n_tp
    tp_iou = matching.iou[matching.is_tp]
    return Scores(
        n_true=matching.n_true,
        n_est=matching.n_est,
        n_tp=tp,
        precision=_ratio(tp, matching.n_est),
        recall=_ratio(tp, matching.n_true),
        f1=_ratio(2 * tp, matching.n_est + matching.n_true),
        median_iou=float(np.median(tp_iou)) if tp_iou.size else float("nan"),
    )
