"""Asset operations: check what is present, list the manifest, import from another install, download.

The Settings/Assets panel submits download and import as jobs; ``voicelab
assets ...`` runs the same functions in the foreground.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engines.core.hooks import Hooks
from engines.core.ops import Command, operation
from engines.core.params import param
from engines.core.settings import Workspace


@dataclass
class AssetsCheckParams:
    names: list[str] = param(default_factory=list, help="Only these assets (default: all)")
    verify: bool = param(False, help="Re-hash every file (ignore the hash cache)")


def _render_check(res: dict) -> str:
    lines = [res["table"]]
    if res["features"]:
        lines.append("\nFEATURE                READY  NEEDS")
        lines += [f"{name:<22} {'yes' if f['ready'] else 'no':<6} {', '.join(f['missing'])}"
                  for name, f in res["features"].items()]
    lines += [f"warning: {a['warning']}" for a in res["assets"] if a["warning"]]
    if any(not a["usable"] and a["command"] for a in res["assets"]):
        lines.append("\nTo fix: voicelab assets download NAME...  |  voicelab assets import --from DIR")
    return "\n".join(lines)


@operation("assets.check", params=AssetsCheckParams, kind="inline", title="Check model files",
           cli=Command("assets check", "Which model files are present, intact, and which features can run",
                       positional=("names*",), read_only=True), render=_render_check)
def check_op(p: AssetsCheckParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.assets.check import check_assets, feature_readiness, format_table

    statuses = check_assets(ws.settings, names=p.names or None, verify=p.verify, hooks=hooks)
    ready = feature_readiness(statuses)
    bad = [s for s in statuses if s.status in ("wrong-size", "wrong-hash") and not s.usable]
    return {"assets": [s.to_dict() for s in statuses],
            "features": {k: {"ready": r, "missing": m} for k, (r, m) in ready.items()},
            "table": format_table(statuses), "exit_code": 1 if bad else 0}


@dataclass
class AssetsListParams:
    pass


def _render_list(res: dict) -> str:
    lines = []
    for r in res["assets"]:
        size = f"{r['size']:,} B" if r["size"] else "size ?"
        lines.append(f"{r['name']:<32} {r['kind']:<7} {size:>16}  {r['title']}")
        lines.append(f"{'':<32} -> {r['path']}   [{', '.join(r['features']) or '-'}]")
        if r["sources"]:
            lines.append(f"{'':<32}    from {'; '.join(r['sources'])}")
    return "\n".join(lines)


@operation("assets.list", params=AssetsListParams, kind="inline", title="Known model files",
           cli=Command("assets list", "Every asset the studio knows: where it goes and where it comes from",
                       json_key="assets", read_only=True), render=_render_list)
def list_op(p: AssetsListParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.assets.manifest import asset_path, load_manifest

    manifest = load_manifest()
    return {"assets": [
        {"name": spec.name, "kind": spec.kind, "path": str(asset_path(ws.settings, spec.name, manifest)),
         "size": spec.size, "sha256": spec.sha256, "features": manifest.features_of(spec.name),
         "sources": spec.sources(), "license": spec.license, "title": spec.title}
        for spec in manifest.assets.values()]}


@dataclass
class AssetsDownloadParams:
    names: list[str] = param(default_factory=list, help="Asset names to download (see `voicelab assets list`)")
    all: bool = param(False, help="Download every downloadable asset")
    source: Literal["hf", "modelscope"] = param("hf", help="Where from: hf (honours HF_ENDPOINT mirrors) or modelscope")
    force: bool = param(False, help="Download again even when the file is present and intact")


@operation("assets.download", params=AssetsDownloadParams, kind="cpu", title="Download model files",
           cli=Command("assets download", "Download model files (Hugging Face, HF_ENDPOINT mirror, or ModelScope)",
                       positional=("names*",), json_key="results"),
           render=lambda res: "\n".join(f"{r['action']:<10} {r['name']:<32} {r['path']}" for r in res["results"]))
def download_op(params: AssetsDownloadParams, hooks: Hooks, ws: Workspace) -> dict:
    """Download, verify and install the requested assets."""
    from engines.assets.download import download_assets

    results = download_assets(ws.settings, params.names, all_assets=params.all, source=params.source,
                              force=params.force, hooks=hooks)
    done = [r.name for r in results if r.action == "downloaded"]
    return {"results": [r.to_dict() for r in results],
            "summary": f"{len(done)} downloaded, {len(results) - len(done)} already present"}


@dataclass
class AssetsImportParams:
    source_dir: str = param(flag="--from", path="import_source", help="Folder of an existing RVC WebUI / Applio / CosyVoice install")
    copy: bool = param(False, help="Copy the files instead of symlinking them")
    names: list[str] = param(default_factory=list, help="Only these assets (default: all found)")


def _render_import(res: dict) -> str:
    lines = [f"{i['action']:<9} {i['name']:<32} {i['source']}" + (f"\n{'':<42}{i['detail']}" if i["detail"] else "")
             for i in res["items"] if i["action"] != "not-found"]
    return "\n".join([*lines, res["summary"]])


@operation("assets.import", params=AssetsImportParams, kind="cpu", title="Import model files from a folder",
           cli=Command("assets import", "Link (or copy) model files from an RVC WebUI / Applio / CosyVoice folder",
                       positional=("names*",)), render=_render_import)
def import_op(params: AssetsImportParams, hooks: Hooks, ws: Workspace) -> dict:
    """Find, verify and link/copy assets from another install."""
    from engines.assets.importer import CONFLICT, import_assets

    report = import_assets(ws.settings, params.source_dir, copy=params.copy, names=params.names or None, hooks=hooks)
    return {**report.to_dict(), "exit_code": 1 if report.by_action(CONFLICT) else 0}
