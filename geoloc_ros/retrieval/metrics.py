"""Retrieval metrics as the University-1652 / SUES-200 evaluations define them.

Per query: rank the gallery by similarity (stable, highest first), drop junk entries (label
-1), then Recall@K = 1 if any true match is within the first K, and AP with the
University-1652 trapezoid rule: for the i-th match (0-based) at rank r (0-based),
precision = (i+1)/(r+1), previous precision = i/r (1 when r == 0), AP += (prev + precision)/2 / n_good.
Recall@1% is the official evaluate_gpu.py's `CMC[round(G * 0.01)]`: a hit within the first
round(G / 100) + 1 gallery entries (Python's round, half to even), not ceil(G / 100).
Ranking by cosine similarity of unit descriptors equals ranking by Euclidean distance
(|a - b|^2 = 2 - 2 cos), so the papers that rank by distance (QDFL) get the same numbers.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def query_ap_cmc(scores: np.ndarray, good: np.ndarray, junk: np.ndarray | None = None) -> tuple[float, int]:
    """scores [G]; good/junk bool [G] -> (AP, rank of the first true match (0-based) or -1)."""
    order = np.argsort(-scores, kind="stable")
    keep = ~junk[order] if junk is not None else np.ones(len(order), bool)
    hits = good[order][keep]
    ranks = np.flatnonzero(hits)
    if len(ranks) == 0:
        return 0.0, -1
    n_good = len(ranks)
    ap = 0.0
    for i, r in enumerate(ranks):
        precision = (i + 1) / (r + 1)
        prev = i / r if r != 0 else 1.0
        ap += (prev + precision) / 2.0 / n_good
    return float(ap), int(ranks[0])


def top_one_percent(gallery_size: int) -> int:
    """K of Recall@1% as University-1652's evaluate_gpu.py takes it: round(G / 100) + 1."""
    return int(round(gallery_size * 0.01)) + 1


def metrics_from_similarity(sim: np.ndarray, q_labels: Sequence, g_labels: Sequence,
                            ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """sim [Q, G] -> {'recall@1': .., 'recall@5': .., 'recall@10': .., 'recall@1%': .., 'ap': ..} (fractions).

    Gallery labels equal to -1 are junk; queries with no true match in the gallery are skipped
    (as in University-1652) and counted in 'skipped'.
    """
    q_labels = np.asarray(q_labels)
    g_labels = np.asarray(g_labels)
    junk = g_labels == -1
    top1pct = top_one_percent(len(g_labels))
    kk = list(ks) + [top1pct]
    hits = np.zeros(len(kk))
    ap_sum, n, skipped = 0.0, 0, 0
    for i in range(sim.shape[0]):
        ap, first = query_ap_cmc(sim[i], g_labels == q_labels[i], junk)
        if first < 0:
            skipped += 1
            continue
        n += 1
        ap_sum += ap
        hits += np.array([first < k for k in kk], dtype=float)
    out = {f"recall@{k}": float(hits[j] / max(n, 1)) for j, k in enumerate(ks)}
    out["recall@1%"] = float(hits[-1] / max(n, 1))
    out["ap"] = float(ap_sum / max(n, 1))
    out["queries"] = n
    out["skipped"] = skipped
    return out


def retrieval_metrics(q_desc: np.ndarray, q_labels: Sequence, g_desc: np.ndarray, g_labels: Sequence,
                      ks: Sequence[int] = (1, 5, 10), chunk: int = 4096) -> dict[str, float]:
    """Unit descriptors -> metrics (cosine similarity), computed in query chunks to bound memory."""
    q_desc = np.asarray(q_desc, np.float32)
    g_desc = np.asarray(g_desc, np.float32)
    q_labels = np.asarray(q_labels)
    acc: dict[str, float] = {}
    total = 0
    for i in range(0, len(q_desc), chunk):
        m = metrics_from_similarity(q_desc[i:i + chunk] @ g_desc.T, q_labels[i:i + chunk], g_labels, ks)
        w = m["queries"]
        for k, v in m.items():
            if k in ("queries", "skipped"):
                acc[k] = acc.get(k, 0) + v
            else:
                acc[k] = acc.get(k, 0.0) + v * w
        total += w
    for k in list(acc):
        if k not in ("queries", "skipped"):
            acc[k] /= max(total, 1)
    return acc
