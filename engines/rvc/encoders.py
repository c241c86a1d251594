"""Content encoders RVC voices are trained with, and which one a model (or an experiment) was made with.

A model's features must come from the encoder it was trained with: a voice
trained on Chinese HuBERT features and converted with HuBERT base sounds
wrong. Small models record it under ``embedder_model`` (Applio's key, so
models move between the two studios); a model without the key is HuBERT
base, which is what RVC WebUI always used. A custom encoder (a folder or
file outside the catalog) is recorded as ``embedder_model = "custom"`` with
its path in ``embedder_path``. An experiment keeps the same record in
``<exp>/encoder.json``.

Every catalogued encoder is an asset of ``assets/manifest.toml`` (where it
lives, where to download it), so a missing one fails with the usual
"which file, where, which command" error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from engines.core.errors import InvalidModelError
from engines.core.settings import Settings

ENCODER_KEY = "embedder_model"  # Applio writes the same key
ENCODER_PATH_KEY = "embedder_path"  # ours; only for a custom encoder
DEFAULT_ENCODER = "hubert_base"
CUSTOM = "custom"
EXPERIMENT_FILE = "encoder.json"


@dataclass(frozen=True)
class Encoder:
    id: str
    title: str
    assets: tuple[str, ...]  # manifest names holding it, preferred first
    aliases: tuple[str, ...] = ()  # other spellings (Applio's names)


ENCODERS: dict[str, Encoder] = {e.id: e for e in (
    # RVC's hubert_base.pt, or the same weights in transformers format (Applio calls them "contentvec").
    Encoder("hubert_base", "HuBERT base (RVC's hubert_base.pt / ContentVec)", ("hubert_base", "contentvec"),
            ("contentvec", "hubert", "hubert_base.pt", "hubert-base", "")),
    Encoder("chinese_hubert_base", "Chinese HuBERT base", ("chinese_hubert_base",), ("chinese-hubert-base",)),
    Encoder("japanese_hubert_base", "Japanese HuBERT base", ("japanese_hubert_base",), ("japanese-hubert-base",)),
    Encoder("korean_hubert_base", "Korean HuBERT base", ("korean_hubert_base",), ("korean-hubert-base",)),
    Encoder("spin", "SPIN (speaker-invariant HuBERT)", ("spin",)),
    Encoder("spin_v2", "SPIN v2", ("spin_v2",), ("spin-v2",)),
)}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


_BY_NAME = {_key(alias): e.id for e in ENCODERS.values() for alias in (e.id, *e.aliases)}


def canonical_encoder(name: str | None) -> str | None:
    """The catalogue id for ``name`` or one of its aliases (None and '' mean HuBERT base); None when unknown."""
    return _BY_NAME.get(_key(name or ""))


def encoder_locations(settings: Settings, encoder_id: str) -> list[Path]:
    """Where the encoder's files live (or would live) on this machine, preferred first."""
    from engines.assets.manifest import asset_path

    return [asset_path(settings, name) for name in ENCODERS[encoder_id].assets]


def _usable(settings: Settings, asset: str) -> Path | None:
    from engines.assets.manifest import asset_path, load_manifest, missing_parts

    manifest = load_manifest()
    path = asset_path(settings, asset, manifest)
    return path if path.exists() and not missing_parts(manifest.resolve(asset), path) else None


def _same_place(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:
        return False


def encoder_record(path: str | Path | None, settings: Settings) -> dict[str, str]:
    """The fields a model or an experiment records for the encoder at ``path`` (None/'' = the configured one).

    A path that is one of the catalogue's locations records that encoder's id; anything else is custom.
    """
    if not path or _same_place(Path(path), settings.resolved_hubert()):
        return {ENCODER_KEY: DEFAULT_ENCODER}
    for encoder_id in ENCODERS:
        if any(_same_place(Path(path), loc) for loc in encoder_locations(settings, encoder_id)):
            return {ENCODER_KEY: encoder_id}
    return {ENCODER_KEY: CUSTOM, ENCODER_PATH_KEY: str(Path(path).expanduser().resolve())}


def recorded_encoder(fields: Mapping[str, Any]) -> tuple[str, str]:
    """(encoder id or the name as written, custom path or '') from a model's fields; none recorded = HuBERT base."""
    raw = fields.get(ENCODER_KEY)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_ENCODER, ""
    name = str(raw).strip()
    if _key(name) == CUSTOM:
        return CUSTOM, str(fields.get(ENCODER_PATH_KEY) or "")
    return canonical_encoder(name) or name, ""


def encoder_for_model(model_info: Mapping[str, Any], settings: Settings) -> Path:
    """The content encoder to convert (or keep training) a model with: the one it was trained with.

    ``model_info`` is :func:`engines.rvc.checkpoints.model_info`'s dict (keys ``encoder``/``encoder_path``)
    or a model's raw fields (``embedder_model``/``embedder_path``). Raises MissingAssetError (which file,
    where, the download command) when a catalogued encoder is not here, InvalidModelError for a custom or
    unknown one that cannot be found.
    """
    from engines.assets.manifest import require_asset

    if "encoder" in model_info:
        name, custom_path = str(model_info["encoder"]), str(model_info.get("encoder_path") or "")
    else:
        name, custom_path = recorded_encoder(model_info.get("extra", model_info))
    model = Path(str(model_info.get("path", "the model"))).name
    if name == CUSTOM:
        if custom_path and Path(custom_path).exists():
            return Path(custom_path)
        raise InvalidModelError(
            f"{model} was trained with a custom content encoder"
            + (f" at {custom_path}, which is not on this machine." if custom_path else " whose location it does not record."),
            "Put that encoder there, or choose the content encoder for this conversion explicitly.")
    encoder_id = canonical_encoder(name)
    if encoder_id is None:
        raise InvalidModelError(f"{model} was trained with the content encoder '{name}', which VoiceLab does not know.",
                                "Choose the content encoder for this conversion explicitly (the one it was trained with).")
    if encoder_id == DEFAULT_ENCODER and settings.resolved_hubert().exists():
        return settings.resolved_hubert()
    enc = ENCODERS[encoder_id]
    for asset in enc.assets:
        found = _usable(settings, asset)
        if found is not None:
            return found
    return require_asset(settings, enc.assets[0], why=f"{model}: it was trained with {enc.title}")


def write_experiment_encoder(exp_dir: str | Path, record: Mapping[str, str]) -> Path:
    """Record in an experiment which encoder its features come from (``<exp>/encoder.json``)."""
    from engines.core.atomic import write_json

    return write_json(Path(exp_dir) / EXPERIMENT_FILE, dict(record))


def read_experiment_encoder(exp_dir: str | Path) -> dict[str, str] | None:
    """The record :func:`write_experiment_encoder` wrote, or None (an experiment made before it existed)."""
    try:
        data = json.loads((Path(exp_dir) / EXPERIMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or ENCODER_KEY not in data:
        return None
    return {k: str(v) for k, v in data.items() if k in (ENCODER_KEY, ENCODER_PATH_KEY)}
