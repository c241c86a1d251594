"""Run upstream's ``cosyvoice/bin/train.py`` with compatibility shims.

Usage (one process per rank, started by torchrun)::

    python -m engines.cosyvoice.train_launcher <checkout>/cosyvoice/bin/train.py <train.py args...>

Upstream's trainer assumes CUDA, DeepSpeed and an older torch. Without
touching upstream files, this launcher:

* stubs ``deepspeed`` when it is not installed (train.py imports it even
  for ``--train_engine torch_ddp``); the stub adds the ``--deepspeed*``
  options and says clearly that the deepspeed engine needs the package;
* restores ``ProcessGroup.options._timeout`` (removed in newer torch, read by
  ``cosyvoice_join``), using train.py's ``--timeout``;
* without CUDA: makes ``torch.cuda.set_device`` and ``Module.cuda()`` /
  ``Tensor.cuda()`` no-ops, and, once upstream's ``train_utils`` is imported,
  replaces its CUDA-only ``wrap_cuda_model`` with a CPU DDP wrapper whose
  forward maps the integer device upstream passes (LOCAL_RANK) to the CPU;

then runs the script with ``runpy`` as ``__main__``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
import types
from typing import Any, Callable

TRAIN_UTILS = "cosyvoice.utils.train_utils"


def _argv_value(argv: list[str], flag: str, default: str) -> str:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return default


class _DeepSpeedMissing(RuntimeError):
    pass


def _missing(*_: Any, **__: Any) -> Any:
    raise _DeepSpeedMissing("train_engine 'deepspeed' needs the deepspeed package: pip install deepspeed "
                            "(or use --train_engine torch_ddp).")


def install_deepspeed_stub() -> bool:
    """Put a minimal ``deepspeed`` module in sys.modules when the real one is absent."""
    if importlib.util.find_spec("deepspeed") is not None or "deepspeed" in sys.modules:
        return False

    def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        group = parser.add_argument_group("DeepSpeed (not installed)")
        group.add_argument("--deepspeed", default=False, action="store_true")
        group.add_argument("--deepspeed_config", default=None, type=str)
        return parser

    names = ["deepspeed", "deepspeed.runtime", "deepspeed.runtime.zero", "deepspeed.runtime.zero.stage_1_and_2"]
    mods = {n: types.ModuleType(n) for n in names}
    for n, m in mods.items():
        m.__dict__["__voicelab_stub__"] = True
        if n != "deepspeed":
            m.__path__ = []  # type: ignore[attr-defined]
    mods["deepspeed"].__path__ = []  # type: ignore[attr-defined]
    mods["deepspeed"].add_config_arguments = add_config_arguments  # type: ignore[attr-defined]
    mods["deepspeed"].init_distributed = _missing  # type: ignore[attr-defined]
    mods["deepspeed"].initialize = _missing  # type: ignore[attr-defined]
    mods["deepspeed.runtime.zero.stage_1_and_2"].estimate_zero2_model_states_mem_needs_all_live = _missing  # type: ignore[attr-defined]
    mods["deepspeed"].runtime = mods["deepspeed.runtime"]  # type: ignore[attr-defined]
    mods["deepspeed.runtime"].zero = mods["deepspeed.runtime.zero"]  # type: ignore[attr-defined]
    mods["deepspeed.runtime.zero"].stage_1_and_2 = mods["deepspeed.runtime.zero.stage_1_and_2"]  # type: ignore[attr-defined]
    sys.modules.update(mods)
    return True


def install_process_group_options(timeout_s: float) -> bool:
    """Give ProcessGroup an ``options._timeout`` when this torch has none."""
    from torch._C._distributed_c10d import ProcessGroup

    if hasattr(ProcessGroup, "options"):
        return False
    opts = types.SimpleNamespace(_timeout=datetime.timedelta(seconds=timeout_s))
    ProcessGroup.options = property(lambda self: opts)  # type: ignore[attr-defined]
    return True


def install_cpu_shims() -> None:
    """Make upstream's CUDA calls harmless on a machine without CUDA."""
    import torch

    torch.cuda.set_device = lambda *a, **k: None  # type: ignore[assignment]
    torch.nn.Module.cuda = lambda self, device=None: self  # type: ignore[assignment]
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[assignment]


def cpu_device(device: Any) -> Any:
    """Upstream passes ``int(LOCAL_RANK)`` as the device; on CPU that must be 'cpu'."""
    import torch

    if isinstance(device, int) or (isinstance(device, str) and device.startswith("cuda")) or (
            isinstance(device, torch.device) and device.type == "cuda"):
        return torch.device("cpu")
    return device


def cpu_wrap_model(args: Any, model: Any) -> Any:
    """CPU replacement for upstream's ``wrap_cuda_model`` (torch_ddp on gloo)."""
    import torch

    if getattr(args, "train_engine", "torch_ddp") != "torch_ddp":
        _missing()
    inner_forward = model.forward

    def forward(batch: Any, device: Any = None, *rest: Any, **kw: Any) -> Any:
        return inner_forward(batch, cpu_device(device), *rest, **kw)

    model.forward = forward  # instance attribute: state_dict keys are unchanged
    return torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)


def install_onnx_cpu_fallback() -> bool:
    """Make onnxruntime sessions fall back to the CPU provider when the CUDA one fails to load.

    Upstream asks for ``CUDAExecutionProvider`` whenever torch sees a GPU; an
    onnxruntime-gpu whose CUDA/cuDNN libraries do not match raises instead of
    running. Returns False when onnxruntime is missing.
    """
    try:
        import onnxruntime
    except ImportError:
        return False
    original = onnxruntime.InferenceSession
    if getattr(original, "__voicelab_fallback__", False):
        return True

    class InferenceSession(original):  # type: ignore[misc, valid-type]
        __voicelab_fallback__ = True

        def __init__(self, path_or_bytes: Any, sess_options: Any = None, providers: Any = None, **kw: Any) -> None:
            try:
                super().__init__(path_or_bytes, sess_options=sess_options, providers=providers, **kw)
            except Exception as exc:  # noqa: BLE001 - CUDA EP load failures come as plain errors
                if not providers or providers == ["CPUExecutionProvider"]:
                    raise
                print(f"[voicelab] onnxruntime CUDA provider failed ({str(exc).splitlines()[0][:160]}); "
                      "using the CPU provider", file=sys.stderr, flush=True)
                super().__init__(path_or_bytes, sess_options=sess_options, providers=["CPUExecutionProvider"], **kw)

    onnxruntime.InferenceSession = InferenceSession  # type: ignore[misc]
    return True


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Run ``patch(module)`` right after ``name`` is first imported."""

    def __init__(self, name: str, patch: Callable[[types.ModuleType], None]) -> None:
        self.name, self.patch = name, patch

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                loader, patch = spec.loader, self.patch
                original_exec = loader.exec_module

                def exec_module(module: types.ModuleType) -> None:
                    original_exec(module)
                    patch(module)

                loader.exec_module = exec_module  # type: ignore[method-assign]
                return spec
        return None


def _patch_train_utils(module: types.ModuleType) -> None:
    if hasattr(module, "wrap_cuda_model"):
        module.wrap_cuda_model = cpu_wrap_model  # type: ignore[attr-defined]


def keep_online_features_off() -> None:
    """Build upstream's feature singletons without ``onnx_path``: no online extractor.

    ``cosyvoice.utils.onnx`` decides once, on first import, whether training
    extracts tokens and embeddings online (``online_feature``), from the
    ``onnx_path`` variable that train.py sets from ``--onnx_path`` just before.
    Importing it first with the variable unset keeps them off; the data then
    must (and ours does) carry them.
    """
    os.environ.pop("onnx_path", None)
    if importlib.util.find_spec("cosyvoice.utils.onnx") is not None:
        importlib.import_module("cosyvoice.utils.onnx")


def apply_shims(train_args: list[str]) -> list[str]:
    """Install every shim this environment needs; returns the names applied."""
    import torch

    applied = []
    if install_onnx_cpu_fallback():
        applied.append("onnx-cpu-fallback")
    if os.environ.get("VOICELAB_OFFLINE_FEATURES") == "1":
        keep_online_features_off()
        applied.append("offline-features")
    if install_deepspeed_stub():
        applied.append("deepspeed-stub")
    if install_process_group_options(float(_argv_value(train_args, "--timeout", "60"))):
        applied.append("processgroup-options")
    if not torch.cuda.is_available():
        install_cpu_shims()
        sys.meta_path.insert(0, _PatchAfterImport(TRAIN_UTILS, _patch_train_utils))
        applied.append("cpu")
    return applied


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit("usage: python -m engines.cosyvoice.train_launcher <train.py> [args...]")
    script = os.path.abspath(argv[0])
    applied = apply_shims(argv[1:])
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[voicelab] launcher shims: {', '.join(applied) or 'none'}", flush=True)
    sys.argv = [script] + argv[1:]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
