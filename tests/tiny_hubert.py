"""Tiny randomly initialised content encoders and RMVPE networks for tests.

``make_tiny_hubert`` writes a transformers-format HuBERT directory whose v2
features are 768-d and v1 features 256-d (so it plugs into real-size RVC
synthesizers) but whose conv front end and layers are small, so it runs fast
on CPU. ``make_tiny_fairseq_hubert`` writes the same kind of model in the
legacy fairseq checkpoint layout (cfg / model / task_state with a pickled
``fairseq.data.dictionary.Dictionary``) without fairseq installed.
``make_tiny_rmvpe`` writes an RMVPE state dict of the real architecture with
small channel counts.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import torch


def _tiny_config(hidden: int, layers: int, conv_dim: int, heads: int, ffn: int, conv_pos: int = 16) -> Any:
    from transformers import HubertConfig

    return HubertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        conv_dim=[conv_dim] * 7,
        conv_kernel=[10, 3, 3, 3, 3, 2, 2],
        conv_stride=[5, 2, 2, 2, 2, 2, 2],
        conv_bias=False,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        num_conv_pos_embeddings=conv_pos,
        num_conv_pos_embedding_groups=4,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
    )


def _random_encoder(hidden: int, layers: int, conv_dim: int, heads: int, ffn: int, final_dim: int, seed: int):
    from transformers import HubertModel

    torch.manual_seed(seed)
    model = HubertModel(_tiny_config(hidden, layers, conv_dim, heads, ffn)).eval()
    final_proj = torch.nn.Linear(hidden, final_dim)
    return model, final_proj


def make_tiny_hubert(
    path: str | Path,
    hidden: int = 768,
    layers: int = 2,
    conv_dim: int = 32,
    heads: int = 4,
    ffn: int = 128,
    final_dim: int = 256,
    seed: int = 0,
) -> Path:
    """Write a transformers HuBERT directory (config.json + model.safetensors with final_proj)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model, final_proj = _random_encoder(hidden, layers, conv_dim, heads, ffn, final_dim, seed)
    model.config.to_json_file(str(path / "config.json"))
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors["final_proj.weight"] = final_proj.weight.detach().contiguous()
    tensors["final_proj.bias"] = final_proj.bias.detach().contiguous()
    save_file(tensors, str(path / "model.safetensors"))
    return path


@contextlib.contextmanager
def _fake_modules(names: list[str]) -> Iterator[dict[str, types.ModuleType]]:
    """Empty modules under ``names`` in sys.modules while pickling classes that claim to live there."""
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    try:
        sys.modules.update(mods)
        yield mods
    finally:
        for n, old in saved.items():
            if old is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = old


def _place(cls: type, module: str, mods: dict[str, types.ModuleType]) -> type:
    cls.__module__ = module
    cls.__qualname__ = cls.__name__
    setattr(mods[module], cls.__name__, cls)
    return cls


def _omegaconf_like(value: Any, mods: dict[str, types.ModuleType]) -> Any:
    """Wrap plain config values the way omegaconf pickles a DictConfig (content, nodes, metadata)."""

    class Metadata:
        def __init__(self, **kw: Any) -> None:
            self.__dict__.update(kw)

    class ContainerMetadata(Metadata):
        pass

    class AnyNode:
        def __init__(self, val: Any) -> None:
            self._metadata = Metadata(ref_type=Any, object_type=None, optional=True, key=None)
            self._parent = None
            self._val = val

    class DictConfig:
        def __init__(self, content: dict) -> None:
            self._metadata = ContainerMetadata(ref_type=Any, object_type=dict, optional=True, key_type=Any)
            self._parent = None
            self._content = content

    class ListConfig(DictConfig):
        pass

    _place(Metadata, "omegaconf.base", mods)
    _place(ContainerMetadata, "omegaconf.base", mods)
    _place(AnyNode, "omegaconf.nodes", mods)
    _place(DictConfig, "omegaconf.dictconfig", mods)
    _place(ListConfig, "omegaconf.listconfig", mods)

    def wrap(v: Any) -> Any:
        if isinstance(v, dict):
            return DictConfig({k: wrap(x) for k, x in v.items()})
        if isinstance(v, list):
            return ListConfig([wrap(x) for x in v])
        return AnyNode(v)

    return wrap(value)


_OMEGACONF_MODULES = ["omegaconf", "omegaconf.base", "omegaconf.nodes", "omegaconf.dictconfig", "omegaconf.listconfig"]


@contextlib.contextmanager
def _fake_fairseq_dictionary() -> Iterator[type]:
    """Make ``fairseq.data.dictionary.Dictionary`` importable just long enough to pickle one."""
    names = ["fairseq", "fairseq.data", "fairseq.data.dictionary"]

    class Dictionary:  # the attributes a real fairseq Dictionary pickles
        def __init__(self) -> None:
            self.bos_word, self.unk_word, self.pad_word, self.eos_word = "<s>", "<unk>", "<pad>", "</s>"
            self.symbols = ["<s>", "<pad>", "</s>", "<unk>"] + [str(i) for i in range(8)]
            self.count = [1] * len(self.symbols)
            self.indices = {s: i for i, s in enumerate(self.symbols)}
            self.bos_index, self.pad_index, self.eos_index, self.unk_index = 0, 1, 2, 3
            self.nspecial = 4

    with _fake_modules(names) as mods:
        yield _place(Dictionary, "fairseq.data.dictionary", mods)


def _to_fairseq_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HubertModel keys -> fairseq HuBERT keys (inverse of the loader's mapping)."""
    out: dict[str, torch.Tensor] = {}
    layer_names = {
        "attention.k_proj": "self_attn.k_proj",
        "attention.q_proj": "self_attn.q_proj",
        "attention.v_proj": "self_attn.v_proj",
        "attention.out_proj": "self_attn.out_proj",
        "layer_norm": "self_attn_layer_norm",
        "feed_forward.intermediate_dense": "fc1",
        "feed_forward.output_dense": "fc2",
        "final_layer_norm": "final_layer_norm",
    }
    for key, value in state.items():
        p = key.split(".")
        if key == "masked_spec_embed":
            out["mask_emb"] = value
        elif key.startswith("feature_extractor.conv_layers."):
            sub = "0" if p[3] == "conv" else "2"
            out[f"feature_extractor.conv_layers.{p[2]}.{sub}.{p[-1]}"] = value
        elif key.startswith("feature_projection.layer_norm."):
            out["layer_norm." + p[-1]] = value
        elif key.startswith("feature_projection.projection."):
            out["post_extract_proj." + p[-1]] = value
        elif key.startswith("encoder.pos_conv_embed.conv."):
            leaf = {"original0": "weight_g", "original1": "weight_v"}.get(p[-1], p[-1])
            out["encoder.pos_conv.0." + leaf] = value
        elif key.startswith("encoder.layers."):
            rest = ".".join(p[3:-1])
            out[f"encoder.layers.{p[2]}.{layer_names[rest]}.{p[-1]}"] = value
        elif key.startswith("encoder.layer_norm."):
            out[key] = value
        else:
            raise KeyError(key)
    return out


def make_tiny_fairseq_hubert(
    path: str | Path,
    hidden: int = 32,
    layers: int = 2,
    conv_dim: int = 32,
    heads: int = 2,
    ffn: int = 64,
    final_dim: int = 16,
    seed: int = 0,
    transformers_copy: str | Path | None = None,
    cfg_style: str = "dict",
    half: bool = False,
) -> Path:
    """Write a random HuBERT in the fairseq checkpoint layout, as fairseq would save it.

    ``half``: float16 weights, as the released hubert_base.pt stores them.
    ``cfg_style``: "dict" (fairseq >= 0.10 saves its config as a plain dict),
    "omegaconf" (a pickled omegaconf DictConfig, as some re-saved checkpoints
    hold) or "namespace" (old fairseq: flat ``args`` Namespace, ``cfg`` None).
    With ``transformers_copy`` the same weights are also written as a
    transformers directory, so tests can check both loaders agree.
    """
    path = Path(path)
    model, final_proj = _random_encoder(hidden, layers, conv_dim, heads, ffn, final_dim, seed)
    state = _to_fairseq_names(model.state_dict())
    state["final_proj.weight"] = final_proj.weight.detach().clone()
    state["final_proj.bias"] = final_proj.bias.detach().clone()
    state["label_embs_concat"] = torch.randn(12, final_dim)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    conv = f"[({conv_dim},10,5)] + [({conv_dim},3,2)] * 4 + [({conv_dim},2,2)] * 2"
    cfg = {
        "_name": None,
        "common": {"seed": 1, "fp16": False},
        "model": {
            "_name": "hubert",
            "extractor_mode": "default",
            "encoder_layers": layers,
            "encoder_embed_dim": hidden,
            "encoder_ffn_embed_dim": ffn,
            "encoder_attention_heads": heads,
            "activation_fn": "gelu",
            "layer_type": "transformer",
            "final_dim": final_dim,
            "layer_norm_first": False,
            "conv_feature_layers": conv,
            "conv_bias": False,
            "conv_pos": 16,
            "conv_pos_groups": 4,
            "conv_pos_batch_norm": False,
            "required_seq_len_multiple": 2,
        },
        "task": {"_name": "hubert_pretraining", "labels": ["km"], "sample_rate": 16000, "normalize": False},
    }
    with _fake_fairseq_dictionary() as Dictionary, _fake_modules(_OMEGACONF_MODULES) as omega:
        args = None
        if cfg_style == "omegaconf":
            cfg = _omegaconf_like(cfg, omega)
        elif cfg_style == "namespace":
            args = argparse.Namespace(**{**cfg["task"], **cfg["model"]})
            cfg = None
        ckpt = {
            "args": args,
            "cfg": cfg,
            "model": state,
            "task_state": {"dictionaries": [Dictionary()]},
            "optimizer_history": [{"criterion_name": "HubertCriterion", "optimizer_name": "Adam", "num_updates": 0}],
            "extra_state": {"epoch": 1},
            "last_optimizer_state": None,
        }
        torch.save(ckpt, str(path))
    if transformers_copy is not None:
        from safetensors.torch import save_file

        out = Path(transformers_copy)
        out.mkdir(parents=True, exist_ok=True)
        model.config.to_json_file(str(out / "config.json"))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
        torch.save({"weight": final_proj.weight.detach(), "bias": final_proj.bias.detach()}, str(out / "final_proj.pt"))
    return path


def make_tiny_rmvpe(path: str | Path, width: int = 4, stages: int = 2, n_blocks: int = 1, bottleneck: int = 1,
                    seed: int = 0) -> Path:
    """Write a random RMVPE state dict of the real E2E architecture with small channel counts.

    Batch-norm statistics are randomised too, so the network is not an
    identity at any stage.
    """
    from engines.rvc.pitch.rmvpe import PitchNet, RMVPEConfig

    torch.manual_seed(seed)
    net = PitchNet(RMVPEConfig(n_blocks=n_blocks, stages=stages, bottleneck=bottleneck, width=width))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), str(path))
    return path


__all__ = ["make_tiny_hubert", "make_tiny_fairseq_hubert", "make_tiny_rmvpe"]
