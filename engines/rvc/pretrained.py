"""Pretrained G/D base models (底模): the official pair for a version/rate, and the user's own.

Official files are the manifest's ``pretrained(_v2)/{f0,}{G,D}{32k,40k,48k}``.
Custom ones are any G/D files under ``<assets>/pretrained_custom/`` (a
folder per set, as people share them; ``voicelab rvc import SRC --as
pretrained`` puts downloads there). What each file is — generator or
discriminator, RVC version, and for a generator its sample rate and pitch
setting — is read from the file itself (a discriminator carries no rate),
never from its name, and remembered by path, size and mtime in
``<assets>/.pretrained-cache.json`` so listing stays quick.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidInputError, InvalidModelError
from engines.core.settings import Settings

CUSTOM_DIR = "pretrained_custom"
CACHE_FILE = ".pretrained-cache.json"
_CACHE_LOCK = threading.Lock()


@dataclass
class PretrainedFile:
    path: str
    role: str  # "G" | "D" | "" (unreadable)
    version: str = ""
    sr: str = ""  # generators only
    f0: bool | None = None  # generators only
    problem: str = ""  # why it cannot be used, when it cannot be read

    def describe(self) -> str:
        if self.role == "G":
            return f"RVC {self.version} {self.sr} generator {'with' if self.f0 else 'without'} pitch"
        if self.role == "D":
            return f"RVC {self.version} discriminator"
        return self.problem


def assets_dir(settings: Settings) -> Path:
    return Path(settings.assets_dir).expanduser()


def custom_root(settings: Settings) -> Path:
    return assets_dir(settings) / CUSTOM_DIR


def _describe(path: Path) -> PretrainedFile:
    from engines.rvc.checkpoints import discriminator_state, generator_from_object, load_torch_file
    from engines.rvc.shapes import discriminator_version

    try:
        obj = load_torch_file(path)
        d_state = discriminator_state(obj)
        if d_state is not None:
            version = discriminator_version(d_state)
            if version is None:
                return PretrainedFile(str(path), "", problem=f"{path.name}: a discriminator of an unknown layout")
            return PretrainedFile(str(path), "D", version)
        gen = generator_from_object(path, obj)
        return PretrainedFile(str(path), "G", gen.version, gen.sr_tag, gen.f0)
    except InvalidModelError as exc:
        return PretrainedFile(str(path), "", problem=exc.message)


def read_pretrained(path: str | Path, settings: Settings | None = None) -> PretrainedFile:
    """What a pretrained file is, read from its contents (remembered in the assets folder's cache)."""
    p = Path(path)
    if not p.is_file():
        return PretrainedFile(str(p), "", problem=f"{p} does not exist")
    st = p.stat()
    stamp = [st.st_size, st.st_mtime_ns]
    cache_path = assets_dir(settings) / CACHE_FILE if settings is not None else None
    key = str(p.resolve())
    if cache_path is not None:
        with _CACHE_LOCK:
            cache = _load_cache(cache_path)
        hit = cache.get(key)
        if hit and hit.get("stamp") == stamp:
            return PretrainedFile(**{k: v for k, v in hit.items() if k != "stamp"})
    found = _describe(p)
    if cache_path is not None and found.role:
        from engines.core.atomic import write_json

        with _CACHE_LOCK:
            cache = _load_cache(cache_path)
            cache[key] = {**asdict(found), "stamp": stamp}
            try:
                write_json(cache_path, cache)
            except OSError:
                pass  # a read-only assets folder only loses the memory
    return found


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def mismatch(file: PretrainedFile, role: str, sr: str, version: str, f0: bool) -> str | None:
    """Why ``file`` cannot start an experiment of (sr, version, f0) as its ``role`` ("G"/"D"), or None."""
    what = "generator" if role == "G" else "discriminator"
    if not file.role:
        return file.problem or f"{Path(file.path).name} cannot be read"
    if file.role != role:
        return f"{Path(file.path).name} is a {file.describe()}, not a {what}"
    problems = []
    if file.version != version:
        problems.append(f"RVC {file.version}, not {version}")
    if role == "G":
        if file.sr != sr:
            problems.append(f"{file.sr}, not {sr}")
        if bool(file.f0) != bool(f0):
            problems.append("with pitch guidance, the experiment has none" if file.f0 else
                            "without pitch guidance, the experiment uses it")
    return f"{Path(file.path).name} is {'; '.join(problems)}" if problems else None


def check_pretrained(settings: Settings, g: str, d: str, sr: str, version: str, f0: bool) -> None:
    """Refuse a pretrained G/D that does not fit the experiment, with the reason (before training starts)."""
    for path, role in ((g, "G"), (d, "D")):
        if not path:
            continue
        why = mismatch(read_pretrained(path, settings), role, sr, version, f0)
        if why:
            what = "generator (G)" if role == "G" else "discriminator (D)"
            raise InvalidInputError(
                f"The pretrained {what} does not fit this experiment ({version} {sr}, "
                f"{'with' if f0 else 'without'} pitch): {why}.",
                f"Pick the pretrained pair for {version} {sr} (`voicelab rvc pretrained --version {version} --sr {sr}` "
                "lists them), or change the experiment's settings.")


def _partner(g: Path, discriminators: list[Path]) -> Path | None:
    """The D beside a G: the one file with 'G' swapped for 'D' in its name (f0G40k / f0D40k, G_x / D_x)."""
    for i, ch in enumerate(g.name):
        if ch in "Gg":
            want = (g.name[:i] + ("D" if ch == "G" else "d") + g.name[i + 1:]).lower()
            for d in discriminators:
                if d.name.lower() == want:
                    return d
    return None


def custom_sets(settings: Settings) -> list[dict[str, Any]]:
    """Every custom pretrained set: name, G and D files with what they are (read from the files)."""
    root = custom_root(settings)
    if not root.is_dir():
        return []
    sets = []
    for folder in sorted({p.parent for p in root.rglob("*.pth")}):
        files = [read_pretrained(p, settings) for p in sorted(folder.glob("*.pth"))]
        gens = [f for f in files if f.role == "G"]
        discs = [Path(f.path) for f in files if f.role == "D"]
        by_path = {f.path: f for f in files}
        used: set[str] = set()
        label = folder.relative_to(root).as_posix() if folder != root else "."
        for g in gens:
            d = discs[0] if len(gens) == 1 and len(discs) == 1 else _partner(Path(g.path), discs)
            used.update({g.path, str(d) if d else ""})
            name = label if len(gens) == 1 else f"{label}/{Path(g.path).stem}"
            sets.append({"name": name, "g": g, "d": by_path.get(str(d)) if d else None})
        for f in files:
            if f.path not in used:
                sets.append({"name": f"{label}/{Path(f.path).stem}", "g": f if f.role == "G" else None,
                             "d": f if f.role == "D" else None, "unreadable": f if not f.role else None})
    return sets


def catalog(settings: Settings, sr: str, version: str, f0: bool) -> list[dict[str, Any]]:
    """The official pair for (sr, version, f0) and every custom set, each saying whether it fits and why not."""
    from engines.assets.manifest import asset_path, load_manifest

    manifest = load_manifest()
    folder = "pretrained_v2" if version == "v2" else "pretrained"
    g_name, d_name = (f"{folder}/{'f0' if f0 else ''}{r}{sr}" for r in "GD")
    rows = []
    g_path, d_path = asset_path(settings, g_name, manifest), asset_path(settings, d_name, manifest)
    official = {"name": f"official {version} {sr} {'f0' if f0 else 'no-f0'}", "source": "official",
                "g": str(g_path), "d": str(d_path), "present": g_path.is_file() and d_path.is_file()}
    if official["present"]:
        problems = [mismatch(read_pretrained(p, settings), role, sr, version, f0) for p, role in ((g_path, "G"), (d_path, "D"))]
        official.update(fits=not any(problems), why="; ".join(p for p in problems if p),
                        g_info=read_pretrained(g_path, settings).describe(),
                        d_info=read_pretrained(d_path, settings).describe())
    else:
        missing = [n for n, p in ((g_name, g_path), (d_name, d_path)) if not p.is_file()]
        official.update(fits=False, why="not downloaded", fix=f"voicelab assets download {' '.join(missing)}")
    rows.append(official)
    for s in custom_sets(settings):
        g, d = s["g"], s["d"]
        problems = [mismatch(f, role, sr, version, f0) for f, role in ((g, "G"), (d, "D")) if f is not None]
        if s.get("unreadable"):
            problems.append(s["unreadable"].problem)
        rows.append({"name": s["name"], "source": "custom", "g": g.path if g else "", "d": d.path if d else "",
                     "present": True, "fits": g is not None and not any(problems),
                     "why": "; ".join(p for p in problems if p) or ("" if g is not None else "no generator in the set"),
                     "g_info": g.describe() if g else "", "d_info": d.describe() if d else ""})
    return rows
