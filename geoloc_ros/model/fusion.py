"""AMCF fusion: per-scale similarity maps S_i and their adaptive per-pixel weighting.

Two variants (amcf_net.md):
- `correlation` (default): the UAV feature map of each sample is that sample's kernel in a
  depth-wise cross-correlation over its satellite map, so every satellite cell is compared
  with the whole UAV patch (a search over positions, which the paper's product lacks).
  With `center=True` (our addition) each projected map first loses its per-channel spatial
  mean: random and ImageNet FocalNet features share a large common component, which puts the
  cosine of ANY two cells near 0.7-0.85 and saturates sigmoid(50*S - 5) everywhere; centred,
  unrelated cells score ~0 and the matching cell 0.4-0.7, and the coarse scales localize
  better (measured: stride-16 median error 57 -> 9 px on 64/192 synthetic pairs).
- `paper_literal`: the paper's text as written; the UAV map is average-pooled to one vector
  and broadcast in the elementwise product, and the fused map is the weighted satellite
  features. Kept so both can be compared on the same data; it cannot localize by design.

Ablation switches (the paper's Table 2): `adaptive=False` replaces the learned per-pixel
softmax weights by uniform ones (w_i = 1/n, no Conv1x1(S_0) at all), and the scales fused
are whichever maps the caller passes (AMCFNet's `fusion_scales` picks them among the
backbone's outputs); `grid` fixes the output grid (stride 4, even when scale 0 is not fused).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _fft_size(n: int) -> int:
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (fast for pocketfft / cuFFT)."""
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _odd_kernel(uav: torch.Tensor) -> torch.Tensor:
    """An even kernel side is averaged with its one-cell shift (side k+1, see depthwise_xcorr)."""
    kh, kw = uav.shape[-2:]
    if kh % 2 == 0:
        uav = 0.5 * (F.pad(uav, (0, 0, 1, 0)) + F.pad(uav, (0, 0, 0, 1)))
    if kw % 2 == 0:
        uav = 0.5 * (F.pad(uav, (1, 0, 0, 0)) + F.pad(uav, (0, 1, 0, 0)))
    return uav


def xcorr_fft_size(h: int, w: int, kh: int, kw: int) -> tuple[int, int]:
    """FFT size of the correlation of an [h, w] map with a [kh, kw] kernel (before `_odd_kernel`).

    A circular correlation of size N is free of wrap-around on the kept cells [p, p + h) once
    N >= h + p (the full linear result is h + 2p long), so the transform need not cover it
    all: N = the next 5-smooth size >= h + p (at 120 cells and a 41-cell kernel: 144, not 160).
    """
    kh2, kw2 = kh + (kh % 2 == 0), kw + (kw % 2 == 0)
    return _fft_size(max(h + kh2 // 2, kh2)), _fft_size(max(w + kw2 // 2, kw2))


def sat_spectrum(sat: torch.Tensor, fft_hw: tuple[int, int]) -> torch.Tensor:
    """rfft2 of the satellite maps at the correlation's FFT size (float32 -> complex64).

    Contiguous first: the backbone and 1x1 projections hand over channels-last maps, and a
    strided transform over them costs 2x the whole correlation (measured, 72x72x128 on CPU)."""
    return torch.fft.rfft2(sat.float().contiguous(), s=tuple(fft_hw))


def depthwise_xcorr(sat: torch.Tensor, uav: torch.Tensor, impl: str = "auto",
                    sat_fft: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample, per-channel cross-correlation that stays exactly on the satellite grid.

    sat: [B, C, H, W]; uav: [B, C, k_h, k_w] (also B == 1 on either side, broadcast).
    Returns [B, C, H, W]: out[b, c, y, x] = sum_{m, n} uav[b, c, m, n] *
    sat[b, c, y + m - (k_h-1)/2, x + n - (k_w-1)/2] / (k_h * k_w), zero padding outside.

    For an even kernel side the UAV centre (k-1)/2 falls between two cells; correlating with
    it directly would put the result on a grid shifted by half a cell. We instead correlate
    with the kernel averaged with its one-cell shift (side k+1, centre exactly on a cell),
    which equals the bilinear value of the half-shifted result at the cell centres: no shift,
    and the sum of the weights (the kernel area) is unchanged.

    impl: "conv" = grouped convolution (groups = B*C; the reference, exported to ONNX),
    "fft" = the same correlation through real FFTs in float32 (on CPU the grouped-conv
    backward with these large kernels is 20-50x slower), "auto" = conv while exporting /
    tracing, else fft. Both agree to ~1e-6 relative.
    sat_fft: `sat_spectrum(sat, xcorr_fft_size(...))` computed before (a cached satellite
    window); the FFT path then transforms only the kernel. Ignored by the conv path.
    """
    if sat.dim() != 4 or uav.dim() != 4 or sat.shape[1] != uav.shape[1]:
        raise ValueError(f"xcorr expects [B,C,H,W] maps with equal C, got {tuple(sat.shape)} and {tuple(uav.shape)}")
    if impl not in ("auto", "conv", "fft"):
        raise ValueError(f"xcorr impl must be auto, conv or fft, got {impl!r}")
    _, c, h, w = sat.shape
    kh, kw = uav.shape[-2:]
    area = float(kh * kw)
    kernel = _odd_kernel(uav)
    kh2, kw2 = kernel.shape[-2:]
    ph, pw = kh2 // 2, kw2 // 2
    if impl == "auto":
        exporting = (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
                     or torch.compiler.is_exporting())
        impl = "conv" if exporting else "fft"
    if impl == "conv":
        b = max(sat.shape[0], uav.shape[0])
        sat, kernel = sat.expand(b, -1, -1, -1), kernel.expand(b, -1, -1, -1)
        out = F.conv2d(sat.reshape(1, b * c, h, w), kernel.reshape(b * c, 1, kh2, kw2),
                       padding=(ph, pw), groups=b * c)
        return out.reshape(b, c, h, w) / area
    # correlation = convolution with the flipped kernel; the full linear result starts at -p
    fh, fw = xcorr_fft_size(h, w, kh, kw)
    if sat_fft is None:
        sat_fft = sat_spectrum(sat, (fh, fw))
    elif tuple(sat_fft.shape[-2:]) != (fh, fw // 2 + 1):
        raise ValueError(f"cached satellite spectrum {tuple(sat_fft.shape[-2:])} does not fit a {kh}x{kw} kernel "
                         f"on {h}x{w} cells (needs {(fh, fw // 2 + 1)}): prepared for another UAV size")
    spec = sat_fft * torch.fft.rfft2(kernel.float().flip(-2, -1).contiguous(), s=(fh, fw))
    out = torch.fft.irfft2(spec, s=(fh, fw))[..., ph:ph + h, pw:pw + w]
    return (out / area).to(sat.dtype)


@dataclass
class SatSide:
    """The satellite half of the correlation fusion, computed once per window (satellite cache).

    Per fused scale: the projected, centred, L2-normalised map [B, D, H_i, W_i] and its FFT
    at the size the model's UAV kernel needs (`sat_spectrum`). All of it depends on the
    satellite window alone, so a cached window skips the projection, the normalisation and a
    third of the transforms of every later frame. `grid`: the fused output grid (stride 4)."""

    maps: list[torch.Tensor]
    spectra: list[torch.Tensor]
    grid: tuple[int, int]

    def select(self, i: int) -> "SatSide":
        """Window i of a batch, as a batch of one."""
        return SatSide([m[i:i + 1] for m in self.maps], [f[i:i + 1] for f in self.spectra], self.grid)

    @staticmethod
    def cat(items: list["SatSide"]) -> "SatSide":
        """Windows side by side in one batch (same model, same grid)."""
        return SatSide([torch.cat(t) for t in zip(*(x.maps for x in items))],
                       [torch.cat(t) for t in zip(*(x.spectra for x in items))], items[0].grid)

    @property
    def nbytes(self) -> int:
        return sum(int(t.numel() * t.element_size()) for t in (*self.maps, *self.spectra))


class AMCFFusion(nn.Module):
    """Projection + similarity + adaptive scale weighting (Stage 2).

    Input: per-scale UAV maps [B, C_i, h_i, w_i] and satellite maps [B, C_i, H_i, W_i]
    (i = 0..n-1, strides 4/8/16). Output: fused [B, proj_dim, H_0, W_0] on the stride-4
    satellite grid, plus the per-pixel scale weights [B, n, H_0, W_0].
    """

    def __init__(self, in_channels: list[int], proj_dim: int = 128, shared_projection: bool = True,
                 fusion: str = "correlation", temperature: float = 2.0, center: bool = True,
                 xcorr_impl: str = "auto", adaptive: bool = True):
        super().__init__()
        if fusion not in ("correlation", "paper_literal"):
            raise ValueError(f"fusion must be 'correlation' or 'paper_literal', got {fusion!r}")
        self.fusion = fusion
        self.temperature = float(temperature)
        self.center = bool(center)
        self.xcorr_impl = xcorr_impl
        self.n_scales = len(in_channels)
        self.proj_sat = nn.ModuleList(nn.Conv2d(c, proj_dim, 1) for c in in_channels)
        # shared: one projection for both modalities (no separate UAV parameters)
        self.proj_uav = None if shared_projection else nn.ModuleList(
            nn.Conv2d(c, proj_dim, 1) for c in in_channels)
        # A = Conv1x1(S_0) -> one logit per scale; none for uniform weights (no unused parameters)
        self.scale_logits = nn.Conv2d(proj_dim, self.n_scales, 1) if adaptive else None

    def _project(self, feats: list[torch.Tensor], uav: bool) -> list[torch.Tensor]:
        projs = self.proj_uav if (uav and self.proj_uav is not None) else self.proj_sat
        return [p(f) for p, f in zip(projs, feats)]

    def prepare_sat(self, sat_feats: list[torch.Tensor], kernel_hw: list[tuple[int, int]] | None = None,
                    grid: tuple[int, int] | None = None) -> SatSide:
        """Correlation only: the satellite half (projection, centring, L2 norm; with `kernel_hw`,
        the UAV kernel sides per scale, also the spectra of the FFT path)."""
        if self.fusion != "correlation":
            raise ValueError("prepare_sat serves the correlation fusion only")
        maps, spectra = [], []
        for i, si in enumerate(self._project(sat_feats, uav=False)):
            if self.center:  # minus its own per-channel spatial mean (as in NCC)
                si = si - si.mean(dim=(2, 3), keepdim=True)
            si = F.normalize(si, dim=1)
            maps.append(si)
            if kernel_hw is not None:
                spectra.append(sat_spectrum(si, xcorr_fft_size(*si.shape[-2:], *kernel_hw[i])))
        grid = tuple(maps[0].shape[-2:]) if grid is None else (int(grid[0]), int(grid[1]))
        return SatSide(maps, spectra, grid)

    def scale_weights(self, s0: torch.Tensor) -> torch.Tensor:
        """Per-pixel weights of the scales [B,n,H0,W0]: softmax(lambda * Conv1x1(S_0)), or 1/n each."""
        if self.scale_logits is None:
            return s0.new_full((s0.shape[0], self.n_scales, *s0.shape[-2:]), 1.0 / self.n_scales)
        return torch.softmax(self.temperature * self.scale_logits(s0), dim=1)

    def forward(self, uav_feats: list[torch.Tensor], sat_feats: "list[torch.Tensor] | SatSide",
                grid: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """uav_feats[i] [B,C_i,h_i,w_i], sat_feats[i] [B,C_i,H_i,W_i] -> (fused [B,D,H_0,W_0], weights [B,n,H_0,W_0]).

        sat_feats may be a `SatSide` from `prepare_sat` (a cached window; correlation only).
        grid: the output grid (H_0, W_0); None = the first satellite map's (a SatSide's own).
        """
        prepared = isinstance(sat_feats, SatSide)
        n_sat = len(sat_feats.maps) if prepared else len(sat_feats)
        if len(uav_feats) != self.n_scales or n_sat != self.n_scales:
            raise ValueError(f"fusion expects {self.n_scales} scales, got {len(uav_feats)} UAV / {n_sat} satellite")
        if prepared and self.fusion != "correlation":
            raise ValueError("a prepared satellite side needs the correlation fusion")
        u = self._project(uav_feats, uav=True)
        if self.fusion == "correlation":
            side = sat_feats if prepared else self.prepare_sat(sat_feats, grid=grid)
            grid = torch.Size(side.grid)
            sims = []
            for i, (ui, si) in enumerate(zip(u, side.maps)):
                if self.center:  # each modality minus its own per-channel spatial mean (as in NCC)
                    ui = ui - ui.mean(dim=(2, 3), keepdim=True)
                # L2-normalised along channels, so the channel sum of S_i is a mean cosine similarity
                spec = side.spectra[i] if side.spectra else None
                corr = depthwise_xcorr(si, F.normalize(ui, dim=1), self.xcorr_impl, sat_fft=spec)
                sims.append(corr if corr.shape[-2:] == grid else
                            F.interpolate(corr, size=grid, mode="bilinear", align_corners=False))
            values = sims
        else:  # paper_literal (no centring: the pooled UAV vector of a centred map would be 0)
            s = self._project(sat_feats, uav=False)
            grid = s[0].shape[-2:] if grid is None else torch.Size((int(grid[0]), int(grid[1])))
            sims, values = [], []
            for ui, si in zip(u, s):
                si = F.normalize(F.interpolate(si, size=grid, mode="bilinear", align_corners=False)
                                 if si.shape[-2:] != grid else si, dim=1)
                uv = F.normalize(ui.mean(dim=(2, 3), keepdim=True), dim=1)  # pooled UAV vector [B,D,1,1]
                sims.append(si * uv)
                values.append(si)  # the paper fuses the (weighted) satellite features
        weights = self.scale_weights(sims[0])  # [B,n,H0,W0]
        fused = sum(weights[:, i:i + 1] * v for i, v in enumerate(values))
        return fused, weights
