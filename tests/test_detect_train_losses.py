"""Matcher, set losses and the end-to-end trace loss of the detector's training."""

import itertools
import math

import pytest
import torch

from rtcal.detect.losses import (
    LossWeights,
    SetCriterion,
    WindowTargets,
    centre_focal,
    sigmoid_focal,
)
from rtcal.detect.matcher import (
    HungarianMatcher,
    MatcherError,
    MatchWeights,
    pairwise_dice,
)
from rtcal.detect.trace_loss import (
    TraceLossConfig,
    correlation_matrix,
    info_nce,
    pearson_rows,
    solve_traces,
    trace_terms,
)

torch.set_num_threads(1)


def _squares(n, size=12, side=4):
    """n disjoint square masks (n, size, size) float32."""
    masks = torch.zeros(n, size, size)
    for k in range(n):
        r, c = divmod(k, size // side)
        masks[k, r * side : (r + 1) * side, c * side : (c + 1) * side] = 1
    return masks


def test_matcher_finds_the_permutation_and_ignores_junk():
    targets = _squares(4)
    perm = [2, 0, 3, 1]
    masks = torch.cat([targets[perm], torch.zeros(2, 12, 12)]) * 12 - 6  # 2 empty predictions
    logits = torch.tensor([4.0, 4, 4, 4, -4, -4])
    pred, true = HungarianMatcher(MatchWeights())(logits[None], masks[None], [targets])[0]
    assert list(pred) == [0, 1, 2, 3]
    assert list(true) == perm


def _as_dict(pred, true):
    return {int(p): int(t) for p, t in zip(pred, true, strict=True)}


def test_matcher_is_optimal_against_brute_force_and_permutation_equivariant():
    gen = torch.Generator().manual_seed(0)
    q, k = 5, 3
    logits = torch.randn(q, generator=gen)
    masks = torch.randn(q, 6, 6, generator=gen) * 3
    targets = (torch.rand(k, 6, 6, generator=gen) > 0.6).float()
    matcher = HungarianMatcher(MatchWeights())
    cost = matcher.cost_matrix(logits, masks, targets).numpy()
    pred, true = matcher(logits[None], masks[None], [targets])[0]
    best = min(sum(cost[p, j] for j, p in enumerate(rows))
               for rows in itertools.permutations(range(q), k))
    assert cost[pred, true].sum() == pytest.approx(best, rel=1e-6)
    # permuting the predictions permutes the answer; permuting targets likewise
    pp = torch.randperm(q, generator=gen)
    pred2, true2 = matcher(logits[pp][None], masks[pp][None], [targets])[0]
    pairs = _as_dict(pred, true)
    assert _as_dict(pp[pred2], true2) == pairs
    tp = torch.randperm(k, generator=gen)
    pred3, true3 = matcher(logits[None], masks[None], [targets[tp]])[0]
    assert _as_dict(pred3, tp[true3]) == pairs


def test_matcher_rejects_resolution_mismatch_and_zero_weights():
    matcher = HungarianMatcher(MatchWeights())
    with pytest.raises(MatcherError, match="resolution"):
        matcher(torch.zeros(1, 2), torch.zeros(1, 2, 8, 8), [torch.zeros(1, 4, 4)])
    with pytest.raises(MatcherError, match="all cost weights"):
        MatchWeights(w_class=0, w_focal=0, w_dice=0)


def test_focal_and_dice_match_hand_computed_values():
    # p = 0.5: pos = alpha 0.5^2 ln 2, neg = (1 - alpha) 0.5^2 ln 2
    x = torch.zeros(2)
    got = sigmoid_focal(x, torch.tensor([1.0, 0.0]), alpha=0.25, gamma=2.0)
    ln2 = math.log(2)
    assert got.tolist() == pytest.approx([0.25 * 0.25 * ln2, 0.75 * 0.25 * ln2], rel=1e-6)
    # logit ln 3 -> p = 0.75: pos = 0.25 * 0.0625 * ln(4/3)
    got = sigmoid_focal(torch.tensor([math.log(3)]), torch.tensor([1.0]), 0.25, 2.0)
    assert float(got) == pytest.approx(0.25 * 0.0625 * math.log(4 / 3), rel=1e-6)
    # dice: s = (0.75, 0.25), t = (1, 0): 1 - (2 * 0.75 + 1) / (1 + 1 + 1) = 1/6
    s = torch.tensor([[math.log(3), -math.log(3)]])
    assert float(pairwise_dice(s, torch.tensor([[1.0, 0.0]]))) == pytest.approx(1 / 6, rel=1e-6)


def test_centre_focal_matches_hand_value():
    target = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    logits = torch.zeros_like(target)  # p = 0.5
    ln2 = math.log(2)
    expected = 0.25 * ln2 + (0.5**4) * 0.25 * ln2 + 0.25 * ln2  # one peak
    assert float(centre_focal(logits, target)) == pytest.approx(expected, rel=1e-6)


def _cells(k, size, gen):
    """k random sparse non-negative footprints (k, size, size) float64."""
    a = torch.rand(k, size, size, generator=gen, dtype=torch.float64)
    return a * (torch.rand(k, size, size, generator=gen) > 0.7)


def test_trace_solve_recovers_known_traces_exactly():
    gen = torch.Generator().manual_seed(1)
    a = _cells(4, 16, gen)
    c = torch.rand(4, 50, generator=gen, dtype=torch.float64) * 3
    b0 = torch.rand(16, 16, generator=gen, dtype=torch.float64) + 2
    y = torch.einsum("khw,kt->thw", a, c) + b0  # Y = A C + b0 1^T
    got = solve_traces(a, y, ridge=1e-13, sigma_px=3.0)
    # the static image is removed with the temporal mean: C comes back around its mean
    torch.testing.assert_close(got, c - c.mean(1, keepdim=True), atol=1e-8, rtol=1e-8)
    assert pearson_rows(got, c).min() > 1 - 1e-6


def test_trace_solve_removes_smooth_background_fluctuations():
    gen = torch.Generator().manual_seed(5)
    size, t = 32, 80
    a = torch.zeros(3, size, size, dtype=torch.float64)
    for k, (r, col) in enumerate([(8, 8), (20, 12), (12, 24)]):
        a[k, r - 2 : r + 3, col - 2 : col + 3] = 1
    c = torch.rand(3, t, generator=gen, dtype=torch.float64) ** 4
    rows = torch.arange(size, dtype=torch.float64)
    smooth = torch.exp(-((rows[:, None] - 10) ** 2 + (rows[None, :] - 20) ** 2) / (2 * 12.0**2))
    drive = 2 * torch.rand(t, generator=gen, dtype=torch.float64)  # 2x the cells' signal
    y = torch.einsum("khw,kt->thw", a, c) + drive[:, None, None] * smooth + 10
    high = pearson_rows(solve_traces(a, y, 1e-6, sigma_px=3.0), c)
    low = pearson_rows(solve_traces(a, y, 1e-6, sigma_px=1e3), c)  # ~ no background model
    assert high.min() > 0.99
    assert low.min() < 0.9


def _tiny_window(seed=2, k=3, t=40):
    gen = torch.Generator().manual_seed(seed)
    masks = torch.zeros(k, 12, 12, dtype=torch.float64)
    for j, (r, c) in enumerate([(1, 1), (5, 6), (8, 2)][:k]):
        masks[j, r : r + 3, c : c + 3] = 1
    calcium = torch.rand(k, t, generator=gen, dtype=torch.float64) ** 4
    frames = torch.einsum("khw,kt->thw", masks, 1 + calcium) + 5.0
    frames += 0.01 * torch.randn(frames.shape, generator=gen, dtype=torch.float64)
    return masks, frames, calcium


def test_gradients_flow_from_trace_loss_to_mask_logits():
    masks, frames, calcium = _tiny_window()
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    cfg = TraceLossConfig(ridge=1e-3, background_sigma_px=3, min_true_std=1e-3, temperature=0.5)

    def loss(x):
        terms = trace_terms(x, frames, calcium, cfg)
        return terms.pearson + terms.contrastive

    assert torch.autograd.gradcheck(loss, (logits,), eps=1e-6, atol=1e-5)
    loss(logits).backward()
    assert logits.grad.abs().sum() > 0


def test_trace_loss_prefers_the_true_masks():
    masks, frames, calcium = _tiny_window()
    cfg = TraceLossConfig(background_sigma_px=3, min_true_std=1e-3)
    good = trace_terms(masks * 20 - 10, frames, calcium, cfg)
    swapped = trace_terms(masks[[1, 0, 2]] * 20 - 10, frames, calcium, cfg)
    assert good.corr.min() > 0.95
    assert good.pearson < 0.05 < swapped.pearson
    assert good.contrastive < swapped.contrastive


def test_contrastive_term_ranks_correct_pairs_lower():
    gen = torch.Generator().manual_seed(4)
    true = torch.randn(6, 100, generator=gen)
    pred = true + 0.5 * torch.randn(6, 100, generator=gen)
    right = info_nce(correlation_matrix(pred, true), 0.1)
    wrong = info_nce(correlation_matrix(pred[torch.tensor([1, 0, 3, 2, 5, 4])], true), 0.1)
    assert right < 0.1 < wrong
    assert float(info_nce(correlation_matrix(pred[:1], true[:1]), 0.1)) == 0.0


def _outputs(masks4, logit_scale, n_junk=2, n_aux=1):
    q_masks = torch.cat([masks4 * logit_scale - logit_scale / 2,
                         torch.full((n_junk, *masks4.shape[1:]), -logit_scale / 2)])
    logits = torch.cat([torch.full((masks4.shape[0],), 3.0), torch.full((n_junk,), -3.0)])
    layer = {"logits": logits[None], "masks": q_masks[None].clone().requires_grad_(True)}
    centre = torch.zeros(1, 1, *masks4.shape[1:])
    return {**layer, "aux": [dict(layer) for _ in range(n_aux)], "centre": centre}


def test_set_criterion_terms_and_modes():
    masks, frames, calcium = _tiny_window()
    tgt = [WindowTargets(masks.float()[:, ::2, ::2], frames.float(), calcium.float())]
    centre = torch.zeros(1, 1, 6, 6)
    centre[0, 0, 1, 1] = 1
    weights = LossWeights()
    cfg = TraceLossConfig(background_sigma_px=3, min_true_std=1e-3)
    crit = {m: SetCriterion(HungarianMatcher(MatchWeights()), weights, m, cfg)
            for m in ("mask", "mask+trace", "mask+trace+contrastive")}
    sharp, blurry = _outputs(tgt[0].masks, 20.0), _outputs(tgt[0].masks, 1.0)
    good, bad = crit["mask"](sharp, centre, tgt), crit["mask"](blurry, centre, tgt)
    assert good.focal < bad.focal and good.dice < bad.dice
    f = good.as_floats()
    assert f["aux"] == pytest.approx(f["class"] + f["focal"] + f["dice"], rel=1e-6)
    assert good.trace == 0 and good.contrastive == 0
    full = crit["mask+trace+contrastive"](blurry, centre, tgt)
    assert full.trace > 0 and full.contrastive > 0
    f_full, f_bad = full.as_floats(), bad.as_floats()
    assert f_full["total"] == pytest.approx(
        f_bad["total"] + f_full["trace"] + f_full["contrastive"], rel=1e-6)
    full.total.backward()
    assert blurry["masks"].grad.abs().sum() > 0
    with pytest.raises(MatcherError, match="loss mode"):
        SetCriterion(HungarianMatcher(MatchWeights()), weights, "trace")
    assert crit["mask+trace"](sharp, centre, tgt, trace_scale=0.0).as_floats()["trace"] == 0
