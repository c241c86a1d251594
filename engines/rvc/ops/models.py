"""Operations for the models users bring: ``rvc.import`` (community voices, installs, runs, pretrained sets)
and ``rvc.pretrained`` (which pretrained G/D fit an experiment's settings).

The Convert tab and the Settings/Assets panel submit ``rvc.import`` as a job;
``voicelab rvc import SRC`` and ``voicelab rvc pretrained`` run the same
functions in the foreground. Nothing here imports torch at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engines.core.hooks import Hooks
from engines.core.ops import Command, operation
from engines.core.params import param
from engines.core.settings import Workspace


@dataclass
class ModelImportJob:
    source: str = param(help="A .zip, a folder, a .pth/.index file, an http(s) URL or a Hugging Face repo id "
                             "(owner/name); also an RVC WebUI / Applio install or one of its logs/<exp> runs")
    name: str = param("", help="Name of what is imported: the voice (one voice), the run (one run) or the pretrained set")
    choose: list[str] = param(default_factory=list,
                              help="The index of a voice when several fit: VOICE=INDEX or VOICE=none (one per voice)")
    experiments: list[str] = param(default_factory=list,
                                   help="Training runs of an install to import to keep training them (names, or 'all')")
    target: Literal["voices", "pretrained"] = param(
        "voices", flag="--as", help="voices: into weights/ + indices/; pretrained: G/D into assets/pretrained_custom/")
    all_checkpoints: bool = param(False, help="Copy every G/D pair of an imported run, not only the newest")
    overwrite: bool = param(False, help="Replace a file of the same name but other content (default: keep both)")
    revision: str = param("main", help="Hugging Face revision (branch, tag or commit)")


def _render_import(res: dict) -> str:
    lines = []
    for v in res["voices"]:
        index = f"  + {v['index']}" if v["index"] else "  (no index)"
        lines.append(f"{v['action']:<9} {v['path']}  [{v['version']} {v['sr']} {'f0' if v['f0'] else 'no-f0'}, "
                     f"{v['encoder']}]{index}" + (f"  ({v['note']})" if v["note"] else ""))
    lines += [f"{i['action']:<9} {i['path']}" for i in res["indexes"] if not res["voices"]]
    lines += [f"{p['action']:<9} {p['path']}  [{p['what']}]" for p in res["pretrained"]]
    for e in res["experiments"]:
        lines.append(f"run       {e['path']}  [{e['version']} {e['sr']}, epoch {e['epoch']}, {e['pieces']} pieces]")
        lines.append(f"          continue training: {e['resume']}")
    for a in res["needs_choice"]:
        lines.append(f"choose    {a['voice']} ({a['version']}): " + " | ".join(a["candidates"]))
    if res.get("experiments_available"):
        lines.append("runs here: " + ", ".join(res["experiments_available"]) + "  (import with --experiments NAME)")
    lines += [f"skipped   {s['file']}: {s['reason']}" for s in res["skipped"]]
    return "\n".join([*lines, res["summary"]])


@operation("rvc.import", params=ModelImportJob, kind="cpu", title="Import RVC models",
           cli=Command("rvc import", "Import voice models (zip, folder, URL, HF repo, RVC WebUI / Applio install)",
                       positional=("source",)), render=_render_import)
def import_op(p: ModelImportJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.model_import import import_models, parse_choices

    return import_models(ws, p.source, name=p.name.strip(), choices=parse_choices(p.choose),
                         experiments=p.experiments, as_pretrained=p.target == "pretrained",
                         all_checkpoints=p.all_checkpoints, overwrite=p.overwrite, revision=p.revision.strip() or "main",
                         hooks=hooks)


@dataclass
class PretrainedQuery:
    sr: Literal["32k", "40k", "48k"] = param("40k", help="The experiment's sample rate")
    version: Literal["v1", "v2"] = param("v2", help="The experiment's model version")
    f0: bool = param(True, help="Pitch-guided model")


def _render_pretrained(res: dict) -> str:
    lines = []
    for r in res["sets"]:
        mark = "fits" if r["fits"] else "no  "
        lines.append(f"{mark}  {r['source']:<8} {r['name']}")
        if r.get("g"):
            lines.append(f"            G {r['g']}" + (f"  [{r['g_info']}]" if r.get("g_info") else ""))
        if r.get("d"):
            lines.append(f"            D {r['d']}" + (f"  [{r['d_info']}]" if r.get("d_info") else ""))
        if r.get("why"):
            lines.append(f"            {r['why']}" + (f"; {r['fix']}" if r.get("fix") else ""))
    return "\n".join([*lines, res["summary"]])


@operation("rvc.pretrained", params=PretrainedQuery, kind="inline", title="Pretrained G/D for an experiment",
           cli=Command("rvc pretrained", "The official and custom pretrained G/D, read from the files, and which fit",
                       json_key="sets"), render=_render_pretrained)
def pretrained_op(p: PretrainedQuery, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.pretrained import catalog, custom_root

    rows = catalog(ws.settings, p.sr, p.version, p.f0)
    fitting = [r["name"] for r in rows if r["fits"]]
    return {"sets": rows, "fitting": fitting, "custom_dir": str(custom_root(ws.settings)),
            "summary": f"{len(fitting)} of {len(rows)} pretrained set(s) fit {p.version} {p.sr} "
                       f"{'with' if p.f0 else 'without'} pitch"}
