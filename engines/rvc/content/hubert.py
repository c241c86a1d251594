"""Loading HuBERT / ContentVec for RVC onto ``transformers.HubertModel``.

Accepted model files (``load_content_encoder``):

* the legacy fairseq checkpoint (``hubert_base.pt`` as shipped for RVC, or any
  HuBERT/ContentVec checkpoint in the same layout): read without fairseq by
  :mod:`engines.rvc.content.fairseq`, weights renamed onto ``HubertModel``
  plus a ``final_proj`` linear;
* a transformers-format directory: ``config.json`` plus ``model.safetensors``
  or ``pytorch_model.bin`` (keys with or without the ``hubert.`` prefix). The
  v1 projection is taken from ``final_proj.weight``/``final_proj.bias`` stored
  in those weights (the layout of the common "contentvec" conversions), or
  from a separate ``final_proj.safetensors`` / ``final_proj.pt`` beside them.
  Without it only v2 features are available.

The network is built on the meta device and takes the loaded tensors as its
parameters, converted to float32 one at a time, so the weights are never
held twice. Feature extraction is :class:`engines.rvc.content.encoder.ContentEncoder`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from engines.core.errors import InvalidModelError
from engines.core.hooks import Hooks
from engines.core.imports import import_names
from engines.rvc.content.encoder import ContentEncoder, EncoderInfo
from engines.rvc.content.fairseq import parse_conv_layers, read_fairseq_checkpoint
from engines.rvc.weights import HUBERT

if TYPE_CHECKING:  # pragma: no cover
    import torch


# -- loading -------------------------------------------------------------------
def load_content_encoder(
    path: str | Path | None = None, device: str = "cpu", hooks: Hooks | None = None
) -> ContentEncoder:
    """Load a fairseq ``hubert_base.pt``-style checkpoint or a transformers directory.

    ``path=None`` uses the configured location (``VOICELAB_HUBERT`` /
    settings, else assets/hubert/hubert_base.pt). Raises MissingAssetError
    when nothing is there and InvalidModelError when the file is not a
    HuBERT model.
    """
    from engines.core.device import pick_device

    path = HUBERT.require(path, why="HuBERT content features")
    dev = pick_device(device)
    if path.is_dir():
        model, proj, info = _load_transformers_dir(path)
    else:
        model, proj, info = _load_fairseq(path)
    return ContentEncoder(model, proj, info, dev, hooks=hooks)


def _load_fairseq(path: Path) -> tuple[Any, Any, EncoderInfo]:
    ckpt = read_fairseq_checkpoint(path)
    model = _build_and_load(ckpt.config, ckpt.state, path)
    proj = _make_final_proj(*ckpt.final_proj)
    normalize = ckpt.normalize_input
    del ckpt  # the fp16 checkpoint tensors: model and proj hold float32 copies
    info = EncoderInfo(
        path=str(path),
        source_format="fairseq",
        hidden_size=model.config.hidden_size,
        num_layers=model.config.num_hidden_layers,
        v1_dim=None if proj is None else proj.out_features,
        normalize_input=normalize,
    )
    return model, proj, info


def _build_and_load(config: Any, state: dict[str, "torch.Tensor"], path: Path) -> Any:
    """Instantiate HubertModel and load ``state`` strictly (weight-norm naming adapted); empties ``state``.

    The model is built on the meta device and takes the loaded tensors as its
    parameters one by one, so a second full copy of the weights is never
    allocated. float16/bfloat16 weights stay in their stored precision (the
    released hubert_base.pt is float16): ``ContentEncoder`` computes with
    them as float32, which are exactly the values a float32 copy would hold.
    The positional conv's weight norm is fused in float32, as upstream does.
    """
    import torch
    HubertModel, = import_names("transformers", "HubertModel")  # lazy import, not thread-safe

    with torch.device("meta"):
        model = HubertModel(config)
    expected = model.state_dict()
    state = _adapt_weight_norm_names(state, expected)
    if "masked_spec_embed" in expected and "masked_spec_embed" not in state:
        state["masked_spec_embed"] = torch.zeros(expected["masked_spec_embed"].shape)  # unused at inference
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:4]}" if missing else "",
                f"unexpected {unexpected[:4]}" if unexpected else "",
                f"wrong shape {wrong[:4]}" if wrong else "",
            )
            if part
        )
        raise InvalidModelError(
            f"The weights in {path.name} do not fit a HuBERT model of its own config ({detail}).",
            "The file is damaged or not a HuBERT model; download it again.",
        )
    taken: dict[str, torch.Tensor] = {}
    for key in list(state):
        value = state.pop(key)
        keep = value.dtype in (torch.float16, torch.bfloat16) and "pos_conv_embed" not in key
        taken[key] = value if keep else value.to(expected[key].dtype)
        del value
    model.load_state_dict(taken, strict=True, assign=True)
    del taken
    _fuse_weight_norm(model.encoder.pos_conv_embed.conv)
    model.eval()
    model.requires_grad_(False)
    return model


def _fuse_weight_norm(conv: Any) -> None:
    """Bake the positional conv's weight norm into a plain weight (inference needs no g/v split)."""
    import torch
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(conv, "weight"):
        parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    elif hasattr(conv, "weight_g"):
        torch.nn.utils.remove_weight_norm(conv)


def _adapt_weight_norm_names(state: dict[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    """Map between legacy ``weight_g/weight_v`` and parametrizations ``original0/1`` names."""
    prefix = "encoder.pos_conv_embed.conv."
    legacy = {prefix + "weight_g": prefix + "parametrizations.weight.original0",
              prefix + "weight_v": prefix + "parametrizations.weight.original1"}
    for old, new in legacy.items():
        if old in state and old not in expected and new in expected:
            state[new] = state.pop(old)
        elif new in state and new not in expected and old in expected:
            state[old] = state.pop(new)
    plain = prefix + "weight"
    if plain in state and plain not in expected and legacy[prefix + "weight_g"] in expected:
        # An already-fused weight: store it as g = ||w|| over dims 0,1 (dim=2 norm), v = w.
        import torch

        w = state.pop(plain)
        g_key, v_key = legacy[prefix + "weight_g"], legacy[prefix + "weight_v"]
        state[g_key] = torch.linalg.vector_norm(w, dim=(0, 1), keepdim=True)
        state[v_key] = w
    return state


def _make_final_proj(weight: "torch.Tensor | None", bias: "torch.Tensor | None") -> Any:
    import torch

    if weight is None:
        return None
    proj = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        proj.weight.copy_(weight.float())
        if bias is not None:
            proj.bias.copy_(bias.float())
    proj.requires_grad_(False)
    return proj


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_FINAL_PROJ_FILES = ("final_proj.safetensors", "final_proj.pt", "final_proj.bin", "final_proj.pth")


def _load_transformers_dir(path: Path) -> tuple[Any, Any, EncoderInfo]:
    HubertConfig, = import_names("transformers", "HubertConfig")  # lazy import, not thread-safe

    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise InvalidModelError(
            f"{path} is a directory but has no config.json, so it is not a transformers HuBERT model.",
            "Point to hubert_base.pt or to a directory with config.json and model.safetensors.",
        )
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidModelError(f"Cannot read {cfg_file}: {exc}", "Fix or replace config.json.") from None
    if raw.get("model_type", "hubert") not in ("hubert", "contentvec"):
        raise InvalidModelError(
            f"{path.name} holds a '{raw.get('model_type')}' model, not HuBERT.",
            "Use a HuBERT / ContentVec model directory.",
        )
    raw = {k: v for k, v in raw.items() if k not in ("architectures", "model_type", "transformers_version")}
    config = HubertConfig(**{**raw, "layerdrop": 0.0, "apply_spec_augment": False})
    weights = _read_weight_files(path)
    if not weights:
        raise InvalidModelError(
            f"{path} has no model.safetensors or pytorch_model.bin.",
            "Put the HuBERT weights next to config.json.",
        )
    weights = {(k[len("hubert."):] if k.startswith("hubert.") else k): v for k, v in weights.items()}
    proj_w = weights.pop("final_proj.weight", None)
    proj_b = weights.pop("final_proj.bias", None)
    if proj_w is None:
        for name in _FINAL_PROJ_FILES:
            extra = path / name
            if extra.is_file():
                side = _read_tensors(extra)
                proj_w, proj_b = side.get("final_proj.weight", side.get("weight")), side.get(
                    "final_proj.bias", side.get("bias")
                )
                break
    # Heads of task models (CTC, classification...) are not part of the encoder.
    weights = {k: v for k, v in weights.items() if not k.startswith(("lm_head.", "projector.", "classifier.", "label_embs"))}
    model = _build_and_load(config, weights, path)
    proj = _make_final_proj(proj_w, proj_b)
    if proj is not None and proj.in_features != config.hidden_size:
        raise InvalidModelError(
            f"final_proj in {path.name} expects {proj.in_features}-d input but the model is {config.hidden_size}-d.",
            "Use the final_proj that belongs to this model.",
        )
    info = EncoderInfo(
        path=str(path),
        source_format="transformers",
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        v1_dim=None if proj is None else proj.out_features,
        normalize_input=_wants_normalized_input(path),
    )
    return model, proj, info


def _wants_normalized_input(path: Path) -> bool:
    """transformers keeps fairseq's ``task.normalize`` as ``do_normalize`` in preprocessor_config.json."""
    pre = path / "preprocessor_config.json"
    if not pre.is_file():
        return False
    try:
        return bool(json.loads(pre.read_text(encoding="utf-8")).get("do_normalize", False))
    except (OSError, ValueError):
        return False


def _read_weight_files(path: Path) -> dict[str, Any]:
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return _read_tensors(path / name)
    return {}


def _read_tensors(file: Path) -> dict[str, Any]:
    """Tensors from a safetensors file or a (safely unpickled) torch state dict."""
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(file), device="cpu"))
        except Exception as exc:  # safetensors raises its own error types
            raise InvalidModelError(f"Cannot read {file.name}: {exc}", "Download the file again.") from None
    from engines.rvc.safe_pickle import safe_torch_load

    data = safe_torch_load(file)
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        raise InvalidModelError(f"{file.name} does not hold a state dict.", "Use the model's weight file.")
    return dict(data)


__all__ = ["ContentEncoder", "EncoderInfo", "load_content_encoder", "parse_conv_layers"]
