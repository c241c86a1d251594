"""The A/B tab's blind tournament: pick saves, vote on the pair the model asks for, promote the winner.

One player holds both takes of the pair and plays them together, the hidden one muted, so A/B
switches at the same time position (keys A / B; space plays or pauses; a loop region repeats a
passage). Keys 1 / 2 / 0 vote A / B / tie. It fits a 390 px wide phone screen.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from engines.ab import tournament as tour
from engines.core.errors import VoiceLabError
from engines.core.ops import run_inline
from engines.rvc.ops.catalog import list_experiments, saved_files
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import add, t
from voicelab_ui.widgets import submit_job, user_error

add({
    "abt.title": ("Blind tournament (finds the best save in few votes)", "盲测锦标赛（少量投票找出最佳保存）"),
    "abt.exp": ("Experiment", "实验"),
    "abt.saves": ("Saves to compare (empty = best by scores + the latest)", "参与比较的保存（留空 = 评分最佳 + 最新）"),
    "abt.target": ("Stop at P(best)", "在 P(最佳) 达到时停止"),
    "abt.start": ("Start tournament", "开始锦标赛"),
    "abt.score": ("Score saves", "为保存评分"),
    "abt.vote_a": ("A is better (1)", "A 更好 (1)"),
    "abt.vote_b": ("B is better (2)", "B 更好 (2)"),
    "abt.tie": ("Same (0)", "一样 (0)"),
    "abt.promote": ("Promote the winner", "采用胜者"),
    "abt.keys": ("Keys: **A** / **B** switch at the same moment, **space** play/pause, **1** / **2** / **0** vote. "
                 "Takes are loudness-matched (BS.1770).",
                 "按键：**A** / **B** 在同一时刻切换，**空格** 播放/暂停，**1** / **2** / **0** 投票。各版本响度已匹配（BS.1770）。"),
})

PLAYER_JS = r"""
() => {
  if (window.vlTour) return;
  const st = {side: 'a'};
  const els = () => ({a: document.getElementById('vl-tour-a'), b: document.getElementById('vl-tour-b'),
                      box: document.getElementById('vl-tour-box')});
  const loop = () => {
    const from = parseFloat((document.getElementById('vl-tour-loop-from') || {}).value);
    const to = parseFloat((document.getElementById('vl-tour-loop-to') || {}).value);
    return (isFinite(from) && isFinite(to) && to > from) ? [from, to] : null;
  };
  const show = () => {
    const {box} = els();
    if (!box) return;
    box.dataset.side = st.side;
    const now = document.getElementById('vl-tour-now');
    if (now) now.textContent = st.side.toUpperCase();
  };
  const sel = (side) => {
    const {a, b} = els();
    if (!a || !b) return;
    const on = side === 'a' ? a : b, off = side === 'a' ? b : a;
    const cur = (st.side === 'a' ? a : b).currentTime;
    on.currentTime = cur; off.currentTime = cur;  // same position, both keep playing
    on.muted = false; off.muted = true;
    st.side = side; show();
  };
  const toggle = () => {
    const {a, b} = els();
    if (!a || !b) return;
    if (a.paused) { const t0 = (st.side === 'a' ? a : b).currentTime; a.currentTime = t0; b.currentTime = t0;
      a.muted = st.side !== 'a'; b.muted = st.side !== 'b'; a.play(); b.play(); }
    else { a.pause(); b.pause(); }
    const {box} = els(); if (box) box.dataset.playing = a.paused ? '0' : '1';
  };
  setInterval(() => {
    const {a, b, box} = els();
    if (box && box !== st.box) { st.box = box; st.side = 'a'; }  // a new pair: start on A
    if (!a || !b || a.paused) return;
    const r = loop(), on = st.side === 'a' ? a : b, off = st.side === 'a' ? b : a;
    if (r && (on.currentTime >= r[1] || on.currentTime < r[0] - 0.05)) { on.currentTime = r[0]; off.currentTime = r[0]; }
    if (Math.abs(off.currentTime - on.currentTime) > 0.05) off.currentTime = on.currentTime;
    const tm = document.getElementById('vl-tour-time'); if (tm) tm.textContent = on.currentTime.toFixed(2);
  }, 40);
  document.addEventListener('click', (e) => {
    const btn = e.target.closest('[data-vl-tour]');
    if (!btn) return;
    const what = btn.dataset.vlTour;
    if (what === 'play') toggle(); else sel(what);
  });
  document.addEventListener('keydown', (e) => {
    if (!document.getElementById('vl-tour-box')) return;
    const tag = (e.target.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key.toLowerCase();
    const click = (id) => { const el = document.getElementById(id); if (el) el.click(); };
    if (k === 'a' || k === 'b') { sel(k); e.preventDefault(); }
    else if (k === ' ') { toggle(); e.preventDefault(); }
    else if (k === '1') click('vl-tour-vote-a');
    else if (k === '2') click('vl-tour-vote-b');
    else if (k === '0') click('vl-tour-vote-tie');
  });
  window.vlTour = {sel, toggle, state: st};
}
"""


def _url(path: str) -> str:
    return "/gradio_api/file=" + html.escape(path, quote=True)


def player_html(status: dict[str, Any] | None) -> str:
    """The pair's player (both takes in one box) and the tournament's standing."""
    if not status:
        return '<div id="vl-tour-empty">No tournament yet.</div>'
    p = status["p_leader_best"]
    head = (f'<div id="vl-tour-status" data-state="{status["state"]}" data-p="{p:.4f}" data-votes="{status["votes"]}">'
            f'<b>{html.escape(status["leader"])}</b> leads: P(best) <b id="vl-tour-p">{p:.0%}</b> after '
            f'{status["votes"]} vote(s)')
    if status["state"] == "open":
        head += f', about <b id="vl-tour-left">{status["votes_left"]}</b> more to reach {status["target"]:.0%}</div>'
    else:
        head += f' — <b>finished</b>: the winner is {html.escape(status["leader"])}</div>'
    pend = status.get("pending")
    if not pend:
        return f'<div id="vl-tour-wrap" style="max-width:100%">{head}</div>'
    return f"""<div id="vl-tour-wrap" style="max-width:100%">{head}
<div id="vl-tour-box" data-side="a" data-playing="0" style="display:flex;flex-wrap:wrap;gap:8px;align-items:center;
 margin-top:8px;padding:8px;border:1px solid #8884;border-radius:8px;max-width:100%;box-sizing:border-box">
 <audio id="vl-tour-a" src="{_url(pend['a_audio'])}" preload="auto"></audio>
 <audio id="vl-tour-b" src="{_url(pend['b_audio'])}" preload="auto" muted></audio>
 <button data-vl-tour="a" id="vl-tour-btn-a" style="min-width:56px;padding:10px;font-weight:bold">A</button>
 <button data-vl-tour="b" id="vl-tour-btn-b" style="min-width:56px;padding:10px;font-weight:bold">B</button>
 <button data-vl-tour="play" id="vl-tour-play" style="min-width:72px;padding:10px">▶ / ❚❚</button>
 <span>hearing <b id="vl-tour-now">A</b> at <span id="vl-tour-time">0.00</span> s</span>
 <label style="font-size:0.85em">loop <input id="vl-tour-loop-from" type="number" step="0.1" min="0"
  style="width:4.5em"> – <input id="vl-tour-loop-to" type="number" step="0.1" min="0" style="width:4.5em"> s</label>
 <span style="font-size:0.85em">clip {pend['clip'] + 1} of {status.get('clips', '?')}</span>
</div></div>"""


def _status(ws: Any, exp: str) -> dict[str, Any] | None:
    exp = (exp or "").strip()
    if not exp:
        return None
    tid = tour.latest_id(ws, exp) if tour.tournaments_dir(ws, exp).is_dir() else None
    if not tid:
        return None
    t_rec = tour.load(ws, exp, tid)
    st = tour.status(t_rec)
    st["clips"] = len(t_rec["clips"])
    return st


def build(ctx: UIContext) -> None:
    ws = ctx.ws
    exps = list_experiments(ws)
    with gr.Accordion(t("abt.title"), open=True, elem_id="vl-tour"):
        with gr.Row():
            exp = gr.Dropdown(choices=exps, value=exps[0] if exps else None, allow_custom_value=True,
                              label=t("abt.exp"), elem_id="vl-tour-exp", min_width=160)
            target = gr.Slider(0.6, 0.999, value=0.95, step=0.005, label=t("abt.target"), elem_id="vl-tour-target",
                               min_width=160)
        saves = gr.Dropdown(choices=[], value=[], multiselect=True, label=t("abt.saves"), elem_id="vl-tour-saves")
        with gr.Row():
            start_btn = gr.Button(t("abt.start"), variant="primary", elem_id="vl-tour-start", min_width=120)
            score_btn = gr.Button(t("abt.score"), elem_id="vl-tour-score", min_width=120)
        gr.Markdown(t("abt.keys"))
        player = gr.HTML(player_html(None), elem_id="vl-tour-player")
        with gr.Row():
            vote_a = gr.Button(t("abt.vote_a"), elem_id="vl-tour-vote-a", min_width=100)
            vote_b = gr.Button(t("abt.vote_b"), elem_id="vl-tour-vote-b", min_width=100)
            vote_tie = gr.Button(t("abt.tie"), elem_id="vl-tour-vote-tie", min_width=100)
        promote_btn = gr.Button(t("abt.promote"), elem_id="vl-tour-promote")
        result = gr.Markdown(elem_id="vl-tour-result")

    def save_choices(name: str | None) -> Any:
        try:
            files = [s.path for s in saved_files(ws, (name or "").strip())] if name else []
        except VoiceLabError:
            files = []
        return gr.update(choices=[(p.stem, str(p)) for p in files if p.suffix == ".pth" and "_e" in p.stem],
                         value=[])

    def view(name: str | None) -> str:
        try:
            return player_html(_status(ws, name or ""))
        except VoiceLabError as exc:
            return f"<div>{html.escape(str(exc))}</div>"

    def start(name: str | None, chosen: list[str], tgt: float) -> str:
        return submit_job(ctx, "ab.tournament_start", {"exp_name": (name or "").strip(), "models": list(chosen or []),
                                                      "target": float(tgt)}, f"Tournament of '{name}'")

    def score(name: str | None) -> str:
        return submit_job(ctx, "ab.score", {"exp_name": (name or "").strip()}, f"Scores of '{name}'")

    def cast(choice: str):
        def go(name: str | None) -> tuple[str, str]:
            try:
                st = run_inline("ab.tournament_vote", {"exp_name": (name or "").strip(), "choice": choice}, ws)
            except VoiceLabError as exc:
                raise user_error(exc) from exc
            return view(name), st["summary"]
        return go

    def promote(name: str | None) -> str:
        try:
            return "✔ " + run_inline("ab.tournament_promote", {"exp_name": (name or "").strip()}, ws)["summary"]
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    exp.change(save_choices, [exp], [saves]).then(view, [exp], [player])
    start_btn.click(start, [exp, saves, target], ctx.job_id, api_name="ab_tournament_start")
    score_btn.click(score, [exp], ctx.job_id, api_name="ab_score")
    for btn, choice in ((vote_a, "a"), (vote_b, "b"), (vote_tie, "tie")):
        btn.click(cast(choice), [exp], [player, result], api_name=f"ab_tournament_vote_{choice}")
    promote_btn.click(promote, [exp], [result], api_name="ab_tournament_promote")

    def after_job(marker: str, name: str | None) -> str:
        job_id = (marker or "").split(":", 1)[0]
        rec = ctx.runner.get(job_id) if job_id else None
        if rec is None or rec.op not in ("ab.tournament_start", "ab.score"):
            return gr.update()
        return view(name)

    ctx.job_finished.change(after_job, [ctx.job_finished, exp], [player])
    if ctx.demo is not None:
        ctx.demo.load(None, None, None, js=PLAYER_JS)
        ctx.demo.load(view, [exp], [player]).then(save_choices, [exp], [saves])

    def status_api(exp_name: str, tournament: str = "") -> dict:
        """Where a tournament stands (the experiment's latest by default)."""
        try:
            return run_inline("ab.tournament_status", {"exp_name": exp_name, "tournament": tournament}, ws)
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    def vote_api(exp_name: str, choice: str, tournament: str = "") -> dict:
        """Vote on the waiting pair of a tournament: a, b or tie."""
        try:
            return run_inline("ab.tournament_vote", {"exp_name": exp_name, "choice": choice,
                                                     "tournament": tournament}, ws)
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    gr.api(status_api, api_name="ab_tournament_status")
    gr.api(vote_api, api_name="ab_tournament_vote")
