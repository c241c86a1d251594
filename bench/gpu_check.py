"""GPU check: conversion, HuBERT, RMVPE and training on one CUDA device, random weights of the real sizes.

    python bench/gpu_check.py                 # on a GPU machine (aims at < 8 minutes on one GPU)
    python bench/gpu_check.py --smoke         # anywhere, CPU included: short inputs, proves every part runs

Measures (prints one JSON document):

* conversion real-time factor (processing seconds per audio second, models
  loaded) of the v2 48k synthesizer + HuBERT base with pm and rmvpe on 10 s
  and 600 s inputs, in fp32 and fp16, and the peak GPU memory of each run;
* HuBERT alone and RMVPE alone on 60 s (seconds per audio second, peak memory);
* a v2 48k training step (batch 8, AMP as the studio trains) in seconds per
  step and peak memory;
* DDP: a NCCL process group of world size 1 in a spawned process running the
  studio's DDP-wrapped training step, and the studio's training launcher
  (``_launch_ddp``: spawned rank, log/progress relay, checkpoint write) on one
  device over a small synthetic experiment.

Weights come from bench/benchutil.py (made once in --workdir). ``--smoke``
shortens the inputs (2 s / 6 s) and the training parts, and uses gloo on CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from benchutil import full_size_assets, speechlike_input


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: Any) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def _timed(device: Any, fn: Callable[[], Any]) -> tuple[float, Any]:
    _reset_peak(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _set_precision(models: Any, rmvpe: Any, precision: str) -> None:
    """fp32: no autocast anywhere; fp16: HuBERT, RMVPE and the synthesizer under fp16 autocast."""
    import torch

    amp = torch.float16 if precision == "fp16" else None
    models.encoder.amp = amp
    rmvpe.amp = amp


def check_conversion(ws: Any, assets: dict, inputs: dict[float, Path], device: Any, out_dir: Path) -> list[dict]:
    import dataclasses

    from engines.rvc.infer.convert import ConvertParams, load_models, vc_options
    from engines.rvc.infer.files import convert_file
    from engines.rvc.pitch import f0 as f0mod
    from engines.rvc.pitch.rmvpe import load_rmvpe

    rows = []
    for f0_method in ("pm", "rmvpe"):
        params = ConvertParams(f0_method=f0_method, index_rate=0.0, seed=0).check()
        models = load_models(ws, assets["model"], None, params, device=device, encoder_path=assets["hubert"],
                             rmvpe_path=assets["rmvpe"])
        rm_path = str(Path(assets["rmvpe"]).resolve())
        rmvpe = f0mod._cached("rmvpe", rm_path, device, lambda: load_rmvpe(rm_path, device=str(device)))
        for precision in ("fp32", "fp16"):
            _set_precision(models, rmvpe, precision)
            opts = dataclasses.replace(vc_options(ws, params, assets["rmvpe"]), precision=precision)
            convert_file(models, inputs[min(inputs)], out_dir / "warmup.wav", "wav", opts)  # kernels, cudnn plans
            for seconds, src in sorted(inputs.items()):
                def run(src: Path = src, opts: Any = opts, models: Any = models) -> Any:
                    return convert_file(models, src, out_dir / "out.wav", "wav", opts)

                wall, res = _timed(device, run)
                rows.append({"f0_method": f0_method, "precision": precision, "input_seconds": seconds,
                             "rtf": round(wall / seconds, 5), "seconds": round(wall, 2),
                             "peak_gpu_mb": _peak_mb(device), "streamed": res.streamed,
                             "stage_seconds": {k: round(v, 3) for k, v in res.times.items()}})
    return rows


def check_networks(assets: dict, audio: Path, device: Any) -> list[dict]:
    """HuBERT alone and RMVPE alone on one input, fp32 and fp16."""
    import torch

    from engines.core.audio import load_audio
    from engines.rvc.content.hubert import load_content_encoder
    from engines.rvc.pitch.rmvpe import load_rmvpe

    x, _ = load_audio(audio, 16000)
    seconds = len(x) / 16000
    rows = []
    enc = load_content_encoder(assets["hubert"], device=str(device))
    rm = load_rmvpe(assets["rmvpe"], device=str(device))
    for precision in ("fp32", "fp16"):
        amp = torch.float16 if precision == "fp16" else None
        enc.amp, rm.amp = amp, amp
        for name, run in (("hubert", lambda: enc.extract(x, "v2", window_seconds=seconds + 1)),
                          ("rmvpe", lambda: rm.infer(x))):
            run()  # warm-up
            wall, _ = _timed(device, run)
            rows.append({"network": name, "precision": precision, "input_seconds": round(seconds, 2),
                         "seconds_per_audio_second": round(wall / seconds, 5), "peak_gpu_mb": _peak_mb(device)})
    return rows


def _trainer(device: Any, batch: int, ddp: bool = False) -> tuple[Any, Any]:
    import torch
    from bench_train import make_batch

    from engines.rvc.models.configs import small_model_config, train_config
    from engines.rvc.train.loop import GANTrainer, build_networks

    cfg = train_config("v2", "48k")
    torch.manual_seed(0)
    net_g, net_d = build_networks(small_model_config("v2", "48k"), cfg, "v2", True)
    net_g.to(device)
    net_d.to(device)
    trainer = GANTrainer(net_g, net_d, cfg, f0=True, device=device, precision="auto")
    if ddp:  # as the studio's loop wraps them for several processes
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        trainer.net_g = DDP(net_g, device_ids=ids)
        trainer.net_d = DDP(net_d, device_ids=ids)
    return trainer, make_batch(cfg, "v2", batch, 3.0)


def _steps(trainer: Any, data: Any, device: Any, steps: int) -> list[float]:
    trainer.step(data)  # warm-up
    times = []
    for _ in range(steps):
        wall, _ = _timed(device, lambda: trainer.step(data))
        times.append(wall)
    return times


def check_training(device: Any, batch: int, steps: int) -> dict:
    trainer, data = _trainer(device, batch)
    times = _steps(trainer, data, device, steps)
    return {"model": "v2 48k f0", "batch": batch, "amp": str(trainer.amp_dtype), "steps": steps,
            "seconds_per_step": round(statistics.median(times), 3), "peak_gpu_mb": _peak_mb(device)}


def _ddp_rank(device_name: str, port: int, steps: int, batch: int, queue: Any) -> None:
    """Spawned: a world-size-1 process group (NCCL on CUDA, gloo on CPU) and DDP training steps."""
    try:
        import datetime

        import torch
        import torch.distributed as dist

        device = torch.device(device_name)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                                timeout=datetime.timedelta(minutes=5))
        flag = torch.ones(1, device=device)
        dist.all_reduce(flag)
        trainer, data = _trainer(device, batch, ddp=True)
        times = _steps(trainer, data, device, steps)
        queue.put({"backend": backend, "world_size": dist.get_world_size(), "all_reduce": float(flag.item()),
                   "batch": batch, "seconds_per_step": round(statistics.median(times), 3),
                   "peak_gpu_mb": _peak_mb(device)})
        dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - reported to the parent
        queue.put({"error": traceback.format_exc()[-2000:]})


def check_ddp(device: Any, batch: int, steps: int) -> dict:
    import multiprocessing

    from engines.rvc.train.loop import _free_port

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_ddp_rank, args=(str(device), _free_port(), steps, batch, queue))
    proc.start()
    try:
        result = queue.get(timeout=600)
    finally:
        proc.join(timeout=60)
    return result


def check_launcher(work: Path, assets: dict, device: Any, smoke: bool) -> dict:
    """The studio's launcher on one device over a synthetic experiment (prepared like a real one)."""
    import dataclasses

    from engines.core.hooks import Hooks
    from engines.core.settings import Workspace
    from engines.rvc.models.configs import train_config
    from engines.rvc.train.experiment import experiment_paths
    from engines.rvc.train.loop import TrainJob, _launch_ddp, model_config_for, prepare_experiment
    from engines.rvc.train.params import TrainParams

    ws = Workspace.open(work / "train_ws", overrides={"device": str(device)})
    data = work / "train_data"
    for i in range(4):
        speechlike_input(data / f"clip{i}.wav", 8.0 + i)
    params = TrainParams(exp_name="gpu_check", dataset=str(data), sr="48k", version="v2", f0=True, f0_method="pm",
                         total_epoch=1, max_steps=2, batch_size=2, save_every_epoch=1, hubert_path=str(assets["hubert"]),
                         n_processes=1, loader_workers=0, log_interval=1,
                         **({"segment_size": 4800} if smoke else {}))
    logs: list[str] = []
    t0 = time.perf_counter()
    prepare_experiment(ws, params, Hooks(log=logs.append))
    prepared = time.perf_counter() - t0
    paths = experiment_paths(ws, params.exp_name)
    config = train_config(params.version, params.sr)
    config["train"]["batch_size"] = params.batch_size
    if params.segment_size:
        config["train"]["segment_size"] = params.segment_size
    job = TrainJob(str(paths.root), str(ws.weights), params.exp_name, dataclasses.asdict(params), config,
                   model_config_for(params), [str(device)])
    t0 = time.perf_counter()
    summary = _launch_ddp(job, Hooks(log=logs.append))
    return {"devices": job.devices, "prepare_seconds": round(prepared, 1), "train_seconds": round(time.perf_counter() - t0, 1),
            "steps": summary["steps"], "seconds_per_step": round(summary["seconds_per_step"], 3),
            "checkpoints": [Path(c).name for c in summary["checkpoints"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="short inputs and steps; runs on CPU too")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip", nargs="*", default=[], choices=["conversion", "networks", "training", "ddp", "launcher"])
    args = ap.parse_args()
    from engines.core import cpu_memory

    cpu_memory.configure()  # as the studio does, before torch loads
    import torch

    from engines.core.device import pick_device
    from engines.core.settings import Workspace

    device = pick_device(args.device)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gpu_check_"))
    t_start = time.perf_counter()
    assets = full_size_assets(work / "assets")
    lengths = (2.0, 6.0) if args.smoke else (10.0, 600.0)
    inputs = {s: speechlike_input(work / f"in_{int(s)}s.wav", s) for s in lengths}
    net_audio = speechlike_input(work / ("in_6s.wav" if args.smoke else "in_60s.wav"), 6.0 if args.smoke else 60.0)
    ws = Workspace.open(work / "ws", overrides={"device": str(device)})
    batch, steps = (2, 1) if args.smoke else (8, 5)
    doc: dict[str, Any] = {
        "bench": "gpu_check", "smoke": args.smoke, "device": str(device), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda, "setup_seconds": None,
    }
    doc["setup_seconds"] = round(time.perf_counter() - t_start, 1)
    parts = {
        "conversion": lambda: check_conversion(ws, assets, inputs, device, work),
        "networks": lambda: check_networks(assets, net_audio, device),
        "training": lambda: check_training(device, batch, steps),
        "ddp": lambda: check_ddp(device, batch, steps),
        "launcher": lambda: check_launcher(work, assets, device, args.smoke),
    }
    for name, run in parts.items():
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        try:
            doc[name] = run()
        except Exception:  # noqa: BLE001 - one failing part must not hide the others' figures
            doc[name] = {"error": traceback.format_exc()[-3000:]}
        doc[f"{name}_wall_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{name} done in {doc[f'{name}_wall_seconds']} s", file=sys.stderr, flush=True)
    doc["total_seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
