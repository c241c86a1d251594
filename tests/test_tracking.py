"""Tracking during a training: machine samples in metrics.jsonl, TensorBoard served on demand, MLflow runs.

A tiny RVC training (tiny generator, espeak-ng speech) runs with a 1 s
sampling interval and an MLflow tracking folder in tmp; the loss readers
must still see only losses. NVML is exercised with a stand-in module only
for the readings a CPU machine cannot give.
"""

from __future__ import annotations

import json
import sys
import types
import urllib.request

import pytest

from engines.core.settings import Settings, Workspace
from engines.core.sysmon import SystemSampler, flat_metrics


def test_sampler_reads_cpu_ram_and_no_gpu_without_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    got = []
    with SystemSampler([got.append], interval=0.2, extra={"node": 0}):
        import time

        time.sleep(0.5)
    assert len(got) >= 2 and all(r["kind"] == "system" for r in got)
    rec = got[-1]
    assert 0 <= rec["cpu_percent"] <= 100 * 64 and rec["ram_used_mb"] > 0 and rec["proc_rss_mb"] > 10
    assert "gpus" not in rec and rec["node"] == 0
    assert {"system/cpu_percent", "system/ram_percent", "system/proc_rss_mb"} <= set(flat_metrics(rec))


def test_sampler_reads_every_gpu_nvml_reports(monkeypatch):
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=40 + h),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=3 * 2**30, total=80 * 2**30),
        nvmlDeviceGetTemperature=lambda h, sensor: 61,
        nvmlDeviceGetPowerUsage=lambda h: (_ for _ in ()).throw(RuntimeError("not supported")) if h else 250500)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    rec = SystemSampler([]).sample()
    assert rec["gpus"] == [{"index": 0, "util_percent": 40.0, "mem_used_mb": 3072.0, "mem_total_mb": 81920.0,
                            "temp_c": 61.0, "power_w": 250.5},
                           {"index": 1, "util_percent": 41.0, "mem_used_mb": 3072.0, "mem_total_mb": 81920.0,
                            "temp_c": 61.0}]  # a reading a GPU does not support is left out
    flat = flat_metrics(rec)
    assert flat["system/gpu0/power_w"] == 250.5 and flat["system/gpu1/temp_c"] == 61.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training with 1 s samples and MLflow into a temp tracking folder."""
    from speech import espeak_wav
    from tiny_hubert import make_tiny_hubert
    from tiny_rvc import tiny_config

    from engines.rvc.train.launch import run_rvc_training
    from engines.rvc.train.params import TrainParams

    root = tmp_path_factory.mktemp("tracking")
    mlruns = root / "tracking-dir"
    ws = Workspace(root=root / "ws", settings=Settings(device="cpu", system_sample_seconds=1,
                                                       mlflow_uri=mlruns.as_uri()))
    ws.ensure()
    data = root / "voice"
    data.mkdir()
    espeak_wav("Hello there, this is a short training sentence.", "en", data / "a.wav", sr=22050)
    hubert = make_tiny_hubert(root / "hubert")
    params = TrainParams(exp_name="track", dataset=str(data), sr="32k", version="v2", f0=True, f0_method="pm",
                         total_epoch=2, batch_size=1, save_every_epoch=1, save_every_weights=True,
                         hubert_path=str(hubert), n_processes=1, loader_workers=0, log_interval=1,
                         segment_size=640, model_config=tiny_config("v2", "32k"))
    logs: list[str] = []
    from engines.core.hooks import Hooks

    res = run_rvc_training(ws, params, Hooks(log=logs.append))
    return ws, res, mlruns, logs


@pytest.mark.slow
def test_training_metrics_hold_system_samples_beside_the_losses(trained):
    from engines.rvc.ops.catalog import read_metrics

    ws, res, _, _ = trained
    records = [json.loads(line) for line in (ws.experiment_dir("track") / "metrics.jsonl").read_text().splitlines()]
    system = [r for r in records if r["kind"] == "system"]
    assert system and all(r["ram_used_mb"] > 0 and "cpu_percent" in r and r["node"] == 0 for r in system)
    steps = read_metrics(ws, "track", "step")
    assert steps and all("loss_mel" in r for r in steps)  # the loss readers see losses only
    assert list((ws.experiment_dir("track") / "tensorboard" / "system").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_mlflow_run_has_params_metrics_system_metrics_and_the_small_models(trained):
    import mlflow

    ws, res, mlruns, logs = trained
    client = mlflow.MlflowClient(tracking_uri=mlruns.as_uri())
    exp = client.get_experiment_by_name("voicelab/rvc/track")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and any(runs[0].info.run_id in line for line in logs)
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["sr"] == "32k" and run.data.params["total_epoch"] == "2"
    assert {"loss_mel", "loss_disc", "epoch/loss_mel", "system/cpu_percent", "system/ram_used_mb"} <= set(run.data.metrics)
    history = client.get_metric_history(run.info.run_id, "loss_mel")
    assert [m.step for m in history] == sorted(m.step for m in history) and len(history) == res.steps
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "models")}
    assert "models/track.pth" in arts and len(arts) == len(res.small_models) + 1


@pytest.mark.slow
def test_tensorboard_link_serves_the_experiment(trained):
    from engines.core import tboard

    ws, _, _, _ = trained
    server = tboard.ensure_tensorboard(ws.experiment_dir("track") / "tensorboard", "127.0.0.1")
    try:
        assert tboard.ensure_tensorboard(ws.experiment_dir("track") / "tensorboard", "127.0.0.1") is server
        with urllib.request.urlopen(server.url, timeout=10) as resp:
            assert resp.status == 200 and b"TensorBoard" in resp.read()
        with urllib.request.urlopen(server.url + "data/runs", timeout=10) as resp:
            runs = json.loads(resp.read())
        assert "system" in runs  # the machine samples' event file
    finally:
        tboard.stop_all()
    assert not server.alive() and tboard.running() == []


@pytest.mark.slow
def test_the_studio_serves_the_tensorboard_link_and_stops_tensorboard_with_it(tmp_path):
    import re
    import time

    from browser import studio
    from gradio_client import Client

    ws = Workspace.open(tmp_path / "ws")
    root = ws.experiment_dir("linked")
    root.mkdir(parents=True)
    (root / "metrics.jsonl").write_text(json.dumps({"kind": "step", "epoch": 1, "step": 1, "loss_mel": 20.0}) + "\n")
    with studio(tmp_path / "ws") as (url, _):
        answer = Client(url, verbose=False).predict("linked", api_name="/rvc_tensorboard")
        link = re.search(r"\((http://[^)]+)\)", answer).group(1)
        assert link.startswith("http://127.0.0.1:") and not link.startswith(url)  # the studio's host, its own port
        with urllib.request.urlopen(link, timeout=10) as resp:
            assert resp.status == 200 and b"TensorBoard" in resp.read()
        assert "no experiment" in Client(url, verbose=False).predict("other", api_name="/rvc_tensorboard")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the studio's exit stopped its TensorBoard
        try:
            urllib.request.urlopen(link, timeout=1)
        except OSError:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"TensorBoard still answers on {link} after the studio stopped")
