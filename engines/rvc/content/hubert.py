"""HuBERT / ContentVec content features for RVC, on ``transformers.HubertModel``.

RVC feeds its synthesizer with HuBERT-base features at 50 frames/s from
16 kHz audio: v1 models use layer 9 passed through ``final_proj`` (256-d),
v2 models the output of layer 12 (768-d), both computed without a padding
mask, exactly as fairseq's ``extract_features(output_layer=N)``.

Accepted model files (``load_content_encoder``):

* the legacy fairseq checkpoint (``hubert_base.pt`` as shipped for RVC, or any
  HuBERT/ContentVec checkpoint in the same layout): unpickled without fairseq
  by :mod:`engines.rvc.safe_pickle`, sizes read from its ``cfg`` (or old
  ``args``), weights renamed onto ``HubertModel`` plus a ``final_proj`` linear;
* a transformers-format directory: ``config.json`` plus ``model.safetensors``
  or ``pytorch_model.bin`` (keys with or without the ``hubert.`` prefix). The
  v1 projection is taken from ``final_proj.weight``/``final_proj.bias`` stored
  in those weights (the layout of the common "contentvec" conversions), or
  from a separate ``final_proj.safetensors`` / ``final_proj.pt`` beside them.
  Without it only v2 features are available.

Memory stays bounded on long inputs: the conv front end runs in 5 s pieces
using whole-input statistics for its first GroupNorm (exact), and the
transformer runs over windows of at most 40 s whose 2.5 s context margins are
dropped (attention is the only thing that sees a cut; see
``ContentEncoder.extract``). Inference runs under ``torch.inference_mode``;
on CUDA with fp16 autocast.
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from engines.core.errors import InvalidInputError, InvalidModelError, MissingAssetError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.imports import import_names

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
V1_LAYER = 9
V2_LAYER = 12
HUBERT_ASSET = "hubert_base.pt"
HUBERT_DOWNLOAD = "voicelab assets download hubert_base"

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
class EncoderInfo:
    """What was loaded: where from, its format and dimensions."""

    path: str
    source_format: str  # "fairseq" | "transformers"
    hidden_size: int
    num_layers: int
    v1_dim: int | None  # None when there is no final_proj
    normalize_input: bool


class ContentEncoder:
    """A loaded HuBERT-style encoder that turns 16 kHz audio into RVC content features."""

    #: conv front-end piece length in output frames (5 s): bounds its activations (~33 MB per tensor)
    conv_piece_frames = 250

    def __init__(
        self,
        model: "Any",
        final_proj: "Any | None",
        info: EncoderInfo,
        device: "Any",
        hooks: Hooks | None = None,
    ) -> None:
        import torch

        from engines.core.device import amp_dtype

        self.model = model.eval().to(device)
        self.final_proj = final_proj.eval().to(device) if final_proj is not None else None
        self.info = info
        self.device = torch.device(device)
        # fp16 autocast on CUDA only; CPU stays fp32 so features match fairseq's.
        self.amp = amp_dtype(self.device, "fp16") if self.device.type == "cuda" else None
        self._hooks = ensure_hooks(hooks)
        self._warned_taps: set[int] = set()
        # Samples per output frame and samples consumed by the first frame.
        self.stride, self.receptive_field = _conv_framing(model.config)

    # -- properties ------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def dim(self, version: str = "v2") -> int:
        """Feature width for ``version`` (v1: final_proj output, v2: hidden size)."""
        if _normalise_version(version) == "v1":
            if self.final_proj is None:
                raise InvalidModelError(
                    f"The content encoder {Path(self.info.path).name} has no final_proj, so it cannot make v1 features.",
                    "Use hubert_base.pt, or add final_proj.weight/bias to the model directory.",
                )
            return int(self.final_proj.out_features)
        return int(self.model.config.hidden_size)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` of 16 kHz audio (fairseq's conv framing)."""
        if num_samples < self.receptive_field:
            return 0
        return (num_samples - self.receptive_field) // self.stride + 1

    # -- extraction ------------------------------------------------------
    def extract(
        self,
        audio_16k: "np.ndarray | torch.Tensor",
        version: str = "v2",
        *,
        window_seconds: float = 40.0,
        context_seconds: float = 2.5,
        hooks: Hooks | None = None,
    ) -> "torch.Tensor":
        """Content features ``[frames, dim]`` (float32, on the encoder's device).

        The conv front end always runs in pieces with whole-input GroupNorm
        statistics, which is exact. The transformer attends over the whole
        input up to ``window_seconds``; longer audio is cut into windows whose
        ``context_seconds`` margins on each side are computed and dropped, so
        only attention sees a cut (measured ~1% relative difference on random
        weights) and memory stays bounded. ``hooks`` (default: the ones given
        at load) receive the log line about a missing tap layer and can cancel
        between windows.
        """
        import torch
        import torch.nn.functional as F

        hooks = hooks if hooks is not None else self._hooks
        version = _normalise_version(version)
        tap = self._tap_layer(version, hooks)
        self.dim(version)  # validates v1 availability early
        wav = _as_mono_tensor(audio_16k)
        total = self.num_frames(wav.numel())
        if total == 0:
            raise InvalidInputError(
                f"Audio too short for content features: {wav.numel()} samples at 16 kHz "
                f"(at least {self.receptive_field} needed).",
                "Use a clip of at least 25 ms.",
            )
        window = max(1, int(window_seconds * SAMPLE_RATE) // self.stride)
        context = max(0, int(context_seconds * SAMPLE_RATE) // self.stride)
        with torch.inference_mode():
            wav = wav.to(self.device)
            if self.info.normalize_input:  # fairseq task.normalize: whole-utterance layer norm
                wav = F.layer_norm(wav, wav.shape)
            stats = self._first_norm_stats(wav)
            if total <= window:
                return self._encode(wav, tap, version, stats)[:total]
            pieces: list[torch.Tensor] = []
            for lo, first, last, hi in iter_windows(total, window, context):
                start = lo * self.stride
                stop = (hi - 1) * self.stride + self.receptive_field
                feats = self._encode(wav[start:stop], tap, version, stats)
                pieces.append(feats[first - lo : last - lo])
                hooks.check_cancel()
            return torch.cat(pieces, dim=0)

    def _tap_layer(self, version: str, hooks: Hooks) -> int:
        wanted = V1_LAYER if version == "v1" else V2_LAYER
        if wanted <= self.num_layers:
            return wanted
        if wanted not in self._warned_taps:
            self._warned_taps.add(wanted)
            msg = (
                f"Content encoder has {self.num_layers} layers; using its last layer instead of layer "
                f"{wanted} for {version} features."
            )
            log.warning(msg)
            hooks.log(msg)
        return self.num_layers

    def _first_norm_stats(self, wav: "torch.Tensor") -> "tuple[torch.Tensor, torch.Tensor] | None":
        """Per-channel mean/variance of the first conv layer over the whole input, streamed.

        That GroupNorm normalises each channel over time; computing its
        statistics once lets the front end (and windows) run piecewise with
        exactly one-shot results. None when the extractor is per-frame
        layer-normed (no global statistics).
        """
        import torch

        if self.model.config.feat_extract_norm != "group":
            return None
        conv = self.model.feature_extractor.conv_layers[0].conv
        kernel, step = conv.kernel_size[0], conv.stride[0]
        frames = (wav.numel() - kernel) // step + 1
        per_piece = max(1, self.conv_piece_frames * self.stride // step)
        count = 0
        mean = torch.zeros(conv.out_channels, dtype=torch.float64, device=wav.device)
        m2 = torch.zeros_like(mean)  # sum of squared deviations
        with autocast_off(self.device):
            for f0 in range(0, frames, per_piece):
                f1 = min(frames, f0 + per_piece)
                out = conv(wav[f0 * step : (f1 - 1) * step + kernel].float()[None, None])[0]
                var_p, mean_p = torch.var_mean(out, dim=1, correction=0)
                n_p = f1 - f0
                # Chan et al.'s pairwise update merges this piece's statistics exactly.
                delta = mean_p.double() - mean
                total = count + n_p
                mean += delta * (n_p / total)
                m2 += var_p.double() * n_p + delta * delta * (count * n_p / total)
                count = total
        var = m2 / count
        return mean.float()[:, None], var.float()[:, None]

    def _encode(
        self, wav: "torch.Tensor", tap: int, version: str, stats: "tuple[torch.Tensor, torch.Tensor] | None"
    ) -> "torch.Tensor":
        """Run the network up to layer ``tap`` on one window; returns [frames, dim] float32."""
        from engines.core.device import autocast

        with autocast(self.device, self.amp):
            hidden = self._layer_output(self._conv_features(wav, stats), tap)
            if version == "v1":
                hidden = self.final_proj(hidden)
        return hidden[0].float()

    def _conv_features(self, wav: "torch.Tensor", stats: "tuple[torch.Tensor, torch.Tensor] | None") -> "torch.Tensor":
        """Conv front end ``[1, frames, channels]``, computed in pieces of ``conv_piece_frames``.

        Without GroupNorm statistics every output frame depends only on its
        own 400-sample span, so pieces aligned on the 320-sample stride give
        the same frames as one pass.
        """
        import torch

        frames = self.num_frames(wav.numel())
        outs = []
        for a in range(0, frames, self.conv_piece_frames):
            b = min(frames, a + self.conv_piece_frames)
            seg = wav[a * self.stride : (b - 1) * self.stride + self.receptive_field].float()[None]
            outs.append(self._conv_piece(seg, stats))
        return torch.cat(outs, dim=-1).transpose(1, 2)

    def _conv_piece(self, x: "torch.Tensor", stats: "tuple[torch.Tensor, torch.Tensor] | None") -> "torch.Tensor":
        import torch

        if stats is None:
            return self.model.feature_extractor(x)
        layers = self.model.feature_extractor.conv_layers
        first = layers[0]
        mean, var = stats
        norm = first.layer_norm
        scale = torch.rsqrt(var + norm.eps) * norm.weight[:, None]
        h = first.conv(x[:, None])
        h = first.activation(h.sub_(mean).mul_(scale).add_(norm.bias[:, None]))  # in place: no temporaries
        for layer in layers[1:]:
            h = layer(h)
        return h

    def _layer_output(self, feats: "torch.Tensor", tap: int) -> "torch.Tensor":
        """fairseq ``extract_features(output_layer=tap)`` from conv features: no padding mask, no final norm."""
        model = self.model
        hidden = model.feature_projection(feats)
        if isinstance(hidden, tuple):  # transformers < 5 also returns the normed features
            hidden = hidden[0]
        encoder = model.encoder
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not model.config.do_stable_layer_norm:
            hidden = encoder.layer_norm(hidden)
        for layer in encoder.layers[:tap]:
            out = layer(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden


def autocast_off(device: "Any") -> Any:
    """A context that disables autocast (statistics are accumulated in full precision)."""
    import contextlib

    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", enabled=False)


# -- loading -------------------------------------------------------------------
def load_content_encoder(
    path: str | Path | None = None, device: str = "cpu", hooks: Hooks | None = None
) -> ContentEncoder:
    """Load a fairseq ``hubert_base.pt``-style checkpoint or a transformers directory.

    ``path=None`` uses the configured location (assets/hubert/hubert_base.pt).
    Raises MissingAssetError when nothing is there and InvalidModelError when
    the file is not a HuBERT model.
    """
    from engines.core.device import pick_device

    if path is None:
        from engines.core.settings import load_settings

        path = load_settings().resolved_hubert()
    path = Path(path)
    if not path.exists():
        raise MissingAssetError(HUBERT_ASSET, str(path), HUBERT_DOWNLOAD, why="HuBERT content features")
    dev = pick_device(device)
    if path.is_dir():
        model, proj, info = _load_transformers_dir(path)
    else:
        model, proj, info = _load_fairseq_checkpoint(path)
    return ContentEncoder(model, proj, info, dev, hooks=hooks)


def _load_fairseq_checkpoint(path: Path) -> tuple[Any, Any, EncoderInfo]:

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
    hf_state = _fairseq_to_transformers_keys(state, config)
    model = _build_and_load(config, hf_state, path)
    proj = _make_final_proj(state.get("final_proj.weight"), state.get("final_proj.bias"))
    info = EncoderInfo(
        path=str(path),
        source_format="fairseq",
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        v1_dim=None if proj is None else proj.out_features,
        normalize_input=bool(task_cfg.get("normalize", False)),
    )
    return model, proj, info


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


def _build_and_load(config: Any, state: Mapping[str, "torch.Tensor"], path: Path) -> Any:
    """Instantiate HubertModel and load ``state`` strictly (weight-norm naming adapted).

    The model is built on the meta device and takes the loaded tensors as its
    parameters, so a second full copy of the weights is never allocated.
    """
    import torch
    HubertModel, = import_names("transformers", "HubertModel")  # lazy import, not thread-safe

    with torch.device("meta"):
        model = HubertModel(config)
    expected = model.state_dict()
    state = _adapt_weight_norm_names(dict(state), expected)
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
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True, assign=True)
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


# -- helpers -------------------------------------------------------------------
def _normalise_version(version: str) -> str:
    v = str(version).strip().lower()
    if v not in ("v1", "v2"):
        raise InvalidInputError(f"Unknown RVC version '{version}'.", "Use 'v1' or 'v2'.")
    return v


def _conv_framing(config: Any) -> tuple[int, int]:
    """(stride, receptive field) in samples of the conv feature extractor."""
    stride, field = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def _as_mono_tensor(audio: "np.ndarray | torch.Tensor") -> "torch.Tensor":
    import torch

    if isinstance(audio, np.ndarray):
        wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    elif isinstance(audio, torch.Tensor):
        wav = audio.detach().float()
    else:
        wav = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    if wav.dim() == 2 and 1 in wav.shape:
        wav = wav.reshape(-1)
    if wav.dim() != 1:
        raise InvalidInputError(
            f"Content features need mono audio; got an array of shape {tuple(wav.shape)}.",
            "Mix down to mono and resample to 16 kHz first.",
        )
    if not bool(torch.isfinite(wav).all()):
        raise InvalidInputError("The audio contains NaN or infinite samples.", "Check the decoded input.")
    return wav


def iter_windows(total: int, window: int, context: int) -> Iterable[tuple[int, int, int, int]]:
    """(lo, first, last, hi) frame ranges: core [first, last) computed inside [lo, hi)."""
    core = max(1, window - 2 * context)
    for first in range(0, total, core):
        last = min(total, first + core)
        yield max(0, first - context), first, last, min(total, last + context)


__all__ = ["ContentEncoder", "EncoderInfo", "load_content_encoder", "parse_conv_layers", "SAMPLE_RATE"]
