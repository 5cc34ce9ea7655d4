"""Property tests: the correlation AMCF-Net localizes untrained, and a short CPU training run on
procedurally generated textures lowers the loss and keeps (improves) the localization.

Data: textures made here with numpy/cv2 (random rectangles, lines, blobs, noise); the UAV
image is a crop of the satellite image with photometric changes (gain, offset, per-channel
colour, gamma, blur, noise). Centre baseline = always answering the satellite centre.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from geoloc_ros.model.decode import decode_heatmap
from geoloc_ros.model.loss import weighted_balance_loss
from geoloc_ros.model.net import AMCFConfig, AMCFNet

UAV, SAT = 64, 192
HANNING = 15  # UL14's 31 at 384 px, scaled to 192


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.empty((size, size, 3), np.float32)
    img[:] = rng.uniform(60, 190, 3)
    for _ in range(size * size // 900):
        col = rng.uniform(0, 255, 3).tolist()
        kind = rng.integers(3)
        if kind == 0:
            x, y = rng.integers(0, size, 2)
            w, h = rng.integers(4, size // 6, 2)
            cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), col, -1)
        elif kind == 1:
            p = rng.integers(0, size, 4)
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), col, int(rng.integers(1, 5)))
        else:
            x, y = rng.integers(0, size, 2)
            cv2.circle(img, (int(x), int(y)), int(rng.integers(3, size // 12)), col, -1)
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 0.8), 0, 255).astype(np.uint8)


def photometric(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    x = x * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1)
    x = np.clip(x * rng.uniform(0.85, 1.15, 3), 0, 1) ** rng.uniform(0.7, 1.4)
    x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.2)) + rng.normal(0, 0.03, x.shape)
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def to_tensor(images) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def make_batch(rng: np.random.Generator, n: int, sat_img: np.ndarray | None = None):
    """n pairs -> (uav [n,3,64,64], sat [n,3,192,192], centres [n,2] (row, col) px)."""
    uavs, sats, centres = [], [], []
    for _ in range(n):
        sat = texture(rng, SAT) if sat_img is None else sat_img
        r0, c0 = rng.integers(0, SAT - UAV + 1, 2)
        uavs.append(photometric(rng, sat[r0:r0 + UAV, c0:c0 + UAV]))
        sats.append(sat)
        centres.append((r0 + (UAV - 1) / 2, c0 + (UAV - 1) / 2))
    return to_tensor(uavs), to_tensor(sats), torch.tensor(centres, dtype=torch.float32)


def errors_px(model, batches) -> tuple[np.ndarray, float]:
    model.eval()
    errs, losses = [], []
    with torch.inference_mode():
        for uav, sat, c in batches:
            logits = model(uav, sat)
            losses.append(float(weighted_balance_loss(logits, c)))
            for pk, (r, col) in zip(decode_heatmap(logits, hanning=HANNING, suppress_radius=16), c.tolist()):
                errs.append(np.hypot(pk.row - r, pk.col - col))
    return np.array(errs), float(np.mean(losses))


def centre_errors(batches) -> np.ndarray:
    c = torch.cat([b[2] for b in batches]).numpy()
    return np.hypot(c[:, 0] - (SAT - 1) / 2, c[:, 1] - (SAT - 1) / 2)


def small_model(seed: int, **kw) -> AMCFNet:
    torch.manual_seed(seed)
    base = dict(backbone_kwargs={"embed_dim": 32, "depths": [1, 1, 2, 1]}, uav_size=UAV, sat_size=SAT,
                fusion="correlation")
    base.update(kw)
    return AMCFNet(AMCFConfig(**base))


@pytest.fixture()
def one_thread():
    """2 shared cores: one intra-op thread avoids oversubscription stalls."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_untrained_peak_follows_the_uav_patch(one_thread):
    rng = np.random.default_rng(10)
    sat = texture(rng, SAT)
    batches = [make_batch(rng, 8, sat_img=sat) for _ in range(2)]  # 16 places on ONE image
    errs, _ = errors_px(small_model(0), batches)
    base = centre_errors(batches)
    assert np.median(base) > 30
    assert np.median(errs) < 0.15 * np.median(base), (errs, base)
    assert np.mean(errs < 8) >= 0.75, errs


@pytest.mark.slow
def test_short_training_lowers_loss_and_localizes(one_thread):
    seed = 0
    rng = np.random.default_rng(seed)
    held = [make_batch(np.random.default_rng(1000 + seed + i), 8) for i in range(3)]  # unseen textures
    model = small_model(seed, proj_dim=64)  # 64 channels keep the run within ~1.5 min of CPU
    err0, loss0 = errors_px(model, held)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    losses = []
    for _ in range(120):
        uav, sat, c = make_batch(rng, 8)
        loss = weighted_balance_loss(model(uav, sat), c)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    err1, loss1 = errors_px(model, held)
    base = centre_errors(held)
    msg = (f"held-out loss {loss0:.4f} -> {loss1:.4f}; median error {np.median(err0):.1f} -> "
           f"{np.median(err1):.1f} px (centre {np.median(base):.1f}); train loss "
           f"{np.mean(losses[:5]):.4f} -> {np.mean(losses[-20:]):.4f}")
    print(msg)
    assert loss1 < 0.3 * loss0, msg
    assert np.mean(losses[-20:]) < 0.6 * np.mean(losses[:5]), msg
    assert np.median(err1) < 0.15 * np.median(base), msg
    assert np.median(err1) <= np.median(err0) + 1.0, msg
    assert np.mean(err1 < 10) >= 0.8, msg
