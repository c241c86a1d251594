"""Reading a fairseq HuBERT / ContentVec checkpoint (``hubert_base.pt``) without fairseq.

The checkpoint is unpickled by :mod:`engines.rvc.safe_pickle`, its sizes
are read from its ``cfg`` (or the older flat ``args``), and its weights are
renamed onto transformers' ``HubertModel`` names; ``final_proj`` (v1's
768 -> 256 projection) is returned separately.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from engines.core.errors import InvalidModelError
from engines.core.imports import import_names

if TYPE_CHECKING:  # pragma: no cover
    import torch

# fairseq HuBERT-base defaults, used when a checkpoint's cfg leaves a field out.
_FAIRSEQ_DEFAULTS: dict[str, Any] = {
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "extractor_mode": "default",
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "conv_bias": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "layer_norm_first": False,
    "layer_type": "transformer",
}


@dataclass
class FairseqHubert:
    """What a fairseq checkpoint holds, in transformers terms."""

    config: Any  # transformers.HubertConfig
    state: dict[str, "torch.Tensor"]  # HubertModel weights (the checkpoint's own tensors, renamed)
    final_proj: tuple["torch.Tensor | None", "torch.Tensor | None"]  # weight, bias (None when absent)
    normalize_input: bool  # fairseq task.normalize: whole-utterance layer norm of the waveform


def read_fairseq_checkpoint(path: Path) -> FairseqHubert:
    """Unpickle ``path`` (no code runs) and map it onto HubertModel; InvalidModelError if it is not HuBERT."""
    from engines.rvc.safe_pickle import safe_torch_load, to_plain

    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        raise InvalidModelError(
            f"{path.name} is not a fairseq HuBERT checkpoint (no 'model' weights inside).",
            "Use hubert_base.pt (RVC's content encoder) or a transformers HuBERT directory.",
        )
    state: Mapping[str, torch.Tensor] = ckpt["model"]
    if "feature_extractor.conv_layers.0.0.weight" not in state:
        raise InvalidModelError(
            f"{path.name} does not contain HuBERT weights (no feature_extractor.conv_layers).",
            "Use hubert_base.pt (RVC's content encoder) or a transformers HuBERT directory.",
        )
    cfg = to_plain(ckpt.get("cfg")) or {}
    model_cfg = dict(cfg.get("model") or {}) if isinstance(cfg, Mapping) else {}
    task_cfg = dict(cfg.get("task") or {}) if isinstance(cfg, Mapping) else {}
    if not model_cfg and ckpt.get("args") is not None:  # older fairseq: flat argparse Namespace
        model_cfg = dict(to_plain(ckpt["args"]))
        task_cfg = model_cfg
    config = _hubert_config_from_fairseq({**_FAIRSEQ_DEFAULTS, **{k: v for k, v in model_cfg.items() if v is not None}})
    return FairseqHubert(config, _fairseq_to_transformers_keys(state, config),
                         (state.get("final_proj.weight"), state.get("final_proj.bias")),
                         bool(task_cfg.get("normalize", False)))


def _hubert_config_from_fairseq(cfg: Mapping[str, Any]) -> Any:
    HubertConfig, = import_names("transformers", "HubertConfig")  # lazy import, not thread-safe

    if str(cfg.get("layer_type", "transformer")) != "transformer":
        raise InvalidModelError(
            f"Unsupported HuBERT layer type '{cfg.get('layer_type')}' (only 'transformer' is supported).",
            "Use hubert_base.pt or a ContentVec base checkpoint.",
        )
    if cfg.get("conv_pos_batch_norm"):
        raise InvalidModelError(
            "Unsupported HuBERT variant (batch-normed positional conv).", "Use hubert_base.pt."
        )
    layers = parse_conv_layers(str(cfg["conv_feature_layers"]))
    mode = str(cfg.get("extractor_mode", "default"))
    return HubertConfig(
        hidden_size=int(cfg["encoder_embed_dim"]),
        num_hidden_layers=int(cfg["encoder_layers"]),
        num_attention_heads=int(cfg["encoder_attention_heads"]),
        intermediate_size=int(cfg["encoder_ffn_embed_dim"]),
        hidden_act=str(cfg.get("activation_fn", "gelu")),
        conv_dim=[c for c, _, _ in layers],
        conv_kernel=[k for _, k, _ in layers],
        conv_stride=[s for _, _, s in layers],
        conv_bias=bool(cfg.get("conv_bias", False)),
        feat_extract_norm="layer" if mode == "layer_norm" else "group",
        do_stable_layer_norm=bool(cfg.get("layer_norm_first", False)),
        num_conv_pos_embeddings=int(cfg["conv_pos"]),
        num_conv_pos_embedding_groups=int(cfg["conv_pos_groups"]),
        feat_proj_layer_norm=True,
        layer_norm_eps=1e-5,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        apply_spec_augment=False,
    )


def parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """Parse fairseq's ``conv_feature_layers`` expression without ``eval``.

    Only list/tuple literals of integers combined with ``+`` and ``*`` are
    accepted, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"``.
    """

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            result = left + right if isinstance(node.op, ast.Add) else left * right
            if isinstance(result, list) and len(result) > 64:
                raise ValueError("too many conv layers")
            return result
        raise ValueError(f"unsupported syntax {type(node).__name__}")

    try:
        layers = value(ast.parse(spec, mode="eval").body)
        parsed = [(int(c), int(k), int(s)) for c, k, s in layers]
    except (SyntaxError, ValueError, TypeError) as exc:
        raise InvalidModelError(
            f"Cannot read the conv layer spec '{spec[:120]}' in the HuBERT checkpoint ({exc}).",
            "The checkpoint's cfg is malformed; use a trusted copy of hubert_base.pt.",
        ) from None
    if not parsed:
        raise InvalidModelError("The HuBERT checkpoint lists no conv layers.", "Use a trusted hubert_base.pt.")
    return parsed


def _fairseq_to_transformers_keys(state: Mapping[str, "torch.Tensor"], config: Any) -> dict[str, "torch.Tensor"]:
    """Rename fairseq HuBERT weights to transformers' HubertModel names."""
    import torch

    out: dict[str, torch.Tensor] = {}
    layer_renames = {
        "self_attn.k_proj": "attention.k_proj",
        "self_attn.q_proj": "attention.q_proj",
        "self_attn.v_proj": "attention.v_proj",
        "self_attn.out_proj": "attention.out_proj",
        "self_attn_layer_norm": "layer_norm",
        "fc1": "feed_forward.intermediate_dense",
        "fc2": "feed_forward.output_dense",
        "final_layer_norm": "final_layer_norm",
    }
    for key, tensor in state.items():
        parts = key.split(".")
        new: str | None = None
        if key.startswith("feature_extractor.conv_layers."):
            idx, sub = parts[2], parts[3]
            leaf = parts[-1]
            if sub == "0":
                new = f"feature_extractor.conv_layers.{idx}.conv.{leaf}"
            elif sub == "2":  # GroupNorm (default mode) or Sequential(T, LayerNorm, T) (layer_norm mode)
                new = f"feature_extractor.conv_layers.{idx}.layer_norm.{leaf}"
        elif key.startswith("encoder.pos_conv.0."):
            leaf = parts[-1]
            new = {
                "bias": "encoder.pos_conv_embed.conv.bias",
                "weight_g": "encoder.pos_conv_embed.conv.weight_g",
                "weight_v": "encoder.pos_conv_embed.conv.weight_v",
                "weight": "encoder.pos_conv_embed.conv.weight",
            }.get(leaf)
        elif key.startswith("encoder.layers."):
            idx = parts[2]
            rest = ".".join(parts[3:-1])
            if rest in layer_renames:
                new = f"encoder.layers.{idx}.{layer_renames[rest]}.{parts[-1]}"
        elif key.startswith("encoder.layer_norm."):
            new = key
        elif key.startswith("layer_norm."):
            new = "feature_projection.layer_norm." + parts[-1]
        elif key.startswith("post_extract_proj."):
            new = "feature_projection.projection." + parts[-1]
        elif key == "mask_emb":
            new = "masked_spec_embed"
        if new is not None:
            out[new] = tensor
    # fairseq skips post_extract_proj when conv width == model width; HubertModel always has one.
    if "feature_projection.projection.weight" not in out:
        conv_out = config.conv_dim[-1]
        if conv_out != config.hidden_size:
            raise InvalidModelError(
                "The HuBERT checkpoint has no post_extract_proj although its conv width differs from its model width.",
                "The file is damaged or not a HuBERT model.",
            )
        out["feature_projection.projection.weight"] = torch.eye(config.hidden_size)
        out["feature_projection.projection.bias"] = torch.zeros(config.hidden_size)
    return out


__all__ = ["FairseqHubert", "parse_conv_layers", "read_fairseq_checkpoint"]
