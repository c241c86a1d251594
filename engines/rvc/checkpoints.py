"""RVC model files: reading any generator file, small-model save/extract/merge, info.

Two kinds of files hold an RVC generator:

* small inference models (``weights/<name>.pth``): ``{"weight": fp16 state
  dict without enc_q.*, "config": 18 values, "info": str, "sr": "40k",
  "f0": 0|1, "version": "v1"|"v2", ...extra keys}``;
* training checkpoints ``G_<step>.pth`` (``{"model": state dict,
  "iteration": epoch, "optimizer": ..., "learning_rate": ...}``) and
  pretrained ``f0G40k.pth``-style files (``{"model": state dict}``).

:func:`read_generator` turns either into a :class:`GeneratorFile` with the
version, f0 flag, sample rate and config worked out (from the file's own
fields, a ``config.json`` beside a checkpoint, or the tensor shapes).
Files are read with ``torch.load(weights_only=True)``: nothing in a model
file can run code (one that asks to is refused as an UnsafeFileError).
Models also carry the content encoder they were trained with
(``embedder_model``, see ``engines.rvc.encoders``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from engines.core.errors import InvalidInputError, InvalidModelError, UnsafeFileError
from engines.core.hooks import Hooks
from engines.rvc.encoders import ENCODER_KEY, ENCODER_PATH_KEY, read_experiment_encoder, recorded_encoder
from engines.rvc.models.configs import SMALL_CONFIG_FIELDS, parse_sr, parse_version, small_model_config_from_train
from engines.rvc.shapes import config_fits, config_from_state_dict, detect_f0, detect_version

__all__ = ["GeneratorFile", "config_from_state_dict", "detect_f0", "detect_version", "discriminator_state",
           "extract_small_model", "file_sha256", "generator_from_object", "load_torch_file", "merge_models",
           "model_info", "read_generator", "save_small_model"]

POSTERIOR_PREFIX = "enc_q."
SMALL_MODEL_KEYS = ("weight", "config", "info", "sr", "f0", "version")
_LATEST_ONLY_STEP = 2333333  # upstream's file number when only the latest checkpoint is kept


@dataclass
class GeneratorFile:
    """A generator read from disk, with everything needed to build and describe it."""

    path: Path
    kind: str  # "small" | "checkpoint"
    weights: dict[str, Any]  # state dict as stored (dtype unchanged; enc_q.* kept if present)
    config: list[Any]  # 18 values; sr as int Hz
    version: str
    f0: bool
    sr_tag: str
    sample_rate: int
    info: str = ""
    epoch: int | None = None
    step: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_speakers(self) -> int:
        return int(self.weights["emb_g.weight"].shape[0])

    def encoder_fields(self) -> dict[str, str]:
        """The content-encoder record to carry into models made from this one: its own fields,
        or (a training checkpoint) its experiment's ``encoder.json``; empty = HuBERT base."""
        own = {k: str(self.extra[k]) for k in (ENCODER_KEY, ENCODER_PATH_KEY) if k in self.extra}
        if own or self.kind == "small":
            return own
        return read_experiment_encoder(self.path.parent) or {}

    @property
    def encoder(self) -> tuple[str, str]:
        """(content encoder id, custom path or '') the model was trained with."""
        return recorded_encoder(self.encoder_fields())

    def inference_weights(self) -> dict[str, Any]:
        return {k: v for k, v in self.weights.items() if not k.startswith(POSTERIOR_PREFIX)}


# ------------------------------------------------------------------ reading


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_torch_file(path: str | Path) -> Any:
    """``torch.load`` with weights_only=True; any failure becomes an InvalidModelError.

    A file whose pickle asks for anything but tensors and plain values (code to run, foreign
    classes) raises :class:`UnsafeFileError`, naming what it asked for; nothing of it was executed.
    """
    import pickle

    import torch

    from engines.rvc.safe_pickle import refused_global

    p = Path(path)
    if not p.is_file():
        raise InvalidModelError(f"Model file not found: {p}", "Check the path or pick a .pth from weights/.")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        asked = refused_global(str(exc))
        if not asked:  # not a pickle of ours at all: a damaged or foreign file
            raise InvalidModelError(f"{p.name} cannot be loaded as an RVC model: it is not a readable PyTorch file.",
                                    "Use an RVC voice model (.pth from weights/) or a G_*.pth training checkpoint.") from None
        raise UnsafeFileError(
            f"Refused to load {p.name}: it contains objects a model file should not contain (it asks for '{asked}').",
            "It may be malicious or not an RVC model. Nothing in it was run; use a trusted copy of the model.",
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidModelError(
            f"{p.name} cannot be loaded as an RVC model: it is not a readable PyTorch file ({reason[:160]}).",
            "Use an RVC voice model (.pth from weights/) or a G_*.pth training checkpoint.",
        ) from exc


def _strip_prefix(sd: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in sd.items():
        out[k[7:] if k.startswith("module.") else k] = v
    return out


def _is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _not_rvc(path: Path, why: str) -> InvalidModelError:
    return InvalidModelError(
        f"{path.name} is not an RVC voice model: {why}.",
        "Use an RVC voice model (.pth from weights/) or a G_*.pth training checkpoint.",
    )


def _config_json_beside(path: Path) -> dict[str, Any] | None:
    cfg = path.parent / "config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "data" in data and "model" in data else None


def _normalise_config(config: Any, path: Path) -> list[Any]:
    if not isinstance(config, (list, tuple)) or len(config) != len(SMALL_CONFIG_FIELDS):
        raise _not_rvc(path, f"its 'config' is not the {len(SMALL_CONFIG_FIELDS)}-value RVC list")
    cfg = list(config)
    if isinstance(cfg[-1], str):
        cfg[-1] = parse_sr(cfg[-1])[1]
    return cfg


def _epoch_from_info(info: str) -> int | None:
    m = re.search(r"(\d+)\s*epoch", info or "")
    return int(m.group(1)) if m else None


def read_generator(path: str | Path, *, sr: str | int | None = None) -> GeneratorFile:
    """Read a small model or a G checkpoint; raises InvalidModelError for anything else."""
    return generator_from_object(Path(path), load_torch_file(path), sr=sr)


def generator_from_object(p: Path, obj: Any, *, sr: str | int | None = None) -> GeneratorFile:
    """:func:`read_generator` for a file already loaded with :func:`load_torch_file` (read once, used twice)."""
    if not isinstance(obj, Mapping):
        raise _not_rvc(p, f"it holds a {type(obj).__name__}, not a dict")
    if "weight" in obj and _is_tensor_dict(obj.get("weight")):
        return _read_small(p, obj)
    sd = obj.get("model") if "model" in obj else obj
    if _is_tensor_dict(sd):
        sd = _strip_prefix(sd)
        if any(k.startswith("discriminators.") for k in sd):
            raise _not_rvc(p, "it is a discriminator checkpoint (D_*.pth)")
        if "enc_p.emb_phone.weight" in sd and "dec.conv_pre.weight" in sd:
            return _read_checkpoint(p, obj, sd, sr)
    keys = ", ".join(list(map(str, obj.keys()))[:6])
    raise _not_rvc(p, f"no RVC generator weights inside (top-level keys: {keys or 'none'})")


def discriminator_state(obj: Any) -> dict[str, Any] | None:
    """The state dict of a discriminator file (``{"model": sd, ...}`` or a bare state dict), else None."""
    sd = obj.get("model") if isinstance(obj, Mapping) and "model" in obj else obj
    if not _is_tensor_dict(sd):
        return None
    sd = _strip_prefix(sd)
    return sd if any(k.startswith("discriminators.") for k in sd) else None


_OUR_VOCODERS = ("", "hifi-gan", "hifigan", "nsf-hifigan", "hifi-gan nsf")  # Applio's "vocoder" key; absent = RVC's


def _read_small(p: Path, obj: Mapping[str, Any]) -> GeneratorFile:
    vocoder = str(obj.get("vocoder") or "").strip()
    if vocoder.lower() not in _OUR_VOCODERS:
        raise _not_rvc(p, f"it uses the {vocoder} vocoder (Applio), which VoiceLab does not run; only RVC's HiFi-GAN")
    sd = _strip_prefix(obj["weight"])
    if "enc_p.emb_phone.weight" not in sd or "dec.conv_pre.weight" not in sd:
        raise _not_rvc(p, "its 'weight' is not an RVC generator state dict")
    config = _normalise_config(obj.get("config"), p)
    try:
        version = detect_version(sd)
    except ValueError as exc:
        raise _not_rvc(p, str(exc)) from exc
    f0 = detect_f0(sd)
    config[-3] = int(sd["emb_g.weight"].shape[0])  # speakers as stored (upstream does the same)
    sr_field = obj.get("sr")
    try:
        tag, hz = parse_sr(sr_field if sr_field is not None else config[-1])
    except ValueError:
        tag, hz = "", int(config[-1])
    info = str(obj.get("info", ""))
    extra = {k: v for k, v in obj.items() if k not in SMALL_MODEL_KEYS}
    epoch = extra.get("epoch") if isinstance(extra.get("epoch"), int) else _epoch_from_info(info)
    step = extra.get("step") if isinstance(extra.get("step"), int) else None
    return GeneratorFile(p, "small", dict(sd), config, version, f0, tag, int(config[-1]) or hz, info, epoch, step, extra)


def _read_checkpoint(p: Path, obj: Mapping[str, Any], sd: dict[str, Any], sr: str | int | None) -> GeneratorFile:
    try:
        version = detect_version(sd)
    except ValueError as exc:
        raise _not_rvc(p, str(exc)) from exc
    f0 = detect_f0(sd)
    config: list[Any] | None = None
    train_cfg = _config_json_beside(p)
    if train_cfg is not None and sr is None:
        try:
            candidate = small_model_config_from_train(train_cfg)
            candidate[-3] = int(sd["emb_g.weight"].shape[0])
            if config_fits(candidate, sd):
                config = candidate
        except (KeyError, TypeError, ValueError):
            config = None
    if config is None:
        try:
            config, _ = config_from_state_dict(sd, version, sr)
        except (KeyError, IndexError) as exc:
            raise _not_rvc(p, f"the generator is missing {exc}") from exc
        except ValueError as exc:
            raise InvalidModelError(f"{p.name}: {exc}.", "Pass the sample rate explicitly.") from exc
    tag, hz = parse_sr(config[-1])
    epoch = obj.get("iteration") if isinstance(obj.get("iteration"), int) else None
    m = re.fullmatch(r"G_(\d+)\.pth", p.name)
    step = int(m.group(1)) if m and int(m.group(1)) != _LATEST_ONLY_STEP else None
    info = f"{epoch}epoch" if epoch is not None else ""
    extra = {k: v for k, v in obj.items() if k in ("learning_rate",)}
    return GeneratorFile(p, "checkpoint", sd, config, version, f0, tag, hz, info, epoch, step, extra)


# ------------------------------------------------------------------ writing


def save_small_model(
    state_dict: Mapping[str, Any],
    *,
    sr_tag: str | int,
    f0: bool | int,
    version: str,
    info: str,
    config: list[Any],
    path: str | Path,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an upstream-compatible small inference model (fp16, no enc_q.*), atomically."""
    import torch

    from engines.core.atomic import torch_save

    tag, hz = parse_sr(sr_tag)
    v = parse_version(version)
    if len(config) != len(SMALL_CONFIG_FIELDS):
        raise ValueError(f"config must have {len(SMALL_CONFIG_FIELDS)} values, got {len(config)}")
    cfg = list(config)
    if isinstance(cfg[-1], str):
        cfg[-1] = parse_sr(cfg[-1])[1]
    weights = {}
    for k, t in _strip_prefix(state_dict).items():
        if k.startswith(POSTERIOR_PREFIX):
            continue
        weights[k] = t.detach().to(device="cpu", dtype=torch.float16).clone()
    ckpt: dict[str, Any] = {"weight": weights, "config": cfg, "info": str(info), "sr": tag, "f0": int(bool(f0)), "version": v}
    for k, val in (extra or {}).items():
        if k in SMALL_MODEL_KEYS:
            raise ValueError(f"extra key {k!r} would overwrite a required small-model field")
        ckpt[k] = val
    return torch_save(ckpt, Path(path))


def extract_small_model(
    g_path: str | Path,
    out_path: str | Path,
    *,
    sr: str | int | None = None,
    f0: bool | None = None,
    version: str | None = None,
    info: str = "",
    encoder: Mapping[str, str] | None = None,
    hooks: Hooks | None = None,
) -> Path:
    """Small inference model from a G_*.pth (or any generator file); settings are inferred when omitted.

    ``sr``/``f0``/``version`` are checks (and ``sr`` a hint when the weights
    cannot tell 32k from 48k); a mismatch with the file raises InvalidInputError.
    The content encoder is recorded from ``encoder`` (an :func:`engines.rvc.encoders.encoder_record`),
    else from the file itself or its experiment's ``encoder.json``.
    """
    gen = read_generator(g_path, sr=sr)
    if version is not None and parse_version(version) != gen.version:
        raise InvalidInputError(
            f"{Path(g_path).name} is an RVC {gen.version} generator, not {parse_version(version)}.",
            "Leave the version empty to use the one in the file.",
        )
    if f0 is not None and bool(f0) != gen.f0:
        raise InvalidInputError(
            f"{Path(g_path).name} is a model {'with' if gen.f0 else 'without'} pitch guidance (f0).",
            "Leave the f0 setting empty to use the one in the file.",
        )
    extra: dict[str, Any] = dict(encoder if encoder is not None else gen.encoder_fields())
    if gen.epoch is not None:
        extra["epoch"] = gen.epoch
    if gen.step is not None:
        extra["step"] = gen.step
    out = save_small_model(
        gen.weights,
        sr_tag=gen.sr_tag,
        f0=gen.f0,
        version=gen.version,
        info=info or gen.info or "extracted",
        config=gen.config,
        path=out_path,
        extra=extra,
    )
    if hooks is not None:
        hooks.log(f"extracted {gen.version} {gen.sr_tag} {'f0' if gen.f0 else 'no-f0'} model -> {out}")
    return out


def merge_models(
    a_path: str | Path,
    b_path: str | Path,
    alpha: float,
    out_path: str | Path,
    info: str = "",
    hooks: Hooks | None = None,
) -> Path:
    """Weighted average ``alpha * A + (1 - alpha) * B`` of two voices of the same architecture."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise InvalidInputError(f"alpha must be between 0 and 1, got {alpha}.", "alpha is model A's share.")
    a, b = read_generator(a_path), read_generator(b_path)
    problems = []
    if a.version != b.version:
        problems.append(f"versions differ ({a.version} vs {b.version})")
    if a.f0 != b.f0:
        problems.append("one uses f0 and the other does not")
    if a.sample_rate != b.sample_rate:
        problems.append(f"sample rates differ ({a.sample_rate} vs {b.sample_rate})")
    if a.encoder != b.encoder:
        problems.append(f"they were trained with different content encoders ({a.encoder[0]} vs {b.encoder[0]})")
    wa, wb = a.inference_weights(), b.inference_weights()
    if not problems and set(wa) != set(wb):
        problems.append("their layers differ")
    if not problems:
        bad = [k for k in wa if tuple(wa[k].shape) != tuple(wb[k].shape)]
        if bad:
            problems.append(f"layer sizes differ (e.g. {bad[0]}: {tuple(wa[bad[0]].shape)} vs {tuple(wb[bad[0]].shape)})")
    if problems:
        raise InvalidInputError(
            f"Cannot merge {Path(a_path).name} and {Path(b_path).name}: " + "; ".join(problems) + ".",
            "Only models of the same version, sample rate, f0 setting, content encoder and size can be merged.",
        )
    merged = {k: alpha * wa[k].float() + (1.0 - alpha) * wb[k].float() for k in wa}
    text = info or f"merge {alpha:g}*{Path(a_path).stem} + {1 - alpha:g}*{Path(b_path).stem}"
    out = save_small_model(
        merged, sr_tag=a.sr_tag or a.sample_rate, f0=a.f0, version=a.version, info=text, config=a.config,
        path=out_path, extra=a.encoder_fields(),
    )
    if hooks is not None:
        hooks.log(f"merged {Path(a_path).name} ({alpha:g}) and {Path(b_path).name} ({1 - alpha:g}) -> {out}")
    return out


def model_info(path: str | Path) -> dict[str, Any]:
    """What a model file is: kind, version, sample rate, f0, epoch/step, content encoder, size, sha256, speakers."""
    gen = read_generator(path)
    weights = gen.inference_weights()
    encoder, encoder_path = gen.encoder
    return {
        "path": str(gen.path),
        "kind": gen.kind,
        "version": gen.version,
        "sr": gen.sr_tag,
        "sample_rate": gen.sample_rate,
        "f0": gen.f0,
        "info": gen.info,
        "epoch": gen.epoch,
        "step": gen.step,
        "params": int(sum(int(t.numel()) for t in weights.values())),
        "dtype": str(next(iter(weights.values())).dtype).replace("torch.", ""),
        "speakers": gen.n_speakers,
        "encoder": encoder,
        "encoder_path": encoder_path,
        "config": gen.config,
        "sha256": file_sha256(gen.path),
        "size_bytes": gen.path.stat().st_size,
        "extra": {k: v for k, v in gen.extra.items() if isinstance(v, (str, int, float, bool))},
    }
