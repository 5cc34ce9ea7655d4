"""The appearance-gap augmentation of training pairs (data/augment.py GapAugmentConfig)."""
from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.data.augment import GapAugmentConfig, appearance_gap
from geoloc_ros.data.pairs import PairConfig


def _texture(seed: int = 0, n: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (n // 8, n // 8, 3)).astype(np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))


def test_gap_is_deterministic_per_seed_and_keeps_the_format():
    img = _texture()
    cfg = GapAugmentConfig(p=1.0)
    a = appearance_gap(img, cfg, np.random.default_rng(3))
    b = appearance_gap(img, cfg, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    assert not np.array_equal(a, img)


def test_probability_zero_is_the_identity_and_one_always_changes():
    img = _texture(1)
    rng = np.random.default_rng(0)
    assert appearance_gap(img, GapAugmentConfig(p=0.0), rng) is img
    changed = [not np.array_equal(appearance_gap(img, GapAugmentConfig(p=1.0), rng), img) for _ in range(20)]
    assert all(changed)


def test_each_part_does_what_it_says():
    img = np.full((64, 64, 3), 128, np.uint8)
    off = dict(p=1.0, channel_gain=0.0, saturation=(1.0, 1.0), hue_deg=0.0, haze=(0.0, 0.0), exposure=(1.0, 1.0),
               detail_loss=(1.0, 1.0), jpeg_p=0.0, shadow_p=0.0, changed_p=0.0)
    rng = np.random.default_rng(0)
    same = appearance_gap(img, GapAugmentConfig(**off), rng)
    assert np.abs(same.astype(int) - 128).max() <= 1  # everything off: (almost) unchanged
    dark = appearance_gap(img, GapAugmentConfig(**{**off, "exposure": (0.5, 0.5)}), rng)
    assert abs(float(dark.mean()) - 64) < 2
    shadow = appearance_gap(img, GapAugmentConfig(**{**off, "shadow_p": 1.0, "shadow_cover": (0.5, 0.5),
                                                     "shadow_depth": (0.5, 0.5)}), rng)
    assert shadow.min() < 100 and shadow.max() >= 120  # darker in part of the image only
    hazy = appearance_gap(np.zeros_like(img), GapAugmentConfig(**{**off, "haze": (0.3, 0.3)}), rng)
    assert hazy.mean() > 50 and hazy[..., 2].mean() > hazy[..., 0].mean()  # towards a bluish grey


def test_bad_ranges_are_refused_and_pairs_take_a_mapping():
    with pytest.raises(ValueError, match="probability"):
        GapAugmentConfig(p=1.5)
    with pytest.raises(ValueError, match="range"):
        GapAugmentConfig(haze=(0.4, 0.1))
    cfg = PairConfig(gap={"p": 0.5, "haze": [0.0, 0.2]})
    assert isinstance(cfg.gap, GapAugmentConfig) and cfg.gap.haze == (0.0, 0.2)
    assert PairConfig().gap is None  # off unless a recipe asks for it
