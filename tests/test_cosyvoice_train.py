"""CosyVoice training orchestration against a stand-in upstream train.py.

The test writes a fake upstream checkout whose ``cosyvoice/bin/train.py``
parses upstream's arguments, uses a ``cosyvoice.utils.train_utils`` that is
as CUDA-only as upstream's (assert cuda, ``.cuda()``, integer device,
``ProcessGroup.options``, ``import deepspeed``), trains a tiny linear model
with real DDP on gloo, prints upstream-format log lines and saves
checkpoints the way upstream does. So the launcher's shims, the torchrun
command, log parsing, resume and cancel all run for real.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from engines.core.errors import Cancelled, InvalidInputError
from engines.core.hooks import Hooks
from engines.core.settings import Settings, Workspace
from engines.cosyvoice import config as cfg
from engines.cosyvoice.logparse import LogParser, metric_record
from engines.cosyvoice.train import (
    CosyTrainParams,
    absolute_data_list,
    build_train_command,
    convert_deepspeed_checkpoints,
    list_checkpoints,
    read_metrics,
    remove_incomplete_checkpoints,
    select_start_checkpoint,
    train_cosyvoice,
)

BASE_YAML = textwrap.dedent("""\
    # a small model yaml in upstream's style
    __set_seed1: !apply:random.seed [1986]
    sample_rate: 24000
    qwen_pretrain_path: ''
    llm: !new:cosyvoice.llm.llm.Qwen2LM
        llm_input_size: 896
        sampling: !name:cosyvoice.utils.common.ras_sampling
            top_p: 0.8
    flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
        input_size: 512
    batch: !name:cosyvoice.dataset.processor.batch
        batch_type: 'dynamic'
        max_frames_in_batch: 2000
    padding: !name:cosyvoice.dataset.processor.padding
        use_spk_embedding: False # change to True during sft
    data_pipeline: [
        !ref <batch>,
        !ref <padding>,
    ]
    train_conf:
        optim: adam
        optim_conf:
            lr: 0.001 # change to 1e-5 during sft
        scheduler: warmuplr # change to constantlr during sft
        scheduler_conf:
            warmup_steps: 2500
        max_epoch: 200
        grad_clip: 5
        accum_grad: 2
        log_interval: 100
        save_per_step: -1
    train_conf_gan:
        optim: adam
        max_epoch: 200
    """)

FAKE_TRAIN_UTILS = textwrap.dedent("""\
    # As CUDA-bound as upstream's train_utils: the launcher must make these work on CPU.
    import os
    import deepspeed
    import torch
    import torch.distributed as dist
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs_all_live


    def init_distributed(args):
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
        dist.init_process_group(args.dist_backend)


    def wrap_cuda_model(args, model):
        assert torch.cuda.is_available()
        model.cuda()
        return torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)


    def join_timeout(group):
        return group.options._timeout
    """)

STANDIN_TRAIN = textwrap.dedent("""\
    import argparse, datetime, logging, os, re, subprocess, sys, time
    import torch, yaml
    import torch.distributed as dist
    import deepspeed
    from cosyvoice.utils.train_utils import init_distributed, wrap_cuda_model, join_timeout

    p = argparse.ArgumentParser()
    p.add_argument('--train_engine', default='torch_ddp')
    p.add_argument('--model', required=True)
    p.add_argument('--config', required=True)
    p.add_argument('--train_data', required=True)
    p.add_argument('--cv_data', required=True)
    p.add_argument('--qwen_pretrain_path')
    p.add_argument('--onnx_path')
    p.add_argument('--checkpoint')
    p.add_argument('--model_dir', required=True)
    p.add_argument('--tensorboard_dir', default='tensorboard')
    p.add_argument('--ddp.dist_backend', dest='dist_backend', default='nccl')
    p.add_argument('--num_workers', default=0, type=int)
    p.add_argument('--prefetch', default=100, type=int)
    p.add_argument('--pin_memory', action='store_true')
    p.add_argument('--use_amp', action='store_true')
    p.add_argument('--timeout', default=60, type=int)
    p = deepspeed.add_config_arguments(p)
    args = p.parse_args()
    os.environ['onnx_path'] = args.onnx_path  # TypeError without --onnx_path, as upstream
    assert not (args.num_workers == 0 and args.prefetch), 'prefetch needs workers'
    logging.basicConfig(level=logging.DEBUG, format='%(asctime)s %(levelname)s %(message)s')
    text = open(args.config).read()
    assert 'use_spk_embedding: True' in text
    max_epoch = int(re.search(r'^    max_epoch: (\\d+)', text, re.M).group(1))
    accum = int(re.search(r'^    accum_grad: (\\d+)', text, re.M).group(1))
    rank = int(os.environ.get('RANK', 0))
    init_distributed(args)


    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 1)

        def forward(self, batch, device):
            x, y = batch[0].to(device), batch[1].to(device)
            loss = ((self.proj(x) - y) ** 2).mean()
            return {'loss': loss, 'acc': torch.tensor(0.5)}


    model = Tiny()
    start_step, start_epoch = 0, -1
    if args.checkpoint and os.path.exists(args.checkpoint):
        sd = torch.load(args.checkpoint, map_location='cpu')
        model.load_state_dict({k: v for k, v in sd.items() if k not in ('epoch', 'step')})
        start_step, start_epoch = sd.get('step', 0), sd.get('epoch', -1)
    with open(os.path.join(args.model_dir, 'started_from.txt'), 'a') as f:
        f.write(f'{args.checkpoint} {start_epoch}\\n')
    model = wrap_cuda_model(args, model)
    assert join_timeout(dist.new_group(backend='gloo')).total_seconds() == args.timeout
    opt = torch.optim.SGD(model.parameters(), lr=1e-5)


    def save(name, info):
        path = os.path.join(args.model_dir, name + '.pt')
        if rank == 0:
            torch.save({**model.module.state_dict(), 'epoch': info['epoch'], 'step': info['step']}, path)
            with open(path[:-3] + '.yaml', 'w') as f:
                f.write(yaml.dump(info))
            logging.info('[Rank {}] Checkpoint: save to checkpoint {}'.format(rank, path))


    save('init', {'epoch': start_epoch, 'step': start_step, 'model_dir': args.model_dir})
    print('start step {} start epoch {}'.format(start_step, start_epoch), flush=True)
    step = start_step
    gen = torch.Generator().manual_seed(0)
    for epoch in range(start_epoch + 1, max_epoch):
        logging.info('Epoch {} TRAIN info lr {} rank {}'.format(epoch, 1e-5, rank))
        logging.info('using accumulate grad, new batch size is {} times larger than before'.format(accum))
        for b in range(4):
            out = model((torch.randn(3, 4, generator=gen), torch.randn(3, 1, generator=gen)), int(os.environ['LOCAL_RANK']))
            out['loss'].backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            if (b + 1) % accum == 0:
                opt.step(); opt.zero_grad()
            msg = 'TRAIN Batch {}/{} loss {:.6f} '.format(epoch, b + 1, out['loss'].item())
            if args.model == 'llm':
                msg += 'acc {:.6f} '.format(out['acc'].item())
            msg += 'lr {:.8f} grad_norm {:.6f}'.format(1e-5, gn.item()) + ' rank {}'.format(rank)
            logging.debug(msg)
            if (b + 1) % accum == 0:
                step += 1
        logging.info('Epoch {} Step {} on_batch_end True CV rank {}'.format(epoch, step + 1, rank))
        cv = 2.0 - 0.1 * epoch
        logging.debug('CV Batch {}/1 loss {:.6f} acc 0.000000  rank {}'.format(epoch, cv, rank))
        logging.info('Epoch {} Step {} CV info lr {} {} rank {}'.format(epoch, step + 1, 1e-5, rank, 'loss {} acc 0.25'.format(cv)))
        if os.environ.get('STANDIN_HANG_MODEL') == args.model and epoch == start_epoch + 3:
            # die while saving: half a checkpoint on disk, a child process, then hang
            if rank == 0:
                with open(os.path.join(args.model_dir, 'epoch_{}_whole.pt'.format(epoch)), 'wb') as f:
                    f.write(b'PK\\x03\\x04 half')
            child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
            with open(os.environ['STANDIN_HANG'], 'a') as f:
                f.write(f'{os.getpid()} {child.pid}\\n')
            print('STANDIN hanging', flush=True)
            time.sleep(120)
        save('epoch_{}_whole'.format(epoch), {'epoch': epoch, 'step': step, 'tag': 'CV', 'model_dir': args.model_dir,
                                               'loss_dict': {'loss': cv, 'acc': 0.25}, 'grad_norm': gn})
    dist.destroy_process_group()
    """)


def write_standin_checkout(root: Path) -> Path:
    """A fake upstream checkout under ``root``: the stand-in train.py and the modules it imports."""
    checkout = root / "CosyVoice"
    for rel, text in {
        "cosyvoice/__init__.py": "",
        "cosyvoice/cli/__init__.py": "",
        "cosyvoice/cli/cosyvoice.py": "",
        "cosyvoice/utils/__init__.py": "",
        "cosyvoice/utils/train_utils.py": FAKE_TRAIN_UTILS,
        # what the yaml's !name: tags point at (hyperpyyaml imports them when the config loads)
        "cosyvoice/dataset/__init__.py": "",
        "cosyvoice/dataset/processor.py": "def batch(data, **kw):\n    return data\n\n\n"
                                          "def padding(data, **kw):\n    return data\n",
        "cosyvoice/bin/train.py": STANDIN_TRAIN,
        "third_party/Matcha-TTS/matcha/__init__.py": "",
    }.items():
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text(text)
    return checkout


def write_standin_shards(out: Path) -> Path:
    """One parquet shard of two silent clips with tokens and embeddings, in our writer's layout."""
    import numpy as np
    import soundfile as sf

    from engines.cosyvoice.parquet import UttRecord, write_shards

    out.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(2):
        wav = out / f"u{i}.wav"
        sf.write(wav, np.zeros(24000, np.float32), 16000)
        records.append(UttRecord(f"u{i}", str(wav), "Hello.", "spk", [0.1] * 192, [0.1] * 192, [1, 2, 3]))
    return write_shards(records, out, 2).data_list


def _make_setup(tmp_path: Path) -> tuple[Workspace, Path, Path]:
    import torch

    checkout = write_standin_checkout(tmp_path)
    base = tmp_path / "base"
    base.mkdir()
    (base / "cosyvoice2.yaml").write_text(BASE_YAML)
    sd = {f"proj.{k}": v for k, v in torch.nn.Linear(4, 1).state_dict().items()}
    for name in ("llm.pt", "flow.pt"):
        torch.save(sd, base / name)
    data = tmp_path / "data"
    write_standin_shards(data)
    ws = Workspace(root=tmp_path / "ws", settings=Settings(cosyvoice_repo=str(checkout)))
    ws.ensure()
    return ws, base, data / "data.list"


def _params(base: Path, data_list: Path, **kw) -> CosyTrainParams:
    values = dict(exp_name="spk", model_dir=str(base), train_data=str(data_list), models="llm", max_epoch=2,
                  accum_grad=2, log_interval=1, num_workers=1, prefetch=2, timeout=17)
    values.update(kw)
    return CosyTrainParams(**values)


# -- pure parts ---------------------------------------------------------------------------

def test_sft_config_edits_only_sft_values_and_keeps_tags(tmp_path: Path) -> None:
    base = tmp_path / "m"
    base.mkdir()
    (base / "cosyvoice2.yaml").write_text(BASE_YAML)
    out = cfg.write_sft_config(base, tmp_path / "sft.yaml",
                               {"max_epoch": 7, "save_per_step": 50, "accum_grad": 4, "max_frames_in_batch": 1500,
                                "log_interval": 5, "lr": 2e-5})
    text = out.read_text()
    data = cfg.load_yaml_tolerant(text)
    tc = data["train_conf"]
    assert cfg.as_float(tc["optim_conf"]["lr"]) == 2e-5
    assert tc["scheduler"] == "constantlr"
    assert (tc["max_epoch"], tc["save_per_step"], tc["accum_grad"], tc["log_interval"]) == (7, 50, 4, 5)
    assert tc["scheduler_conf"] == {"warmup_steps": 2500}
    assert data["padding"]["use_spk_embedding"] is True
    assert data["batch"]["max_frames_in_batch"] == 1500
    assert data["train_conf_gan"]["max_epoch"] == 200  # the gan block is not touched
    # every line that is not an SFT value is byte-identical (tags included)
    changed = [(a, b) for a, b in zip(BASE_YAML.splitlines(), text.splitlines()) if a != b]
    assert len(text.splitlines()) == len(BASE_YAML.splitlines())
    assert {a.split(":")[0].strip() for a, _ in changed} == {
        "use_spk_embedding", "max_frames_in_batch", "lr", "scheduler", "max_epoch", "grad_clip", "accum_grad",
        "log_interval", "save_per_step"}
    assert "llm: !new:cosyvoice.llm.llm.Qwen2LM" in text and "!ref <padding>," in text


def test_sft_config_inserts_missing_train_conf(tmp_path: Path) -> None:
    text = BASE_YAML.split("train_conf:")[0]
    edited = cfg.sft_config_text(text, {"max_epoch": 3})
    tc = cfg.load_yaml_tolerant(edited)["train_conf"]
    assert tc["max_epoch"] == 3 and tc["scheduler"] == "constantlr" and cfg.as_float(tc["optim_conf"]["lr"]) == 1e-5


def test_log_parser_reads_upstream_lines() -> None:
    p = LogParser(model="llm", accum_grad=1, max_epoch=2)
    lines = [
        "2026-11-22 01:00:00,000 INFO [Rank 0] Checkpoint: save to checkpoint /x/init.pt",
        "start step 0 start epoch -1",
        "2026-11-22 01:00:01,000 INFO Epoch 0 TRAIN info lr 0.0001 rank 0",
        "2026-11-22 01:00:01,000 INFO using accumulate grad, new batch size is 2 times larger than before",
        "2026-11-22 01:00:02,000 DEBUG TRAIN Batch 0/1 loss 9.003472 acc 0.000000 lr 0.00010000 grad_norm 3.209061 rank 0",
        "[rank1]: 2026-11-22 01:00:02,000 DEBUG TRAIN Batch 0/1 loss 7.0 acc 0.1 lr 0.00010000 grad_norm 1.0 rank 1",
        "2026-11-22 01:00:02,000 DEBUG TRAIN Batch 0/4 loss 8.5 acc 0.250000 lr 0.00010000 grad_norm 2.5 rank 0",
        "2026-11-22 01:00:03,000 INFO Epoch 0 Step 3 on_batch_end True CV rank 0",
        "2026-11-22 01:00:03,000 DEBUG CV Batch 0/1 loss 8.703972 acc 0.000000  rank 0",
        "2026-11-22 01:00:03,000 INFO Epoch 0 Step 3 CV info lr 0.0001 0 rank loss 8.751295725504557 acc 0.0",
        "2026-11-22 01:00:03,000 INFO [Rank 0] Checkpoint: save to checkpoint /x/epoch_0_whole.pt",
        "2026-11-22 01:00:04,000 INFO Epoch 1 TRAIN info lr 0.0001 rank 0",
        "2026-11-22 01:00:04,000 DEBUG TRAIN Batch 1/2 loss 21.289368 lr 0.00010000 grad_norm 27.841982 rank 0",
    ]
    rows = [metric_record(e) for line in lines for e in p.feed(line)]
    rows = [r for r in rows if r]
    assert [(r["split"], r["epoch"], r["step"], r["batch"]) for r in rows] == [
        ("train", 0, 0, 1), ("train", 0, 2, 4), ("cv", 0, 2, None), ("train", 1, 3, 2)]
    assert rows[0]["loss"] == pytest.approx(9.003472) and rows[0]["grad_norm"] == pytest.approx(3.209061)
    assert rows[0]["lr"] == pytest.approx(1e-4) and rows[0]["acc"] == 0.0
    assert rows[2]["loss"] == pytest.approx(8.751295725504557) and rows[2]["lr"] == pytest.approx(1e-4)
    assert rows[3]["acc"] is None  # flow lines have no acc
    assert p.checkpoints == ["/x/init.pt", "/x/epoch_0_whole.pt"]
    assert p.batches_per_epoch == 4 and p.progress() == pytest.approx((1 + 2 / 4) / 2)


def test_resume_selection_and_incomplete_cleanup(tmp_path: Path) -> None:
    import torch

    out, base = tmp_path / "llm", tmp_path / "base"
    out.mkdir()
    base.mkdir()
    torch.save({"w": torch.zeros(1)}, base / "llm.pt")
    assert select_start_checkpoint(out, base, "llm") == (base / "llm.pt", "base")
    assert select_start_checkpoint(out, base, "flow") == (None, "scratch")
    for name, epoch in (("epoch_0_whole", 0), ("epoch_1_step_30", 1), ("epoch_1_whole", 1), ("epoch_10_whole", 10)):
        torch.save({"w": torch.zeros(1), "epoch": epoch, "step": 1}, out / f"{name}.pt")
        (out / f"{name}.yaml").write_text(f"epoch: {epoch}\nstep: 1\n")
    (out / "epoch_11_whole.pt").write_bytes(b"torn")  # no yaml: the save never finished
    assert [p.name for p in list_checkpoints(out)] == [
        "epoch_0_whole.pt", "epoch_1_step_30.pt", "epoch_1_whole.pt", "epoch_10_whole.pt"]
    assert select_start_checkpoint(out, base, "llm") == (out / "epoch_10_whole.pt", "resume")
    assert select_start_checkpoint(out, base, "llm", resume=False) == (base / "llm.pt", "base")
    removed = remove_incomplete_checkpoints(out, since=time.time() - 60)
    assert [p.name for p in removed] == ["epoch_11_whole.pt"]
    assert len(list(out.glob("*.pt"))) == 4


def test_train_command_torchrun_cuda_amp_and_single_process(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "cosyvoice.yaml").write_text("x: 1\n")  # v1: no Qwen dir argument
    common = dict(model="flow", script=Path("/co/cosyvoice/bin/train.py"), config=Path("/c.yaml"),
                  train_list=Path("/t.list"), cv_list=Path("/v.list"), out_dir=Path("/o"),
                  tensorboard_dir=Path("/tb"), checkpoint=None)
    gpu = build_train_command(_params(base, tmp_path / "d.list"), nproc=2, cuda=True, **common)
    i = gpu.index("torch.distributed.run")
    assert gpu[i + 1:i + 5] == ["--nnodes", "1", "--nproc_per_node", "2"]
    assert gpu[gpu.index("-m", i) + 1] == "engines.cosyvoice.train_launcher"
    for flag in ("--use_amp", "--pin_memory", "nccl", "--onnx_path", "--timeout"):
        assert flag in gpu
    assert "--qwen_pretrain_path" not in gpu and "--checkpoint" not in gpu
    cpu = build_train_command(_params(base, tmp_path / "d.list", use_amp=True), nproc=1, cuda=False, **common)
    assert "torch.distributed.run" not in cpu and "--use_amp" not in cpu and "gloo" in cpu
    assert cpu[cpu.index("--num_workers") + 1] == "1" and cpu[cpu.index("--prefetch") + 1] == "2"


def test_deepspeed_checkpoint_folders_become_pt_files(tmp_path: Path) -> None:
    import torch

    folder = tmp_path / "epoch_2_whole"
    folder.mkdir()
    torch.save({"module": {"w": torch.ones(2)}, "optimizer": None}, folder / "mp_rank_00_model_states.pt")
    (tmp_path / "epoch_2_whole.yaml").write_text("epoch: 2\nstep: 30\n")
    torn = tmp_path / "epoch_3_whole"  # save interrupted: no yaml yet
    torn.mkdir()
    torch.save({"module": {"w": torch.ones(2)}}, torn / "mp_rank_00_model_states.pt")
    assert convert_deepspeed_checkpoints(tmp_path) == [tmp_path / "epoch_2_whole.pt"]
    sd = torch.load(tmp_path / "epoch_2_whole.pt", weights_only=True)
    assert sd["epoch"] == 2 and sd["step"] == 30 and torch.equal(sd["w"], torch.ones(2))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch_2_whole.pt"]
    assert convert_deepspeed_checkpoints(tmp_path) == []


def test_data_list_made_absolute_and_checked(tmp_path: Path) -> None:
    (tmp_path / "a.tar").write_bytes(b"x")
    (tmp_path / "data.list").write_text("a.tar\n\n")
    out = absolute_data_list(tmp_path / "data.list", tmp_path / "abs.list")
    assert out.read_text().splitlines() == [str((tmp_path / "a.tar").resolve())]
    (tmp_path / "bad.list").write_text("missing.tar\n")
    with pytest.raises(InvalidInputError):
        absolute_data_list(tmp_path / "bad.list", tmp_path / "abs2.list")


# -- the real subprocess path -------------------------------------------------------------

@pytest.mark.slow
def test_train_cancel_and_resume(tmp_path: Path) -> None:
    """llm trains fully; flow is cancelled mid-save; a second run skips llm and resumes flow."""
    ws, base, data_list = _make_setup(tmp_path)
    exp = tmp_path / "ws" / "cosyvoice" / "train" / "spk"
    pid_file = tmp_path / "pids.txt"
    logs: list[str] = []
    progress: list[float] = []
    cancel_at: list[float] = []
    hooks = Hooks()

    def log(line: str) -> None:
        logs.append(line)
        if "STANDIN hanging" in line:
            cancel_at.append(time.monotonic())
            hooks.cancel_event.set()

    hooks = Hooks(progress=lambda f, m: progress.append(f), log=log, cancel_event=hooks.cancel_event)
    os.environ.update(STANDIN_HANG=str(pid_file), STANDIN_HANG_MODEL="flow")
    try:
        with pytest.raises(Cancelled):
            train_cosyvoice(ws, _params(base, data_list, models="llm+flow", max_epoch=3), hooks)
    finally:
        os.environ.pop("STANDIN_HANG", None)
        os.environ.pop("STANDIN_HANG_MODEL", None)

    # cancel: the whole process tree is gone within 2 s, the torn checkpoint is removed
    assert time.monotonic() - cancel_at[0] < 2.0
    pids = [int(x) for x in pid_file.read_text().split()]
    deadline = time.monotonic() + 0.5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if _alive(p)] == []
    assert sorted(p.name for p in (exp / "flow").glob("*.pt")) == ["epoch_0_whole.pt", "epoch_1_whole.pt", "init.pt"]

    # llm ran to the end: command line, shims, checkpoints, metrics
    cmd = next(line for line in logs if line.startswith("$ "))
    assert "--onnx_path " + str(base) in cmd and "--checkpoint " + str(base / "llm.pt") in cmd
    assert "--qwen_pretrain_path " + str(base / "CosyVoice-BlankEN") in cmd
    assert "--use_amp" not in cmd and "--ddp.dist_backend gloo" in cmd and "--num_workers 1" in cmd
    assert any("launcher shims: onnx-cpu-fallback, offline-features, deepspeed-stub, processgroup-options, cpu" in line
               for line in logs)
    llm_ckpts = list_checkpoints(exp / "llm")
    assert [p.name for p in llm_ckpts] == ["epoch_0_whole.pt", "epoch_1_whole.pt", "epoch_2_whole.pt"]
    sd = torch_load(llm_ckpts[-1])
    assert sd["epoch"] == 2 and sd["step"] == 6 and "proj.weight" in sd
    info = cfg.load_yaml_file(llm_ckpts[-1].with_suffix(".yaml"))  # grad_norm is a python/object tag
    assert info["loss_dict"]["loss"] == pytest.approx(1.8)
    rows = read_metrics(exp / "metrics.jsonl")
    llm_train = [r for r in rows if r["model"] == "llm" and r["split"] == "train"]
    assert [r["step"] for r in llm_train] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert all(r["acc"] == 0.5 and r["lr"] == 1e-5 for r in llm_train)
    cv = [(r["model"], r["epoch"], r["step"], r["loss"]) for r in rows if r["split"] == "cv"]
    assert cv == [("llm", 0, 2, 2.0), ("llm", 1, 4, 1.9), ("llm", 2, 6, 1.8), ("flow", 0, 2, 2.0), ("flow", 1, 4, 1.9),
                  ("flow", 2, 6, 1.8)]  # logged before the save that was cancelled
    flow_train = [r for r in rows if r["model"] == "flow" and r["split"] == "train"]
    assert flow_train and all(r["acc"] is None for r in flow_train)
    assert progress == sorted(progress) and 0.5 < progress[-1] < 1.0

    # second run: llm is complete and skipped; flow resumes from its newest complete checkpoint
    res = train_cosyvoice(ws, _params(base, data_list, models="llm+flow", max_epoch=3), Hooks(log=logs.append))
    assert res.skipped == ["llm"] and res.latest["llm"] == llm_ckpts[-1]
    assert [p.name for p in res.checkpoints["flow"]] == ["epoch_0_whole.pt", "epoch_1_whole.pt", "epoch_2_whole.pt"]
    started = (exp / "flow" / "started_from.txt").read_text().splitlines()
    assert started == [f"{base / 'flow.pt'} -1", f"{exp / 'flow' / 'epoch_1_whole.pt'} 1"]
    assert len(read_metrics(exp / "metrics.jsonl")) == len(rows) + 4 + 1


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting to be reaped by its (killed) parent counts as dead
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
