"""AMCF-Net: UAV-to-satellite heatmap localization (issue 3).

`AMCFNet(cfg)(uav, sat) -> logits` on the satellite pixel grid; `decode_heatmap` turns logits
into a position with confidence and covariance; `weighted_balance_loss` trains it;
`save_weights` / `load_weights` store it as safetensors + JSON.
"""
from .decode import HeatmapPeak, decode_heatmap, hanning_filter, hanning_kernel, sigmoid, ul14_argmax, ul14_peak, ul14_peaks
from .device import autocast, default_precision, parse_dtype, pick_device
from .loss import (centers_to_fractions, fractions_to_centers, hanning_balance_loss, radius_for_stride,
                   weighted_balance_loss)
from .net import AMCFConfig, AMCFNet, load_model_config
from .weights import WeightsError, load_weights, read_weights_info, save_weights

__all__ = [
    "AMCFConfig", "AMCFNet", "load_model_config",
    "HeatmapPeak", "decode_heatmap", "hanning_filter", "hanning_kernel", "sigmoid", "ul14_argmax", "ul14_peak",
    "ul14_peaks",
    "weighted_balance_loss", "hanning_balance_loss", "radius_for_stride",
    "fractions_to_centers", "centers_to_fractions",
    "save_weights", "load_weights", "read_weights_info", "WeightsError",
    "pick_device", "parse_dtype", "autocast", "default_precision",
]
