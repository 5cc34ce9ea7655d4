"""RGB images -> model input tensors: the one conversion every network of the package uses.

Why one place: the heatmap model, its training pairs and the retrieval models all take
float images in [0, 1] without mean/std (UL14 convention; retrieval backbones normalise
inside the model), so a second copy could only drift (a different resize, a BGR slip).
torch is imported on use: the localizer and the pair generator import this module even
when no network runs (so it lives here, below them, and not in model/, whose package imports torch).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) -> (size, size, 3): area averaging when shrinking, bilinear when enlarging."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interp = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def to_tensor(images: np.ndarray | Sequence[np.ndarray], size: int | None = None) -> "torch.Tensor":
    """(H, W, 3) uint8 RGB image, or a sequence of equal-sized ones -> float32 [B, 3, H, W] in [0, 1].

    One image gives B = 1. `size`: first resize every image to size x size (`resize_square`);
    None keeps the images as they are (they must then share one shape).
    """
    import torch

    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    batch = []
    for im in images:
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"expected (H, W, 3) RGB images, got shape {im.shape}")
        batch.append(resize_square(im, size) if size is not None else im)
    if not batch:
        raise ValueError("to_tensor needs at least one image")
    arr = np.stack(batch, axis=0)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
