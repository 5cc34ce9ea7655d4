"""Image augmentations for training pairs (numpy HWC uint8 RGB in, same out).

Why these: a real UAV frame differs from the satellite map in colour, sharpness, season
and heading, so the UAV side of a training pair gets colour/blur/noise changes and a
random heading; UL14's own recipe (RSC) adds RandomErasing and a random resize
interpolation on the UAV image. Geometric crops of plain arrays (photos used as maps,
synthetic maps) live here too, with the package's pixel-centre convention.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: OpenCV interpolations RSC picks from for the UAV resize (nearest, linear, cubic, area).
UL14_UAV_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA)


@dataclass
class PhotometricConfig:
    """Colour / blur / noise changes applied to the UAV side of a pair (0 disables a part)."""

    brightness: float = 0.3  # multiplicative factor drawn from [1-b, 1+b]
    contrast: float = 0.3  # blend with the mean grey level, factor from [1-c, 1+c]
    saturation: float = 0.3  # blend with the grey image, factor from [1-s, 1+s]
    hue: float = 0.03  # hue shift as a fraction of the full circle, from [-h, h]
    gamma: float = 0.2  # gamma drawn from [1-g, 1+g]
    blur_p: float = 0.3  # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # blur sigma range in pixels
    noise_std: float = 3.0  # max Gaussian noise std in grey levels (std drawn from [0, noise_std])


def photometric(img: np.ndarray, cfg: PhotometricConfig, rng: np.random.Generator) -> np.ndarray:
    """Random colour jitter, gamma, blur and sensor noise; returns a new uint8 image."""
    x = img.astype(np.float32) / 255.0
    if cfg.brightness > 0:
        x = x * rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    if cfg.contrast > 0:
        m = float(x.mean())
        x = (x - m) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + m
    if cfg.saturation > 0:
        grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        x = (x - grey[..., None]) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation) + grey[..., None]
    x = np.clip(x, 0.0, 1.0)
    if cfg.hue > 0:
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360)
        hsv[..., 0] = (hsv[..., 0] + 360.0 * rng.uniform(-cfg.hue, cfg.hue)) % 360.0
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if cfg.gamma > 0:
        x = np.clip(x, 0.0, 1.0) ** rng.uniform(1 - cfg.gamma, 1 + cfg.gamma)
    if cfg.blur_p > 0 and rng.random() < cfg.blur_p:
        s = rng.uniform(*cfg.blur_sigma)
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT_101)
    if cfg.noise_std > 0:
        x = x + rng.normal(0.0, rng.uniform(0, cfg.noise_std) / 255.0, size=x.shape).astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def random_erasing(img: np.ndarray, rng: np.random.Generator, p: float = 0.3,
                   area: tuple[float, float] = (0.02, 0.3), aspect: tuple[float, float] = (0.3, 3.33),
                   fill: int = 128) -> np.ndarray:
    """RandomErasing as in UL14's RSC recipe: one grey rectangle with probability p."""
    if p <= 0 or rng.random() >= p:
        return img
    h, w = img.shape[:2]
    for _ in range(10):
        a = rng.uniform(*area) * h * w
        r = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
        eh, ew = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
        if 0 < eh < h and 0 < ew < w:
            top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            out = img.copy()
            out[top:top + eh, left:left + ew] = fill
            return out
    return img


def random_interp_resize(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Resize to size x size with an interpolation drawn from UL14's four choices."""
    interp = UL14_UAV_INTERPOLATIONS[int(rng.integers(0, len(UL14_UAV_INTERPOLATIONS)))]
    return cv2.resize(img, (size, size), interpolation=interp)


def crop_rotated(image: np.ndarray, center_rc: tuple[float, float], side_px: float, out_px: int,
                 rotation_deg: float = 0.0, fill: str | int = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Square crop of a plain array treated as a north-up map (rows = south, cols = east).

    `center_rc` is in source pixels (pixel centres at integers), `side_px` the crop side in
    source pixels, `rotation_deg` the compass bearing the crop's up axis points to (0 =
    north-up, 90 = the crop's up is the map's east). Output pixel (i, j) centre sits at
    centre + s * R(j - h, i - h) with s = side_px / out_px and h = (out_px - 1) / 2, so the
    crop centre is exactly `center_rc`. Returns (crop uint8, valid bool mask); outside
    parts get the mean colour of the valid part (UL14's fill) or the given grey value.
    Downscaling goes through INTER_AREA first so small crops of large maps do not alias.
    """
    if side_px <= 0 or out_px <= 0:
        raise ValueError(f"crop side and size must be positive, got {side_px}, {out_px}")
    H, W = image.shape[:2]
    cr, cc = float(center_rc[0]), float(center_rc[1])
    s = side_px / out_px
    # region of the source that can contribute (rotated square + margin)
    rad = side_px * math.sqrt(0.5) + 2.0 * max(s, 1.0) + 2.0
    r0, r1 = max(int(math.floor(cr - rad)), 0), min(int(math.ceil(cr + rad)) + 1, H)
    c0, c1 = max(int(math.floor(cc - rad)), 0), min(int(math.ceil(cc + rad)) + 1, W)
    if r0 >= r1 or c0 >= c1:
        val = 0 if fill == "mean" else int(fill)
        return np.full((out_px, out_px, 3), val, np.uint8), np.zeros((out_px, out_px), bool)
    region = image[r0:r1, c0:c1]
    ones = np.full(region.shape[:2], 255, np.uint8)
    k = 1.0
    if s > 1.0:  # pre-shrink so the warp samples at about one source pixel per output pixel
        k = s
        nh, nw = max(int(round(region.shape[0] / k)), 1), max(int(round(region.shape[1] / k)), 1)
        kr, kc = region.shape[0] / nh, region.shape[1] / nw
        region = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
        ones = cv2.resize(ones, (nw, nh), interpolation=cv2.INTER_AREA)
    else:
        kr = kc = 1.0
    # source (region) coordinates of an output pixel: pixel centres map via (x + 0.5) / k - 0.5
    th = math.radians(rotation_deg)
    ct, st = math.cos(th), math.sin(th)
    h = (out_px - 1) / 2.0
    # full-resolution coordinates relative to the region origin
    a_col, a_row = cc - c0, cr - r0
    # col = a_col + s*(ct*(j-h) - st*(i-h)) ; row = a_row + s*(st*(j-h) + ct*(i-h))
    m = np.array([
        [s * ct, -s * st, a_col - s * (ct * h - st * h)],
        [s * st, s * ct, a_row - s * (st * h + ct * h)],
    ], dtype=np.float64)
    # to shrunk-region pixel coordinates: x' = (x + 0.5) / k - 0.5
    scale = np.array([[1.0 / kc], [1.0 / kr]])
    m = m * scale
    m[0, 2] += 0.5 / kc - 0.5
    m[1, 2] += 0.5 / kr - 0.5
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(region, m, (out_px, out_px), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = cv2.warpAffine(ones, m, (out_px, out_px), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0) >= 254
    if not valid.all():
        if fill == "mean":
            val = out[valid].mean(axis=0) if valid.any() else np.zeros(3)
        else:
            val = np.full(3, float(fill))
        out[~valid] = np.round(val).astype(np.uint8)
    return out, valid


def fill_invalid_with_mean(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """UL14 fills out-of-map parts of a crop with the crop's per-channel mean."""
    if valid.all():
        return image
    out = image.copy()
    val = image[valid].mean(axis=0) if valid.any() else np.zeros(3)
    out[~valid] = np.round(val).astype(np.uint8)
    return out


@dataclass
class GapAugmentConfig:
    """The camera side of a pair as a flight a season or years after the map sees it.

    Why: the packaged model was trained with mild colour jitter only, and real flights
    against a satellite map differ by much more: a season's tint (per-channel, not just
    brightness), haze, exposure, JPEG, lost detail, moving cloud shadows, and ground that
    changed (new roofs, cleared or planted fields). Every part is drawn from a range that
    contains the scenario suite's `strong` preset (data/camera.py GAP_PRESETS) without being
    centred on it, so the evaluation gap is one draw among many, not the training target.
    Ranges are for the model-resolution UAV image (64-128 px), where blur and detail loss
    weigh far more than at camera resolution.
    """

    p: float = 0.8  # probability that a pair gets a gap at all
    channel_gain: float = 0.2  # per-channel gains from [1-g, 1+g] (white balance, season tint)
    saturation: tuple[float, float] = (0.55, 1.2)
    hue_deg: float = 10.0  # hue rotation from [-h, h]
    haze: tuple[float, float] = (0.0, 0.35)  # blend towards a bluish grey
    exposure: tuple[float, float] = (0.7, 1.35)
    detail_loss: tuple[float, float] = (1.0, 1.8)  # down- then up-sampling factor
    jpeg_p: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 90)
    shadow_p: float = 0.5  # soft cloud shadows
    shadow_cover: tuple[float, float] = (0.1, 0.5)  # fraction of the image in shadow
    shadow_depth: tuple[float, float] = (0.2, 0.6)  # relative darkening inside a shadow
    changed_p: float = 0.5  # rectangles of changed ground
    changed_fraction: tuple[float, float] = (0.02, 0.2)

    def __post_init__(self) -> None:
        for name in ("p", "jpeg_p", "shadow_p", "changed_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"gap {name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("saturation", "haze", "exposure", "detail_loss", "jpeg_quality", "shadow_cover",
                     "shadow_depth", "changed_fraction"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"gap {name} must be a (low, high) range, got {getattr(self, name)}")
            setattr(self, name, (lo, hi))
        if not (0.0 <= self.haze[0] and self.haze[1] <= 1.0 and self.detail_loss[0] >= 1.0
                and 0.0 <= self.channel_gain < 1.0 and 1 <= self.jpeg_quality[0] and self.jpeg_quality[1] <= 100):
            raise ValueError("gap ranges out of bounds: haze in [0, 1], detail_loss >= 1, channel_gain in [0, 1), "
                             "jpeg_quality in [1, 100]")


def _soft_blobs(h: int, w: int, cover: float, rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """(h, w) float mask in [0, 1]: smooth random blobs covering about `cover` of the image."""
    field_ = cv2.resize(rng.random((cells, cells)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    thr = float(np.quantile(field_, 1.0 - cover))
    mask = np.clip((field_ - thr) / (0.2 * float(field_.std() + 1e-6)) + 0.5, 0.0, 1.0)
    return cv2.GaussianBlur(mask, (0, 0), max(h, w) / 10.0)  # cloud shadows have wide penumbrae


def _change_ground(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Rectangles of changed ground: a flat new surface or another part of the image."""
    h, w = x.shape[:2]
    target, done = fraction * h * w, 0.0
    for _ in range(4):
        if done >= target:
            break
        eh = int(rng.integers(max(2, h // 8), max(3, h // 3)))
        ew = int(rng.integers(max(2, w // 8), max(3, w // 3)))
        top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
        if rng.random() < 0.5:  # a new roof / field: a flat colour with a little texture
            colour = x[int(rng.integers(0, h)), int(rng.integers(0, w))] * rng.uniform(0.7, 1.3, 3)
            x[top:top + eh, left:left + ew] = np.clip(colour + rng.normal(0, 0.02, (eh, ew, 3)), 0, 1)
        else:  # the ground of somewhere else (rotated, so it is not a copy of a neighbour)
            src = np.rot90(x, int(rng.integers(1, 4)))
            sr, sc = int(rng.integers(0, src.shape[0] - eh + 1)), int(rng.integers(0, src.shape[1] - ew + 1))
            x[top:top + eh, left:left + ew] = src[sr:sr + eh, sc:sc + ew]
        done += eh * ew
    return x


def appearance_gap(img: np.ndarray, cfg: GapAugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A random season/years-apart version of `img` (uint8 RGB in and out); see GapAugmentConfig."""
    if cfg.p <= 0 or rng.random() >= cfg.p:
        return img
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    if cfg.changed_p > 0 and rng.random() < cfg.changed_p:
        x = _change_ground(x, rng.uniform(*cfg.changed_fraction), rng)
    f = rng.uniform(*cfg.detail_loss)
    if f > 1.05:
        small = cv2.resize(x, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    x = x * rng.uniform(1 - cfg.channel_gain, 1 + cfg.channel_gain, 3).astype(np.float32) * rng.uniform(*cfg.exposure)
    x = np.clip(x, 0.0, 1.0)
    sat, hue = rng.uniform(*cfg.saturation), rng.uniform(-cfg.hue_deg, cfg.hue_deg)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + hue) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0.0, 1.0)
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    haze = rng.uniform(*cfg.haze)
    x = x * (1 - haze) + np.array([0.75, 0.8, 0.87], np.float32) * haze
    if cfg.shadow_p > 0 and rng.random() < cfg.shadow_p:
        mask = _soft_blobs(h, w, rng.uniform(*cfg.shadow_cover), rng)
        x = x * (1.0 - rng.uniform(*cfg.shadow_depth) * mask)[..., None]
    out = (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if cfg.jpeg_p > 0 and rng.random() < cfg.jpeg_p:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])  # channel order does not matter here
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out
