"""A training run made elsewhere (RVC WebUI or Applio ``logs/<exp>``) becomes a studio experiment that trains on.

RVC WebUI's run folder has our layout already (``0_gt_wavs``, ``1_16k_wavs``,
``2a_f0``, ``2b-f0nsf``, ``3_feature256|768``); Applio names the same things
``sliced_audios``, ``sliced_audios_16k``, ``f0`` (coarse), ``f0_voiced``
(Hz) and ``extracted`` (older: ``v1_extracted``/``v2_extracted``), and keeps
the embedder it used in ``model_info.json``. Both keep ``config.json``,
``G_<n>.pth``/``D_<n>.pth`` and the ``added_*.index``.

The newest G/D pair (or every pair) is read with the safe loader and
checked against each other and against the features before anything is
copied; Applio's parametrised weight-norm keys and DDP ``module.`` prefixes
are rewritten to the keys our networks load. Everything is copied into a
temporary folder that is renamed into ``experiments/<name>`` when complete,
then ``filelist.txt`` is written for the new paths, so ``voicelab rvc train
--skip-preprocess --skip-f0 --skip-feature`` resumes from the imported pair.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.core.errors import InvalidInputError, InvalidModelError
from engines.core.hooks import Hooks
from engines.core.settings import Workspace, safe_name

LAYOUTS: dict[str, dict[str, str]] = {  # role -> folder name
    "rvc": {"gt": "0_gt_wavs", "wav16k": "1_16k_wavs", "coarse": "2a_f0", "hz": "2b-f0nsf"},
    "applio": {"gt": "sliced_audios", "wav16k": "sliced_audios_16k", "coarse": "f0", "hz": "f0_voiced"},
}
FEATURE_DIRS = ("3_feature768", "3_feature256", "extracted", "v2_extracted", "v1_extracted")
RECORD = "imported.json"
_PAIR = re.compile(r"^([GD])_(\d+)\.pth$")
_PARAMETRISED = ((".parametrizations.weight.original0", ".weight_g"), (".parametrizations.weight.original1", ".weight_v"))


def experiment_layout(folder: Path) -> str:
    return "applio" if (folder / "sliced_audios").is_dir() or (folder / "model_info.json").is_file() else "rvc"


def checkpoint_pairs(folder: Path) -> list[tuple[int, Path, Path]]:
    """(number, G, D) for every number that has both files, ascending."""
    found: dict[str, dict[int, Path]] = {"G": {}, "D": {}}
    for p in folder.iterdir() if folder.is_dir() else ():
        m = _PAIR.match(p.name)
        if m and p.is_file():
            found[m.group(1)][int(m.group(2))] = p
    return [(n, found["G"][n], found["D"][n]) for n in sorted(set(found["G"]) & set(found["D"]))]


def feature_dir(folder: Path) -> tuple[Path, int] | None:
    """The run's content-feature folder and the feature dimension its files hold."""
    for name in FEATURE_DIRS:
        d = folder / name
        first = next(iter(sorted(d.glob("*.npy"))), None) if d.is_dir() else None
        if first is not None:
            try:
                arr = np.load(first, mmap_mode="r")
            except (OSError, ValueError):
                continue
            return d, int(arr.shape[-1]) if arr.ndim == 2 else 0
    return None


def is_experiment_dir(folder: Path) -> bool:
    """A training run: a G/D pair with its config or pieces, or pieces with their features."""
    pieces = (folder / LAYOUTS[experiment_layout(folder)]["gt"]).is_dir()
    if checkpoint_pairs(folder):
        return pieces or (folder / "config.json").is_file()
    return pieces and feature_dir(folder) is not None


def normalised_state(obj: Any) -> tuple[Any, bool]:
    """A checkpoint with the keys our networks load (weight_g/weight_v, no ``module.``); True when changed."""
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        return obj, False
    changed = False
    state = {}
    for key, value in obj["model"].items():
        new = key[7:] if key.startswith("module.") else key
        for old, ours in _PARAMETRISED:
            new = new.replace(old, ours)
        changed |= new != key
        state[new] = value
    return ({**obj, "model": state} if changed else obj), changed


def read_pair(g: Path, d: Path) -> tuple[Any, Any, Any, bool]:
    """Safe-load and check one G/D pair; returns (G object, D object, generator description, rewritten?)."""
    from engines.rvc.checkpoints import discriminator_state, generator_from_object, load_torch_file
    from engines.rvc.shapes import discriminator_version

    g_obj, g_changed = normalised_state(load_torch_file(g))
    d_obj, d_changed = normalised_state(load_torch_file(d))
    gen = generator_from_object(g, g_obj)
    d_state = discriminator_state(d_obj)
    if d_state is None:
        raise InvalidModelError(f"{d.name} is not an RVC discriminator.", "Import the run with its own D_*.pth.")
    d_version = discriminator_version(d_state)
    if d_version != gen.version:
        raise InvalidModelError(f"{g.name} is an RVC {gen.version} generator but {d.name} a {d_version} discriminator.",
                                "The pair does not belong together; check the run folder.")
    return g_obj, d_obj, gen, g_changed or d_changed


def _encoder_of_run(folder: Path, layout: str) -> dict[str, str]:
    from engines.rvc.encoders import CUSTOM, DEFAULT_ENCODER, ENCODER_KEY, canonical_encoder

    if layout != "applio":
        return {ENCODER_KEY: DEFAULT_ENCODER}  # RVC WebUI trains on hubert_base only
    try:
        name = json.loads((folder / "model_info.json").read_text(encoding="utf-8")).get("embedder_model")
    except (OSError, ValueError, AttributeError):
        name = None
    return {ENCODER_KEY: canonical_encoder(name) or (CUSTOM if str(name).lower() == "custom" else str(name))}


def _sample_rate(folder: Path, layout: str) -> int | None:
    try:
        return int(json.loads((folder / "config.json").read_text(encoding="utf-8"))["data"]["sampling_rate"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    first = next(iter(sorted((folder / LAYOUTS[layout]["gt"]).glob("*.wav"))), None)
    if first is not None:
        import soundfile as sf

        return int(sf.info(str(first)).samplerate)
    return None


def _copy_files(src: Path, dst: Path, hooks: Hooks, counter: list[int], total: int) -> int:
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            hooks.check_cancel()
            shutil.copyfile(f, dst / f.name)
            n += 1
            counter[0] += 1
            if counter[0] % 50 == 0:
                hooks.progress(counter[0] / max(1, total), f"copying {src.name}: {n} files")
    return n


def import_experiment(ws: Workspace, folder: Path, name: str, hooks: Hooks, *, source: str,
                      all_checkpoints: bool = False) -> dict[str, Any]:
    """Copy the run in ``folder`` into ``experiments/<name>`` (which must not exist); returns what was made."""
    from engines.core.atomic import torch_save, write_json
    from engines.rvc.encoders import write_experiment_encoder
    from engines.rvc.index import read_index_header
    from engines.rvc.models.configs import parse_sr
    from engines.rvc.train.experiment import experiment_paths
    from engines.rvc.train.features import write_filelist

    name = safe_name(name)
    target = ws.experiment_dir(name)
    if target.exists() and any(target.iterdir()):
        raise InvalidInputError(f"An experiment named '{name}' already exists in the workspace.",
                                "Give the imported run another name.")
    layout = experiment_layout(folder)
    roles = LAYOUTS[layout]
    pairs = checkpoint_pairs(folder)
    chosen = pairs if all_checkpoints else pairs[-1:]
    read = [(n, g, d, *read_pair(g, d)) for n, g, d in chosen]  # everything checked before anything is copied
    features = feature_dir(folder)
    if read:
        gen = read[-1][5]
        version, f0, sr_tag, epoch = gen.version, gen.f0, gen.sr_tag, gen.epoch
    else:
        if features is None:
            raise InvalidInputError(f"{folder.name} has neither a G/D checkpoint pair nor extracted features.")
        version = {256: "v1", 768: "v2"}.get(features[1], "")
        rate = _sample_rate(folder, layout)
        sr_tag, f0, epoch = (f"{rate // 1000}k" if rate else ""), (folder / roles["coarse"]).is_dir(), None
    if features is not None and features[1] != {"v1": 256, "v2": 768}.get(version):
        raise InvalidInputError(f"The features in {features[0].name} are {features[1]}-d but the run is RVC {version}.",
                                "Only 256-d (v1) and 768-d (v2) features can be trained on.")
    if sr_tag not in ("32k", "40k", "48k"):
        raise InvalidInputError(f"The sample rate of {folder.name} cannot be read (config.json or the pieces).")
    paths_at = experiment_paths(ws, name)
    ours = {"gt": paths_at.gt_wavs.name, "wav16k": paths_at.wavs16k.name, "coarse": paths_at.f0_coarse.name,
            "hz": paths_at.f0_hz.name}
    dirs = [(folder / roles[r], ours[r]) for r in roles if (folder / roles[r]).is_dir()]
    if features is not None:
        dirs.append((features[0], paths_at.features(version).name))
    total = sum(sum(1 for _ in src.iterdir()) for src, _ in dirs) + 1
    ws.experiments.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.import-", dir=ws.experiments))
    counts: dict[str, int] = {}
    try:
        counter = [0]
        for src, dst_name in dirs:
            counts[dst_name] = _copy_files(src, tmp / dst_name, hooks.scaled(0.0, 0.8), counter, total)
        if (folder / "config.json").is_file():
            shutil.copyfile(folder / "config.json", tmp / "config.json")
        for _, g, d, g_obj, d_obj, _, changed in read:
            hooks.check_cancel()
            for src, obj in ((g, g_obj), (d, d_obj)):
                if changed:
                    torch_save(obj, tmp / src.name)
                else:
                    shutil.copyfile(src, tmp / src.name)
        indexes = []
        for idx in sorted(folder.glob("added_*.index")):
            try:
                if read_index_header(idx).ntotal > 0:
                    shutil.copyfile(idx, tmp / idx.name)
                    indexes.append(idx.name)
            except InvalidModelError:
                continue
        encoder = _encoder_of_run(folder, layout)
        write_experiment_encoder(tmp, encoder)
        resume = (f"voicelab rvc train --exp-name {name} --sr {sr_tag} --version {version} "
                  f"{'--f0' if f0 else '--no-f0'} --skip-preprocess --skip-f0 --skip-feature "
                  f"--total-epoch {(epoch or 0) + 20}")
        record = {"source": source, "folder": str(folder), "layout": layout,
                  "imported": time.strftime("%Y-%m-%dT%H:%M:%S"), "version": version, "sr": sr_tag, "f0": f0,
                  "epoch": epoch, "checkpoints": [g.name for _, g, *_ in read] + [d.name for _, _, d, *_ in read],
                  "indexes": indexes, **encoder, "resume": resume}
        write_json(tmp / RECORD, record)
        if target.exists():
            target.rmdir()  # an empty folder left by something else
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    entries = None
    if counts.get(ours["gt"]) and features is not None:
        try:
            entries = write_filelist(experiment_paths(ws, name), version, f0, parse_sr(sr_tag)[1])
        except InvalidInputError as exc:
            hooks.log(f"{name}: no filelist written ({exc.message})")
    hooks.log(f"experiment '{name}' imported from {folder} ({layout} layout): {counts.get(ours['gt'], 0)} pieces, "
              f"{len(read)} checkpoint pair(s)")
    return {**record, "name": name, "path": str(target), "pieces": counts.get(ours["gt"], 0),
            "feature_files": counts.get(paths_at.features(version).name, 0), "filelist_entries": entries}
