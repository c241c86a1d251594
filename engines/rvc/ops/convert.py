"""RVC index, conversion and checkpoint-tool operations (the Index and Convert tabs, ``voicelab rvc ...``).

Job parameters reuse the engine's dataclasses, extended with what a job needs
to find its inputs. Results are JSON-friendly dicts with a ``summary``.
Nothing here imports torch at module import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks
from engines.core.jsonable import jsonable
from engines.core.messages import messages_of_ref, msg
from engines.core.ops import Command, operation
from engines.core.params import param, subset
from engines.core.settings import Workspace, safe_name
from engines.rvc.index import IndexParams
from engines.rvc.infer.convert import ConvertParams
from engines.rvc.ops.catalog import resolve_index, resolve_model

# -- index ------------------------------------------------------------------------------------

@dataclass
class IndexJob(IndexParams):
    exp_name: str = param("", help="Experiment whose extracted features are indexed (folder under experiments/)")


@operation("rvc.index", params=IndexJob, kind="cpu", title="Build the RVC retrieval index",
           cli=Command("rvc index", "Build the faiss retrieval index from an experiment's features"))
def index_op(p: IndexJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.index import build_index

    if not p.exp_name.strip():
        raise InvalidInputError("No experiment chosen.", "Pick the experiment whose index to build.")
    res = build_index(ws, p.exp_name.strip(), subset(p, IndexParams), hooks)
    return {"summary": res.summary(), "experiment": p.exp_name.strip(), "index": str(res.workspace_index_path),
            "upstream_index": str(res.index_path), "frames": res.frames, "kept_vectors": res.kept_vectors,
            "n_ivf": res.n_ivf, "dim": res.dim, "version": res.version, "reduced": res.reduced,
            "seconds": res.seconds, "file_size": res.file_size}


# -- conversion -------------------------------------------------------------------------------

@dataclass
class ConvertJob(ConvertParams):
    model: str = param("", path="read", help="Model .pth (a path, or a name in <workspace>/weights)")
    inputs: list[str] = param(default_factory=list, path="read", help="Audio files and/or folders", cli=False)
    index: str = param("auto", path="read", help="faiss .index file; 'auto' = the model's workspace index; '' = none")
    out_dir: str = param("", path="write", help="Output folder (default: <workspace>/outputs)")
    hubert: str = param("", path="read", help="Content encoder hubert_base.pt or a transformers folder (default: the one "
                                              "the model records, else VOICELAB_HUBERT / settings / assets/hubert/hubert_base.pt)")
    rmvpe: str = param("", path="read", help="RMVPE weights for --f0-method rmvpe "
                                             "(default: VOICELAB_RMVPE / settings / assets/rmvpe/rmvpe.pt)")


@operation("rvc.convert", params=ConvertJob, kind="listening", title="RVC voice conversion",
           cli=Command("rvc convert", "Convert audio files or folders with an RVC model", positional=("inputs+",),
                       json_key="report"), render=lambda res: res["details"])
def convert_op(p: ConvertJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.infer.convert import convert_files

    model = resolve_model(ws, p.model)
    index = resolve_index(ws, p.index, model)
    if index:
        hooks.log(f"index: {index}")
    report = convert_files(ws, model, list(p.inputs), subset(p, ConvertParams), index_path=index,
                           out_dir=p.out_dir or None, hooks=hooks, encoder_path=p.hubert or None,
                           rmvpe_path=p.rmvpe or None)
    if not report.converted:
        first = report.failed[0] if report.failed else None
        error, hint = messages_of_ref(first.error_ref or "") if first else (None, "")
        if first is None:
            raise InvalidInputError(msg("convert.nothing_converted", tried=len(report.files)))
        raise InvalidInputError(msg("convert.nothing_converted_because", tried=len(report.files),
                                    error=error or first.error), hint or first.hint or msg("convert.see_log"))
    d = jsonable(report.to_dict())
    used = Path(report.model).name + (f" + {Path(report.index).name}" if report.index else "")
    counts = {"done": len(report.converted), "total": len(report.files), "model": used}
    done = (msg("convert.summary_failed", **counts, failed=len(report.failed)) if report.failed
            else msg("convert.summary", **counts))
    return {"summary": report.summary().splitlines()[0] + (f", {len(report.failed)} failed" if report.failed else ""),
            "summary_message": done,
            "outputs": [f.output for f in report.converted],
            "errors": [{"input": f.input, "error": f.error, "hint": f.hint, "error_ref": f.error_ref}
                       for f in report.failed],
            "stage_totals": d["stage_totals"], "report": d, "details": report.summary(),
            "exit_code": 3 if report.failed else 0}


# -- checkpoint tools -------------------------------------------------------------------------

def _weights_target(ws: Workspace, name: str, out: str, overwrite: bool) -> Path:
    if out.strip():
        target = Path(out.strip())
    else:
        stem = safe_name(name[:-4] if name.lower().endswith(".pth") else name)
        target = ws.weights / f"{stem}.pth"
    if target.exists() and not overwrite:
        raise InvalidInputError(f"{target.name} already exists in {target.parent}.",
                                "Choose another name or allow overwriting (--overwrite).")
    return target


@dataclass
class ModelInfoParams:
    model: str = param(path="read", help="Model .pth (a path, or a name in <workspace>/weights), or a G_*.pth checkpoint")


def _render_info(res: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in res["info"].items())


@operation("rvc.ckpt_info", params=ModelInfoParams, kind="inline", title="Model info",
           cli=Command("rvc ckpt info", "Version, sample rate, f0, epoch, steps, parameters and hash of a model",
                       positional=("model",), json_key="info"), render=_render_info)
def info_op(p: ModelInfoParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.checkpoints import model_info

    return {"info": jsonable(model_info(resolve_model(ws, p.model)))}


@dataclass
class ExtractJob:
    checkpoint: str = param("", path="read", help="Training checkpoint G_*.pth (or any generator file)")
    name: str = param("", help="Output name in weights/ (default: <experiment>_<checkpoint>)")
    out: str = param("", path="write", help="Output path instead of weights/<name>.pth")
    sr: Literal["", "32k", "40k", "48k"] = param("", help="Sample rate check/hint (empty = from the file)")
    version: Literal["", "v1", "v2"] = param("", help="Version check (empty = from the file)")
    f0: Literal[-1, 0, 1] = param(-1, help="Pitch-guided model: 1 or 0 (-1 = from the file)")
    info: str = param("", help="Text stored in the model's info field")
    overwrite: bool = param(False, help="Replace a model of the same name")


@operation("rvc.ckpt_extract", params=ExtractJob, kind="cpu", title="Extract a small RVC model",
           cli=Command("rvc ckpt extract", "Write a small inference model from a G_*.pth training checkpoint",
                       positional=("checkpoint",)))
def extract_op(p: ExtractJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.checkpoints import extract_small_model, model_info

    src = Path(p.checkpoint)
    if not src.is_file():
        raise InvalidInputError(f"Checkpoint not found: {p.checkpoint}", "Give the path of a G_*.pth file.")
    target = _weights_target(ws, p.name.strip() or f"{src.parent.name}_{src.stem}", p.out, p.overwrite)
    out = extract_small_model(src, target, sr=p.sr or None, f0=None if p.f0 < 0 else bool(p.f0),
                              version=p.version or None, info=p.info, hooks=hooks)
    return {"summary": f"small model written: {out}", "model": str(out), "info": jsonable(model_info(out))}


@dataclass
class MergeJob:
    model_a: str = param("", path="read", help="Model A (.pth path or name in weights/)")
    model_b: str = param("", path="read", help="Model B (.pth path or name in weights/)")
    alpha: float = param(0.5, min=0.0, max=1.0, step=0.05, help="Share of model A (1 = only A, 0 = only B)")
    name: str = param("", help="Output name in weights/ (default: <A>+<B>_a<alpha>)")
    out: str = param("", path="write", help="Output path instead of weights/<name>.pth")
    info: str = param("", help="Text stored in the model's info field")
    overwrite: bool = param(False, help="Replace a model of the same name")


@operation("rvc.ckpt_merge", params=MergeJob, kind="cpu", title="Merge two RVC models",
           cli=Command("rvc ckpt merge", "Blend two models of the same architecture: alpha*A + (1-alpha)*B",
                       positional=("model_a", "model_b")))
def merge_op(p: MergeJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.checkpoints import merge_models, model_info

    a, b = resolve_model(ws, p.model_a), resolve_model(ws, p.model_b)
    target = _weights_target(ws, p.name.strip() or f"{a.stem}+{b.stem}_a{p.alpha:g}", p.out, p.overwrite)
    out = merge_models(a, b, p.alpha, target, info=p.info, hooks=hooks)
    return {"summary": f"merged model written: {out}", "model": str(out), "info": jsonable(model_info(out))}
