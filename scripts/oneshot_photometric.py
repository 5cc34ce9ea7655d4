"""One-shot benchmark with a test-time photometric normalisation of the model inputs.

An experiment (MODEL_CARD "Test-time photometric normalisation: tried, not kept"): can the
appearance gap be narrowed at inference by giving the UAV image the satellite window's
colour statistics? The localizer's model call is wrapped, so the one-shot benchmark measures
exactly the node's path plus the normalisation.

    python scripts/oneshot_photometric.py none|match|match_lum|std_both [--frames N] [--work DIR]
"""
from __future__ import annotations

import argparse

import torch

from geoloc_ros.data.tensors import to_tensor
from geoloc_ros.localize.localizer import Localizer
from geoloc_ros.model.weights import load_weights, resolve_weights
from geoloc_ros.tools import oneshot

VARIANTS = ("none", "match", "match_lum", "std_both")


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and std of [B, 3, H, W]."""
    return x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)


def normalise(uav: torch.Tensor, sat: torch.Tensor, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs of one batch (UAV already expanded to the windows) after `variant`."""
    mu_u, sd_u = _stats(uav)
    mu_s, sd_s = _stats(sat)
    if variant == "match":  # UAV mean and std per channel -> each window's
        uav = (uav - mu_u) / sd_u * sd_s + mu_s
    elif variant == "match_lum":  # mean per channel, contrast by the mean std (keeps the UAV's colour balance)
        uav = (uav - mu_u) * (sd_s.mean(1, keepdim=True) / sd_u.mean(1, keepdim=True)) + mu_s
    elif variant == "std_both":  # both images to one mean / std
        uav = (uav - mu_u) / sd_u * 0.18 + 0.45
        sat = (sat - mu_s) / sd_s * 0.18 + 0.45
    return uav.clamp(0, 1), sat.clamp(0, 1)


def wrap_model_call(variant: str) -> None:
    """Replace Localizer._run_model by the same call on normalised inputs (this process only)."""
    def run_model(self, uav_img, sat_imgs):
        sat = to_tensor(sat_imgs)
        uav = to_tensor([uav_img]).expand(sat.shape[0], -1, -1, -1)
        uav, sat = normalise(uav, sat, variant)
        with torch.inference_mode():
            return self.net(uav.to(self.device), sat.to(self.device)).float().cpu()

    Localizer._run_model = run_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variant", choices=VARIANTS)
    ap.add_argument("--frames", type=int, default=160, help="frames per part (the benchmark's default 160)")
    ap.add_argument("--work", default="runs/oneshot_work", help="cache of the benchmark's generated maps")
    args = ap.parse_args()
    if args.variant != "none":
        wrap_model_call(args.variant)
    torch.set_num_threads(2)
    net = load_weights(resolve_weights("default"), device="cpu")
    rep = oneshot.run_oneshot(net, oneshot.OneShotConfig(frames_per_part=args.frames), work_dir=args.work,
                              progress=True)
    groups = [*rep["parts"].items(), *rep.get("gaps", {}).items(), ("pooled", rep["pooled"])]
    print(args.variant + " | " + " | ".join(f"{name}: MA@10 {s.get('MA@10', float('nan')):.3f}" for name, s in groups))


if __name__ == "__main__":
    main()
