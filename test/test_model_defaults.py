"""Model-dependent localizer settings come from the weights' `inference` block; the user's value wins."""
from __future__ import annotations

import pytest
import torch

from geoloc_ros.data.pairs import PairConfig
from geoloc_ros.localize.config import MODEL_DEFAULTS, LocalizerConfig, with_model_defaults
from geoloc_ros.localize.localizer import Localizer
from geoloc_ros.model.weights import packaged_weights_path, read_weights_info


def test_zero_means_from_the_weights_and_a_set_value_wins():
    block = {"gsd_ratio": 1.5, "useful_frac": 0.7}
    cfg = with_model_defaults(LocalizerConfig(), block)
    assert (cfg.gsd_ratio, cfg.useful_frac) == (1.5, 0.7)
    cfg = with_model_defaults(LocalizerConfig(gsd_ratio=1.2), block)  # set by the user (YAML, --set, -p)
    assert (cfg.gsd_ratio, cfg.useful_frac) == (1.2, 0.7)
    cfg = with_model_defaults(LocalizerConfig(), None)  # no net, or weights without a block
    assert (cfg.gsd_ratio, cfg.useful_frac) == (MODEL_DEFAULTS["gsd_ratio"], MODEL_DEFAULTS["useful_frac"])
    with pytest.raises(ValueError, match="inference block: useful_frac"):
        with_model_defaults(LocalizerConfig(), {"useful_frac": 3.0})
    with pytest.raises(ValueError, match="gsd_ratio must be 0 .from the weights. or at least"):
        LocalizerConfig(gsd_ratio=0.01)


def test_localizer_takes_the_block_of_its_net():
    net = torch.nn.Linear(1, 1)
    net.weights_info = {"inference": {"gsd_ratio": 2.0}}
    loc = Localizer(LocalizerConfig(), None, net, device="cpu")
    assert (loc.cfg.gsd_ratio, loc.cfg.useful_frac) == (2.0, MODEL_DEFAULTS["useful_frac"])
    assert Localizer(LocalizerConfig(gsd_ratio=1.1), None, net, device="cpu").cfg.gsd_ratio == 1.1
    assert Localizer(LocalizerConfig(), None, None).cfg.gsd_ratio == MODEL_DEFAULTS["gsd_ratio"]


def test_packaged_block_is_what_training_and_the_old_defaults_say():
    """The packaged weights keep the behaviour of the former hand-matched defaults (1.0, 0.8)."""
    block = read_weights_info(packaged_weights_path())["inference"]
    assert block == PairConfig().inference_defaults() == MODEL_DEFAULTS == {"gsd_ratio": 1.0, "useful_frac": 0.8}


def test_saver_writes_and_keeps_the_block(tmp_path):
    from geoloc_ros.model.net import AMCFConfig, AMCFNet
    from geoloc_ros.model.weights import load_weights, save_weights

    net = AMCFNet(AMCFConfig(backbone_kwargs={"embed_dim": 8, "depths": [1, 1, 1, 1]}, uav_size=32, sat_size=64,
                             proj_dim=8, head_dims=(4,)))
    save_weights(net, path=tmp_path / "a", inference=PairConfig(gsd_ratio=1.3, coverage=0.75).inference_defaults())
    loaded = load_weights(tmp_path / "a")
    assert loaded.weights_info["inference"] == {"gsd_ratio": 1.3, "useful_frac": 0.7}
    save_weights(loaded, path=tmp_path / "b")  # re-packaging (scripts/package_weights.py) keeps it
    assert read_weights_info(tmp_path / "b")["inference"] == {"gsd_ratio": 1.3, "useful_frac": 0.7}


def test_package_weights_serves_at_other_sides(tmp_path):
    """scripts/package_weights.py --sides: same tensors (fp16), other input sides in the JSON,
    and the metadata says which sides the weights were trained at; bad sides fail cleanly."""
    import importlib.util
    from pathlib import Path

    from geoloc_ros.model.net import AMCFConfig, AMCFNet
    from geoloc_ros.model.weights import load_weights, save_weights

    spec = importlib.util.spec_from_file_location(
        "package_weights", Path(__file__).resolve().parents[1] / "scripts" / "package_weights.py")
    pkg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pkg)
    torch.manual_seed(0)  # the script checks the fp16 copy's peaks; a random net's are near ties
    net = AMCFNet(AMCFConfig(backbone_kwargs={"embed_dim": 8, "depths": [1, 1, 1, 1]}, uav_size=32, sat_size=96,
                             proj_dim=8, head_dims=(4,)))
    save_weights(net, path=tmp_path / "run")
    assert pkg.main([str(tmp_path / "run"), "--out", str(tmp_path / "big"), "--sides", "48", "144"]) == 0
    big = load_weights(tmp_path / "big")
    assert (big.cfg.uav_size, big.cfg.sat_size) == (48, 144)
    served = read_weights_info(tmp_path / "big")["metadata"]["served_sides"]
    assert (served["trained_uav_size"], served["trained_sat_size"]) == (32, 96)
    assert all(torch.allclose(a, b.half().float()) for a, b in zip(big.state_dict().values(), net.state_dict().values()))
    assert pkg.main([str(tmp_path / "run"), "--out", str(tmp_path / "bad"), "--sides", "40", "144"]) == 2  # not /16
    assert not (tmp_path / "bad.safetensors").exists()
