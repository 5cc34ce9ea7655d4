"""AMCF-Net: where in a satellite crop was this UAV image taken?  (read top-down)

    uav [B,3,h,w], sat [B,3,H,W]   floats in [0, 1], no mean/std normalisation (UL14)
      |  optional: each image standardised per channel (`input_norm: per_image`)
      |  Stage 1: backbone (shared, or one per modality)         -> encode()
      v
    uav_feats[i] [B,C_i,h/s_i,w/s_i], sat_feats[i] [B,C_i,H/s_i,W/s_i],  s_i = 4, 8, 16
      |  Stage 2: AMCF fusion (fusion.py)                        -> forward_features()
      |    1x1 projection to D=128, zero-mean (center_features), L2 norm,
      |    S_i = depth-wise xcorr (UAV map = kernel, per sample), divided by the kernel area,
      |    S_i resized to the stride-4 grid, w = softmax(lambda * Conv1x1(S_0)) over scales,
      v    fused = sum_i w_i * S_i    (i in fusion_scales; uniform w_i = 1/n if not adaptive)
    fused [B,D,H/4,W/4]
      |  head (head.py): per-pixel MLP D->64->16->1 (+ residual channel-sum path; either alone)
      v
    logits [B,1,H/4,W/4]  --upsample (nearest | bilinear)-->  logits [B,1,H,W]

The logits are on the satellite pixel grid: logits[b, 0, r, c] scores "the UAV image centre
is at satellite pixel (r, c)". `model.decode.decode_heatmap` turns them into a position,
sub-pixel refinement, confidence and covariance; `model.loss` trains them.

Ablation switches (the paper's Table 2, docs/MODEL_FIDELITY.md, config/ablation/): which
backbone outputs are fused (`fusion_scales`, the backbone itself unchanged), learned or
uniform scale weights (`adaptive_scale_weights`), MLP and/or residual head (`head_mlp`,
`residual_head`), shared or dual backbone (`shared_backbone`). Their defaults are the full
model, so older weight files (which lack the keys) load and compute exactly as before.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..config import load_dataclass, read_yaml
from .backbone import create_backbone, feature_channels, feature_strides, load_pretrained
from .fusion import AMCFFusion, SatSide
from .head import HeatmapHead


INPUT_NORMS = ("none", "per_image")
# target statistics of `input_norm: per_image`: about those of the training imagery, so
# weights trained without the normalisation start from inputs they know
NORM_MEAN, NORM_STD = 0.45, 0.18


def standardise_per_image(x: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] -> each image and channel at mean NORM_MEAN / std NORM_STD, clipped to [0, 1].

    Per image (not per batch), so a sample's input never depends on the rest of its batch,
    and a cached satellite window is the same whatever it was batched with."""
    mu = x.mean(dim=(2, 3), keepdim=True)
    sd = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)
    return ((x - mu) / sd * NORM_STD + NORM_MEAN).clamp(0.0, 1.0)


@dataclass
class AMCFConfig:
    """Every knob of AMCF-Net. Load with `load_model_config(path)` or `load_dataclass`."""

    # timm model name of the backbone (FocalNet-Tiny-SRF in the paper)
    backbone: str = "focalnet_tiny_srf"
    # extra timm kwargs, e.g. {embed_dim: 32, depths: [1, 1, 2, 1]} for the reduced CPU model
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    # backbone stages returned (strides 4/8/16 for FocalNet); stage 3 is not needed. Fewer
    # indices also TRUNCATE the backbone (timm drops later stages): for a scale ablation
    # use `fusion_scales` instead, which keeps the backbone whole
    out_indices: tuple[int, ...] = (0, 1, 2)
    # positions in out_indices of the maps fused (Table 2 scale rows), e.g. [0] = stride 4
    # only; null = all. The fused grid stays the first output's (stride 4) whatever is picked.
    # Backbone stages after the last fused one get no gradient and are frozen (DDP needs that)
    fusion_scales: tuple[int, ...] | None = None
    # True: per-pixel scale weights softmax(lambda * Conv1x1(S_0)) (paper); False: uniform
    # 1/n (the "fixed-weight multi-scale" ablation; no Conv1x1 at all)
    adaptive_scale_weights: bool = True
    # True: one backbone for both images (paper); False: one per modality (ablation baseline)
    shared_backbone: bool = True
    # local ImageNet weights for the backbone (.safetensors or .pth); None = random init.
    # Never downloaded. Ignored by `load_weights` (the saved tensors replace them).
    pretrained_path: str | None = None
    # channels after the per-scale 1x1 projection (the paper's 128)
    proj_dim: int = 128
    # True: the same 1x1 projections for UAV and satellite maps; False: one set per modality
    shared_projection: bool = True
    # "correlation" (depth-wise xcorr, our default) | "paper_literal" (the text as written)
    fusion: str = "correlation"
    # correlation only: subtract each projected map's per-channel spatial mean before the L2
    # norm (zero-mean normalised cross-correlation; our addition, see fusion.py for why)
    center_features: bool = True
    # correlation arithmetic: "auto" (FFT, grouped conv while exporting) | "conv" | "fft";
    # same result, FFT is far faster to train on CPU (see fusion.depthwise_xcorr)
    xcorr_impl: str = "auto"
    # lambda in the scale weights softmax(lambda * A)
    temperature: float = 2.0
    # hidden widths of the per-pixel head proj_dim -> ... -> 1
    head_dims: tuple[int, ...] = (64, 16)
    # non-linearity between head layers: gelu | relu | silu
    head_act: str = "gelu"
    # logits = alpha * sum_c fused_c + beta + head(fused), last head layer zero-initialised;
    # False = the MLP alone (the paper's head)
    residual_head: bool = True
    # False = no MLP: logits = alpha * sum_c fused_c + beta (residual path alone, ablation);
    # needs residual_head
    head_mlp: bool = True
    # initial alpha and beta of the residual path (both learnable)
    alpha_init: float = 50.0
    beta_init: float = -5.0
    # upsampling of the stride-4 logits to the satellite size: "nearest" (paper) | "bilinear"
    upsample: str = "nearest"
    # model input sides in pixels (UL14: UAV 128, satellite 384); multiples of the largest stride
    uav_size: int = 128
    sat_size: int = 384
    # "none" (UL14, the paper) | "per_image": each input image, per channel, shifted and
    # scaled to mean 0.45 / std 0.18 (then clipped to [0, 1]) before the backbone, so a tint,
    # haze or exposure change of the whole camera image no longer reaches the features
    # (the camera side of a real flight differs from the map most in exactly these; MODEL_CARD)
    input_norm: str = "none"

    def __post_init__(self) -> None:
        if self.fusion not in ("correlation", "paper_literal"):
            raise ValueError(f"fusion must be 'correlation' or 'paper_literal', got {self.fusion!r}")
        if self.upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {self.upsample!r}")
        if self.xcorr_impl not in ("auto", "conv", "fft"):
            raise ValueError(f"xcorr_impl must be 'auto', 'conv' or 'fft', got {self.xcorr_impl!r}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}")
        if self.proj_dim <= 0:
            raise ValueError(f"proj_dim must be positive, got {self.proj_dim}")
        # bounds keep a corrupted or hand-edited config from allocating gigabytes per frame
        if not (32 <= self.uav_size <= 1024 and 64 <= self.sat_size <= 4096 and self.uav_size <= self.sat_size):
            raise ValueError(f"uav_size must be in [32, 1024] and sat_size in [64, 4096] with uav_size <= sat_size, "
                             f"got {self.uav_size}, {self.sat_size}")
        if self.uav_size % 16 or self.sat_size % 16:
            raise ValueError(f"uav_size and sat_size must be multiples of 16 (the backbone's stride), got "
                             f"{self.uav_size}, {self.sat_size}")
        self.out_indices = tuple(int(i) for i in self.out_indices)
        if self.fusion_scales is not None:
            fs = tuple(int(i) for i in self.fusion_scales)
            if not fs or list(fs) != sorted(set(fs)) or fs[0] < 0 or fs[-1] >= len(self.out_indices):
                raise ValueError(f"fusion_scales must be increasing positions in out_indices (0..{len(self.out_indices) - 1}),"
                                 f" got {list(fs)}")
            self.fusion_scales = fs
        if not (self.residual_head or self.head_mlp):
            raise ValueError("residual_head and head_mlp cannot both be false (the head would be empty)")
        self.head_dims = tuple(int(i) for i in self.head_dims)
        self.backbone_kwargs = dict(self.backbone_kwargs or {})


def load_model_config(source: Mapping[str, Any] | str | Path | None) -> AMCFConfig:
    """AMCFConfig from a YAML path or mapping; a top-level `model:` section is also accepted."""
    where = ""
    if isinstance(source, (str, Path)):
        where = str(source)
        source = read_yaml(source)
    if isinstance(source, Mapping) and set(source) == {"model"} and isinstance(source["model"], Mapping):
        source = source["model"]
        where = f"{where}:model" if where else "model"
    return load_dataclass(AMCFConfig, source, where=where)


class AMCFNet(nn.Module):
    """AMCF-Net heatmap localizer. See the module docstring for the data flow."""

    def __init__(self, cfg: AMCFConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or AMCFConfig()
        self.backbone = create_backbone(cfg.backbone, cfg.out_indices, cfg.backbone_kwargs)
        # dual variant: the satellite image gets its own backbone (same architecture)
        self.sat_backbone = None if cfg.shared_backbone else create_backbone(
            cfg.backbone, cfg.out_indices, cfg.backbone_kwargs)
        self.pretrained_report = None
        if cfg.pretrained_path:
            self.pretrained_report = load_pretrained(self.backbone, cfg.pretrained_path, cfg.backbone,
                                                     cfg.backbone_kwargs)
            if self.sat_backbone is not None:
                load_pretrained(self.sat_backbone, cfg.pretrained_path, cfg.backbone, cfg.backbone_kwargs)
        self.channels = feature_channels(self.backbone)   # e.g. [96, 192, 384]
        self.strides = feature_strides(self.backbone)     # e.g. [4, 8, 16]
        self.fusion_scales = cfg.fusion_scales or tuple(range(len(self.channels)))
        self._pick_scales = self.fusion_scales != tuple(range(len(self.channels)))
        self.fusion = AMCFFusion([self.channels[i] for i in self.fusion_scales], cfg.proj_dim,
                                 cfg.shared_projection, cfg.fusion, cfg.temperature, cfg.center_features,
                                 cfg.xcorr_impl, cfg.adaptive_scale_weights)
        self.head = HeatmapHead(cfg.proj_dim, cfg.head_dims, cfg.head_act, cfg.residual_head,
                                cfg.alpha_init, cfg.beta_init, cfg.head_mlp)
        if self.fusion_scales[-1] < len(self.channels) - 1:
            self._freeze_unused_stages()

    def _freeze_unused_stages(self) -> None:
        """Stages after the last fused scale feed nothing that is trained: no gradient ever
        reaches them, and DDP refuses parameters without one, so they are frozen (their
        outputs are still computed and returned by `encode`, e.g. for a satellite cache)."""
        last = self.backbone.feature_info.module_name()[self.fusion_scales[-1]].replace(".", "_")
        for net in (self.backbone, self.sat_backbone):
            if net is None:
                continue
            names = [n for n, _ in net.named_children()]
            for name in names[names.index(last) + 1:]:
                getattr(net, name).requires_grad_(False)

    # -- Stage 1 ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, modality: str = "sat") -> list[torch.Tensor]:
        """x [B,3,H,W] in [0,1] -> [F_i [B,C_i,H/s_i,W/s_i] for s_i in self.strides].

        `modality` ("uav" | "sat") only matters for the dual-backbone variant.
        """
        if modality not in ("uav", "sat"):
            raise ValueError(f"modality must be 'uav' or 'sat', got {modality!r}")
        self._check_image(x, modality)
        net = self.sat_backbone if (modality == "sat" and self.sat_backbone is not None) else self.backbone
        if self.cfg.input_norm == "per_image":
            x = standardise_per_image(x)
        return list(net(x))

    def prepare_sat(self, sat_feats: list[torch.Tensor]) -> "SatSide | list[torch.Tensor]":
        """What a satellite cache should keep of a window: `encode(sat)` -> the satellite half
        of the fusion (projected, normalised maps and their FFTs for this model's UAV size),
        which `forward_features` takes in place of the features. Correlation fusion only;
        other variants get their features back unchanged."""
        if self.cfg.fusion != "correlation":
            return sat_feats
        kernels = [(self.cfg.uav_size // self.strides[i],) * 2 for i in self.fusion_scales]
        return self.fusion.prepare_sat([sat_feats[i] for i in self.fusion_scales], kernels, sat_feats[0].shape[-2:])

    # -- Stages 2 and 3 --------------------------------------------------------------------
    def forward_features(self, uav_feats: list[torch.Tensor], sat_feats: "list[torch.Tensor] | SatSide",
                         out_hw: tuple[int, int]) -> torch.Tensor:
        """Features from `encode` (satellite: or `prepare_sat` of them) -> logits [B,1,*out_hw]
        on the satellite pixel grid.

        Either side may have batch 1 and is then broadcast (one cached satellite crop against
        several UAV hypotheses, e.g. rotations). Samples of a batch never mix.
        """
        if self._pick_scales:                                # a scale ablation: pick the fused maps
            uav_feats = [uav_feats[i] for i in self.fusion_scales]
        if isinstance(sat_feats, SatSide):                   # already picked and on its grid
            fused, _ = self.fusion(uav_feats, sat_feats)
        elif self._pick_scales:
            grid = sat_feats[0].shape[-2:]                   # the stride-4 grid, fused or not
            sat_feats = [sat_feats[i] for i in self.fusion_scales]
            fused, _ = self.fusion(uav_feats, sat_feats, grid)
        else:
            fused, _ = self.fusion(uav_feats, sat_feats)    # [B,D,H/4,W/4]
        logits = self.head(fused)                            # [B,1,H/4,W/4]
        out_hw = (int(out_hw[0]), int(out_hw[1]))
        if logits.shape[-2:] == out_hw:
            return logits
        if self.cfg.upsample == "nearest":
            return F.interpolate(logits, size=out_hw, mode="nearest")
        return F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)

    def forward(self, uav: torch.Tensor, sat: torch.Tensor) -> torch.Tensor:
        """uav [B,3,h,w], sat [B,3,H,W] (floats in [0,1]) -> logits [B,1,H,W]."""
        return self.forward_features(self.encode(uav, "uav"), self.encode(sat, "sat"), sat.shape[-2:])

    # -- helpers ---------------------------------------------------------------------------
    def _check_image(self, x: torch.Tensor, modality: str) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{modality} image must be [B,3,H,W], got {tuple(x.shape)}")
        s = max(self.strides) if hasattr(self, "strides") else 16
        if x.shape[-2] % s or x.shape[-1] % s:
            raise ValueError(f"{modality} image sides must be multiples of {s} (the largest "
                             f"feature stride) to keep the grids aligned, got {tuple(x.shape[-2:])}")

    @property
    def out_stride(self) -> int:
        """Stride of the fused grid (before upsampling); 4 for FocalNet."""
        return self.strides[0]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters: total, backbone(s), fusion + head."""
        count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
        bb = count(self.backbone) + count(self.sat_backbone)
        fh = count(self.fusion) + count(self.head)
        return {"total": bb + fh, "backbone": bb, "fusion_head": fh}
