"""RVC training end to end on CPU with a tiny generator: epochs, resume, small models, DDP, cancel.

The generator is a tiny config of the real architecture; the discriminator
is upstream's full size (it has no size knobs), so the training slice is
kept short (640 samples = 2 frames) and batches small to keep steps around
a second of CPU time.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.core.errors import Cancelled
from engines.core.hooks import Hooks
from engines.core.settings import Workspace
from engines.rvc.train.experiment import experiment_paths, list_checkpoints
from engines.rvc.train.params import TrainParams

SEGMENT = 640  # samples at 32 kHz (2 frames)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from speech import espeak_wav
    from tiny_hubert import make_tiny_hubert
    from tiny_rvc import tiny_config

    root = tmp_path_factory.mktemp("rvc_train")
    ws = Workspace(root=root / "ws")
    ws.ensure()
    data = root / "voice"
    data.mkdir()
    espeak_wav("Hello there, this is a short training sentence.", "en", data / "a.wav", sr=22050)
    hubert = make_tiny_hubert(root / "hubert")

    def params(exp: str, **kw) -> TrainParams:
        base = dict(exp_name=exp, dataset=str(data), sr="32k", version="v2", f0=True, f0_method="pm",
                    total_epoch=2, batch_size=1, save_every_epoch=2, save_every_weights=True,
                    hubert_path=str(hubert), n_processes=1, loader_workers=0, log_interval=1,
                    segment_size=SEGMENT, model_config=tiny_config("v2", "32k"))
        base.update(kw)
        return TrainParams(**base)

    return ws, params


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
def test_train_two_epochs_resume_one_more_then_cancel(setup):
    from engines.rvc.train.launch import run_rvc_training

    ws, make = setup
    logs: list[str] = []
    progress: list[tuple[float, str]] = []
    hooks = Hooks(progress=lambda f, m: progress.append((f, m)), log=logs.append)
    res = run_rvc_training(ws, make("e2e", add_mute=False), hooks)
    paths = experiment_paths(ws, "e2e")

    assert res.epochs == 2 and res.steps >= 2
    steps_per_epoch = res.steps // 2
    g = list_checkpoints(paths.root, "G")
    assert [n for n, _ in g] == [2 * steps_per_epoch]
    assert [n for n, _ in list_checkpoints(paths.root, "D")] == [2 * steps_per_epoch]
    ck = torch.load(g[-1][1], map_location="cpu", weights_only=True)
    assert {"model", "iteration", "optimizer", "learning_rate"} <= set(ck) and ck["iteration"] == 2
    assert any(k.startswith("enc_q.") for k in ck["model"])  # full generator, posterior included

    smalls = sorted(p.name for p in ws.weights.glob("e2e_e*_s*.pth"))
    assert smalls == [f"e2e_e2_s{2 * steps_per_epoch}.pth"]
    final = torch.load(ws.weights / "e2e.pth", map_location="cpu", weights_only=True)
    assert final["sr"] == "32k" and final["version"] == "v2" and int(final["f0"]) == 1
    assert list(final["config"]) == list(make("x").model_config)
    assert not any(k.startswith("enc_q.") for k in final["weight"])
    assert all(v.dtype == torch.float16 for v in final["weight"].values() if v.is_floating_point())
    # trained on features of a (tiny) encoder outside the catalogue: every model says which, and where
    assert final["embedder_model"] == "custom" and Path(final["embedder_path"]).name == "hubert"
    assert json.loads((paths.root / "encoder.json").read_text())["embedder_path"] == final["embedder_path"]

    records = [json.loads(line) for line in paths.metrics.read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    for r in steps:
        for key in ("loss_mel", "loss_kl", "loss_fm", "loss_gen", "loss_disc", "grad_norm_g", "grad_norm_d",
                    "lr", "seconds_per_step"):
            assert math.isfinite(r[key]), key
    assert any(p.name.startswith("events.out.tfevents") for p in paths.tensorboard.iterdir())
    assert any("ETA" in m for _, m in progress) and progress[-1][0] == pytest.approx(1.0)
    assert json.loads(paths.config.read_text())["data"]["sampling_rate"] == 32000

    # resume for one more epoch: stages cached, training continues from the latest pair
    logs.clear()
    res2 = run_rvc_training(ws, make("e2e", total_epoch=3, keep_latest_only=True, add_mute=False), hooks)
    assert res2.resumed_from == g[-1][1]
    assert [n for n, _ in list_checkpoints(paths.root, "G")] == [3 * steps_per_epoch]  # older pair removed
    assert [n for n, _ in list_checkpoints(paths.root, "D")] == [3 * steps_per_epoch]
    assert res2.epochs == 3 and res2.steps == 3 * steps_per_epoch
    assert sum("skipped" in line for line in logs) >= 3  # preprocess, pitch, features
    epoch3 = [json.loads(x) for x in paths.metrics.read_text().splitlines()]
    lr3 = [r["lr"] for r in epoch3 if r["kind"] == "step" and r["epoch"] == 3][0]
    assert lr3 == pytest.approx(1e-4 * 0.999875 ** 2)
    assert (ws.weights / f"e2e_e3_s{3 * steps_per_epoch}.pth").is_file()

    # cancel after the first step of epoch 4: nothing new, nothing half-written
    before_exp, before_w = _files(paths.root), _files(ws.weights)
    stop = threading.Event()

    def stop_after_first_step(frac: float, msg: str) -> None:
        if "step" in msg:
            stop.set()

    cancel = Hooks(progress=stop_after_first_step, cancel_event=stop)
    with pytest.raises(Cancelled):
        run_rvc_training(ws, make("e2e", total_epoch=6, add_mute=False), cancel)
    assert _files(ws.weights) == before_w
    assert {n for n in _files(paths.root) if n.endswith(".pth")} == {n for n in before_exp if n.endswith(".pth")}
    assert not [p for p in list(paths.root.rglob("*")) + list(ws.weights.rglob("*")) if ".part" in p.name]
    for _, p in list_checkpoints(paths.root, "G"):
        torch.load(p, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_mel_loss_goes_down_on_a_fixed_batch(setup):
    """A few GAN steps on one real batch (fixed slices and noise) lower the mel loss."""
    from engines.rvc.models import noise
    from engines.rvc.models.configs import train_config
    from engines.rvc.train.data import RVCDataset, collate, read_filelist
    from engines.rvc.train.gan import GANTrainer, build_networks
    from engines.rvc.train.launch import prepare_experiment

    ws, make = setup
    params = make("fixed")
    prepare_experiment(ws, params)
    paths = experiment_paths(ws, "fixed")
    lines = paths.filelist.read_text().splitlines()
    assert sum("/mute/" in line for line in lines) == 2 and len(lines) >= 3  # pieces + upstream's 2 mute entries
    assert all(len(line.split("|")) == 5 and line.endswith("|0") for line in lines)
    cfg = train_config("v2", "32k")
    cfg["train"]["segment_size"] = SEGMENT
    ds = RVCDataset(read_filelist(paths.filelist, True)[:1], cfg["data"], True)
    batch = collate([ds[0]])
    torch.manual_seed(0)
    net_g, net_d = build_networks(params.model_config, cfg, "v2", True)
    trainer = GANTrainer(net_g, net_d, cfg, f0=True, device=torch.device("cpu"))
    mel = []
    for _ in range(6):
        with noise.seeded_noise(3):
            mel.append(trainer.step(batch).loss_mel)
    assert mel[-1] < mel[0] * 0.985, mel
    assert all(b < a + 0.5 for a, b in zip(mel, mel[1:])), mel


@pytest.mark.slow
def test_ddp_two_gloo_processes_train_two_steps(setup):
    from engines.rvc.train.launch import run_rvc_training

    ws, make = setup
    logs: list[str] = []
    res = run_rvc_training(ws, make("ddp", add_mute=False, cpu_processes=2, max_steps=2, total_epoch=50,
                                    save_every_epoch=50), Hooks(log=logs.append))
    paths = experiment_paths(ws, "ddp")
    assert res.steps == 2
    assert [n for n, _ in list_checkpoints(paths.root, "G")] == [2]
    assert (ws.weights / "ddp.pth").is_file()
    assert any("x 2 process(es)" in line for line in logs)
    records = [json.loads(x) for x in paths.metrics.read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2]  # rank 0 writes, once per step
    shutil.rmtree(paths.spec_cache, ignore_errors=True)


def test_load_pretrained_keeps_matching_tensors_and_reports_the_rest(tmp_path):
    from tiny_rvc import tiny_config

    from engines.core.errors import InvalidInputError
    from engines.rvc.models.synthesizer import build_synthesizer
    from engines.rvc.train.gan import load_pretrained

    torch.manual_seed(1)
    source = build_synthesizer(tiny_config("v2", "40k"), "v2", True).state_dict()
    dropped = next(iter(source))
    del source[dropped]
    source["emb_g.weight"] = torch.zeros(7, 8)  # another speaker count
    path = tmp_path / "f0G40k.pth"
    torch.save({"model": source}, path)
    torch.manual_seed(2)
    target = build_synthesizer(tiny_config("v2", "40k"), "v2", True)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    logs: list[str] = []
    load_pretrained(target, path, "generator", logs.append)
    after = target.state_dict()
    assert "1 missing" in logs[0] and "emb_g.weight" in logs[0]
    assert torch.equal(after["emb_g.weight"], before["emb_g.weight"]) and torch.equal(after[dropped], before[dropped])
    copied = [k for k in source if k != "emb_g.weight"]
    assert all(torch.equal(after[k], source[k]) for k in copied)
    torch.save({"something": 1}, tmp_path / "other.pth")
    with pytest.raises(InvalidInputError):
        load_pretrained(target, tmp_path / "other.pth", "generator", logs.append)


def test_spectrogram_and_mel_follow_upstream_framing():
    """Reflect-pad (n_fft - hop)/2, Hann, no centering, sqrt(|X|^2 + 1e-6); log(clamp(mel, 1e-5))."""
    from librosa.filters import mel as librosa_mel

    from engines.rvc.train.mel_processing import (
        mel_spectrogram_torch,
        spectrogram_torch,
    )

    rng = np.random.default_rng(0)
    n_fft, hop, sr = 1024, 320, 32000
    x = rng.standard_normal(hop * 20).astype(np.float32) * 0.1
    spec = spectrogram_torch(torch.from_numpy(x)[None], n_fft, sr, hop, n_fft)[0].numpy()
    pad = (n_fft - hop) // 2
    xp = np.pad(x, (pad, pad), mode="reflect").astype(np.float64)
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    frames = 1 + (len(xp) - n_fft) // hop
    ref = np.stack([np.sqrt(np.abs(np.fft.rfft(xp[i * hop : i * hop + n_fft] * window)) ** 2 + 1e-6)
                    for i in range(frames)], axis=1)
    assert spec.shape == (n_fft // 2 + 1, len(x) // hop) == ref.shape
    np.testing.assert_allclose(spec, ref, rtol=1e-4, atol=1e-5)
    mel = mel_spectrogram_torch(torch.from_numpy(x)[None], n_fft, 80, sr, hop, n_fft, 0.0, None)[0].numpy()
    ref_mel = np.log(np.maximum(librosa_mel(sr=sr, n_fft=n_fft, n_mels=80, fmin=0.0, fmax=None) @ ref, 1e-5))
    np.testing.assert_allclose(mel, ref_mel, rtol=1e-4, atol=1e-4)


def test_bucket_sampler_groups_lengths_and_splits_ranks_evenly():
    from engines.rvc.train.data import BucketBatchSampler

    lengths = [50, 60, 70, 150, 160, 250, 260, 270, 280, 950]
    per_rank = []
    for rank in range(2):
        s = BucketBatchSampler(lengths, batch_size=2, num_replicas=2, rank=rank, seed=3)
        s.set_epoch(5)
        batches = list(s)
        assert len(batches) == len(s)
        per_rank.append(batches)
        for b in batches:
            assert len(b) == 2
            buckets = {next((k for k, e in enumerate((100, 200, 300, 400, 500, 600, 700, 800, 900)) if lengths[i] <= e), 8)
                       for i in b}
            assert len(buckets) == 1  # one length bucket per batch
    assert len(per_rank[0]) == len(per_rank[1])
    covered = {i for batches in per_rank for b in batches for i in b}
    assert covered == set(range(len(lengths)))  # nothing dropped (950 goes to the last bucket)
    s = BucketBatchSampler(lengths, batch_size=2, num_replicas=2, rank=0, seed=3)
    s.set_epoch(5)
    assert list(s) == per_rank[0]  # deterministic per (seed, epoch)


def test_list_saved_keeps_to_its_own_experiment(ws):
    from engines.rvc.ops.catalog import saved_files

    for name in ("voice_e5_s10.pth", "voice_e10_s20.pth", "voice_v2_e5_s10.pth", "voice_e5_s10.pth.part"):
        (ws.weights / name).write_bytes(b"x")
    models = [s.path.name for s in saved_files(ws, "voice") if s.kind == "model"]
    assert sorted(models) == ["voice_e10_s20.pth", "voice_e5_s10.pth"]
