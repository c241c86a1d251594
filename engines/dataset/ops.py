"""Dataset operations: import audio, stats and clip lists, clip removal, transcription, transcripts.

Each is one params dataclass and one function; the Dataset and CosyVoice tabs
submit them, and ``voicelab dataset ...`` runs them in the foreground.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from engines.core.device import follow_workspace
from engines.core.hooks import Hooks
from engines.core.ops import Command, operation
from engines.core.params import param, subset
from engines.core.settings import Workspace
from engines.dataset.asr import AsrParams
from engines.dataset.importer import DatasetParams


def format_seconds(s: float) -> str:
    m, sec = divmod(float(s), 60.0)
    h, m = divmod(m, 60.0)
    return f"{int(h)}:{int(m):02d}:{sec:04.1f}" if h else f"{int(m)}:{sec:04.1f}"


# -- import ---------------------------------------------------------------------------------

@dataclass
class DatasetImportJob(DatasetParams):
    name: str = param("", help="Dataset name (a folder under <workspace>/datasets; created if new)")
    sources: list[str] = param(default_factory=list, path="read", help="Audio/video files, zip archives or folders", cli=False)
    must: Literal["", "new", "existing"] = param("", help="Require a new dataset or an existing one", cli=False)


def _render_import(res: dict) -> str:
    r = res["report"]
    lines = [f"Dataset '{r['name']}': added {r['added_clips']} clip(s), {format_seconds(r['added_seconds'])} of audio; "
             f"{r['total_clips']} clip(s) in total."]
    if r["dropped_short"]:
        lines.append(f"  {r['dropped_short']} piece(s) shorter than {res['min_clip_seconds']} s were dropped.")
    lines += [f"  skipped {s['source']}: {s['reason']}" for s in r["skipped"]]
    lines.append(f"  {r['path']}")
    return "\n".join(lines)


@operation("dataset.import", params=DatasetImportJob, kind="cpu", title="Import audio into a dataset",
           cli=(Command("dataset create", "Create a new dataset from files, zips or folders",
                        positional=("name", "sources+"), preset={"must": "new"}, json_key="report"),
                Command("dataset import", "Add files, zips or folders to an existing dataset",
                        positional=("name", "sources+"), preset={"must": "existing"}, json_key="report")),
           render=_render_import)
def import_dataset(p: DatasetImportJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.dataset.importer import create_or_import_dataset

    report = create_or_import_dataset(ws, p.name, list(p.sources), subset(p, DatasetParams), hooks,
                                      must_be_new=p.must == "new", must_exist=p.must == "existing")
    summary = f"{report.added_clips} clip(s) added ({report.added_seconds:.1f} s), {len(report.skipped)} file(s) skipped"
    return {"summary": summary, "dataset": report.name, "report": asdict(report),
            "min_clip_seconds": p.min_clip_seconds}


# -- stats, clip list, clip removal ----------------------------------------------------------

@dataclass
class DatasetName:
    name: str = param(help="Dataset name")


def _render_stats(res: dict) -> str:
    st = res["stats"]
    lines = [f"Dataset '{st['name']}' ({st['path']})",
             f"  clips: {st['clips']}   total: {format_seconds(st['total_seconds'])}   min/mean/max: "
             f"{st['min_seconds']:.2f}/{st['mean_seconds']:.2f}/{st['max_seconds']:.2f} s",
             "  sample rates: " + (", ".join(f"{r} Hz x{n}" for r, n in st["rate_histogram"].items()) or "-"),
             f"  clipped clips: {st['clipped_clips']}   silent clips: {st['silent_clips']}   "
             f"sources: {st['sources']}   skipped files: {st['skipped_files']}"]
    lines += [f"  skipped {s['source']}: {s['reason']}" for s in st["skipped"]]
    return "\n".join(lines)


@operation("dataset.stats", params=DatasetName, kind="inline", title="Dataset statistics",
           cli=Command("dataset stats", "Clip count, durations, sample rates, clipped/silent clips",
                       positional=("name",), json_key="stats"), render=_render_stats)
def stats_op(p: DatasetName, hooks: Hooks, ws: Workspace) -> dict:
    from engines.dataset.stats import dataset_stats

    return {"stats": asdict(dataset_stats(ws, p.name))}


@dataclass
class DatasetListParams:
    name: str = param("", help="A dataset whose clips to list (empty: list the datasets)")
    page: int = param(1, min=1, help="Page of clips")
    page_size: int = param(50, min=1, max=1000, help="Clips per page")


def _render_list(res: dict) -> str:
    if "datasets" in res:
        return "\n".join(res["datasets"]) or f"No datasets in {res['folder']}."
    lines = [f"{c['id']}  {c['duration']:6.2f}s  {c['sample_rate']:>5}Hz  {c['rms_db']:6.1f}dB  "
             f"{'C' if c['clipped'] else '-'}{'S' if c['silent'] else '-'}  {c['source']} @{c['start']:.2f}s"
             for c in res["clips"]]
    return "\n".join([*lines, f"page {res['page']}: {len(res['clips'])} of {res['total']} clip(s)"])


@operation("dataset.list", params=DatasetListParams, kind="inline", title="List datasets or clips",
           cli=Command("dataset list", "List datasets, or the clips of one dataset", positional=("name?",)),
           render=_render_list)
def list_op(p: DatasetListParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.dataset.stats import list_clips, list_datasets

    if not p.name:
        return {"datasets": list_datasets(ws), "folder": str(ws.datasets)}
    rows, total = list_clips(ws, p.name, p.page, p.page_size)
    return {"total": total, "page": p.page, "page_size": p.page_size, "clips": rows}


@dataclass
class DeleteClipsParams:
    name: str = param(help="Dataset name")
    clip_ids: list[str] = param(default_factory=list, help="Clip ids to remove")


@operation("dataset.delete_clips", params=DeleteClipsParams, kind="inline", title="Remove clips from a dataset",
           cli=Command("dataset delete-clip", "Remove clips from a dataset by id", positional=("name", "clip_ids+")))
def delete_clips_op(p: DeleteClipsParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.dataset.stats import delete_clip

    for cid in p.clip_ids:
        delete_clip(ws, p.name, cid)
    return {"summary": f"Deleted {len(p.clip_ids)} clip(s) from '{p.name}'.", "deleted": list(p.clip_ids)}


# -- transcription --------------------------------------------------------------------------

@dataclass
class TranscribeJob(AsrParams):
    dataset: str = param("", help="Dataset whose clips are transcribed")


def _transcribe_commands() -> tuple[Command, ...]:
    text = "Transcribe a dataset's clips with faster-whisper (offline by default); text you edited is kept"
    return tuple(Command(f"{group} transcribe", text, positional=("dataset",), json_key="report")
                 for group in ("dataset", "cosyvoice"))


@operation("dataset.transcribe", params=TranscribeJob, kind="training", title="Transcribe a dataset (Whisper)",
           cli=_transcribe_commands())
def transcribe_op(p: TranscribeJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.core.errors import InvalidInputError
    from engines.dataset.asr import transcribe_dataset

    if not p.dataset.strip():
        raise InvalidInputError("No dataset chosen.", "Pick the dataset to transcribe.")
    params = subset(p, AsrParams)
    params.asr_device = follow_workspace(params.asr_device, ws)
    rep = transcribe_dataset(ws, p.dataset, params, hooks)
    summary = (f"transcribed {rep.transcribed}, already done {rep.skipped_existing}, kept edited {rep.kept_edited}, "
               f"failed {len(rep.failed)} -> {rep.transcripts}")
    return {"summary": summary, "dataset": p.dataset, "transcripts": rep.transcripts, "report": asdict(rep),
            "exit_code": 1 if rep.failed and not rep.transcribed else 0}


@dataclass
class TranscriptsParams:
    dataset: str = param(help="Dataset name")
    import_from: str = param("", flag="--import", help="Import a list file (path|text, path|spk|lang|text, "
                                                       "'utt text') or a folder of .lab/.txt", path="read")
    import_beside: bool = param(False, help="Import .lab/.txt files lying beside the clips")
    set: list[str] = param(default_factory=list, help="Set clips' text: CLIP=TEXT (several allowed)")
    drop: list[str] = param(default_factory=list, help="Clips to leave out of TTS data")
    undrop: list[str] = param(default_factory=list, help="Dropped clips to take back")


def _render_transcripts(res: dict) -> str:
    lines = [res["import"]] if res.get("import") else []
    for row in res["rows"]:
        flag = "-" if row["entry"] is None else "D" if row["entry"]["dropped"] else "E" if row["entry"]["edited"] else " "
        lines.append(f"{flag} {row['clip']}\t{row['entry']['text'] if row['entry'] else ''}")
    return "\n".join(lines)


def _transcripts_commands() -> tuple[Command, ...]:
    text = "Show, import, edit or drop a dataset's transcripts"
    return tuple(Command(f"{group} transcripts", text, positional=("dataset",), json_key="transcripts")
                 for group in ("dataset", "cosyvoice"))


@operation("dataset.transcripts", params=TranscriptsParams, kind="inline", title="Edit a dataset's transcripts",
           cli=_transcripts_commands(), render=_render_transcripts)
def transcripts_op(p: TranscriptsParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.core.errors import InvalidInputError
    from engines.dataset.transcripts import (
        dataset_clips,
        drop_clip,
        import_transcripts,
        load_transcripts,
        set_text,
    )

    dataset_dir = ws.dataset_dir(p.dataset)
    imported = ""
    if p.import_from or p.import_beside:
        rep = import_transcripts(dataset_dir, p.import_from or None)
        imported = (f"imported {rep.matched}; unmatched {len(rep.unmatched)}; clips without text {len(rep.missing)}"
                    + "".join(f"\n  unmatched: {key}" for key in rep.unmatched[:20]))
    for item in p.set:
        clip_id, sep, text = item.partition("=")
        if not sep:
            raise InvalidInputError(f"'{item}' is not CLIP=TEXT.", "Example: --set 000001='Hello there.'")
        set_text(dataset_dir, clip_id.strip(), text)
    for clip_id in p.drop:
        drop_clip(dataset_dir, clip_id, True)
    for clip_id in p.undrop:
        drop_clip(dataset_dir, clip_id, False)
    entries = load_transcripts(dataset_dir)
    rows = [{"clip": c.id, "entry": entries.get(c.id)} for c in dataset_clips(dataset_dir)]
    return {"transcripts": entries, "rows": rows, "import": imported}
