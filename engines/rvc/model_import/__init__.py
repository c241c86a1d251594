"""Import community voice models: zips, folders, files, URLs, Hugging Face repos, RVC WebUI / Applio installs.

    import_models(ws, "downloads/kiki.zip")                       # voices + their indexes
    import_models(ws, "~/RVC-WebUI", experiments=["myvoice"])     # an install's voices, and one run to keep training
    import_models(ws, "someone/some-voices", as_pretrained=True)  # a repo's G/D as a custom pretrained set

The steps: make the source local (``sources``), read every model and index
with the safe loader (``scan``), pair each voice with its index
(``pairing``), then copy into ``weights/`` + ``indices/`` (or
``assets/pretrained_custom/<name>/``, or ``experiments/<name>``) with a
sidecar naming the source (``install``, ``experiment``). Nothing is
installed when any file asks to run code, or while a voice's index is the
user's choice: the result lists the candidates and ``choices`` decide.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from engines.core.errors import InvalidInputError, UnsafeFileError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.settings import Workspace
from engines.rvc.model_import.experiment import checkpoint_pairs, import_experiment, read_pair
from engines.rvc.model_import.install import clean_stem, place_file, studio_checkpoint_name, write_sidecar
from engines.rvc.model_import.pairing import index_experiment, pair_indexes, parse_choices
from engines.rvc.model_import.scan import Candidate, Scan, scan_source
from engines.rvc.model_import.sources import Staged, source_kind, staged_source

__all__ = ["import_models", "parse_choices", "source_kind"]

ALL = "all"


def _experiment_name(rel: str, folder: Path, staged: Staged) -> str:
    """A run's default name: its folder's, or the source's when the run is the top of it."""
    tail = rel.rstrip("/").rsplit("/", 1)[-1]
    if not tail:
        return clean_stem(staged.name or folder.name, "imported")
    if tail.endswith("!"):  # the top of a zip
        return clean_stem(Path(tail[:-1]).stem, "imported")
    return clean_stem(tail.rsplit("!", 1)[-1], "imported")


def _wanted_experiments(scan: Scan, wanted: Sequence[str], staged: Staged) -> list[tuple[str, Path, str]]:
    """(rel, folder, name) of the runs to import: those named, or every run of a source that is not an install."""
    found = [(rel, folder, _experiment_name(rel, folder, staged)) for rel, folder in scan.experiments]
    names = [w.strip() for w in wanted if w.strip()]
    if not names:
        return found if scan.layout in ("experiment", "files") else []
    if ALL in names:
        return found
    chosen = [e for e in found if e[2] in names or e[0] in names]
    missing = [n for n in names if not any(n in (e[0], e[2]) for e in found)]
    if missing:
        raise InvalidInputError(f"No training run named {', '.join(missing)} in this source.",
                                "Runs found: " + (", ".join(e[2] for e in found) or "none"))
    return chosen


def _check_runs(ws: Workspace, runs: list[tuple[str, Path, str]], all_checkpoints: bool) -> None:
    """Before anything is installed: every run's name is free, and the checkpoints it would copy load safely."""
    for _, folder, name in runs:
        target = ws.experiment_dir(name)
        if target.exists() and any(target.iterdir()):
            raise InvalidInputError(f"An experiment named '{name}' already exists in the workspace.",
                                    "Give the imported run another name (--name), or import only the others.")
        pairs = checkpoint_pairs(folder)
        for _, g, d in pairs if all_checkpoints else pairs[-1:]:
            read_pair(g, d)


def _voice_stems(voices: list[Candidate], name: str, renames: dict[str, tuple[str, str]]) -> dict[str, str]:
    """The file stem each voice is installed under (``renames``: run rel -> (its folder name, its new name))."""
    if name and len(voices) == 1:
        return {voices[0].rel: clean_stem(name)}
    stems = {}
    for v in voices:
        stem = studio_checkpoint_name(clean_stem(v.stem))
        old, new = renames.get(v.folder, ("", ""))
        if old and stem.startswith(f"{old}_"):  # the voices of a run imported under another name follow it
            stem = new + stem[len(old):]
        stems[v.rel] = stem
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    for v in voices:  # several "model.pth" in different folders: name them after their folder
        if counts[stems[v.rel]] > 1 and v.folder:
            stems[v.rel] = clean_stem(f"{v.folder.rsplit('/', 1)[-1].rsplit('!', 1)[-1]}_{stems[v.rel]}")
    return stems


def _index_stem(index: Candidate, voice_stems: list[str]) -> str:
    if voice_stems:
        return re.sub(r"_e\d+_s\d+$", "", voice_stems[0])  # the name "auto" index selection looks for
    return clean_stem(index_experiment(index.stem) or index.stem, "index")


def _install_voices(ws: Workspace, scan: Scan, pairs: dict[str, str | None], stems: dict[str, str],
                    staged: Staged, overwrite: bool, hooks: Hooks) -> tuple[list[dict], list[dict]]:
    users: dict[str, list[str]] = {}
    for v in scan.voices:
        if pairs.get(v.rel):
            users.setdefault(pairs[v.rel], []).append(stems[v.rel])
    wanted_indexes = [i for i in scan.indexes if i.rel in users or not scan.voices]
    placed_index: dict[str, Path] = {}
    indexes = []
    for i, idx in enumerate(wanted_indexes):
        hooks.check_cancel()
        hooks.progress(i / max(1, len(wanted_indexes) + len(scan.voices)), f"installing {idx.path.name}")
        placed = place_file(idx.path, ws.indices, _index_stem(idx, users.get(idx.rel, [])), ".index", overwrite=overwrite)
        write_sidecar(placed.path, source=staged.label, member=idx.rel, sha256=placed.sha256, version=idx.version,
                      dim=idx.detail["dim"], vectors=idx.detail["ntotal"])
        placed_index[idx.rel] = placed.path
        indexes.append({"file": idx.rel, "path": str(placed.path), "action": placed.action, "note": placed.note,
                        "version": idx.version, "vectors": idx.detail["ntotal"]})
    voices = []
    for v in scan.voices:
        hooks.check_cancel()
        placed = place_file(v.path, ws.weights, stems[v.rel], ".pth", overwrite=overwrite)
        index = placed_index.get(pairs.get(v.rel) or "")
        write_sidecar(placed.path, source=staged.label, member=v.rel, sha256=placed.sha256,
                      index=str(index) if index else None, index_member=pairs.get(v.rel), version=v.version,
                      sr=v.sr, f0=v.f0, encoder=v.detail.get("encoder"))
        voices.append({"file": v.rel, "name": placed.path.name, "path": str(placed.path), "action": placed.action,
                       "note": placed.note, "version": v.version, "sr": v.sr, "f0": v.f0,
                       "encoder": v.detail.get("encoder"), "epoch": v.detail.get("epoch"),
                       "index": str(index) if index else None})
    return voices, indexes


def _install_pretrained(ws: Workspace, scan: Scan, staged: Staged, name: str, overwrite: bool) -> list[dict]:
    from engines.rvc.pretrained import custom_root, read_pretrained

    files = scan.generators + scan.discriminators + scan.voices
    if not files:
        raise InvalidInputError(f"No pretrained generator or discriminator in {staged.label}.",
                                "A pretrained set is a G and a D .pth file (e.g. f0G40k.pth + f0D40k.pth).")
    folder = custom_root(ws.settings) / clean_stem(name or staged.name, "pretrained")
    out = []
    for c in files:
        placed = place_file(c.path, folder, clean_stem(c.stem, "pretrained"), ".pth", overwrite=overwrite)
        write_sidecar(placed.path, source=staged.label, member=c.rel, sha256=placed.sha256)
        info = read_pretrained(placed.path, ws.settings)
        out.append({"file": c.rel, "path": str(placed.path), "action": placed.action, "note": placed.note,
                    "role": info.role, "what": info.describe()})
    return out


def import_models(ws: Workspace, source: str, *, name: str = "", choices: dict[str, str] | None = None,
                  experiments: Sequence[str] = (), as_pretrained: bool = False, all_checkpoints: bool = False,
                  overwrite: bool = False, revision: str = "main", hooks: Hooks | None = None) -> dict[str, Any]:
    """Find, check and install the voices (or a pretrained set, or training runs) that ``source`` holds."""
    hooks = ensure_hooks(hooks)
    with staged_source(ws, source, hooks.scaled(0.0, 0.3), revision=revision) as staged:
        scan = scan_source(staged.roots, staged.only, hooks.scaled(0.3, 0.6))
        result: dict[str, Any] = {"source": staged.label, "kind": staged.kind, "layout": scan.layout,
                                  "voices": [], "indexes": [], "pretrained": [], "experiments": [],
                                  "skipped": staged.skipped + scan.skipped, "needs_choice": [],
                                  "experiments_available": [_experiment_name(r, f, staged)
                                                            for r, f in scan.experiments]}
        if scan.unsafe:
            first = scan.unsafe[0]
            raise UnsafeFileError(
                f"Nothing was imported: {first['file']} is not a safe model file. {first['reason']}"
                + (f" ({len(scan.unsafe) - 1} more such file(s).)" if len(scan.unsafe) > 1 else ""),
                "Files that ask to run code when loaded are refused; get the model from a source you trust.")
        if as_pretrained:
            result["pretrained"] = _install_pretrained(ws, scan, staged, name, overwrite)
            return _finish(result)
        runs = _wanted_experiments(scan, experiments, staged)
        if name and len(runs) == 1:
            runs = [(runs[0][0], runs[0][1], clean_stem(name))]
        _check_runs(ws, runs, all_checkpoints)
        pairing = pair_indexes(scan.voices, scan.indexes, choices)
        if pairing.ambiguous:
            result["needs_choice"] = pairing.ambiguous
            return _finish(result)
        if not scan.voices and not scan.indexes and not runs:
            extra = " It holds training runs: import them with --experiments NAME." if scan.experiments else (
                " It holds pretrained G/D files: import them with --as pretrained." if scan.generators or
                scan.discriminators else "")
            reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in result["skipped"][:3])
            raise InvalidInputError(f"No RVC voice model found in {staged.label}.{extra}",
                                    reasons or "Give a zip or folder holding a voice .pth (and its .index).")
        renames = {rel: (folder.name, new) for rel, folder, new in runs if folder.name != new}
        for _, folder, run_name in runs:
            result["experiments"].append(import_experiment(ws, folder, run_name, hooks.scaled(0.6, 0.85),
                                                           source=staged.label, all_checkpoints=all_checkpoints))
        stems = _voice_stems(scan.voices, name if not runs else "", renames)
        result["voices"], result["indexes"] = _install_voices(ws, scan, pairing.pairs, stems, staged, overwrite,
                                                              hooks.scaled(0.85, 1.0))
        paired = set(filter(None, pairing.pairs.values()))
        if scan.voices:
            result["skipped"] += [{"file": i.rel, "reason": "not paired with any voice of its version"}
                                  for i in scan.indexes if i.rel not in paired]
        result["skipped"] += [{"file": c.rel, "reason": f"a {c.kind} file, not a voice: import it with --as pretrained"
                                                        + (" (or extract a small model from it)" if c.kind == "generator"
                                                           else "")}
                              for c in scan.generators + scan.discriminators]
        imported = {folder for _, folder, _ in runs}
        result["experiments_available"] = [_experiment_name(r, f, staged) for r, f in scan.experiments
                                           if f not in imported]
    return _finish(result)


def _finish(result: dict[str, Any]) -> dict[str, Any]:
    if result["needs_choice"]:
        voices = ", ".join(a["voice"] for a in result["needs_choice"])
        result["summary"] = (f"Nothing installed yet: choose the index of {voices} "
                             "(several fit; give --choose VOICE=INDEX or VOICE=none).")
        result["exit_code"] = 2
        return result
    parts = []
    for key, what in (("voices", "voice(s)"), ("indexes", "index(es)"), ("pretrained", "pretrained file(s)"),
                      ("experiments", "experiment(s)")):
        items = result[key]
        if items:
            new = sum(1 for i in items if i.get("action", "installed") != "already")
            parts.append(f"{len(items)} {what}" + (f" ({len(items) - new} already there)" if new < len(items) else ""))
    result["summary"] = f"Imported from {result['source']}: " + (", ".join(parts) or "nothing")
    if result["skipped"]:
        result["summary"] += f"; {len(result['skipped'])} file(s) skipped"
    result["exit_code"] = 0
    return result
