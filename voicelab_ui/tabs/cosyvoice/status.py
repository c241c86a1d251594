"""CosyVoice tab, status: the doctor's report, syncing upstream, the synthesis workers."""

from __future__ import annotations

from typing import Any

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.paths import MODEL_DIR, confine_value
from engines.cosyvoice.catalog import synth_model_dirs
from engines.cosyvoice.dataprep import default_model_dir
from voicelab_ui.api import client_json
from voicelab_ui.i18n import t
from voicelab_ui.widgets import error_text, submit_job

from .parts import Parts
from .strings import BAD, DOWNLOAD_HINT, INFO, MARK, OK, WARN


def doctor_markdown(ws: Any, model_dir: str | None, fresh: bool = False) -> str:
    """The doctor report as a table with what to do for each missing piece."""
    from engines.cosyvoice.doctor import doctor
    from engines.cosyvoice.upstream import MATCHA_COMMIT, PINNED_COMMIT, SYNC_COMMAND

    rep = doctor(ws.settings, model_dir or None, disk_path=ws.root, fresh=fresh)
    rows: list[tuple[str, str, str]] = []
    c = rep.checkout
    if c.get("present"):
        pin = "pinned commit" if c.get("matches_pin") else f"pinned is {PINNED_COMMIT[:12]}"
        rows.append((OK, "Upstream checkout", f"`{c['path']}` at `{str(c.get('commit') or 'unknown')[:12]}` ({pin})"))
        matcha = c.get("matcha_commit")
        rows.append((OK if c.get("matcha") else BAD, "Matcha-TTS submodule",
                     (f"`{matcha[:12]}`" + (" (pinned)" if matcha == MATCHA_COMMIT else "") if matcha else "present")
                     if c.get("matcha") else f"missing — click **Sync upstream** (`{SYNC_COMMAND}`), with a Matcha-TTS "
                                             "source when offline"))
    else:
        rows.append((BAD, "Upstream checkout",
                     f"missing at `{c.get('path')}` — click **Sync upstream** (or run `{SYNC_COMMAND}`)"))
    r = rep.runtime
    if r.get("modules"):
        failed = [m for m, v in r["modules"].items() if not v.get("ok")]
        detail = f"torch {r.get('torch', '?')} ({'CUDA' if r.get('cuda') else 'CPU'}), torchaudio: {r.get('torchaudio')}"
        rows.append((BAD if failed else OK, "Upstream runtime",
                     (f"{detail}; failing imports: {', '.join(failed)}" if failed
                      else f"{detail}; every module upstream imports loads")))
    elif r.get("error"):
        rows.append((BAD, "Upstream runtime", f"could not start an upstream process: {r['error']}"))
    if rep.model is not None:
        md = rep.model
        if not md.get("present"):
            rows.append((BAD, "Model dir", f"`{md['path']}` does not exist — run `{DOWNLOAD_HINT}` "
                                            "or put a downloaded CosyVoice model there"))
        else:
            detail = f"`{md['path']}` ({md.get('version') or 'unknown version'})"
            for step, names in (md.get("missing") or {}).items():
                detail += f"; {step} needs {', '.join(names)}"
            if md.get("speakers") is not None:
                detail += f"; {len(md['speakers'])} speaker(s) in spk2info.pt"
            rows.append((BAD if md.get("missing") else OK, "Model dir", detail))
    o = rep.onnxruntime
    if o.get("installed"):
        rows.append((OK, "onnxruntime", f"{o.get('version')} using {o.get('use')} "
                                         f"(available: {', '.join(o.get('available', []))})"))
    elif o:
        rows.append((BAD, "onnxruntime", "not installed — `pip install onnxruntime` (or onnxruntime-gpu)"))
    d = rep.disk
    if d:
        rows.append((OK if d["free_gb"] >= 5 else WARN, "Disk", f"{d['free_gb']:.1f} GB free at `{d['path']}`"))
    lines = ["| Item | Status |", "|---|---|"]
    lines += [f"| {MARK[icon]} **{item}** | {detail.replace('|', '/')} |" for icon, item, detail in rows]
    verdict = "**Ready.**" if rep.ok else "**Not ready:**\n" + "\n".join(f"- {p}" for p in rep.problems)
    notes = "".join(f"\n- {n}" for n in rep.notes)
    return "\n".join(lines) + "\n\n" + verdict + (f"\n\nNotes:{notes}" if notes else "")


def workers_markdown(ctx: Any) -> str:
    """The listening workers: CosyVoice models are loaded there (in a synthesis process each worker keeps)."""
    rows = [w for w in ctx.runner.workers() if w["lane"] == "listening"]
    if not rows:
        return f"{MARK[INFO]} No model loaded: the first synthesis loads one."
    lines = ["| Worker | State | Jobs done | pid |", "|---|---|---|---|"]
    for w in rows:
        lines.append(f"| `{w['id']}` | {w['state']} | {w['jobs_done']} | {w.get('pid') or ''} |")
    return "\n".join(lines)


def build(ctx: Any, parts: Parts) -> None:
    ws = ctx.ws
    default_base = str(default_model_dir(ws))
    with gr.Accordion(t("cv.status"), open=True, elem_id="vl-cv-status-box"):
        status = gr.Markdown("…", elem_id="vl-cv-status")
        with gr.Row():
            check_dir = gr.Dropdown(choices=synth_model_dirs(ws) or [default_base], value=default_base,
                                    allow_custom_value=True, label=t("cv.check_model"), info=t("cv.check_model_info"),
                                    scale=3)
            check_btn = gr.Button(t("cv.check"), scale=0, elem_id="vl-cv-check")
            sync_btn = gr.Button(t("cv.sync"), scale=0, elem_id="vl-cv-sync")
        with gr.Accordion(t("cv.sources"), open=False):
            with gr.Row():
                source = gr.Textbox(value=ws.settings.cosyvoice_source, label=t("cv.source"), info=t("cv.source_info"),
                                    elem_id="vl-cv-source")
                matcha_source = gr.Textbox(value=ws.settings.matcha_source, label=t("cv.matcha_source"),
                                           info=t("cv.matcha_source_info"), elem_id="vl-cv-matcha-source")
        with gr.Accordion(t("cv.workers"), open=False):
            workers = gr.Markdown(elem_id="vl-cv-workers")
            with gr.Row():
                workers_refresh = gr.Button(t("cv.workers_refresh"), scale=0)
                workers_stop = gr.Button(t("cv.workers_stop"), variant="stop", scale=0, elem_id="vl-cv-workers-stop")
    parts.c.update(status=status, check_dir=check_dir, workers=workers)

    def show_status(model_dir: str | None, fresh: bool = False) -> str:
        try:  # a model dir only from the configured model roots: its yaml is code
            return doctor_markdown(ws, confine_value(ws, model_dir, "model dir", MODEL_DIR) or None, fresh)
        except VoiceLabError as exc:
            return error_text(exc)
        except Exception as exc:  # the status view must never break the page
            return f"Status check failed: {type(exc).__name__}: {exc}"

    if ctx.demo is not None:
        ctx.demo.load(show_status, [check_dir], status)
    check_btn.click(lambda d: show_status(d, True), [check_dir], status, api_name="cosyvoice_status")

    def start_sync(src: str, matcha: str) -> str:
        params = {"source": src or "", "matcha_source": matcha or ""}  # submit_job confines local sources
        return submit_job(ctx, "cosyvoice.vendor_sync", params, title="Sync upstream CosyVoice")

    sync_btn.click(start_sync, [source, matcha_source], ctx.job_id, api_name="cosyvoice_vendor_sync")
    workers_refresh.click(lambda: workers_markdown(ctx), None, workers, api_name="cosyvoice_workers")

    def stop_all() -> str:
        stopped = ctx.runner.free_workers("listening")  # idle ones; their synthesis processes end with them
        gr.Info(f"Stopped {stopped} listening worker(s).")
        return workers_markdown(ctx)

    workers_stop.click(stop_all, None, workers, api_name="cosyvoice_stop_workers")
    parts.on_job("cosyvoice.vendor_sync", [status],
                 lambda rec, v: {status: show_status(v.get("check"), True)})
    parts.on_job("cosyvoice.synth", [workers], lambda rec, v: {workers: workers_markdown(ctx)})

    def doctor_api(model_dir: str = "") -> dict:
        """The CosyVoice doctor report (same as `voicelab cosyvoice doctor --json`)."""
        from engines.cosyvoice.doctor import doctor

        chosen = confine_value(ws, model_dir, "model dir", MODEL_DIR)  # a refusal reaches the client via the guard
        return client_json(doctor(ws.settings, chosen or None, disk_path=ws.root).to_dict())

    gr.api(doctor_api, api_name="cosyvoice_doctor")


__all__ = ["build", "doctor_markdown", "workers_markdown"]
