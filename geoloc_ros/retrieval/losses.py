"""Losses for cross-view retrieval training, each a plain function + one criterion that mixes them.

- `info_nce`: symmetric InfoNCE (drone->satellite and satellite->drone cross-entropy over the
  batch similarity matrix), learnable temperature, label smoothing (Sample4Geo / MEAN).
- `classification_loss`: cross-entropy over location ids, averaged over branches.
- `cross_domain_alignment_loss`: MEAN's CEA term, 1 - mean cosine between matched maps.
- `multi_similarity_loss`: Wang et al. 2019 with its pair mining (QDFL).
- `js_divergence`: Jensen-Shannon divergence between the drone and satellite class
  distributions of each branch (QDFL's view-consistency term).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float,
             label_smoothing: float = 0.0) -> torch.Tensor:
    """a, b: [B, D] matched rows (row i of a and b are the same place). Returns a scalar.

    logits = scale * norm(a) @ norm(b).T; loss = (CE(logits, I) + CE(logits.T, I)) / 2.
    """
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = logit_scale * a @ b.t()
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target, label_smoothing=label_smoothing)
                  + F.cross_entropy(logits.t(), target, label_smoothing=label_smoothing))


def classification_loss(logits: list[torch.Tensor], labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over branches; logits: list of [B, num_classes]."""
    if not logits:
        return labels.new_zeros((), dtype=torch.float32)
    return sum(F.cross_entropy(lg, labels, label_smoothing=label_smoothing) for lg in logits) / len(logits)


def cross_domain_alignment_loss(fa: torch.Tensor, fb: torch.Tensor, mse_term: bool = False) -> torch.Tensor:
    """MEAN CEA: fa, fb [B, ...] matched alignment maps -> 1 - mean_i cos(flat(fa_i), flat(fb_i)).

    mse_term: add the reference code's second ("MSE") term, 1 - sum_i <a_i, b_i> / B on unit
    rows - on unit vectors it equals the cosine term, so the loss is 2 (1 - mean cos).
    """
    cos = 1.0 - F.cosine_similarity(fa.flatten(1), fb.flatten(1), dim=1).mean()
    if not mse_term:
        return cos
    a, b = F.normalize(fa.flatten(1), dim=1), F.normalize(fb.flatten(1), dim=1)
    return cos + (1.0 - (a * b).sum() / a.shape[0])


def js_divergence(logits_a: list[torch.Tensor], logits_b: list[torch.Tensor]) -> torch.Tensor:
    """Mean over branches of JS(p_a || p_b) = KL(p_a || m) / 2 + KL(p_b || m) / 2, m = (p_a + p_b) / 2,
    p = softmax(logits) per row, batch-averaged; 0 for identical distributions, at most log 2."""
    if not logits_a:
        return torch.zeros(())
    total = logits_a[0].new_zeros(())
    for la, lb in zip(logits_a, logits_b):
        lpa, lpb = F.log_softmax(la.float(), -1), F.log_softmax(lb.float(), -1)
        lm = torch.logsumexp(torch.stack([lpa, lpb]), 0) - math.log(2.0)
        kl_a = (lpa.exp() * (lpa - lm)).sum(-1)
        kl_b = (lpb.exp() * (lpb - lm)).sum(-1)
        total = total + 0.5 * (kl_a + kl_b).mean()
    return total / len(logits_a)


def multi_similarity_loss(emb: torch.Tensor, labels: torch.Tensor, alpha: float = 2.0, beta: float = 50.0,
                          base: float = 0.5, margin: float = 0.1) -> torch.Tensor:
    """Multi-similarity loss with MS pair mining; emb [N, D] (normalised here), labels [N].

    For anchor i with positives P (same label, j != i) and negatives Q: keep positives with
    S_ij < max_Q S + margin and negatives with S_ik > min_P S - margin, then
    L_i = 1/alpha log(1 + sum_P exp(-alpha (S_ij - base))) + 1/beta log(1 + sum_Q exp(beta (S_ik - base))).
    Anchors without both kinds of mined pairs add 0; the loss is the sum over anchors / N.
    """
    x = F.normalize(emb, dim=-1)
    sim = x @ x.t()
    n = sim.shape[0]
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    pos_mask, neg_mask = same & ~eye, ~same
    total = sim.new_zeros(())
    for i in range(n):
        pos, neg = sim[i][pos_mask[i]], sim[i][neg_mask[i]]
        if pos.numel() == 0 or neg.numel() == 0:
            continue
        pos_m = pos[pos - margin < neg.max()]
        neg_m = neg[neg + margin > pos.min()]
        if pos_m.numel() == 0 or neg_m.numel() == 0:
            continue
        total = total + torch.log1p(torch.exp(-alpha * (pos_m - base)).sum()) / alpha \
            + torch.log1p(torch.exp(beta * (neg_m - base)).sum()) / beta
    return total / n


@dataclass
class LossConfig:
    infonce: float = 1.0              # weight of symmetric InfoNCE on the descriptors
    infonce_branches: float = 0.0     # weight of InfoNCE on each training branch embedding
    ce: float = 1.0                   # weight of the location-id cross-entropy (needs num_classes > 0)
    cea: float = 0.0                  # weight of MEAN's cross-domain alignment term
    cea_mse: bool = False             # MEAN reference: add its second ("MSE") alignment term
    ms: float = 0.0                   # weight of the multi-similarity loss (QDFL)
    js: float = 0.0                   # weight of the drone/satellite Jensen-Shannon term (QDFL)
    ce_label_smoothing: float | None = None  # CE's own smoothing; None = label_smoothing
    label_smoothing: float = 0.1
    init_temperature: float = 0.07    # learnable InfoNCE temperature, start value
    max_logit_scale: float = 100.0
    ms_alpha: float = 2.0
    ms_beta: float = 50.0
    ms_base: float = 0.5
    ms_margin: float = 0.1


class RetrievalCriterion(nn.Module):
    """Mix of the losses above over a batch of matched (drone, satellite) model outputs."""

    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.cfg.max_logit_scale)

    def forward(self, out_d: dict[str, Any], out_s: dict[str, Any], labels: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, float]]:
        c, parts = self.cfg, {}
        total = out_d["desc"].new_zeros(())
        if c.infonce:
            parts["infonce"] = info_nce(out_d["desc"], out_s["desc"], self.logit_scale, c.label_smoothing)
        if c.infonce_branches and out_d.get("embeddings"):
            parts["infonce_branches"] = sum(info_nce(a, b, self.logit_scale, c.label_smoothing)
                                            for a, b in zip(out_d["embeddings"], out_s["embeddings"])) / len(out_d["embeddings"])
        if c.ce and out_d.get("logits"):
            ls = c.label_smoothing if c.ce_label_smoothing is None else c.ce_label_smoothing
            parts["ce"] = 0.5 * (classification_loss(out_d["logits"], labels, ls)
                                 + classification_loss(out_s["logits"], labels, ls))
        if c.cea and out_d.get("align") is not None:
            parts["cea"] = cross_domain_alignment_loss(out_d["align"], out_s["align"], c.cea_mse)
        if c.js and out_d.get("logits"):
            parts["js"] = js_divergence(out_d["logits"], out_s["logits"])
        if c.ms:
            parts["ms"] = multi_similarity_loss(torch.cat([out_d["desc"], out_s["desc"]]), torch.cat([labels, labels]),
                                                c.ms_alpha, c.ms_beta, c.ms_base, c.ms_margin)
        weights = {"infonce": c.infonce, "infonce_branches": c.infonce_branches, "ce": c.ce, "cea": c.cea, "ms": c.ms,
                   "js": c.js}
        for k, v in parts.items():
            total = total + weights[k] * v
        return total, {k: float(v.detach()) for k, v in parts.items()}
