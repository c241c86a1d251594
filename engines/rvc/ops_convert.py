"""RVC index, conversion, checkpoint-tool and A/B jobs (what the Index, Convert and A/B tabs run).

Each operation mirrors a ``voicelab rvc ...`` command (``engines.rvc.cli_convert``)
so the tabs, the CLI and scripts do the same thing. Job parameters reuse the
engine's dataclasses, extended with what a job needs to find its inputs.
Results are JSON-friendly dicts with a ``summary``. Nothing here imports
torch at module import time (the engine functions import it when they run).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks
from engines.core.jobs import operation
from engines.core.jsonable import jsonable
from engines.core.params import param
from engines.core.settings import Workspace, safe_name
from engines.rvc.ab import COSYVOICE_PENDING
from engines.rvc.convert import ConvertParams
from engines.rvc.index import IndexParams


def resolve_model(ws: Workspace, model: str) -> Path:
    """A model given as a path, or as a name (with or without .pth) in ``<workspace>/weights``."""
    model = (model or "").strip()
    if not model:
        raise InvalidInputError("No model chosen.", "Pick a .pth model from the list or upload one.")
    p = Path(model)
    if p.is_file():
        return p
    for cand in (ws.weights / model, ws.weights / f"{model}.pth"):
        if cand.is_file():
            return cand
    raise InvalidInputError(f"Model not found: {model}", f"Put the .pth file in {ws.weights} or give its full path.")


def resolve_index(ws: Workspace, index: str, model_path: Path) -> str | None:
    """``"auto"`` = the model's own workspace index if there is one; ``""``/``"none"`` = no index."""
    index = (index or "").strip()
    if index.lower() in ("", "none"):
        return None
    if index.lower() == "auto":
        from engines.rvc.convert import guess_index

        found = guess_index(ws, model_path)
        return str(found) if found else None
    p = Path(index)
    if not p.is_file() and (ws.indices / index).is_file():
        p = ws.indices / index
    return str(p)


def list_models(ws: Workspace) -> list[str]:
    """Model file names in ``<workspace>/weights`` (sorted)."""
    return sorted(p.name for p in ws.weights.glob("*.pth") if p.is_file())


def list_indexes(ws: Workspace) -> list[dict[str, Any]]:
    """Every index the workspace holds: ``indices/*.index`` and the experiments' upstream-named files."""
    rows = []
    for p in sorted(ws.indices.glob("*.index")) + sorted(ws.experiments.glob("*/added_IVF*_Flat_nprobe_1_*.index")):
        st = p.stat()
        rows.append({"path": str(p), "name": p.name, "size": st.st_size,
                     "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))})
    return rows


def list_experiments(ws: Workspace) -> list[str]:
    return sorted(p.name for p in ws.experiments.iterdir() if p.is_dir()) if ws.experiments.is_dir() else []


def feature_versions(ws: Workspace, experiment: str) -> list[str]:
    """The model versions ("v1"/"v2") whose features an experiment has extracted."""
    from engines.rvc.index import DIM_OF_VERSION, feature_dir

    exp_dir = ws.experiment_dir(experiment)
    return [v for v in DIM_OF_VERSION if any(feature_dir(exp_dir, v).glob("*.npy"))]


# -- index ------------------------------------------------------------------------------------

@dataclass
class IndexJob(IndexParams):
    exp_name: str = param("", help="Experiment whose extracted features are indexed")


@operation("rvc.index", params=IndexJob, kind="light", title="Build the RVC retrieval index")
def index_op(p: IndexJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.index import build_index

    if not p.exp_name.strip():
        raise InvalidInputError("No experiment chosen.", "Pick the experiment whose index to build.")
    params = IndexParams(**{f.name: getattr(p, f.name) for f in fields(IndexParams)})
    res = build_index(ws, p.exp_name.strip(), params, hooks)
    return {"summary": res.summary(), "experiment": p.exp_name.strip(), "index": str(res.workspace_index_path),
            "upstream_index": str(res.index_path), "frames": res.frames, "kept_vectors": res.kept_vectors,
            "n_ivf": res.n_ivf, "dim": res.dim, "version": res.version, "reduced": res.reduced,
            "seconds": res.seconds, "file_size": res.file_size}


# -- conversion -------------------------------------------------------------------------------

@dataclass
class ConvertJob(ConvertParams):
    model: str = param("", help="Model .pth (a path, or a name in <workspace>/weights)")
    inputs: list[str] = param(default_factory=list, help="Audio files and/or folders", cli=False)
    index: str = param("auto", help="faiss .index file; 'auto' = the model's workspace index; '' = none")
    out_dir: str = param("", help="Output folder (default: <workspace>/outputs)")


@operation("rvc.convert", params=ConvertJob, kind="gpu", title="RVC voice conversion")
def convert_op(p: ConvertJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.convert import convert_files

    model = resolve_model(ws, p.model)
    index = resolve_index(ws, p.index, model)
    if index:
        hooks.log(f"index: {index}")
    params = ConvertParams(**{f.name: getattr(p, f.name) for f in fields(ConvertParams)})
    report = convert_files(ws, model, list(p.inputs), params, index_path=index, out_dir=p.out_dir or None, hooks=hooks)
    if not report.converted:
        first = report.failed[0] if report.failed else None
        raise InvalidInputError(
            f"No file could be converted ({len(report.files)} tried)" + (f": {first.error}" if first else "."),
            (first.hint if first and first.hint else "See the per-file errors in the log."),
        )
    d = jsonable(report.to_dict())
    return {"summary": report.summary().splitlines()[0] + (f", {len(report.failed)} failed" if report.failed else ""),
            "outputs": [f.output for f in report.converted],
            "errors": [{"input": f.input, "error": f.error, "hint": f.hint} for f in report.failed],
            "stage_totals": d["stage_totals"], "report": d}


# -- checkpoint tools -------------------------------------------------------------------------

def _weights_target(ws: Workspace, name: str, overwrite: bool) -> Path:
    stem = safe_name(name[:-4] if name.lower().endswith(".pth") else name)
    target = ws.weights / f"{stem}.pth"
    if target.exists() and not overwrite:
        raise InvalidInputError(f"{target.name} already exists in weights/.", "Choose another name or allow overwriting.")
    return target


@dataclass
class ExtractJob:
    checkpoint: str = param("", help="Training checkpoint G_*.pth (or any generator file)")
    name: str = param("", help="Output name in weights/ (default: <experiment>_<checkpoint>)")
    sr: str = param("", choices=("", "32k", "40k", "48k"), help="Sample rate check/hint (empty = from the file)")
    version: str = param("", choices=("", "v1", "v2"), help="Version check (empty = from the file)")
    info: str = param("", help="Text stored in the model's info field")
    overwrite: bool = param(False, help="Replace a model of the same name")


@operation("rvc.ckpt_extract", params=ExtractJob, kind="light", title="Extract a small RVC model")
def extract_op(p: ExtractJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.checkpoints import extract_small_model, model_info

    src = Path(p.checkpoint)
    if not src.is_file():
        raise InvalidInputError(f"Checkpoint not found: {p.checkpoint}", "Give the path of a G_*.pth file.")
    target = _weights_target(ws, p.name.strip() or f"{src.parent.name}_{src.stem}", p.overwrite)  # as the CLI names it
    out = extract_small_model(src, target, sr=p.sr or None, version=p.version or None, info=p.info, hooks=hooks)
    info = model_info(out)
    return {"summary": f"small model written: {out.name}", "model": str(out), "info": jsonable(info)}


@dataclass
class MergeJob:
    model_a: str = param("", help="Model A (.pth path or name in weights/)")
    model_b: str = param("", help="Model B (.pth path or name in weights/)")
    alpha: float = param(0.5, min=0.0, max=1.0, step=0.05, help="Share of model A (1 = only A, 0 = only B)")
    name: str = param("", help="Output name in weights/ (default: <A>+<B>_a<alpha>)")
    info: str = param("", help="Text stored in the model's info field")
    overwrite: bool = param(False, help="Replace a model of the same name")


@operation("rvc.ckpt_merge", params=MergeJob, kind="light", title="Merge two RVC models")
def merge_op(p: MergeJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.checkpoints import merge_models, model_info

    a, b = resolve_model(ws, p.model_a), resolve_model(ws, p.model_b)
    target = _weights_target(ws, p.name.strip() or f"{a.stem}+{b.stem}_a{p.alpha:g}", p.overwrite)
    out = merge_models(a, b, p.alpha, target, info=p.info, hooks=hooks)
    return {"summary": f"merged model written: {out.name}", "model": str(out), "info": jsonable(model_info(out))}


# -- A/B listening ----------------------------------------------------------------------------

@dataclass
class ABRenderJob:
    session: str = param("", help="A/B session id to render (created by the A/B tab)")
    experiment: str = param("", help="Without a session: compare every saved checkpoint of this experiment")
    source: str = param("", help="Without a session: the source clip")
    blind: bool = param(True, help="Blind mode: shuffle sides and hide labels until the vote")
    params: str = param("", help="JSON object of ConvertParams values for every candidate")
    cosyvoice_pending: bool = param(False, help="Synthesise the CosyVoice comparison handed over by the CosyVoice tab")


def _session_result(session: Any) -> dict:
    return {"session": session.id, "experiment": session.experiment, "name": session.name,
            "candidates": [c.label for c in session.candidates], "pairs": len(session.pairs),
            "outputs": [c.output for c in session.candidates], "blind": session.blind}


@operation("rvc.ab_render", params=ABRenderJob, kind="gpu", title="A/B: convert the clip with every candidate")
def ab_render_op(p: ABRenderJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc import ab

    if p.cosyvoice_pending:
        session = render_cosyvoice_pending(ws, p.blind, hooks)
    elif p.session.strip():
        session = ab.render_session(ws, ab.load_session(ws, p.session.strip()), hooks)
    elif p.experiment.strip():
        if not p.source.strip():
            raise InvalidInputError("No source clip.", "Upload a clip or pick one from a dataset.")
        try:
            values = json.loads(p.params) if p.params.strip() else {}
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"params is not valid JSON ({exc}).") from exc
        session = ab.compare_checkpoints(ws, p.experiment.strip(), p.source.strip(), values, blind=p.blind,
                                         hooks=hooks)
    else:
        raise InvalidInputError("Nothing to compare.", "Give a session id, or an experiment and a source clip.")
    res = _session_result(session)
    res["summary"] = f"{len(session.candidates)} candidate(s) converted, {len(session.pairs)} pair(s) to judge"
    return res


def read_cosyvoice_pending(ws: Workspace) -> dict | None:
    """The comparison the CosyVoice tab handed over, if any."""
    path = ws.root / COSYVOICE_PENDING
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def render_cosyvoice_pending(ws: Workspace, blind: bool, hooks: Hooks) -> Any:
    """Synthesise the handed-over text with both CosyVoice checkpoints (same seed) and open a session."""
    from engines.cosyvoice.synth import compare_grid
    from engines.rvc import ab

    rec = read_cosyvoice_pending(ws)
    if not rec:
        raise InvalidInputError("No CosyVoice comparison is waiting.",
                                "In the CosyVoice tab, pick two checkpoints and send them to A/B.")
    model_dir = rec.get("model_dir") or ""
    ckpts = [(rec.get(side) or {}).get("checkpoint") for side in ("a", "b")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ws.root / "ab" / "cosyvoice" / stamp
    items = compare_grid(model_dir, rec.get("text", ""), rec.get("speaker") or None, out_dir,
                         speeds=[float(rec.get("speed", 1.0))], checkpoints=ckpts, seed=int(rec.get("seed", 0)),
                         mode=rec.get("mode", "sft"), hooks=hooks, checkout=ws.settings.cosyvoice_repo)
    source = out_dir / "text.txt"
    source.write_text(rec.get("text", ""), encoding="utf-8")
    cands = [ab.Candidate(model=it.checkpoint or model_dir, label=Path(it.checkpoint).stem if it.checkpoint
                          else Path(model_dir).name, output=str(it.path)) for it in items]
    session = ab.create_session(ws, source, cands, name=f"cosyvoice_{Path(model_dir).name}", blind=blind)
    (ws.root / COSYVOICE_PENDING).replace(ws.root / "ab" / f"cosyvoice_loaded_{stamp}.json")
    return session
