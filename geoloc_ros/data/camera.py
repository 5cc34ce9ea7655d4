"""A downward UAV camera rendered from any orthophoto (flat ground, pinhole model).

Conventions (REP-103, see docs/DESIGN.md):
- Body frame FLU (x forward, y left, z up); attitude = ZYX Euler: `yaw` (ENU, radians,
  counter-clockwise from East), then `pitch` (positive = nose down), then `roll`
  (positive = right wing down). Body -> world rotation R = Rz(yaw) Ry(pitch) Rx(roll).
- The camera is rigidly mounted looking straight down (nadir at zero pitch/roll). Image
  axes (OpenCV): u = column to the right, v = row downwards. **Image row 0 (up) is
  body-forward**, image right is body-right. So with yaw = 0 the image's up axis points
  East; with yaw = pi/2 it points North. Camera frame axes in the body: x_cam = -y_body,
  y_cam = -x_body, z_cam = -z_body (optical axis down).
- Pixel coordinates have integer values at pixel centres; (cx, cy) is the principal point.

`render_view` crops a north-up patch around the nadir point from the OrthoMap at about the
image's ground sampling distance (covering the tilted footprint), then warps it with the
exact ground-plane -> image homography. The ground is the local tangent plane at the
nadir point, `alt_agl` metres below the camera.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from ..geo import angles
from ..geo.frames import LocalENU

#: largest angle from the optical axis a footprint corner may have (beyond: horizon-ish)
MAX_OFF_NADIR_DEG = 80.0
#: the map crop never exceeds this many pixels per side (coarser GSD instead)
MAX_CROP_PX = 4096


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (no distortion: rendered images are ideal)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"camera intrinsics need width/height/fx/fy > 0, got {self}")

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> "CameraIntrinsics":
        """Square pixels, principal point at the image centre ((W-1)/2, (H-1)/2)."""
        if not 1.0 < hfov_deg < 179.0:
            raise ValueError(f"horizontal FOV must be in (1, 179) degrees, got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(int(width), int(height), f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def gsd_m(self, alt_agl: float) -> float:
        """Ground metres per pixel at the image centre for a nadir view."""
        return alt_agl / math.sqrt(self.fx * self.fy)


@dataclass(frozen=True)
class CameraPose:
    """UAV camera pose: WGS84 position, height above ground, attitude (see module doc)."""

    lat: float
    lon: float
    alt_agl: float
    yaw: float
    pitch: float = 0.0
    roll: float = 0.0


def world_to_camera(pose: CameraPose) -> np.ndarray:
    """3x3 rotation ENU -> camera (OpenCV axes)."""
    return angles.world_to_camera(pose.yaw, pose.pitch, pose.roll)


def ground_to_image_homography(pose: CameraPose, intr: CameraIntrinsics) -> np.ndarray:
    """H (3x3): (east_m, north_m, 1) on the ground relative to the nadir point -> (u, v, 1)."""
    r = world_to_camera(pose)
    t = -r @ np.array([0.0, 0.0, pose.alt_agl])
    return intr.K @ np.column_stack([r[:, 0], r[:, 1], t])


def project_offsets(pose: CameraPose, intr: CameraIntrinsics, east_m, north_m):
    """Ground offsets (metres from the nadir point) -> image (u, v); NaN behind the camera."""
    e = np.asarray(east_m, dtype=np.float64)
    n = np.asarray(north_m, dtype=np.float64)
    h = ground_to_image_homography(pose, intr)
    p = h @ np.stack([e.ravel(), n.ravel(), np.ones(e.size)])
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(p[2] > 1e-9, p[0] / p[2], np.nan)
        v = np.where(p[2] > 1e-9, p[1] / p[2], np.nan)
    u, v = u.reshape(e.shape), v.reshape(e.shape)
    return (float(u), float(v)) if e.ndim == 0 else (u, v)


def project_point(pose: CameraPose, intr: CameraIntrinsics, lat, lon):
    """WGS84 ground point(s) -> image (u, v) = (column, row) pixels (flat ground)."""
    e, n, _ = LocalENU(pose.lat, pose.lon, 0.0).to_enu(lat, lon, 0.0)
    return project_offsets(pose, intr, e, n)


def image_to_ground(pose: CameraPose, intr: CameraIntrinsics, u, v):
    """Image (u, v) -> ground offsets (east_m, north_m) from the nadir point; NaN above the horizon."""
    uu = np.asarray(u, dtype=np.float64)
    vv = np.asarray(v, dtype=np.float64)
    rays_cam = np.linalg.inv(intr.K) @ np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size)])
    rays = world_to_camera(pose).T @ rays_cam  # ENU directions
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(rays[2] < -1e-9, pose.alt_agl / -rays[2], np.nan)
    e, n = (rays[0] * s).reshape(uu.shape), (rays[1] * s).reshape(uu.shape)
    return (float(e), float(n)) if uu.ndim == 0 else (e, n)


def footprint_m(pose: CameraPose, intr: CameraIntrinsics) -> np.ndarray:
    """(4, 2) ground offsets (east, north) of the image corners; raises if a corner misses the ground."""
    w, h = intr.width, intr.height
    u = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
    v = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
    rays_cam = np.linalg.inv(intr.K) @ np.stack([u, v, np.ones(4)])
    rays = world_to_camera(pose).T @ rays_cam
    cosang = -rays[2] / np.linalg.norm(rays, axis=0)
    if np.any(cosang < math.cos(math.radians(MAX_OFF_NADIR_DEG))):
        raise ValueError(f"camera tilt too large: an image corner looks more than {MAX_OFF_NADIR_DEG:g} deg off nadir "
                         f"(pitch {math.degrees(pose.pitch):.1f}, roll {math.degrees(pose.roll):.1f} deg)")
    e, n = image_to_ground(pose, intr, u, v)
    return np.stack([e, n], 1)


@dataclass
class Photometric:
    """Camera/atmosphere differences between the map and the UAV image (all optional)."""

    exposure: float = 1.0               # linear gain
    gamma: float = 1.0
    white_balance: tuple = (1.0, 1.0, 1.0)  # per-channel RGB gains
    contrast: float = 1.0               # around mid-grey
    haze: float = 0.0                   # 0..1 blend towards a bright bluish grey
    defocus_sigma_px: float = 0.0       # Gaussian blur
    motion_blur_px: float = 0.0         # length of a linear motion blur
    motion_blur_angle_deg: float = 0.0  # direction in the image (0 = along columns/u)
    noise_sigma: float = 0.0            # additive Gaussian noise, 0..255 units
    vignetting: float = 0.0             # relative darkening at the corners (0..1)
    jpeg_quality: int = 0               # 0 = no JPEG round trip
    saturation: float = 1.0             # colour saturation gain (season: <1 washed out, >1 lush)
    hue_shift_deg: float = 0.0          # hue rotation (season: negative turns green towards yellow)
    detail_loss: float = 1.0            # >1: down- then up-sample by this factor (lost fine detail)

    @classmethod
    def random(cls, rng: np.random.Generator, strength: float = 1.0) -> "Photometric":
        """A plausible random camera: exposure/white balance/blur/noise scaled by `strength`."""
        s = float(strength)
        return cls(
            exposure=float(np.exp(rng.normal(0, 0.15 * s))),
            gamma=float(np.exp(rng.normal(0, 0.08 * s))),
            white_balance=tuple(float(v) for v in np.exp(rng.normal(0, 0.05 * s, 3))),
            contrast=float(np.exp(rng.normal(0, 0.1 * s))),
            haze=float(max(0.0, rng.normal(0.03, 0.04) * s)),
            defocus_sigma_px=float(abs(rng.normal(0, 0.5 * s))),
            motion_blur_px=float(abs(rng.normal(0, 1.5 * s))),
            motion_blur_angle_deg=float(rng.uniform(0, 180)),
            noise_sigma=float(abs(rng.normal(2.0, 1.5)) * s),
            vignetting=float(rng.uniform(0.0, 0.35) * s),
            jpeg_quality=int(rng.integers(60, 95)) if rng.uniform() < 0.7 * s else 0,
        )

    def apply(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The image as this camera would record it (uint8 RGB in, uint8 RGB out)."""
        out = img
        if self.detail_loss > 1.0:
            out = _lose_detail(out, float(self.detail_loss))
        if self.defocus_sigma_px > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), self.defocus_sigma_px)
        if self.motion_blur_px >= 1.0:
            n = int(math.ceil(self.motion_blur_px)) | 1
            k = np.zeros((n, n), np.float32)
            c = (n - 1) / 2.0
            a = math.radians(self.motion_blur_angle_deg)
            for t in np.linspace(-self.motion_blur_px / 2, self.motion_blur_px / 2, 4 * n):
                k[int(round(c + t * math.sin(a))), int(round(c + t * math.cos(a)))] = 1.0
            out = cv2.filter2D(out, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)
        out = cv2.LUT(np.ascontiguousarray(out), self._lut())  # exposure, white balance, contrast, haze, gamma
        if self.saturation != 1.0 or self.hue_shift_deg != 0.0:
            out = _shift_colour(out, float(self.saturation), float(self.hue_shift_deg))
        vig = _vignette(out.shape[0], out.shape[1], float(self.vignetting)) if self.vignetting > 0 else None
        if vig is None and self.noise_sigma <= 0:
            f = None
        else:
            f = out.astype(np.float32)
            if vig is not None:
                f *= vig
        if f is not None and self.noise_sigma > 0:
            g = rng if rng is not None else np.random.default_rng(0)
            f += g.standard_normal(f.shape, dtype=np.float32) * np.float32(self.noise_sigma)
        if f is not None:
            out = np.clip(f + 0.5, 0, 255).astype(np.uint8)
        if self.jpeg_quality > 0:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
            if ok:
                out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return out


    def _lut(self) -> np.ndarray:
        """(1, 256, 3) uint8 table of the per-pixel tone changes (one cv2.LUT call per frame)."""
        x = np.arange(256, dtype=np.float64)[:, None] / 255.0
        f = x * self.exposure * np.asarray(self.white_balance, np.float64)[None, :]
        if self.contrast != 1.0:
            f = 0.5 + (f - 0.5) * self.contrast
        if self.haze > 0:
            f = f * (1 - self.haze) + np.array([0.78, 0.82, 0.88]) * self.haze
        if self.gamma != 1.0:
            f = np.power(np.clip(f, 0, 1), 1.0 / self.gamma)
        return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(1, 256, 3)


def _lose_detail(img: np.ndarray, factor: float) -> np.ndarray:
    """Area-downsample by `factor` and bilinearly upsample back: the detail a coarser or
    older sensor never had (what a map a few years older or a cheap camera lacks)."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _shift_colour(img: np.ndarray, saturation: float, hue_deg: float) -> np.ndarray:
    """Saturation gain and hue rotation in HSV (float, so no 8-bit hue steps)."""
    hsv = cv2.cvtColor(img.astype(np.float32) * np.float32(1.0 / 255.0), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + np.float32(hue_deg)) % np.float32(360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(saturation), 0.0, 1.0)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(rgb * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _vignette(h: int, w: int, strength: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    return (1.0 - strength * np.clip(r2 / 2.0, 0, 1))[..., None].astype(np.float32)


@dataclass
class RenderInfo:
    """What `render_view` did (for debugging and tests)."""

    crop_size_m: float
    crop_px: int
    crop_gsd_m: float
    valid_fraction: float
    footprint_m: np.ndarray = field(repr=False)


def render_view(orthomap, pose: CameraPose, intrinsics: CameraIntrinsics,
                photometric: Photometric | None = None, rng: np.random.Generator | None = None,
                *, oversample: float = 1.0, fill=0, return_info: bool = False):
    """What the camera at `pose` sees of `orthomap` ((H, W, 3) uint8 RGB).

    Off-map ground renders as `fill`. `oversample` > 1 crops the map finer than the
    image's nadir GSD (sharper, slower).
    """
    if not pose.alt_agl > 0:
        raise ValueError(f"camera altitude above ground must be > 0, got {pose.alt_agl}")
    fp = footprint_m(pose, intrinsics)
    radius = float(np.max(np.hypot(fp[:, 0], fp[:, 1])))
    size_m = 2.0 * radius * 1.02 + 4.0 * intrinsics.gsd_m(pose.alt_agl)
    gsd = intrinsics.gsd_m(pose.alt_agl) / max(0.25, float(oversample))
    gsd = max(gsd, orthomap.gsd_m * 0.5, size_m / MAX_CROP_PX)
    out_px = int(math.ceil(size_m / gsd))
    crop = orthomap.crop((pose.lat, pose.lon), size_m, out_px, rotation_deg=0.0, fill=fill)
    # crop pixel (col, row) -> ground offsets (affine, exact for the crop's tangent plane)
    pts_rc = np.array([[0.0, 0.0], [0.0, out_px - 1.0], [out_px - 1.0, 0.0]])
    e, n = crop.pixel_to_offset_m(pts_rc[:, 0], pts_rc[:, 1])
    src = np.stack([pts_rc[:, 1], pts_rc[:, 0], np.ones(3)])
    a = np.vstack([np.stack([e, n]) @ np.linalg.inv(src), [0.0, 0.0, 1.0]])
    hmat = ground_to_image_homography(pose, intrinsics) @ a
    img = cv2.warpPerspective(crop.image, hmat, (intrinsics.width, intrinsics.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 3 if np.ndim(fill) == 0 else fill)
    if photometric is not None:
        img = photometric.apply(img, rng)
    if return_info:
        return img, RenderInfo(size_m, out_px, size_m / out_px, crop.valid_fraction, fp)
    return img


#: appearance-gap presets: what each named strength sets (AppearanceGap fields left at None)
GAP_PRESETS: dict[str, dict] = {
    "none": dict(tint=(1.0, 1.0, 1.0), saturation=1.0, hue_shift_deg=0.0, haze=0.0, blur_px=0.0, jpeg_quality=0,
                 exposure=1.0, detail_loss=1.0, changed_fraction=0.0, cloud_shadow_cover=0.0,
                 cloud_shadow_depth=0.0),
    "weak": dict(tint=(1.04, 1.0, 0.92), saturation=0.88, hue_shift_deg=-3.0, haze=0.08, blur_px=0.8,
                 jpeg_quality=70, exposure=1.08, detail_loss=1.8, changed_fraction=0.05, cloud_shadow_cover=0.2,
                 cloud_shadow_depth=0.35),
    "strong": dict(tint=(1.12, 1.0, 0.8), saturation=0.7, hue_shift_deg=-6.0, haze=0.22, blur_px=1.2,
                   jpeg_quality=45, exposure=1.22, detail_loss=2.5, changed_fraction=0.12, cloud_shadow_cover=0.3,
                   cloud_shadow_depth=0.5),
}


@dataclass
class AppearanceGap:
    """How different the camera's world looks from the map, beyond the epoch change.

    Why presets: a scenario says `appearance_gap: weak` (or strong) and gets one consistent
    set of season tint, haze, blur, JPEG, exposure, lost detail (per frame) and changed
    patches and cloud shadows (painted into the camera's world once); any field set
    explicitly overrides its preset value. Everything is deterministic from `seed` (None:
    the scenario's seed)."""

    preset: str = "none"                  # none | weak | strong
    tint: tuple | None = None             # RGB gains (season colour shift)
    saturation: float | None = None
    hue_shift_deg: float | None = None
    haze: float | None = None
    blur_px: float | None = None          # Gaussian defocus sigma (px)
    jpeg_quality: int | None = None       # 0 = none
    exposure: float | None = None
    detail_loss: float | None = None      # frame down-up sampling factor
    changed_fraction: float | None = None  # share of the ground under changed patches (new buildings, cut fields, ...)
    cloud_shadow_cover: float | None = None  # share of the ground under cloud shadow
    cloud_shadow_depth: float | None = None  # darkening at the core of a cloud shadow (0..1)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.preset not in GAP_PRESETS:
            raise ValueError(f"appearance_gap preset must be one of {'|'.join(GAP_PRESETS)}, got {self.preset!r}")
        if self.tint is not None:
            if len(self.tint) != 3:
                raise ValueError(f"appearance_gap tint must be [r, g, b] gains, got {self.tint!r}")
            self.tint = tuple(float(v) for v in self.tint)
        for name in ("haze", "changed_fraction", "cloud_shadow_cover", "cloud_shadow_depth"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"appearance_gap {name} must be in [0, 1], got {v}")
        if self.detail_loss is not None and self.detail_loss < 1.0:
            raise ValueError(f"appearance_gap detail_loss must be >= 1, got {self.detail_loss}")
        if self.jpeg_quality is not None and not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"appearance_gap jpeg_quality must be in [0, 100], got {self.jpeg_quality}")

    def value(self, name: str):
        """The field's explicit value, else its preset's."""
        v = getattr(self, name)
        return GAP_PRESETS[self.preset][name] if v is None else v

    @property
    def active(self) -> bool:
        """Does this gap change anything (the `none` preset without overrides does not)?"""
        return any(self.value(k) != GAP_PRESETS["none"][k] for k in GAP_PRESETS["none"])

    def photometric(self, base: Photometric) -> Photometric:
        """`base` (the flight's camera) with this gap's per-frame part composed onto it."""
        if not self.active:
            return base
        tint = self.value("tint")
        q = [x for x in (base.jpeg_quality, int(self.value("jpeg_quality"))) if x > 0]
        return dataclasses.replace(
            base, exposure=base.exposure * self.value("exposure"),
            white_balance=tuple(a * b for a, b in zip(base.white_balance, tint)),
            haze=1.0 - (1.0 - base.haze) * (1.0 - self.value("haze")),
            defocus_sigma_px=math.hypot(base.defocus_sigma_px, self.value("blur_px")),
            jpeg_quality=min(q) if q else 0, saturation=base.saturation * self.value("saturation"),
            hue_shift_deg=base.hue_shift_deg + self.value("hue_shift_deg"),
            detail_loss=max(base.detail_loss, self.value("detail_loss")))

    def world_changes(self, seed: int):
        """The part painted into the camera's world (data.world_changes.WorldChanges)."""
        from .world_changes import WorldChanges

        return WorldChanges(changed_fraction=float(self.value("changed_fraction")),
                            cloud_shadow_cover=float(self.value("cloud_shadow_cover")),
                            cloud_shadow_depth=float(self.value("cloud_shadow_depth")),
                            seed=int(seed if self.seed is None else self.seed))
