"""Channel-embedding head: fused [B, D, h, w] -> logits [B, 1, h, w] (per-pixel MLP).

The paper's head is Linear D->64->16->1 per pixel; with no non-linearity that collapses to
one linear map, so we put one between the layers. With `residual=True` the head adds a skip
path, logits = alpha * sum_c fused_c + beta + mlp(fused), and its last layer starts at zero:
the untrained model then already ranks cells by the correlation it receives (amcf_net.md,
"measured here"), and training refines a working localizer instead of rediscovering it.

Ablation (which part does the work): `mlp=False` keeps only the skip path, logits =
alpha * sum_c fused_c + beta (two parameters); `residual=False` keeps only the MLP (the
paper's head). One of the two must stay.
"""
from __future__ import annotations

import torch
from torch import nn

_ACTS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class HeatmapHead(nn.Module):
    """Per-pixel MLP as 1x1 convolutions, optional residual channel-sum path."""

    def __init__(self, in_dim: int = 128, hidden: tuple[int, ...] = (64, 16), act: str = "gelu",
                 residual: bool = True, alpha_init: float = 50.0, beta_init: float = -5.0,
                 mlp: bool = True):
        super().__init__()
        if act not in _ACTS:
            raise ValueError(f"head activation must be one of {sorted(_ACTS)}, got {act!r}")
        if not (residual or mlp):
            raise ValueError("the head needs the MLP, the residual path or both")
        self.residual = bool(residual)
        self.mlp = self.last = None
        if mlp:  # no MLP modules at all when off, so no parameter is left without a gradient
            dims = [in_dim, *hidden]
            layers: list[nn.Module] = []
            for a, b in zip(dims[:-1], dims[1:]):
                layers += [nn.Conv2d(a, b, 1), _ACTS[act]()]
            self.last = nn.Conv2d(dims[-1], 1, 1)
            self.mlp = nn.Sequential(*layers)
            if self.residual:
                nn.init.zeros_(self.last.weight)
                nn.init.zeros_(self.last.bias)
        if self.residual:
            self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
            self.beta = nn.Parameter(torch.tensor(float(beta_init)))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        """fused [B, D, h, w] -> logits [B, 1, h, w]."""
        if self.mlp is None:
            return self.alpha * fused.sum(dim=1, keepdim=True) + self.beta
        out = self.last(self.mlp(fused))
        if self.residual:
            out = out + self.alpha * fused.sum(dim=1, keepdim=True) + self.beta
        return out
