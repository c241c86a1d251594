"""What a source holds: voices, indexes, generator/discriminator files and training experiments.

Every ``.pth`` is opened with the safe loader (``weights_only``: tensors and
plain values only) and classified from its contents, not its name; every
``.index`` is checked from its faiss header. A file whose pickle asks for
code is recorded in ``unsafe`` and stops the whole import before anything
is installed.

Installs are recognised by their layout: RVC WebUI keeps voices in
``assets/weights/`` (older releases: ``weights/``) and training runs in
``logs/<exp>/`` (with the ``added_*.index``); Applio keeps both the runs and
their voices (``<exp>_<E>e_<S>s.pth``) in ``logs/<exp>/``. Their asset
folders (pretrained, HuBERT, RMVPE, UVR, an embedded Python, the shared
``logs/mute``) are not voices and are not read (``voicelab assets import --from DIR`` takes those).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidModelError, UnsafeFileError
from engines.core.hooks import Hooks
from engines.rvc.model_import.experiment import is_experiment_dir

CHECKPOINT_NAME = re.compile(r"^[GD]_(\d+)\.pth$")
# Folders of an install that hold no voices (relative to its root).
_ASSET_DIRS = ("assets/pretrained", "assets/pretrained_v2", "assets/hubert", "assets/rmvpe", "assets/uvr5_weights",
               "assets/indices", "pretrained", "pretrained_v2", "uvr5_weights", "rvc/models", "runtime", "env",
               "logs/mute")  # logs/mute: the silent pieces every RVC WebUI run shares, not a run
_NEVER = {".git", "__pycache__", "site-packages", "node_modules", ".venv", "venv", "__MACOSX"}


@dataclass
class Candidate:
    """One usable file of the source."""

    rel: str  # where it is in the source (shown to the user, and how a choice names it)
    path: Path
    kind: str  # "voice" | "index" | "generator" | "discriminator"
    version: str | None = None
    sr: str = ""
    f0: bool | None = None
    folder: str = ""  # rel of the parent folder ("" = the top)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.path.stem


@dataclass
class Scan:
    layout: str  # "rvc-webui" | "applio" | "experiment" | "files"
    voices: list[Candidate] = field(default_factory=list)
    indexes: list[Candidate] = field(default_factory=list)
    generators: list[Candidate] = field(default_factory=list)
    discriminators: list[Candidate] = field(default_factory=list)
    experiments: list[tuple[str, Path]] = field(default_factory=list)  # (rel, folder)
    skipped: list[dict] = field(default_factory=list)
    unsafe: list[dict] = field(default_factory=list)


def install_layout(root: Path) -> str:
    """Which kind of folder ``root`` is."""
    if (root / "logs").is_dir() and (root / "rvc").is_dir():
        return "applio"
    if (root / "logs").is_dir() and ((root / "assets" / "weights").is_dir() or (root / "weights").is_dir()):
        return "rvc-webui"
    if is_experiment_dir(root):
        return "experiment"
    return "files"


def _rel(path: Path, root: Path, prefix: str) -> str:
    return prefix + path.relative_to(root).as_posix()


def _folder_rel(folder: Path, root: Path, prefix: str) -> str:
    """A folder's place in the source: "" or "x.zip!" for the top, else its path ("logs/kiki", "x.zip!a")."""
    rel = folder.relative_to(root).as_posix()
    return prefix + ("" if rel == "." else rel)


def is_top(folder: str) -> bool:
    return not folder or folder.endswith("!")


def _excluded(rel: Path, layout: str) -> bool:
    """Folders never scanned: tool and hidden folders, and an install's asset folders."""
    if any(part in _NEVER or part.startswith(".") for part in rel.parts):
        return True
    text = rel.as_posix()
    return layout in ("rvc-webui", "applio") and any(text == d or text.startswith(d + "/") for d in _ASSET_DIRS)


def _classify_pth(path: Path, rel: str, folder: str) -> Candidate:
    from engines.rvc.checkpoints import discriminator_state, generator_from_object, load_torch_file
    from engines.rvc.shapes import discriminator_version

    obj = load_torch_file(path)
    d_state = discriminator_state(obj)
    if d_state is not None:
        return Candidate(rel, path, "discriminator", discriminator_version(d_state), folder=folder)
    gen = generator_from_object(path, obj)
    kind = "voice" if gen.kind == "small" else "generator"
    encoder, encoder_path = gen.encoder
    return Candidate(rel, path, kind, gen.version, gen.sr_tag, gen.f0, folder,
                     {"epoch": gen.epoch, "step": gen.step, "info": gen.info, "encoder": encoder,
                      "encoder_path": encoder_path, "speakers": gen.n_speakers})


def _classify_index(path: Path, rel: str, folder: str) -> Candidate:
    from engines.rvc.index import read_index_header

    head = read_index_header(path)
    return Candidate(rel, path, "index", head.version, folder=folder,
                     detail={"dim": head.dim, "ntotal": head.ntotal, "nlist": head.nlist, "kind": head.kind})


def scan_source(roots: list[tuple[Path, str]], only: list[Path] | None, hooks: Hooks) -> Scan:
    """Classify every model and index file under ``roots`` (or just ``only``)."""
    from engines.rvc.safe_pickle import require_safe_torch

    require_safe_torch()
    first = roots[0][0] if roots else Path(".")
    scan = Scan(install_layout(first) if only is None else "files")
    files: list[tuple[Path, Path, str]] = []
    for root, prefix in roots:
        layout = install_layout(root) if only is None else "files"
        exp_dirs: set[Path] = set()
        if only is None:
            marks = [*root.rglob("G_*.pth"), *root.rglob("0_gt_wavs"), *root.rglob("sliced_audios")]
            for folder in sorted({p.parent for p in marks}):
                if not _excluded(folder.relative_to(root), layout) and is_experiment_dir(folder):
                    exp_dirs.add(folder)
                    scan.experiments.append((_folder_rel(folder, root, prefix), folder))
        for path in only if only is not None else sorted(root.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in (".pth", ".index"):
                continue
            if _excluded(path.parent.relative_to(root), layout):
                continue
            if path.parent in exp_dirs and CHECKPOINT_NAME.match(path.name):
                continue  # training checkpoints are read when their experiment is imported
            files.append((path, root, prefix))
    for i, (path, root, prefix) in enumerate(files):
        hooks.check_cancel()
        hooks.progress(i / max(1, len(files)), f"reading {path.name}")
        rel = _rel(path, root, prefix)
        folder = _folder_rel(path.parent, root, prefix)
        try:
            if path.suffix.lower() == ".index":
                cand = _classify_index(path, rel, folder)
                if cand.detail["ntotal"] == 0:
                    scan.skipped.append({"file": rel, "reason": "the index holds no vectors (a trained_ index: "
                                                                 "use the added_ one)"})
                    continue
                if cand.version is None:
                    scan.skipped.append({"file": rel, "reason": f"{cand.detail['dim']}-d vectors: not an RVC v1/v2 index"})
                    continue
            else:
                cand = _classify_pth(path, rel, folder)
        except UnsafeFileError as exc:
            scan.unsafe.append({"file": rel, "reason": exc.message})
            continue
        except InvalidModelError as exc:
            scan.skipped.append({"file": rel, "reason": exc.message})
            continue
        {"voice": scan.voices, "index": scan.indexes, "generator": scan.generators,
         "discriminator": scan.discriminators}[cand.kind].append(cand)
    hooks.progress(1.0, f"{len(scan.voices)} voice(s), {len(scan.indexes)} index(es) found")
    return scan
