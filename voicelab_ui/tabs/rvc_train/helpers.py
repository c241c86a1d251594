"""Data helpers of the RVC Train tab (no Gradio state): pitch methods, pretrained files, what a run
needs, loss curves, saved files, each save's previews."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engines.ab.scores import DIRECTIONS, best_saves, read_scores
from engines.assets.check import human_size
from engines.core.errors import InvalidInputError
from engines.rvc.ops.catalog import read_metrics, saved_files
from engines.rvc.ops.train import pretrained_asset_names, pretrained_paths
from engines.rvc.train.previews import read_previews
from voicelab_ui.context import UIContext
from voicelab_ui.widgets import outcome_line

MAX_PLOT_POINTS = 1500  # per series; longer runs are thinned evenly
LOSS_SERIES = (("loss_gen_all", "G total"), ("loss_mel", "mel"), ("loss_kl", "kl"), ("loss_fm", "fm"),
               ("loss_disc", "D"))
PREFERRED_F0 = ("rmvpe", "fcpe", "crepe", "harvest", "pm")
OK, BAD = "✔", "✘"
MAX_PREVIEW_PLAYERS = 4


def f0_choices(ws: Any, rmvpe_path: str = "") -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Dropdown choices for the pitch method (unavailable ones marked) and the reason of each unavailable one."""
    from engines.rvc.pitch.f0 import available_f0_methods

    rmvpe = rmvpe_path or str(ws.settings.resolved_rmvpe())
    status = available_f0_methods(rmvpe)
    reasons = {m: why for m, (ok, why) in status.items() if not ok}
    return [(m if ok else f"{m} (unavailable)", m) for m, (ok, _) in status.items()], reasons


def default_f0_method(reasons: dict[str, str]) -> str:
    return next((m for m in PREFERRED_F0 if m not in reasons), "rmvpe")


def standard_pretrained(ws: Any) -> set[str]:
    """Paths of every standard pretrained G/D (a field holding one of these follows sr/version/f0)."""
    out: set[str] = set()
    for sr in ("32k", "40k", "48k"):
        for version in ("v1", "v2"):
            for f0 in (True, False):
                out.update(str(p) for p in pretrained_paths(ws.settings, sr, version, f0))
    return out


def pretrained_sets(ws: Any, sr: str, version: str, f0: bool) -> list[tuple[str, str]]:
    """Dropdown choices of the pretrained G/D sets that fit this run (official first, then the user's own),
    each labelled with what its generator is (read from the file); the value is the set's name."""
    from engines.rvc.pretrained import catalog

    return [(f"{row['name']} ({row['g_info']})" if row.get("g_info") else row["name"], row["name"])
            for row in catalog(ws.settings, sr, version, bool(f0)) if row["fits"]]


def pretrained_set_files(ws: Any, name: str, sr: str, version: str, f0: bool) -> tuple[str, str] | None:
    """(G, D) of the set called ``name`` when it fits this run, else None."""
    from engines.rvc.pretrained import catalog

    row = next((r for r in catalog(ws.settings, sr, version, bool(f0)) if r["name"] == name and r["fits"]), None)
    return (row["g"], row["d"]) if row else None


def pretrained_for(ws: Any, sr: str, version: str, f0: bool, current_g: str, current_d: str) -> tuple[str, str]:
    """The pretrained G/D fields after a change of sr/version/f0: the matching files when present
    (empty = from scratch when absent); a path the user typed himself is kept."""
    standard = standard_pretrained(ws)
    out = []
    for current, path in zip((current_g, current_d), pretrained_paths(ws.settings, sr, version, bool(f0))):
        if current and current not in standard:
            out.append(current)
        else:
            out.append(str(path) if path.is_file() else "")
    return out[0], out[1]


def asset_rows(ws: Any, sr: str, version: str, f0: bool, f0_method: str, hubert_path: str = "",
               rmvpe_path: str = "", pretrained_g: str = "", pretrained_d: str = "") -> list[dict[str, str]]:
    """What this run needs and whether it is here: item, ok, where, and the command when it is not."""
    from engines.assets.check import check_assets
    from engines.assets.manifest import load_manifest

    manifest = load_manifest()
    rows: list[dict[str, str]] = []
    if hubert_path:
        ok = Path(hubert_path).exists()
        rows.append({"item": "HuBERT content encoder", "ok": ok, "where": hubert_path,
                     "fix": "" if ok else "fix the HuBERT path, or empty it to use the settings' file"})
    else:
        s = check_assets(ws.settings, manifest, names=["hubert_base"], hash_files=False)[0]
        rows.append({"item": "HuBERT content encoder", "ok": s.ok, "where": s.path + (f" ({s.status})" if not s.ok else ""),
                     "fix": s.command})
    if f0:
        _, reasons = f0_choices(ws, rmvpe_path)
        why = reasons.get(f0_method, "")
        rows.append({"item": f"Pitch method '{f0_method}'", "ok": not why, "where": why or "available", "fix": ""})
    g_name, d_name = pretrained_asset_names(sr, version, bool(f0))
    for value, name, what in ((pretrained_g, g_name, "G"), (pretrained_d, d_name, "D")):
        standard = pretrained_paths(ws.settings, sr, version, bool(f0))[0 if what == "G" else 1]
        if value and Path(value) != standard:
            ok = Path(value).is_file()
            rows.append({"item": f"Pretrained {what} (your file)", "ok": ok, "where": value,
                         "fix": "" if ok else "fix the path, or empty it to train from scratch"})
            continue
        present = standard.is_file()
        fix = "" if present else f"voicelab assets download {g_name} {d_name}"
        note = "" if present else " — missing; without it training starts from scratch"
        if present and not value:
            note = " — present but not selected (training from scratch)"
        rows.append({"item": f"Pretrained {what} `{name}`", "ok": present, "where": f"{standard}{note}", "fix": fix})
    return rows


def assets_markdown(rows: list[dict[str, Any]], reasons: dict[str, str]) -> str:
    lines = ["| | Needed | Where / status | Fix |", "|---|---|---|---|"]
    for r in rows:
        command, _, rest = r["fix"].partition(" (")
        fix = f"`{command}`" + (f" ({rest}" if rest else "") if command.startswith("voicelab ") else r["fix"]
        lines.append(f"| {OK if r['ok'] else BAD} | {r['item']} | {str(r['where']).replace('|', '/')} | {fix} |")
    if reasons:
        lines.append("")
        lines.append("Unavailable pitch methods: " + "; ".join(f"**{m}**: {why}" for m, why in reasons.items()))
    return "\n".join(lines)


def loss_frames(ws: Any, exp: str) -> tuple[Any, Any]:
    """(losses: smoothed with the raw values behind, learning rate) frames from the experiment's step records."""
    import pandas as pd

    from voicelab_ui.tabs.rvc_train.machine import smoothed_loss_rows

    records = read_metrics(ws, exp, "step") if exp else []
    loss = smoothed_loss_rows(records, LOSS_SERIES)
    stride = max(1, -(-len(records) // MAX_PLOT_POINTS))
    if stride > 1:
        records = records[::stride] + ([records[-1]] if (len(records) - 1) % stride else [])
    lr = [{"step": int(r.get("step", 0)), "lr": float(r["lr"])} for r in records if isinstance(r.get("lr"), (int, float))]
    return (pd.DataFrame(loss, columns=["step", "loss", "series"]), pd.DataFrame(lr, columns=["step", "lr"]))


# (score key, table column / plot series); the best save per score is starred in the table
SCORE_COLUMNS = (("speaker_similarity", "speaker sim"), ("pitch_cents", "pitch err (cents)"), ("cer", "CER"),
                 ("heldout_mel_l1", "held-out mel L1"))
BEST = "★"


def saved_rows(ws: Any, exp: str) -> list[list[Any]]:
    """One row per saved file; small models also show their scores (the best save per score starred)."""
    kinds = {"G": "G checkpoint", "D": "D checkpoint", "model": "small model"}
    records = read_scores(ws, exp) if exp else []
    by_model = {Path(r["model"]).name: r for r in records}
    best = {k: Path(b["model"]).name for k, b in best_saves(records).items()}
    rows = []
    for s in saved_files(ws, exp):
        row = [kinds[s.kind], s.path.name, "" if s.epoch is None else s.epoch, s.step, human_size(s.size),
               time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.mtime))]
        rec = by_model.get(s.path.name) if s.kind == "model" else None
        for key, _ in SCORE_COLUMNS:
            value = (rec or {}).get("scores", {}).get(key)
            row.append("" if value is None else f"{value:g}" + (f" {BEST}" if best.get(key) == s.path.name else ""))
        rows.append(row)
    return rows


def score_frame(ws: Any, exp: str) -> Any:
    """Scores against epoch for the plot, each scaled 0..1 over the run with 1 = best (they have different units).

    Each series is named with its best save ("speaker sim (★ epoch 12)"), so the legend marks it."""
    import pandas as pd

    records = read_scores(ws, exp) if exp else []
    best = best_saves(records)
    rows = []
    for key, name in SCORE_COLUMNS:
        pts = [(r["epoch"], r["scores"][key]) for r in records if (r.get("scores") or {}).get(key) is not None]
        if not pts:
            continue
        label = f"{name} ({BEST} epoch {best[key]['epoch']})" if key in best else name
        vals = [v for _, v in pts]
        lo, hi = min(vals), max(vals)
        for epoch, v in pts:
            x = 1.0 if hi == lo else (v - lo) / (hi - lo)
            rows.append({"epoch": epoch, "score": x if DIRECTIONS[key] else 1.0 - x, "series": label})
    return pd.DataFrame(rows, columns=["epoch", "score", "series"])


def best_markdown(ws: Any, exp: str) -> str:
    """The best save per score, in words (the plot's scale hides the units)."""
    records = read_scores(ws, exp) if exp else []
    if not records:
        return ""
    best = best_saves(records)
    labels = dict(SCORE_COLUMNS)
    enc = next((r.get("encoder") for r in reversed(records) if r.get("encoder")), None)
    parts = [f"{labels[k]}: **epoch {b['epoch']}** ({b['value']:g})" for k, b in best.items() if k in labels]
    return f"{BEST} Best save per score — " + "; ".join(parts) + (f" (speaker encoder: {enc})" if enc else "")


def view_stamp(ws: Any, exp: str) -> str:
    """Changes whenever the experiment's metrics or saved files change (cheap: a few stats)."""
    if not exp:
        return ":none"
    parts = [exp]
    try:
        root = ws.experiment_dir(exp)
    except InvalidInputError:
        return f"{exp}:invalid"
    for path in (root, root / "metrics.jsonl", root / "previews.jsonl", root / "scores.jsonl", ws.weights):
        try:
            st = path.stat()
            parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
    return "|".join(parts)


def training_job_running(ctx: UIContext, exp: str) -> bool:
    return any(r.params.get("exp_name") == exp for r in ctx.runner.list(["queued", "running"], op_prefix="rvc.train"))


def last_run_params(ctx: UIContext, exp: str) -> dict[str, Any]:
    """Parameters of the experiment's latest preprocess/train job ({} when there is none)."""
    for rec in ctx.runner.list(op_prefix="rvc.", limit=200):
        if rec.op in ("rvc.train", "rvc.preprocess") and rec.params.get("exp_name") == exp:
            return rec.params
    return {}


def result_markdown(rec: Any) -> str:
    return outcome_line(rec, OK, BAD)


# -- previews of each save

def save_label(rec: dict[str, Any]) -> str:
    return f"epoch {rec['epoch']} · step {rec['step']}"


def preview_choices(ws: Any, exp: str) -> list[tuple[str, str]]:
    """(label, step) of every save with previews, newest first."""
    return [(save_label(r), str(r["step"])) for r in reversed(read_previews(ws, exp))] if exp else []


def preview_players(ws: Any, exp: str, step: str | None) -> list[dict[str, Any]]:
    """The finished clips of one save (``step``; None = the newest): label and audio file for each player."""
    records = read_previews(ws, exp) if exp else []
    rec = next((r for r in records if str(r["step"]) == str(step)), records[-1] if records else None)
    if rec is None:
        return []
    return [{"label": f"{c['name']} ({c['kind']})", "audio": c["output"]} for c in rec["clips"]
            if c.get("ok") and c.get("output") and Path(c["output"]).is_file()][:MAX_PREVIEW_PLAYERS]


def ab_clip_choices(ws: Any, exp: str) -> list[tuple[str, str]]:
    """The clips an A/B comparison of saves can use (the newest save's): yours first, then held-out."""
    records = read_previews(ws, exp) if exp else []
    if not records:
        return []
    clips = sorted(records[-1]["clips"], key=lambda c: c["kind"] != "yours")
    return [(f"{c['name']} ({c['kind']})", c["source"]) for c in clips]


def ab_request(ws: Any, exp: str, steps: list[str] | None, clip: str) -> dict[str, Any]:
    """The ``ab.render`` parameters comparing saves ``steps`` (None = all so far) on ``clip``, with the
    previews' settings (no index, their pitch method and seed), so the previews are reused as takes."""
    import json

    records = read_previews(ws, exp)
    chosen = [r for r in records if steps is None or str(r["step"]) in {str(s) for s in steps}]
    if len(chosen) < 2:
        raise InvalidInputError(f"Pick at least two saves with previews ({len(chosen)} chosen).",
                                "Wait for a second save, or tick two saves.")
    sources = {c["source"] for c in records[-1]["clips"]}
    clip = clip or next(iter(dict(ab_clip_choices(ws, exp)).values()), "")
    if clip not in sources:
        raise InvalidInputError("Pick one of the preview clips to compare on.")
    return {"experiment": exp, "source": clip, "checkpoints": [r["model"] for r in chosen], "index": "none",
            "params": json.dumps({"f0_method": chosen[-1]["params"]["f0_method"]}), "blind": True}
