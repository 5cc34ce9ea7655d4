"""Retrieval losses against values computed by hand from their formulas on tiny tensors."""
import math

import pytest
import torch

from geoloc_ros.retrieval.losses import (LossConfig, RetrievalCriterion, classification_loss,
                                         cross_domain_alignment_loss, info_nce, multi_similarity_loss)


def _ce_smooth(logits_row, target, eps):
    """Cross-entropy with label smoothing, written out: (1-eps)*nll_target + eps*mean_c nll_c."""
    z = max(logits_row)
    lse = z + math.log(sum(math.exp(v - z) for v in logits_row))
    nll = [lse - v for v in logits_row]
    return (1 - eps) * nll[target] + eps * sum(nll) / len(nll)


def test_info_nce_symmetric_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])          # normalised inside: rows (1,0), (0,1)
    b = torch.tensor([[3.0, 0.0], [0.6, 0.8]])          # rows (1,0), (0.6,0.8)
    scale, eps = 2.0, 0.1
    # cos matrix a_i . b_j = [[1, 0.6], [0, 0.8]]
    s = [[2.0 * 1.0, 2.0 * 0.6], [2.0 * 0.0, 2.0 * 0.8]]
    rows = (_ce_smooth(s[0], 0, eps) + _ce_smooth(s[1], 1, eps)) / 2
    cols = (_ce_smooth([s[0][0], s[1][0]], 0, eps) + _ce_smooth([s[0][1], s[1][1]], 1, eps)) / 2
    expected = 0.5 * (rows + cols)
    got = info_nce(a, b, scale, label_smoothing=eps)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # without smoothing it is different and still matches the formula
    rows0 = (_ce_smooth(s[0], 0, 0) + _ce_smooth(s[1], 1, 0)) / 2
    cols0 = (_ce_smooth([s[0][0], s[1][0]], 0, 0) + _ce_smooth([s[0][1], s[1][1]], 1, 0)) / 2
    assert float(info_nce(a, b, scale)) == pytest.approx(0.5 * (rows0 + cols0), rel=1e-6)


def test_multi_similarity_hand_computed():
    # unit vectors with cosines s01=.8 s02=.6 s03=0 s12=.96 s13=.6 s23=.8, labels 0,0,1,1
    e = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    alpha, beta, base, margin = 2.0, 50.0, 0.5, 0.1
    # anchor 0: pos {.8}; .8 - .1 < max neg .6 fails -> no mined positive -> 0.  Anchor 3: same.
    # anchor 1: pos {.8} kept (.7 < .96); neg {.96, .6}: kept if s + .1 > .8 -> {.96}.  Anchor 2: same.
    l1 = math.log(1 + math.exp(-alpha * (0.8 - base))) / alpha + math.log(1 + math.exp(beta * (0.96 - base))) / beta
    expected = 2 * l1 / 4
    got = multi_similarity_loss(e, y, alpha, beta, base, margin)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_multi_similarity_zero_without_pairs():
    e = torch.eye(3)
    assert float(multi_similarity_loss(e, torch.tensor([0, 1, 2]))) == 0.0   # no positives at all


def test_cross_domain_alignment_hand_computed():
    fa = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[2.0, 1.0], [0.0, 3.0]]])    # [B=2, 2, 2]
    fb = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[4.0, 2.0], [0.0, 6.0]]])
    expected = 1 - (1 / math.sqrt(2) + 1.0) / 2
    assert float(cross_domain_alignment_loss(fa, fb)) == pytest.approx(expected, rel=1e-6)


def test_classification_loss_mean_over_branches():
    l1 = torch.tensor([[2.0, 0.0, 0.0]])
    l2 = torch.tensor([[0.0, 1.0, 0.0]])
    y = torch.tensor([0])
    expected = (_ce_smooth([2.0, 0, 0], 0, 0.0) + _ce_smooth([0, 1.0, 0], 0, 0.0)) / 2
    assert float(classification_loss([l1, l2], y)) == pytest.approx(expected, rel=1e-6)


def test_criterion_mixes_weighted_terms_and_learns_temperature():
    torch.manual_seed(0)
    d = {"desc": torch.randn(4, 8, requires_grad=True), "embeddings": [torch.randn(4, 5)],
         "logits": [torch.randn(4, 3)], "align": torch.randn(4, 2, 3)}
    s = {"desc": torch.randn(4, 8), "embeddings": [torch.randn(4, 5)], "logits": [torch.randn(4, 3)],
         "align": torch.randn(4, 2, 3)}
    y = torch.tensor([0, 1, 2, 0])
    cfg = LossConfig(infonce=1.0, infonce_branches=0.5, ce=0.3, cea=2.0, ms=0.7, label_smoothing=0.0)
    crit = RetrievalCriterion(cfg)
    total, parts = crit(d, s, y)
    assert set(parts) == {"infonce", "infonce_branches", "ce", "cea", "ms"}
    expected = parts["infonce"] + 0.5 * parts["infonce_branches"] + 0.3 * parts["ce"] + 2.0 * parts["cea"] + 0.7 * parts["ms"]
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(crit.logit_scale.detach()) == pytest.approx(1 / 0.07, rel=1e-5)
    total.backward()
    assert crit.log_scale.grad is not None and crit.log_scale.grad.abs() > 0
