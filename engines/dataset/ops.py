"""Dataset jobs: import audio into a dataset, transcribe its clips."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from engines.core.hooks import Hooks
from engines.core.jobs import operation
from engines.core.params import param
from engines.core.settings import Workspace
from engines.dataset.importer import DatasetParams, create_or_import_dataset


@dataclass
class DatasetImportJob(DatasetParams):
    name: str = param("", help="Dataset name (created if new; otherwise clips are added)")
    sources: list[str] = param(default_factory=list, help="Audio files, zip archives or folders", cli=False)


@operation("dataset.import", params=DatasetImportJob, kind="light", title="Import audio into a dataset")
def import_dataset(p: DatasetImportJob, hooks: Hooks, ws: Workspace) -> dict:
    processing = DatasetParams(**{f.name: getattr(p, f.name) for f in fields(DatasetParams)})
    report = create_or_import_dataset(ws, p.name, list(p.sources), processing, hooks)
    summary = f"{report.added_clips} clip(s) added ({report.added_seconds:.1f} s), {len(report.skipped)} file(s) skipped"
    return {"summary": summary, "dataset": report.name, "report": asdict(report)}
