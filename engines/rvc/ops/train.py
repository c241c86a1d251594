"""RVC training operations: ``rvc.preprocess`` (the data stages), ``rvc.train`` (everything), and the
previews of each save (``rvc.preview`` renders one save's, ``rvc.previews`` lists them).

Both take :class:`engines.rvc.train.params.TrainParams`, so the RVC Train tab
and ``voicelab rvc preprocess|extract|train`` have the same options. Before
any work starts, :func:`preflight` checks the weight files the requested
stages will need (HuBERT, the pitch method's model, the pretrained G/D), so a
missing file fails at once with the file, its place and the download command,
instead of after a long preprocessing run; a pretrained G/D whose version,
sample rate or pitch setting (read from the file) differs from the
experiment's is refused with the reason. Nothing here imports torch at
import time (``engines.rvc.train.launch`` does, so it is imported inside).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from engines.core.errors import InvalidInputError, MissingAssetError
from engines.core.hooks import Hooks
from engines.core.messages import msg
from engines.core.ops import Command, operation
from engines.core.params import param
from engines.core.settings import Settings, Workspace, safe_name
from engines.rvc.train.params import TrainParams
from engines.rvc.train.previews import PreviewJob

DATA_STAGES = ("preprocess", "f0", "feature")

# Options each command-line step does not use (hidden from its --help).
_TRAINING_ONLY = (
    "total_epoch", "batch_size", "save_every_epoch", "save_every_weights", "keep_latest_only", "pretrained_g",
    "pretrained_d", "precision", "log_interval", "grad_clip", "loader_workers", "cpu_processes", "max_steps", "seed",
    "previews", "scores", "preview_clip", "nnodes", "node_rank", "master_addr", "master_port",
)
_EXTRACT_ONLY = ("version", "f0", "f0_method", "hubert_path", "rmvpe_path", "skip_f0", "skip_feature", "speaker_id",
                 "add_mute", "gpus", "holdout_pieces")


# -- what a run needs ---------------------------------------------------------------------------

def pretrained_asset_names(sr: str, version: str, f0: bool) -> tuple[str, str]:
    """Manifest names of the pretrained G/D matching a model (e.g. ``pretrained_v2/f0G40k``)."""
    folder = "pretrained_v2" if version == "v2" else "pretrained"
    prefix = "f0" if f0 else ""
    return f"{folder}/{prefix}G{sr}", f"{folder}/{prefix}D{sr}"


def pretrained_paths(settings: Settings, sr: str, version: str, f0: bool) -> tuple[Path, Path]:
    """Where the matching pretrained G/D live (or would live) under the assets folder."""
    from engines.assets.manifest import asset_path

    g, d = pretrained_asset_names(sr, version, f0)
    return asset_path(settings, g), asset_path(settings, d)


def rmvpe_location(ws: Workspace, params: TrainParams) -> Path:
    return Path(params.rmvpe_path) if params.rmvpe_path else ws.settings.resolved_rmvpe()


def preflight(ws: Workspace, params: TrainParams, stages: Sequence[str], train: bool) -> None:
    """Raise the error a run of ``stages`` (and training when ``train``) would hit for lack of a file."""
    from engines.assets.manifest import require_asset
    from engines.rvc.pitch.f0 import method_problem

    safe_name(params.exp_name)
    if "preprocess" in stages and not params.skip_preprocess and not params.dataset.strip():
        raise InvalidInputError(msg("train.no_dataset"))
    if "f0" in stages and params.f0 and not params.skip_f0:
        problem = method_problem(params.f0_method, rmvpe_location(ws, params))
        if problem is not None:
            raise problem
    if "feature" in stages and not params.skip_feature:
        if params.hubert_path:
            if not Path(params.hubert_path).exists():
                raise MissingAssetError("hubert_base.pt", params.hubert_path, "voicelab assets download hubert_base",
                                        "HuBERT content features")
        else:
            require_asset(ws.settings, "hubert_base", why="HuBERT content features")
    if train and not _has_checkpoints(ws, params.exp_name):  # a resumed run never loads the pretrained files
        from engines.rvc.pretrained import check_pretrained

        for path, missing in ((params.pretrained_g, msg("train.pretrained_g_missing", path=str(params.pretrained_g))),
                              (params.pretrained_d, msg("train.pretrained_d_missing", path=str(params.pretrained_d)))):
            if path and not Path(path).is_file():
                raise InvalidInputError(missing, msg("train.pretrained_missing.hint"))
        check_pretrained(ws.settings, params.pretrained_g, params.pretrained_d, params.sr, params.version, params.f0)


def _has_checkpoints(ws: Workspace, exp_name: str) -> bool:
    from engines.rvc.ops.catalog import experiment_exists
    from engines.rvc.train.experiment import latest_checkpoint

    if not experiment_exists(ws, exp_name):
        return False
    root = ws.experiment_dir(exp_name)
    return latest_checkpoint(root, "G") is not None and latest_checkpoint(root, "D") is not None


def _count(folder: Path, pattern: str) -> int:
    return sum(1 for _ in folder.glob(pattern)) if folder.is_dir() else 0


# -- operations -------------------------------------------------------------------------------

@dataclass
class PreprocessJob(TrainParams):
    stages: Literal["all", "slice", "extract"] = param(
        "all", help="slice = pieces only; extract = pitch + content features + filelist; all = both", cli=False)


def _preprocess_summary(p: PreprocessJob, paths: Any, cached: bool | None, entries: int | None) -> str:
    pieces = len(paths.piece_names())
    parts = [f"{pieces} pieces in {paths.root}" + (" (cached)" if cached else " (reused)" if cached is None else "")]
    if entries is not None:
        if p.f0:
            parts.append(f"{_count(paths.f0_hz, '*.npy')} pitch files ({p.f0_method})")
        parts.append(f"{_count(paths.features(p.version), '*.npy')} {p.version} feature files")
        parts.append(f"filelist.txt with {entries} entries")
    return f"'{p.exp_name}': " + ", ".join(parts)


@operation("rvc.preprocess", params=PreprocessJob, kind="training", title="RVC: preprocess + extract pitch and features",
           cli=(Command("rvc preprocess", "Slice and normalise a dataset into an experiment (step 1)",
                        preset={"stages": "slice"}, skip=_TRAINING_ONLY + _EXTRACT_ONLY + ("skip_preprocess",)),
                Command("rvc extract", "Extract pitch and HuBERT features, write the filelist (step 2)",
                        preset={"stages": "extract"}, skip=_TRAINING_ONLY + ("dataset", "skip_preprocess"))))
def preprocess_op(p: PreprocessJob, hooks: Hooks, ws: Workspace) -> dict:
    """Steps 1-2 of training: pieces, pitch, content features and filelist.txt (cached stages skipped)."""
    from engines.rvc.models.configs import parse_sr
    from engines.rvc.train.experiment import experiment_paths
    from engines.rvc.train.launch import prepare_experiment
    from engines.rvc.train.preprocess import preprocess_dataset

    stages = {"all": DATA_STAGES, "slice": ("preprocess",), "extract": ("f0", "feature")}[p.stages]
    preflight(ws, p, stages, train=False)
    paths = experiment_paths(ws, p.exp_name)
    cached, entries = None, None
    slicing = "preprocess" in stages and not p.skip_preprocess
    if slicing:
        end = 0.3 if len(stages) > 1 else 1.0
        res = preprocess_dataset(ws, p.exp_name, p.dataset, parse_sr(p.sr)[1], n_processes=p.n_processes,
                                 force=p.force, hooks=hooks.scaled(0.0, end))
        cached = res.cached
    hooks.check_cancel()
    if "f0" in stages:
        entries = prepare_experiment(ws, p, hooks.scaled(0.3 if slicing else 0.0, 1.0), stages=("f0", "feature"))
    return {"summary": _preprocess_summary(p, paths, cached, entries), "exp_name": p.exp_name,
            "exp_dir": str(paths.root), "pieces": len(paths.piece_names()),
            "f0_files": _count(paths.f0_hz, "*.npy") if p.f0 else 0,
            "feature_files": _count(paths.features(p.version), "*.npy"), "filelist": str(paths.filelist),
            "filelist_entries": entries}


def _render_train(res: dict) -> str:
    return "\n".join([f"trained {res['epochs']} epochs / {res['steps']} steps; model: {res['weights']}",
                      *(f"checkpoint model: {m}" for m in res["small_models"])])


@operation("rvc.train", params=TrainParams, kind="training", title="RVC: train a voice model",
           cli=Command("rvc train", "Preprocess, extract and train an RVC model (all steps)"), render=_render_train)
def train_op(p: TrainParams, hooks: Hooks, ws: Workspace) -> dict:
    """The whole pipeline (preprocess -> pitch -> features -> training), resuming from the latest G/D."""
    from engines.rvc.train.launch import run_rvc_training

    preflight(ws, p, DATA_STAGES, train=True)
    res = run_rvc_training(ws, p, hooks)
    if res.weights is None and p.node_rank > 0:
        summary = (f"'{p.exp_name}': node {p.node_rank} of {p.nnodes} trained {res.steps} steps with node 0, which "
                   "saved the checkpoints and models")
        return {"summary": summary, "exp_name": p.exp_name, "exp_dir": str(res.exp_dir), "weights": None,
                "small_models": [], "checkpoints": [], "epochs": res.epochs, "steps": res.steps,
                "last_losses": {k: round(float(v), 5) for k, v in res.last_losses.items()},
                "seconds_per_step": res.seconds_per_step, "seconds": round(res.seconds, 2), "metrics": None,
                "resumed_from": None}
    losses = {k: round(float(v), 5) for k, v in res.last_losses.items()}
    model = res.weights.name if res.weights else "no final model"
    summary = (f"'{p.exp_name}' trained to epoch {res.epochs} ({res.steps} steps, {res.seconds_per_step:.2f} s/step): "
               f"{model}, {len(res.small_models)} checkpoint model(s), {len(res.checkpoints) // 2} G/D pair(s) saved")
    if "loss_mel" in losses:
        summary += f"; last mel loss {losses['loss_mel']:.3f}"
    return {
        "summary": summary,
        "exp_name": p.exp_name,
        "exp_dir": str(res.exp_dir),
        "weights": str(res.weights) if res.weights else None,
        "small_models": [str(s) for s in res.small_models],
        "checkpoints": [str(c) for c in res.checkpoints],
        "epochs": res.epochs,
        "steps": res.steps,
        "last_losses": losses,
        "seconds_per_step": res.seconds_per_step,
        "seconds": round(res.seconds, 2),
        "metrics": str(res.metrics) if res.metrics else None,
        "resumed_from": str(res.resumed_from) if res.resumed_from else None,
    }


# -- previews ------------------------------------------------------------------------------

@operation("rvc.preview", params=PreviewJob, kind="listening", title="RVC: previews of a training save",
           cli=Command("rvc preview", "Convert the preview clips with one save's small model (the Train tab's "
                                      "players)", positional=("exp_name",)))
def preview_op(p: PreviewJob, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.train.previews import render_previews

    safe_name(p.exp_name)
    rec = render_previews(ws, p, hooks)
    ok = sum(c["ok"] for c in rec["clips"])
    if p.scores and ok and hooks.submit is not None:  # scored by name: the scores live in a layer above
        job = hooks.submit("ab.score", {"exp_name": p.exp_name, "models": [p.model]},
                           f"Scores of '{p.exp_name}' at epoch {p.epoch}")
        hooks.log(f"Scores of epoch {p.epoch} queued (job {job}).")
    return {"summary": f"'{p.exp_name}' epoch {p.epoch}: {ok}/{len(rec['clips'])} preview(s) on {rec['device']}",
            "preview": rec, "outputs": [c["output"] for c in rec["clips"] if c["ok"]]}


@dataclass
class PreviewsParams:
    exp_name: str = param(help="Experiment whose saves' previews to list")


def _render_previews(res: dict) -> str:
    lines = []
    for rec in res["previews"]:
        lines.append(f"epoch {rec['epoch']} step {rec['step']}: {Path(rec['model']).name} ({rec['device']})")
        lines += [f"  {c['kind']:<10} {c['name']}: {c['output'] or c['error']}" for c in rec["clips"]]
    return "\n".join(lines) or "no previews yet"


@operation("rvc.previews", params=PreviewsParams, kind="inline", title="Previews of an experiment's saves",
           cli=Command("rvc previews", "List each save's preview clips (held-out and yours)", positional=("exp_name",),
                       json_key="previews"), render=_render_previews)
def previews_op(p: PreviewsParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.rvc.train.previews import read_previews

    safe_name(p.exp_name)
    return {"previews": read_previews(ws, p.exp_name)}
