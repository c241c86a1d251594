"""Job operations for the Settings/Assets panel: download and import run in the background."""

from __future__ import annotations

from dataclasses import dataclass

from engines.core.hooks import Hooks
from engines.core.jobs import operation
from engines.core.params import param
from engines.core.settings import Workspace


@dataclass
class AssetsDownloadParams:
    names: list[str] = param(default_factory=list, help="Asset names to download (see `voicelab assets list`)")
    all: bool = param(False, help="Download every downloadable asset")
    source: str = param("hf", help="Where from: hf (honours HF_ENDPOINT mirrors) or modelscope",
                        choices=("hf", "modelscope"))
    force: bool = param(False, help="Download again even when the file is present and intact")


@dataclass
class AssetsImportParams:
    source_dir: str = param("", help="Folder of an existing RVC WebUI / Applio / CosyVoice install")
    copy: bool = param(False, help="Copy the files instead of symlinking them")


@operation("assets.download", params=AssetsDownloadParams, kind="light", title="Download model files")
def download_op(params: AssetsDownloadParams, hooks: Hooks, ws: Workspace) -> dict:
    """Download, verify and install the requested assets."""
    from engines.assets.download import download_assets

    results = download_assets(ws.settings, params.names, all_assets=params.all, source=params.source,
                              force=params.force, hooks=hooks)
    done = [r.name for r in results if r.action == "downloaded"]
    return {"results": [r.to_dict() for r in results],
            "summary": f"{len(done)} downloaded, {len(results) - len(done)} already present"}


@operation("assets.import", params=AssetsImportParams, kind="light", title="Import model files from a folder")
def import_op(params: AssetsImportParams, hooks: Hooks, ws: Workspace) -> dict:
    """Find, verify and link/copy assets from another install."""
    from engines.assets.importer import import_assets

    report = import_assets(ws.settings, params.source_dir, copy=params.copy, hooks=hooks)
    return report.to_dict()
