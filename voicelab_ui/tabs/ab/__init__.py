"""A/B Listen tab: convert one clip with several checkpoints/models/parameter sets, vote pair by pair, rank.

A session (engines.ab.sessions) is created at once; its conversions run as one
``ab.render`` job (cached, so reopening converts nothing twice). When the
job ends the first unjudged pair is shown: two players side by side (they
stack on a phone), labelled only "A" and "B" in blind mode until the vote.
The session id is kept in the browser, so a reload resumes where it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engines.ab import sessions as ab
from engines.ab.ops import read_cosyvoice_pending
from engines.core.errors import VoiceLabError
from engines.core.messages import msg
from engines.core.params import build as build_params
from engines.core.paths import confine
from engines.dataset.stats import list_clips, list_datasets
from engines.rvc.infer.convert import ConvertParams
from engines.rvc.ops.catalog import list_experiments, list_models
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import add, t, ui_text
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.rvc_forms import (
    confined_index,
    confined_model,
    f0_method_choices,
    form_overrides,
    index_choices,
    link_preset,
)
from voicelab_ui.widgets import outcome_line, param_widgets, submit_job, user_error, values_to_params

MAX_CLIPS = 500

add({
    "abl.source": ("Source clip", "源音频"),
    "abl.upload": ("Upload a clip (or pick one from a dataset below)", "上传音频（或在下方从数据集中选择）"),
    "abl.dataset": ("Dataset", "数据集"),
    "abl.clip": ("Clip", "切片"),
    "abl.what": ("What to compare", "比较对象"),
    "abl.mode_exp": ("Checkpoints of an experiment", "实验的检查点"),
    "abl.mode_models": ("Any models", "任意模型"),
    "abl.mode_params": ("One model, two parameter sets", "同一模型，两组参数"),
    "abl.experiment": ("Experiment", "实验"),
    "abl.checkpoints": ("Saved checkpoints", "已保存的检查点"),
    "abl.all": ("All saved checkpoints", "全部已保存的检查点"),
    "abl.compare_exp": ("Compare checkpoints", "比较检查点"),
    "abl.models": ("Models (two or more)", "模型（两个或更多）"),
    "abl.compare_models": ("Compare models", "比较模型"),
    "abl.model": ("Model", "模型"),
    "abl.params_b": ("Parameter set B", "参数组 B"),
    "abl.compare_params": ("Compare parameter sets", "比较参数组"),
    "abl.params": ("Conversion parameters (set A)", "推理参数（参数组 A）"),
    "abl.index": ("Index", "索引"),
    "abl.blind": ("Blind test (hide which is which until I vote)", "盲听（投票前隐藏身份）"),
    "abl.refresh": ("Refresh lists", "刷新列表"),
    "abl.tts": ("… or a CosyVoice → RVC output (or its CosyVoice take)", "……或一个 CosyVoice → RVC 的输出（或其 CosyVoice 原始合成）"),
    "abl.pending": ("Load the CosyVoice comparison", "载入 CosyVoice 对比"),
    "abl.listen": ("Listen and vote", "试听并投票"),
    "abl.a_better": ("A better", "A 更好"),
    "abl.b_better": ("B better", "B 更好"),
    "abl.tie": ("No difference", "没有区别"),
    "abl.comment": ("Comment (optional)", "备注（可选）"),
    "abl.next": ("Next pair ▶", "下一对 ▶"),
    "abl.ranking": ("Ranking", "排名"),
    "abl.ranking_of": ("Ranking of", "排名对象"),
    "abl.session": ("Session", "会话"),
})

RANK_HEADERS = ["#", "candidate", "win rate", "W", "L", "T", "games", "BT score"]
RANK_KEYS = tuple(f"ab.col.{i}" for i in range(len(RANK_HEADERS)))
add(dict(zip(RANK_KEYS, (("#", "#"), ("candidate", "候选"), ("win rate", "胜率"), ("W", "胜"), ("L", "负"), ("T", "平"),
                         ("games", "场次"), ("BT score", "BT 分数")))))


# -- data helpers -----------------------------------------------------------------------------

def ab_experiments(ws: Any) -> list[str]:
    """Experiments with saved small-model checkpoints (weights/<exp>_e<E>_s<S>.pth) or folders."""
    import re

    names = set(list_experiments(ws))
    for p in ws.weights.glob("*_e*_s*.pth"):
        m = re.match(r"^(.+)_e\d+_s\d+$", p.stem)
        if m:
            names.add(m.group(1))
    return sorted(names)


def ranking_targets(ws: Any) -> list[tuple[str, str]]:
    """Everything with votes: ``exp:<name>`` for experiments, ``ab:<name>`` for free-form comparisons."""
    out = [(f"{p.parent.name}", f"exp:{p.parent.name}") for p in sorted(ws.experiments.glob("*/ab_votes.jsonl"))]
    out += [(f"{p.parent.name} (free-form)", f"ab:{p.parent.name}") for p in sorted((ws.root / "ab").glob("*/ab_votes.jsonl"))
            if p.parent.name not in ("sessions", "cache")]
    return out


def ranking_rows(ws: Any, target: str) -> list[list]:
    if not target:
        return []
    kind, _, name = target.partition(":")
    try:
        rows = ab.ranking(ws, name if kind == "exp" else None, name=name if kind != "exp" else None)
    except VoiceLabError:
        return []
    return [[i + 1, r.label, f"{r.win_rate:.0%} ({r.wins + r.ties / 2:g}/{r.games})", r.wins, r.losses, r.ties,
             r.games, round(r.strength, 3)] for i, r in enumerate(rows)]


def session_target(session: ab.ABSession) -> str:
    return f"exp:{session.experiment}" if session.experiment else f"ab:{session.name or 'default'}"


def changed_params(values: dict[str, Any]) -> dict[str, Any]:
    """ConvertParams values that differ from the defaults (what a candidate's label shows)."""
    p = build_params(ConvertParams, values).check()
    d = ConvertParams()
    return {k: getattr(p, k) for k in values if hasattr(d, k) and getattr(p, k) != getattr(d, k)}


def param_set_labels(stem: str, pa: dict[str, Any], pb: dict[str, Any]) -> tuple[str, str]:
    """Labels of two parameter sets of one model, naming only the values that differ between them."""
    d = ConvertParams()
    keys = sorted(k for k in set(pa) | set(pb) if pa.get(k, getattr(d, k)) != pb.get(k, getattr(d, k)))

    def label(p: dict[str, Any]) -> str:
        return f"{stem} [" + ",".join(f"{k}={p.get(k, getattr(d, k))}" for k in keys) + "]"

    return label(pa), label(pb)


def tts_choices(ws: Any) -> list[tuple[str, str]]:
    """The TTS -> RVC outputs (newest first) as source choices."""
    from engines.chain.tts_rvc import list_outputs

    return [(p.name, str(p)) for p in list_outputs(ws)]


# -- the tab ----------------------------------------------------------------------------------

def build(ctx: UIContext) -> None:  # noqa: C901  (one page of wiring)
    ws = ctx.ws
    from engines.rvc.pitch.f0 import available_f0_methods

    f0_opts, f0_default, _ = f0_method_choices(available_f0_methods, str(ws.settings.resolved_rmvpe()))
    session_id = gr.BrowserState("", storage_key="voicelab_ab_session")
    pair_idx = gr.State(-1)

    with gr.Row(visible=read_cosyvoice_pending(ws) is not None, elem_id="vl-ab-pending-row") as pending_row:
        pending_md = gr.Markdown(elem_id="vl-ab-pending")
        pending_btn = gr.Button(t("abl.pending"), min_width=160, elem_id="vl-ab-pending-load")

    with gr.Accordion(t("abl.source"), open=True):
        with gr.Row(equal_height=False):
            source = gr.Audio(type="filepath", label=t("abl.upload"), sources=["upload"], min_width=280,
                              elem_id="vl-ab-source")
            with gr.Column(min_width=240):
                ds = gr.Dropdown(choices=list_datasets(ws), value=None, label=t("abl.dataset"), elem_id="vl-ab-ds")
                clip = gr.Dropdown(choices=[], value=None, label=t("abl.clip"), elem_id="vl-ab-clip")
                tts = gr.Dropdown(choices=tts_choices(ws), value=None, label=t("abl.tts"), elem_id="vl-ab-tts")

    with gr.Row(equal_height=False):
        index = gr.Dropdown(choices=index_choices(ws), value="auto", allow_custom_value=True, label=t("abl.index"),
                            min_width=200, elem_id="vl-ab-index")
        blind = gr.Checkbox(value=True, label=t("abl.blind"), min_width=200, elem_id="vl-ab-blind")
        refresh = gr.Button(t("abl.refresh"), min_width=120, scale=0)
    with gr.Accordion(t("abl.params"), open=False):
        f0_a = gr.Dropdown(choices=f0_opts, value=f0_default, label=t("param.f0_method"), min_width=200)
        with gr.Row():
            wa = param_widgets(ConvertParams, skip=("f0_method", "output_format", "seed"),
                               overrides=form_overrides(ConvertParams, min_width=200))
            link_preset(wa)
    gr.Markdown(t("abl.what"))
    with gr.Tabs():
        with gr.Tab(t("abl.mode_exp"), elem_id="vl-ab-mode-exp"):
            exps = ab_experiments(ws)
            exp = gr.Dropdown(choices=exps, value=exps[0] if exps else None, allow_custom_value=True,
                              label=t("abl.experiment"), elem_id="vl-ab-exp")
            use_all = gr.Checkbox(value=True, label=t("abl.all"), elem_id="vl-ab-all")
            ckpts = gr.CheckboxGroup(choices=[], value=[], label=t("abl.checkpoints"), elem_id="vl-ab-ckpts")
            run_exp = gr.Button(t("abl.compare_exp"), variant="primary", elem_id="vl-ab-run-exp")
        with gr.Tab(t("abl.mode_models"), elem_id="vl-ab-mode-models"):
            models_dd = gr.Dropdown(choices=list_models(ws), value=[], multiselect=True, label=t("abl.models"),
                                    elem_id="vl-ab-models")
            run_models = gr.Button(t("abl.compare_models"), variant="primary", elem_id="vl-ab-run-models")
        with gr.Tab(t("abl.mode_params"), elem_id="vl-ab-mode-params"):
            one_model = gr.Dropdown(choices=list_models(ws), value=None, label=t("abl.model"), elem_id="vl-ab-model")
            with gr.Accordion(t("abl.params_b"), open=True):
                f0_b = gr.Dropdown(choices=f0_opts, value=f0_default, label=t("param.f0_method"), min_width=200)
                with gr.Row():
                    wb = param_widgets(ConvertParams, skip=("f0_method", "output_format", "seed"),
                                       overrides=form_overrides(ConvertParams, min_width=200))
                    link_preset(wb)
            run_params = gr.Button(t("abl.compare_params"), variant="primary", elem_id="vl-ab-run-params")
    status = gr.Markdown(elem_id="vl-ab-status")

    with gr.Accordion(t("abl.listen"), open=True, elem_id="vl-ab-listen"):
        pair_md = gr.Markdown(elem_id="vl-ab-pair")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=280):
                label_a = gr.Markdown("**A**", elem_id="vl-ab-label-a")
                player_a = gr.Audio(type="filepath", interactive=False, show_label=False, elem_id="vl-ab-player-a")
            with gr.Column(min_width=280):
                label_b = gr.Markdown("**B**", elem_id="vl-ab-label-b")
                player_b = gr.Audio(type="filepath", interactive=False, show_label=False, elem_id="vl-ab-player-b")
        with gr.Row():
            vote_a = gr.Button(t("abl.a_better"), min_width=100, interactive=False, elem_id="vl-ab-vote-a")
            vote_b = gr.Button(t("abl.b_better"), min_width=100, interactive=False, elem_id="vl-ab-vote-b")
            vote_tie = gr.Button(t("abl.tie"), min_width=100, interactive=False, elem_id="vl-ab-vote-tie")
        comment = gr.Textbox(label=t("abl.comment"), lines=1, elem_id="vl-ab-comment")
        next_btn = gr.Button(t("abl.next"), visible=False, elem_id="vl-ab-next")

    with gr.Accordion(t("abl.ranking"), open=True):
        targets = ranking_targets(ws)
        rank_of = gr.Dropdown(choices=targets, value=targets[0][1] if targets else None, label=t("abl.ranking_of"),
                              elem_id="vl-ab-rank-of")
        rank_table = gr.Dataframe(headers=RANK_HEADERS, value=ranking_rows(ws, targets[0][1]) if targets else [],
                                  interactive=False, wrap=True, elem_id="vl-ab-ranking")

    # -- source ------------------------------------------------------------------------------
    def clips_of(name: str) -> Any:
        if not name:
            return gr.update(choices=[], value=None)
        try:
            rows, _ = list_clips(ws, name, 1, MAX_CLIPS)
        except VoiceLabError:
            rows = []
        return gr.update(choices=[(f"{c['id']} · {c['duration']:.1f} s", c["path"]) for c in rows], value=None)

    ds.change(clips_of, [ds], [clip])
    clip.change(lambda p: p if p else gr.update(), [clip], [source])
    tts.change(lambda p: p if p else gr.update(), [tts], [source])

    def ckpt_choices(e: str) -> Any:
        if not e:
            return gr.update(choices=[], value=[])
        try:
            cks = ab.list_checkpoints(ws, e)
        except VoiceLabError:
            cks = []
        labels = [c.label for c in cks]
        return gr.update(choices=labels, value=labels)

    exp.change(ckpt_choices, [exp], [ckpts])
    ctx.demo.load(ckpt_choices, [exp], [ckpts])

    def pending_view() -> tuple:
        rec = read_cosyvoice_pending(ws)
        if not rec:
            return gr.update(visible=False), ""
        a = Path((rec.get("a") or {}).get("checkpoint") or rec.get("model_dir", "")).name
        b = Path((rec.get("b") or {}).get("checkpoint") or rec.get("model_dir", "")).name
        return gr.update(visible=True), f"CosyVoice: **{a}** vs **{b}** — “{rec.get('text', '')[:80]}”"

    def refresh_lists(e: str, ms: list, m: str, target: str) -> tuple:
        models = list_models(ws)
        tg = ranking_targets(ws)
        return (gr.update(choices=list_datasets(ws)), gr.update(choices=ab_experiments(ws), value=e),
                gr.update(choices=models, value=[x for x in (ms or []) if x in models]),
                gr.update(choices=models, value=m if m in models else None), gr.update(choices=index_choices(ws)),
                gr.update(choices=tg, value=target if target in [v for _, v in tg] else (tg[0][1] if tg else None)),
                *pending_view(), gr.update(choices=tts_choices(ws)))

    refresh.click(refresh_lists, [exp, models_dd, one_model, rank_of],
                  [ds, exp, models_dd, one_model, index, rank_of, pending_row, pending_md, tts])

    # -- starting a comparison ---------------------------------------------------------------------
    a_names = list(wa)
    b_names = list(wb)

    def source_path(src: str | None) -> str:
        if not src:
            raise gr.Error(ui_text("err.ab_source"))
        try:
            return str(confine(ws, src, "source clip"))
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    def launch(session: ab.ABSession) -> tuple:
        job = submit_job(ctx, "ab.render", {"session": session.id},
                         title=msg("title.ab", n=len(session.candidates), pairs=len(session.pairs)))
        return job, session.id, f"{len(session.candidates)} candidates, {len(session.pairs)} pair(s) — converting…"

    def params_a(f0: str, values: tuple) -> dict[str, Any]:
        v = values_to_params(ConvertParams, a_names, values)
        v["f0_method"] = f0
        return v

    def start_exp(src: str, e: str, all_: bool, chosen: list, idx: str, bl: bool, f0: str, *values: Any) -> tuple:
        path = source_path(src)
        try:
            cks = ab.list_checkpoints(ws, e or "")
            if not all_:
                cks = [c for c in cks if c.label in set(chosen or [])]
            if len(cks) < 2:
                raise gr.Error(ui_text("err.ab_two_ckpts"))
            params = changed_params(params_a(f0, values))
            index_path = confined_index(ws, idx, cks[0].path)
            cands = [ab.Candidate(model=str(c.path), params=params, index=index_path, label=c.label) for c in cks]
            session = ab.create_session(ws, path, cands, experiment=e, blind=bool(bl))
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        return launch(session)

    def start_models(src: str, ms: list, idx: str, bl: bool, f0: str, *values: Any) -> tuple:
        path = source_path(src)
        if len(ms or []) < 2:
            raise gr.Error(ui_text("err.ab_two_models"))
        try:
            params = changed_params(params_a(f0, values))
            cands = []
            for m in ms:
                mp = confined_model(ws, m)
                cands.append(ab.Candidate(model=str(mp), params=params, index=confined_index(ws, idx, mp),
                                          label=mp.stem))
            session = ab.create_session(ws, path, cands, name="models", blind=bool(bl))
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        return launch(session)

    def start_params(src: str, m: str, idx: str, bl: bool, f0a: str, f0b: str, *values: Any) -> tuple:
        path = source_path(src)
        va, vb = values[: len(a_names)], values[len(a_names):]
        try:
            mp = confined_model(ws, m)
            pa = changed_params(params_a(f0a, va))
            vb_dict = values_to_params(ConvertParams, b_names, vb)
            vb_dict["f0_method"] = f0b
            pb = changed_params(vb_dict)
            if pa == pb:
                raise gr.Error(ui_text("err.ab_same_params"))
            index_path = confined_index(ws, idx, mp)
            la, lb = param_set_labels(mp.stem, pa, pb)
            session = ab.create_session(ws, path, [ab.Candidate(model=str(mp), params=pa, index=index_path, label=la),
                                                   ab.Candidate(model=str(mp), params=pb, index=index_path, label=lb)],
                                        name=f"{mp.stem}_params", blind=bool(bl))
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        return launch(session)

    started = [ctx.job_id, session_id, status]
    run_exp.click(start_exp, [source, exp, use_all, ckpts, index, blind, f0_a, *wa.values()], started)
    run_models.click(start_models, [source, models_dd, index, blind, f0_a, *wa.values()], started)
    run_params.click(start_params, [source, one_model, index, blind, f0_a, f0_b, *wa.values(), *wb.values()], started)

    def start_pending(bl: bool) -> tuple:
        job = submit_job(ctx, "ab.render", {"cosyvoice_pending": True, "blind": bool(bl)},
                         title="A/B: CosyVoice checkpoints")
        return job, "converting…"

    pending_btn.click(start_pending, [blind], [ctx.job_id, status])

    # -- showing pairs and voting -------------------------------------------------------------------
    pair_outputs = [pair_idx, pair_md, label_a, player_a, label_b, player_b, vote_a, vote_b, vote_tie, comment,
                    next_btn, rank_of, rank_table]

    def labels_md(view: dict) -> tuple[str, str]:
        labels = view.get("labels")
        if not labels:
            return "**A**", "**B**"
        mark = {"A": " ✔", "B": " ✔"}
        a = f"**A** — {labels['A']}" + (mark["A"] if view.get("choice") == "A" else "")
        b = f"**B** — {labels['B']}" + (mark["B"] if view.get("choice") == "B" else "")
        return a, b

    def show_pair(sid: str, want: int | None = None) -> list:
        empty = [-1, "", "**A**", None, "**B**", None, *[gr.update(interactive=False)] * 3, "", gr.update(visible=False),
                 gr.update(), gr.update()]
        if not sid:
            return empty
        try:
            session = ab.load_session(ws, sid)
        except VoiceLabError:
            return empty
        if any(c.output is None for c in session.candidates):
            return [-1, f"`{sid}`: not converted yet.", *empty[2:]]
        target = session_target(session)
        tg = ranking_targets(ws)
        if target not in [v for _, v in tg]:  # no votes yet for this comparison
            tg.append((target.partition(":")[2], target))
        rank_update = gr.update(choices=tg, value=target)
        idx = want if want is not None else session.next_unvoted()
        done = idx is None
        if done:
            idx = len(session.pairs) - 1
        view = session.view(idx)
        la, lb = labels_md(view)
        voted = view["choice"] is not None
        header = (f"{t_pair(idx, len(session.pairs))}" + (" — all pairs judged ✔" if done else "")
                  + (" · blind" if session.blind else ""))
        return [idx, header, la, view["A"], lb, view["B"], *[gr.update(interactive=not voted)] * 3,
                view["comment"] if voted else "", gr.update(visible=voted and not done),
                rank_update, i18n_table(ranking_rows(ws, target), RANK_KEYS)]

    def t_pair(i: int, n: int) -> str:
        return f"**{i + 1} / {n}**"

    def cast(choice: str) -> Any:
        def do_vote(sid: str, idx: int, text: str) -> list:
            if not sid or idx is None or idx < 0:
                raise gr.Error(ui_text("err.ab_no_pair"))
            try:
                ab.vote(ws, sid, int(idx), choice, text or "")
            except VoiceLabError as exc:
                raise user_error(exc) from exc
            out = show_pair(sid, int(idx))
            session = ab.load_session(ws, sid)
            out[10] = gr.update(visible=session.next_unvoted() is not None)
            return out
        return do_vote

    vote_a.click(cast("A"), [session_id, pair_idx, comment], pair_outputs)
    vote_b.click(cast("B"), [session_id, pair_idx, comment], pair_outputs)
    vote_tie.click(cast("tie"), [session_id, pair_idx, comment], pair_outputs)
    next_btn.click(lambda sid: show_pair(sid), [session_id], pair_outputs)
    rank_of.change(lambda tg: i18n_table(ranking_rows(ws, tg), RANK_KEYS), [rank_of], rank_table)
    ctx.demo.load(lambda tg: i18n_table(ranking_rows(ws, tg), RANK_KEYS), [rank_of], rank_table)
    ctx.demo.load(lambda sid: show_pair(sid), [session_id], pair_outputs)
    ctx.demo.load(pending_view, None, [pending_row, pending_md])

    def after_job(marker: str, sid: str) -> list:
        job_id = (marker or "").split(":", 1)[0]
        rec = ctx.runner.get(job_id) if job_id else None
        if rec is None or rec.op != "ab.render":
            return [sid, *[gr.update()] * (len(pair_outputs) + 1)]
        if rec.state != "done":
            return [sid, outcome_line(rec), *[gr.update()] * len(pair_outputs)]
        new_sid = (rec.result or {}).get("session") or sid
        return [new_sid, f"✔ {rec.message}", *show_pair(new_sid)]

    ctx.job_finished.change(after_job, [ctx.job_finished, session_id], [session_id, status, *pair_outputs]).then(
        pending_view, None, [pending_row, pending_md])

    def vote_api(session: str, pair: int, choice: str, comment_text: str = "") -> dict:
        """Vote on one pair of an A/B session ("A", "B" or "tie"); returns the pair with its labels revealed."""
        try:
            return ab.vote(ws, session, int(pair), choice, comment_text)
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    def ranking_api(experiment: str = "", name: str = "") -> list:
        """Ranking rows of an experiment's (or a free-form comparison's) votes."""
        import dataclasses

        return [dataclasses.asdict(r) for r in ab.ranking(ws, experiment or None, name=name or None)]

    gr.api(vote_api, api_name="ab_vote")
    gr.api(ranking_api, api_name="ab_ranking")

    from voicelab_ui.tabs.ab import tournament

    tournament.build(ctx)
