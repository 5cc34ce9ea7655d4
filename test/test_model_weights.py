"""Weights files (safetensors + JSON), local pretrained backbones, device/precision choices."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from geoloc_ros.model.backbone import BackboneError, create_full_model
from geoloc_ros.model.device import autocast, parse_dtype, pick_device
from geoloc_ros.model.net import AMCFConfig, AMCFNet
from geoloc_ros.model.weights import WeightsError, load_weights, read_weights_info, save_weights

SMALL = {"embed_dim": 16, "depths": [1, 1, 1, 1]}


def cfg(**kw) -> AMCFConfig:
    base = dict(backbone_kwargs=SMALL, uav_size=32, sat_size=64, proj_dim=16, head_dims=(8,))
    base.update(kw)
    return AMCFConfig(**base)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = AMCFNet(cfg()).eval()
    with torch.no_grad():  # make the head non-trivial so a bad load would show
        m.head.last.weight.normal_()
    return m


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 64, 64, generator=g)


def test_round_trip_fp32(tmp_path, model, inputs):
    path = save_weights(model, model.cfg, tmp_path / "m", metadata={"steps": 123, "data": "synthetic"})
    assert path == tmp_path / "m.safetensors" and (tmp_path / "m.json").is_file()
    info = read_weights_info(tmp_path / "m")
    assert info["metadata"] == {"steps": 123, "data": "synthetic"} and info["config"]["proj_dim"] == 16
    loaded = load_weights(tmp_path / "m.safetensors")
    assert not loaded.training and loaded.cfg == model.cfg
    with torch.inference_mode():
        assert torch.equal(loaded(*inputs), model(*inputs))


def test_round_trip_fp16_upcasts(tmp_path, model, inputs):
    save_weights(model, None, tmp_path / "a")
    save_weights(model, None, tmp_path / "h", dtype="fp16")
    assert {v.dtype for v in load_file(str(tmp_path / "h.safetensors")).values()} == {torch.float16}
    size32 = (tmp_path / "a.safetensors").stat().st_size
    assert (tmp_path / "h.safetensors").stat().st_size < 0.6 * size32
    loaded = load_weights(tmp_path / "h", dtype="fp32")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.inference_mode():
        ref, got = model(*inputs), loaded(*inputs)
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()
    assert json.loads((tmp_path / "h.json").read_text())["dtype"] == "float16"


def test_shape_mismatch_missing_and_unexpected_keys_are_listed(tmp_path, model):
    save_weights(model, None, tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["config"]["proj_dim"] = 24
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"shape mismatch.*fusion\.proj_sat\.0\.weight: file \(16, 16, 1, 1\) "
                                           r"vs model \(24, 16, 1, 1\)"):
        load_weights(tmp_path / "m")

    save_weights(model, None, tmp_path / "k")
    tensors = load_file(str(tmp_path / "k.safetensors"))
    del tensors["head.last.bias"]
    tensors["extra.thing"] = torch.zeros(3)
    save_file(tensors, str(tmp_path / "k.safetensors"))
    with pytest.raises(WeightsError) as err:
        load_weights(tmp_path / "k")
    assert "missing key(s): head.last.bias" in str(err.value) and "unexpected key(s): extra.thing" in str(err.value)


def test_missing_and_corrupted_files(tmp_path, model):
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "nothing")
    save_weights(model, None, tmp_path / "m")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(WeightsError, match="truncated or corrupted"):
        load_weights(tmp_path / "m")
    (tmp_path / "m.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(WeightsError, match="truncated or corrupted"):
        load_weights(tmp_path / "m")
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(WeightsError, match="weights file not found"):
        load_weights(tmp_path / "m")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_weights(tmp_path / "m")


def test_implausible_config_is_refused_in_one_line(tmp_path, model):
    """A JSON saying sat_size 50000 used to end in a 15-line traceback (or gigabytes per frame)."""
    import json

    save_weights(model, model.cfg, tmp_path / "m")
    info = json.loads((tmp_path / "m.json").read_text())
    for key, value in (("sat_size", 50000), ("uav_size", -64), ("uav_size", 100)):
        bad = json.loads(json.dumps(info))
        bad["config"][key] = value
        (tmp_path / "m.json").write_text(json.dumps(bad))
        with pytest.raises(WeightsError) as err:
            load_weights(tmp_path / "m")
        assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_pretrained_backbone(tmp_path, suffix):
    """An ImageNet-style checkpoint of the full classifier loads into the truncated extractor."""
    torch.manual_seed(5)
    full = create_full_model("focalnet_tiny_srf", SMALL)
    sd = {k: v.clone() for k, v in full.state_dict().items()}
    path = tmp_path / f"focalnet{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": sd}, path)
    else:
        save_file(sd, str(path))
    net = AMCFNet(cfg(pretrained_path=str(path)))
    rep = net.pretrained_report
    assert rep.loaded == len(net.backbone.state_dict()) and not rep.missing and not rep.unexpected
    assert any(k.startswith("head.") for k in rep.unused) and any(k.startswith("layers.3.") for k in rep.unused)
    assert torch.equal(net.backbone.state_dict()["layers_1.blocks.0.mlp.fc1.weight"],
                       sd["layers.1.blocks.0.mlp.fc1.weight"])
    with pytest.raises(BackboneError, match="not found"):
        AMCFNet(cfg(pretrained_path=str(tmp_path / "none.pth")))
    # a checkpoint of another width: every tensor mismatched -> clear error
    save_file({k: v for k, v in create_full_model("focalnet_tiny_srf", {"embed_dim": 8, "depths": [1, 1, 1, 1]})
               .state_dict().items()}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BackboneError, match="no tensor fits.*mismatched"):
        AMCFNet(cfg(pretrained_path=str(tmp_path / "other.safetensors")))


def test_device_and_precision_choices():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("gpu0")
    assert parse_dtype("bf16") == torch.bfloat16 and parse_dtype("fp16") == torch.float16 and parse_dtype(None) is None
    with pytest.raises(ValueError, match="unknown precision"):
        parse_dtype("int3")
    with autocast("cpu", "fp32"):
        pass
    with pytest.raises(ValueError, match="fp16 autocast"):
        autocast("cpu", "fp16")


def test_family_tag_round_trip_and_wrong_family(tmp_path, model):
    """One format for both networks: the JSON's family says which builder may load it."""
    from geoloc_ros.retrieval.model import build_model, load_model, save_model

    save_weights(model, None, tmp_path / "amcf")
    info = read_weights_info(tmp_path / "amcf", family="amcf")
    assert info["family"] == "amcf" and info["format"] == "geoloc_ros.weights/1"
    ret = build_model({"head": "mean", "img_size": 32, "backbone": {
        "name": "convnext_tiny", "kwargs": {"dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1]}},
        "head_kwargs": {"bottleneck": 16, "pee_steps": 2, "cea_dim": 8, "cea_hidden": 32}})
    save_model(ret, tmp_path / "ret")
    assert read_weights_info(tmp_path / "ret")["family"] == "retrieval"
    assert load_model(tmp_path / "ret").cfg.head == "mean"
    for load, path, msg in ((load_model, "amcf", "holds amcf weights, but retrieval weights are needed"),
                            (load_weights, "ret", "holds retrieval weights, but amcf weights are needed")):
        with pytest.raises(WeightsError, match=msg) as err:
            load(tmp_path / path)
        assert "\n" not in str(err.value)


def test_files_without_family_tag_still_load(tmp_path, model, inputs):
    """Files written before the tag: the old format string says the family (none at all: amcf)."""
    from geoloc_ros.model.weights import packaged_weights_path

    save_weights(model, None, tmp_path / "m")
    info = json.loads((tmp_path / "m.json").read_text())
    del info["family"]
    for fmt in ("geoloc_ros.amcf_net/1", None):
        old = dict(info, format=fmt) if fmt else {k: v for k, v in info.items() if k != "format"}
        (tmp_path / "m.json").write_text(json.dumps(old))
        with torch.inference_mode():
            assert torch.equal(load_weights(tmp_path / "m")(*inputs), model(*inputs))
    assert read_weights_info(packaged_weights_path())["family"] == "amcf"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"config": 3}', '{"format": "other/9", "config": {}}',
                                  '{"family": "vit", "config": {}}', '{"config": {}, "inference": [1]}'])
def test_bad_description_is_one_geoloc_error_line(tmp_path, model, text):
    from geoloc_ros.errors import GeolocError

    save_weights(model, None, tmp_path / "m")
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(GeolocError) as err:
        load_weights(tmp_path / "m")
    assert str(tmp_path / "m.json") in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "m.json").unlink()
    with pytest.raises(GeolocError, match="weights description not found"):
        load_weights(tmp_path / "m")


def test_overrides_change_a_knob_but_never_a_shape(tmp_path, model, inputs):
    """Fine-tuning with a new input normalisation starts from stored tensors (load_weights
    overrides); an override that would change a tensor shape fails like a wrong file."""
    save_weights(model, model.cfg, tmp_path / "m")
    normed = load_weights(tmp_path / "m", overrides={"input_norm": "per_image"})
    assert normed.cfg.input_norm == "per_image" and load_weights(tmp_path / "m").cfg.input_norm == "none"
    assert all(torch.equal(a, b) for a, b in zip(normed.state_dict().values(), model.state_dict().values()))
    with torch.inference_mode():
        assert not torch.allclose(normed(*inputs), model(*inputs))
    with pytest.raises(WeightsError):
        load_weights(tmp_path / "m", overrides={"proj_dim": 24})


def test_dual_override_splits_a_shared_backbone(tmp_path, model, inputs):
    """`shared_backbone: false` over a shared file starts both backbones from the shared one:
    the split model computes exactly what the shared one did, and its two backbones are
    separate tensors (training one leaves the other alone)."""
    save_weights(model, model.cfg, tmp_path / "m")
    dual = load_weights(tmp_path / "m", overrides={"shared_backbone": False})
    assert dual.sat_backbone is not None and dual.parameter_counts()["backbone"] == 2 * model.parameter_counts()["backbone"]
    with torch.inference_mode():
        assert torch.allclose(dual(*inputs), model(*inputs), atol=1e-6)
    p_uav, p_sat = next(dual.backbone.parameters()), next(dual.sat_backbone.parameters())
    assert torch.equal(p_uav, p_sat) and p_uav.data_ptr() != p_sat.data_ptr()
    with torch.no_grad():
        p_sat.add_(0.1)  # the satellite backbone trained apart
    save_weights(dual, dual.cfg, tmp_path / "d")
    again = load_weights(tmp_path / "d", overrides={"shared_backbone": False})  # a dual file loads as it is
    assert torch.equal(next(again.sat_backbone.parameters()), p_sat)
    with torch.inference_mode():
        assert torch.allclose(again(*inputs), dual(*inputs), atol=1e-6)
    with pytest.raises(WeightsError):  # and cannot be folded back into one backbone
        load_weights(tmp_path / "d", overrides={"shared_backbone": True})
