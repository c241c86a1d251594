"""RVC model files: small-model format, G checkpoints, extract, merge, info, bad files, load_voice."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_rvc import (
    make_tiny_generator_checkpoint,
    make_tiny_synthesizer,
    make_tiny_voice,
    tiny_config,
)

from engines.core.errors import InvalidInputError, InvalidModelError
from engines.rvc import checkpoints
from engines.rvc.infer.voice import load_voice
from engines.rvc.models import noise

GOLDEN = Path(__file__).parent / "golden" / "rvc" / "synth"


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _infer(vm, frames: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    dim = 768 if vm.version == "v2" else 256
    args = [torch.randn(1, frames, dim, generator=gen), torch.tensor([frames])]
    if vm.f0:
        args += [torch.randint(1, 255, (1, frames), generator=gen), 80 + 200 * torch.rand(1, frames, generator=gen)]
    args.append(torch.tensor([1]))
    with torch.inference_mode(), noise.zero_noise():
        return vm.net.infer(*args)[0]


def test_small_model_round_trip(tmp_path):
    net = make_tiny_synthesizer("v2", "48k", True, seed=1)
    sd = net.state_dict()
    path = checkpoints.save_small_model(
        sd, sr_tag="48k", f0=True, version="v2", info="12epoch", config=tiny_config("v2", "48k"),
        path=tmp_path / "w" / "voice.pth", extra={"epoch": 12, "step": 340, "model_hash": "abc"},
    )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw)[:6] == ["weight", "config", "info", "sr", "f0", "version"]
    assert (raw["info"], raw["sr"], raw["f0"], raw["version"]) == ("12epoch", "48k", 1, "v2")
    assert raw["config"] == tiny_config("v2", "48k") and len(raw["config"]) == 18
    assert raw["epoch"] == 12 and raw["step"] == 340 and raw["model_hash"] == "abc"
    expected_keys = [k for k in sd if not k.startswith("enc_q.")]
    assert list(raw["weight"]) == expected_keys
    assert all(t.dtype == torch.float16 for t in raw["weight"].values())
    assert all(torch.equal(raw["weight"][k], sd[k].half()) for k in expected_keys)
    assert not list(tmp_path.joinpath("w").glob(".*part*"))  # no temp files left behind

    vm = load_voice(path)
    assert (vm.version, vm.sample_rate, vm.f0, vm.info, vm.n_speakers) == ("v2", 48000, True, "12epoch", 4)
    assert (vm.epoch, vm.step, vm.kind) == (12, 340, "small")
    assert vm.config == tiny_config("v2", "48k") and len(vm.sha256) == 64
    p = next(vm.net.parameters())
    assert p.dtype == torch.float32 and not p.requires_grad and not vm.net.training
    assert not hasattr(vm.net, "enc_q")
    assert _infer(vm).shape == (1, 1, 16 * 480)


def test_save_small_model_rejects_bad_arguments(tmp_path):
    sd = make_tiny_synthesizer("v1", "40k", False).state_dict()
    with pytest.raises(ValueError):
        checkpoints.save_small_model(sd, sr_tag="40k", f0=False, version="v1", info="", config=[1, 2], path=tmp_path / "a.pth")
    with pytest.raises(ValueError):
        checkpoints.save_small_model(sd, sr_tag="44k", f0=False, version="v1", info="", config=tiny_config("v1", "40k"),
                                     path=tmp_path / "a.pth")
    with pytest.raises(ValueError):
        checkpoints.save_small_model(sd, sr_tag="40k", f0=False, version="v1", info="", config=tiny_config("v1", "40k"),
                                     path=tmp_path / "a.pth", extra={"weight": 1})
    assert not (tmp_path / "a.pth").exists()


def test_golden_small_model_loads_and_matches_upstream():
    vm = load_voice(GOLDEN / "v1_48k_f01.pth")
    assert (vm.version, vm.sample_rate, vm.f0, vm.info) == ("v1", 48000, True, "0epoch")
    io = np.load(GOLDEN / "v1_48k_f01_io.npz")
    args = [torch.from_numpy(io[k]) for k in ("phone", "phone_lengths", "pitch", "pitchf", "sid")]
    with torch.inference_mode(), noise.zero_noise():
        audio = vm.net.infer(*args)[0]
    assert np.abs(audio.numpy() - io["expected"]).max() < 1e-4


@pytest.mark.parametrize("version,sr,f0", [("v2", "40k", True), ("v1", "32k", False), ("v1", "48k", True)])
def test_generator_checkpoint_load_and_extract(tmp_path, version, sr, f0):
    g = make_tiny_generator_checkpoint(tmp_path / "exp" / "G_2400.pth", version, sr, f0, seed=3, epoch=7)
    vm = load_voice(g)
    assert (vm.version, vm.sample_rate, vm.f0, vm.kind, vm.epoch, vm.step) == (
        version, int(sr[:2]) * 1000, f0, "checkpoint", 7, 2400)
    assert vm.config == tiny_config(version, sr)

    out = checkpoints.extract_small_model(g, tmp_path / "weights" / "x.pth", info="my voice")
    raw = torch.load(out, map_location="cpu", weights_only=True)
    model = torch.load(g, map_location="cpu", weights_only=True)["model"]
    assert (raw["sr"], raw["f0"], raw["version"], raw["info"], raw["epoch"], raw["step"]) == (
        sr, int(f0), version, "my voice", 7, 2400)
    assert raw["config"] == tiny_config(version, sr)
    assert set(raw["weight"]) == {k for k in model if not k.startswith("enc_q.")}
    assert all(torch.equal(raw["weight"][k], model[k].half()) for k in raw["weight"])
    # The extracted voice sounds like the checkpoint (up to fp16 rounding of the weights).
    assert torch.allclose(_infer(load_voice(out)), _infer(vm), atol=2e-2)


def test_extract_uses_config_json_and_checks_requests(tmp_path):
    g = make_tiny_generator_checkpoint(tmp_path / "exp" / "G_10.pth", "v2", "32k", True, with_config_json=True)
    gen = checkpoints.read_generator(g)
    assert gen.config == tiny_config("v2", "32k") and gen.sr_tag == "32k"
    with pytest.raises(InvalidInputError, match="v2"):
        checkpoints.extract_small_model(g, tmp_path / "x.pth", version="v1")
    with pytest.raises(InvalidInputError, match="f0"):
        checkpoints.extract_small_model(g, tmp_path / "x.pth", f0=False)
    with pytest.raises(InvalidModelError):
        checkpoints.extract_small_model(g, tmp_path / "x.pth", sr="40k")
    assert not (tmp_path / "x.pth").exists()


def test_merge_models(tmp_path):
    a = make_tiny_voice(tmp_path / "a.pth", "v2", "40k", True, seed=1)
    b = make_tiny_voice(tmp_path / "b.pth", "v2", "40k", True, seed=2)
    wa = torch.load(a, weights_only=True)["weight"]
    wb = torch.load(b, weights_only=True)["weight"]
    for alpha, expect in ((1.0, wa), (0.0, wb)):
        out = checkpoints.merge_models(a, b, alpha, tmp_path / f"m{alpha}.pth")
        merged = torch.load(out, weights_only=True)
        assert all(torch.equal(merged["weight"][k], expect[k]) for k in wa)
        assert merged["config"] == tiny_config("v2", "40k") and merged["sr"] == "40k" and merged["f0"] == 1
    out = checkpoints.merge_models(a, b, 0.5, tmp_path / "half.pth", info="blend")
    merged = torch.load(out, weights_only=True)
    assert merged["info"] == "blend"
    for k in wa:
        assert torch.equal(merged["weight"][k], (0.5 * wa[k].float() + 0.5 * wb[k].float()).half())
    assert load_voice(out).sample_rate == 40000


@pytest.mark.parametrize("other", [("v1", "40k", True), ("v2", "40k", False), ("v2", "48k", True)])
def test_merge_rejects_different_architectures(tmp_path, other):
    a = make_tiny_voice(tmp_path / "a.pth", "v2", "40k", True)
    b = make_tiny_voice(tmp_path / "b.pth", *other)
    with pytest.raises(InvalidInputError, match="Cannot merge"):
        checkpoints.merge_models(a, b, 0.5, tmp_path / "m.pth")
    with pytest.raises(InvalidInputError):
        checkpoints.merge_models(a, a, 1.5, tmp_path / "m.pth")
    assert not (tmp_path / "m.pth").exists()


class _Payload:
    pass


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["text"] = tmp_path / "notes.pth"
    files["text"].write_text("this is not a model\n")
    files["pickle_object"] = tmp_path / "obj.pth"
    files["pickle_object"].write_bytes(pickle.dumps(_Payload(), protocol=2))
    files["plain_dict"] = tmp_path / "dict.pth"
    torch.save({"a": 1, "b": [1, 2]}, files["plain_dict"])
    files["other_state_dict"] = tmp_path / "other.pth"
    torch.save({"encoder.layer.0.weight": torch.zeros(2, 2)}, files["other_state_dict"])
    files["tensor"] = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), files["tensor"])
    good = make_tiny_voice(tmp_path / "good.pth", "v1", "40k", False)
    files["truncated"] = tmp_path / "truncated.pth"
    data = good.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["discriminator"] = tmp_path / "D_100.pth"
    from engines.rvc.models.discriminator import MultiPeriodDiscriminator

    with torch.device("meta"):
        d = MultiPeriodDiscriminator("v1")
    torch.save({"model": {k: torch.zeros(1) for k in list(d.state_dict())[:4]}, "iteration": 1}, files["discriminator"])
    files["bad_config"] = tmp_path / "badcfg.pth"
    raw = torch.load(good, weights_only=True)
    raw["config"] = [1, 2, 3]
    torch.save(raw, files["bad_config"])
    files["wrong_shapes"] = tmp_path / "shapes.pth"
    raw = torch.load(good, weights_only=True)
    raw["weight"]["dec.conv_pre.weight"] = torch.zeros(3, 3, 3, dtype=torch.float16)
    torch.save(raw, files["wrong_shapes"])
    files["missing"] = tmp_path / "nope.pth"
    return files


def test_not_an_rvc_model_errors(tmp_path):
    for kind, path in _bad_files(tmp_path).items():
        with pytest.raises(InvalidModelError) as err:
            load_voice(path)
        assert path.name in str(err.value), kind
        assert err.value.hint, kind
        if kind != "wrong_shapes":
            with pytest.raises(InvalidModelError):
                checkpoints.model_info(path)


def test_model_info(tmp_path):
    small = make_tiny_voice(tmp_path / "v.pth", "v1", "32k", True, info="25epoch")
    info = checkpoints.model_info(small)
    assert {k: info[k] for k in ("kind", "version", "sr", "sample_rate", "f0", "epoch", "speakers", "dtype")} == {
        "kind": "small", "version": "v1", "sr": "32k", "sample_rate": 32000, "f0": True, "epoch": 25,
        "speakers": 4, "dtype": "float16"}
    raw = torch.load(small, weights_only=True)["weight"]
    assert info["params"] == sum(t.numel() for t in raw.values())
    assert info["sha256"] == checkpoints.file_sha256(small) and info["size_bytes"] == small.stat().st_size

    g = make_tiny_generator_checkpoint(tmp_path / "G_777.pth", "v2", "48k", False, epoch=9)
    ginfo = checkpoints.model_info(g)
    assert (ginfo["kind"], ginfo["version"], ginfo["sr"], ginfo["f0"], ginfo["epoch"], ginfo["step"]) == (
        "checkpoint", "v2", "48k", False, 9, 777)
    model = torch.load(g, weights_only=True)["model"]
    assert ginfo["params"] == sum(t.numel() for k, t in model.items() if not k.startswith("enc_q."))


def test_config_recovered_from_full_size_layouts():
    """Sample rate and config of every upstream generator layout, from tensor shapes alone."""
    import gzip
    import json
    from types import SimpleNamespace

    from engines.rvc.models.configs import small_model_config

    with gzip.open(Path(__file__).parent / "data" / "rvc_reference_shapes.json.gz", "rt", encoding="utf-8") as fh:
        reference = json.load(fh)
    for name, entry in reference.items():
        if not name.startswith("G_"):
            continue
        _, version, sr, f0 = name.split("_")
        shapes = {k: SimpleNamespace(shape=tuple(s)) for k, s in entry["state_dict"].items()}
        config, tag = checkpoints.config_from_state_dict(shapes)
        assert (tag, config) == (sr, small_model_config(version, sr)), name
        assert checkpoints.detect_version(shapes) == version and checkpoints.detect_f0(shapes) == (f0 == "f01")
        # Small models carry no enc_q: the source convs (f0) or the layout still tell the rate,
        # except v1 no-f0 32k vs 48k, which needs the caller's hint.
        small = {k: v for k, v in shapes.items() if not k.startswith("enc_q.")}
        if version == "v1" and f0 == "f00" and sr in ("32k", "48k"):
            with pytest.raises(ValueError):
                checkpoints.config_from_state_dict(small)
            assert checkpoints.config_from_state_dict(small, sr=sr)[1] == sr
        else:
            assert checkpoints.config_from_state_dict(small)[1] == sr, name
