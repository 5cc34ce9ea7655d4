"""The fix as PX4's px4_msgs/AuxGlobalPosition (EKF2 auxiliary global position, uXRCE-DDS).

Field rules (PX4 v1.18 msg/versioned/AuxGlobalPosition.msg; docs/AUTOPILOT.md):
- timestamp: the node's clock at publishing, timestamp_sample: the image stamp of the fix,
  both in microseconds (the px4_ros_com convention: ROS time / 1000; the bridge's time
  sync, UXRCE_DDS_SYNCT, relates it to PX4's clock). With use_sim_time both are sim time;
- id: `px4.id` (EKF2_AGP0_ID must match); source: SOURCE_VISION;
- lat, lon [deg]; alt: AMSL = ellipsoidal alt - `px4.geoid_height_m`;
- eph: 1-sigma horizontal standard deviation [m], the square root of the largest
  eigenvalue of the fix's east/north covariance (the worst axis: conservative for an
  elongated ellipse), epv: sqrt of the up variance. PX4 lower-bounds both by EKF2_AGP*_NOISE;
- lat_lon_reset_counter: bumped on every position discontinuity (runtime.resets: seeds,
  successful relocalizations, track switches, restarts), so EKF2 resets to the new
  position instead of rejecting the jump.
Only fixes the node publishes on ~/fix (TRACKING) are sent: without them PX4 times the
source out.
"""
from __future__ import annotations

import math
from typing import Any

try:
    from px4_msgs.msg import AuxGlobalPosition  # type: ignore
except ImportError:
    AuxGlobalPosition = None

SOURCE_VISION = 2  # AuxGlobalPosition.SOURCE_VISION


def aux_global_position_fields(est: Any, *, agp_id: int, reset_counter: int, now_s: float,
                               geoid_height_m: float = 0.0) -> dict[str, Any]:
    """Estimate -> AuxGlobalPosition field values (module docstring)."""
    from ..outputs.mavlink import accuracy_from_cov

    eph, epv = accuracy_from_cov(est.cov_enu)
    stamp = float(est.stamp)
    return dict(
        timestamp=max(int(round(now_s * 1e6)), 0),
        timestamp_sample=max(int(round(stamp * 1e6)), 0) if math.isfinite(stamp) else 0,
        id=int(agp_id) & 0xFF,
        source=SOURCE_VISION,
        lat=float(est.lat),
        lon=float(est.lon),
        alt=float(est.alt) - float(geoid_height_m),
        eph=float(eph),
        epv=float(epv),
        lat_lon_reset_counter=int(reset_counter) & 0xFF,
    )


def aux_global_position_msg(fields: dict[str, Any]):
    m = AuxGlobalPosition()
    for k, v in fields.items():
        setattr(m, k, v)
    return m
