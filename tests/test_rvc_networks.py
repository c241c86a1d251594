"""RVC networks: upstream state-dict layouts, upstream outputs (golden), noise control, training pass."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.rvc.models import noise
from engines.rvc.models.configs import (
    CONTENT_DIM,
    SR_TAGS,
    small_model_config,
    train_config,
)
from engines.rvc.models.discriminator import MultiPeriodDiscriminator
from engines.rvc.models.synthesizer import build_synthesizer

HERE = Path(__file__).parent
REFERENCE = HERE / "data" / "rvc_reference_shapes.json.gz"
GOLDEN = HERE / "golden" / "rvc" / "synth"
VARIANTS = [f"{v}_{sr}_f0{f}" for v in ("v1", "v2") for sr in ("32k", "40k", "48k") for f in (1, 0)]


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny networks: threads only add synchronisation cost.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def reference() -> dict:
    with gzip.open(REFERENCE, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def test_configs_are_upstreams(reference):
    for name, entry in reference.items():
        if not name.startswith("G_"):
            continue
        _, version, sr, _ = name.split("_")
        assert train_config(version, sr) == entry["train_json"], name
        assert small_model_config(version, sr) == entry["small_model_config"], name


@pytest.mark.parametrize("name", [f"G_{v}" for v in VARIANTS] + [f"D_{v}_{sr}" for v in ("v1", "v2") for sr in SR_TAGS])
def test_upstream_state_dicts_load_strict(reference, name):
    """Every upstream key and shape, in upstream's order, loads strictly (no allocation: meta device)."""
    entry = reference[name]
    with torch.device("meta"):
        if name.startswith("G_"):
            _, version, _, f0 = name.split("_")
            net = build_synthesizer(entry["small_model_config"], version, f0 == "f01")
        else:
            net = MultiPeriodDiscriminator(name.split("_")[1])
    ours = net.state_dict()
    assert list(ours) == list(entry["state_dict"])
    assert {k: list(v.shape) for k, v in ours.items()} == entry["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == entry["n_params"]
    fake = {k: torch.empty(shape, device="meta") for k, shape in entry["state_dict"].items()}
    net.load_state_dict(fake, strict=True, assign=True)


def _golden_case(name: str):
    ckpt = torch.load(GOLDEN / f"{name}.pth", map_location="cpu", weights_only=True)
    io = np.load(GOLDEN / f"{name}_io.npz")
    net = build_synthesizer(ckpt["config"], ckpt.get("version", "v1"), bool(ckpt["f0"]), with_posterior=False)
    net.load_state_dict({k: v.float() for k, v in ckpt["weight"].items()}, strict=True)
    args = [torch.from_numpy(io["phone"]), torch.from_numpy(io["phone_lengths"])]
    if ckpt["f0"]:
        args += [torch.from_numpy(io["pitch"]), torch.from_numpy(io["pitchf"])]
    args.append(torch.from_numpy(io["sid"]))
    return net.eval(), args, io["expected"]


@pytest.mark.parametrize("name", VARIANTS)
def test_synthesizer_matches_upstream(name):
    net, args, expected = _golden_case(name)
    with noise.zero_noise():
        # Training-style path: weight norm recomputed, channels-first convolutions.
        with torch.enable_grad():
            audio = net.infer(*args)[0].detach()
        assert audio.shape == expected.shape
        assert np.abs(audio.numpy() - expected).max() < 1e-4
        # Inference path: weight norm folded, time-major decoder.
        net.remove_weight_norm()
        with torch.inference_mode():
            folded = net.infer(*args)[0]
    assert np.abs(folded.numpy() - expected).max() < 1e-4
    assert not any(n.endswith(("weight_g", "weight_v")) for n in net.state_dict())


def test_noise_modes_and_trimmed_inference():
    net, args, expected = _golden_case("v2_40k_f01")
    net.remove_weight_norm()
    with torch.inference_mode():
        with noise.seeded_noise(7):
            a = net.infer(*args)[0]
        with noise.seeded_noise(7):
            b = net.infer(*args)[0]
        c = net.infer(*args)[0]  # the real RNG
        with noise.zero_noise():
            z = net.infer(*args)[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert np.abs(z.numpy() - expected).max() < 1e-4
    assert np.abs(a.numpy() - expected).max() > 1e-4  # noise is really drawn outside zero_noise


def test_trimmed_inference_matches_full_away_from_edges():
    # No-f0 model: with f0 the trimmed sine source restarts its phase (as upstream's does).
    net, args, _ = _golden_case("v2_40k_f00")
    net.remove_weight_norm()
    head, length = 30, 50
    with torch.inference_mode(), noise.zero_noise():
        full = net.infer(*args)[0]
        trimmed = net.infer(*args, skip_head=head, return_length=length)[0]
    hop = net.hop_length
    assert trimmed.shape[-1] == length * hop
    mid = slice(15 * hop, 35 * hop)
    assert np.abs(trimmed[0, 0, mid].numpy() - full[0, 0, head * hop :][mid].numpy()).max() < 1e-4


@pytest.mark.parametrize("version,f0", [("v2", True), ("v1", False)])
def test_training_forward_and_backward(version, f0):
    from tiny_rvc import make_tiny_synthesizer

    net = make_tiny_synthesizer(version, "40k", f0).train()
    b, t = 2, 40
    spec_ch = small_model_config(version, "40k")[0]
    phone = torch.randn(b, t, CONTENT_DIM[version])
    lengths = torch.tensor([t, t - 6])
    y = torch.randn(b, spec_ch, t)
    sid = torch.tensor([0, 3])
    args = [phone, lengths]
    if f0:
        args += [torch.randint(1, 255, (b, t)), 100 + 100 * torch.rand(b, t)]
    args += [y, lengths, sid]
    with noise.seeded_noise(0):
        o, ids, x_mask, y_mask, (z, z_p, m_p, logs_p, m_q, logs_q) = net(*args)
    hop = net.hop_length
    assert o.shape == (b, 1, net.segment_size * hop)
    assert ids.shape == (b,) and int(ids.max()) <= t - net.segment_size
    assert z.shape == z_p.shape == m_q.shape == (b, 8, t) and m_p.shape == logs_p.shape == (b, 8, t)
    assert float(x_mask[1, 0, -1]) == 0.0 and float(y_mask[0, 0, -1]) == 1.0
    loss = o.pow(2).mean() + (z_p - m_p).pow(2).mean()
    loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert grads["dec.ups.0.weight_g"] is not None and grads["enc_q.pre.weight"] is not None
    assert grads["enc_p.emb_phone.weight"].abs().sum() > 0


@pytest.mark.parametrize("version,count", [("v1", 7), ("v2", 9)])
def test_discriminator_outputs(version, count):
    d = MultiPeriodDiscriminator(version)
    y, y_hat = torch.randn(1, 1, 1200), torch.randn(1, 1, 1200)
    with torch.no_grad():
        rs, gs, frs, fgs = d(y, y_hat)
    assert len(rs) == len(gs) == len(frs) == len(fgs) == count
    assert len(frs[0]) == 7 and all(len(f) == 6 for f in frs[1:])
    assert all(r.dim() == 2 and r.shape[0] == 1 for r in rs)
    assert not torch.equal(rs[0], gs[0])


def test_blocked_attention_equals_full_attention_on_long_input():
    # Inference (no autograd) attends in query blocks; training builds full T x T scores.
    from engines.rvc.models.attention import QUERY_BLOCK, AttentionEncoder

    torch.manual_seed(0)
    t = 3000
    assert t > 2 * QUERY_BLOCK
    enc = AttentionEncoder(8, 16, 2, 2, 3, 0.0).eval()
    x = torch.randn(2, 8, t)
    lengths = torch.tensor([t, t - 777])
    x_mask = (torch.arange(t)[None, :] < lengths[:, None]).unsqueeze(1).float()
    for xs, ms in ((x[:1], x_mask[:1]), (x, x_mask)):  # unmasked single item, padded batch
        with torch.enable_grad():
            full = enc(xs, ms).detach()
        with torch.no_grad():
            blocked = enc(xs, ms)
        assert full.shape == blocked.shape
        assert (full - blocked).abs().max().item() < 1e-5
