"""The Train tab's previews: each save's clips as players beside the loss curve, and the A/B hand-over.

A training job queues an ``rvc.preview`` job at every save (listening lane), which converts the
held-out clips (and the user's clip) with the save's small model. The section lists the saves that
have previews (following the newest while it is the one shown), plays the chosen save's clips, and
sends any two saves, or all so far, to A/B Listen as one ``ab.render`` job on one clip (the previews
are reused as that comparison's takes). The same is reachable from the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.paths import confine
from engines.rvc.train.previews import read_previews
from voicelab_ui.api import client_json
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import t
from voicelab_ui.tabs.rvc_train.helpers import (
    MAX_PREVIEW_PLAYERS,
    ab_clip_choices,
    ab_request,
    preview_choices,
    preview_players,
)
from voicelab_ui.widgets import submit_job, user_error


@dataclass
class PreviewSection:
    save: Any
    players: list[Any]
    ab_saves: Any
    ab_clip: Any
    latest: Any  # State "<exp>|<newest step>": the view follows new saves while it shows the newest
    ab_selected: Any
    ab_all: Any

    @property
    def outputs(self) -> list[Any]:
        return [self.save, *self.players, self.ab_saves, self.ab_clip, self.latest]

    def values(self, ws: Any, exp: str, current: str | None, seen: str | None) -> list[Any]:
        """New values for ``outputs`` after the experiment's previews may have changed.

        ``seen`` is "<exp>|<newest step>" of the last refresh: a view showing the newest save follows
        new saves; one showing an older save stays; players showing the right save are left alone
        (a refresh during training must not stop a clip that plays).
        """
        choices = preview_choices(ws, exp)
        steps = [s for _, s in choices]
        newest = steps[0] if steps else None
        seen_exp, _, seen_newest = (seen or "").partition("|")
        same_exp = seen_exp == exp
        follows = current is None or current not in steps or current == seen_newest
        chosen = current if same_exp and not follows else newest
        if same_exp and chosen == current and current is not None:
            players = [gr.update()] * MAX_PREVIEW_PLAYERS
        else:
            shown = preview_players(ws, exp, chosen) if chosen else []
            players = [gr.update(value=shown[i]["audio"], label=shown[i]["label"], visible=True) if i < len(shown)
                       else gr.update(value=None, visible=False) for i in range(MAX_PREVIEW_PLAYERS)]
        clips = ab_clip_choices(ws, exp)
        clip = gr.update(choices=clips) if same_exp else gr.update(choices=clips, value=clips[0][1] if clips else None)
        return [gr.update(choices=choices, value=chosen), *players, gr.update(choices=choices), clip,
                f"{exp}|{newest or ''}"]


def build_previews() -> PreviewSection:
    """The components (placed where the caller's layout is)."""
    gr.Markdown(t("rvc.tr.previews_info"))
    save = gr.Dropdown(choices=[], value=None, label=t("rvc.tr.preview_save"), elem_id="vl-rvc-preview-save")
    players = [gr.Audio(type="filepath", interactive=False, visible=False, elem_classes=["vl-rvc-preview"])
               for _ in range(MAX_PREVIEW_PLAYERS)]
    with gr.Accordion(t("rvc.tr.to_ab"), open=True, elem_id="vl-rvc-to-ab"):
        ab_saves = gr.CheckboxGroup(choices=[], value=[], label=t("rvc.tr.ab_saves"), elem_id="vl-rvc-ab-saves")
        ab_clip = gr.Dropdown(choices=[], value=None, label=t("rvc.tr.ab_clip"), elem_id="vl-rvc-ab-clip")
        with gr.Row():
            ab_selected = gr.Button(t("rvc.tr.ab_selected"), size="sm", elem_id="vl-rvc-ab-selected")
            ab_all = gr.Button(t("rvc.tr.ab_all"), size="sm", elem_id="vl-rvc-ab-all")
    return PreviewSection(save, players, ab_saves, ab_clip, gr.State(None), ab_selected, ab_all)


def wire_previews(ctx: UIContext, section: PreviewSection, exp: Any) -> None:
    """Events of the section, and the API endpoints of previews."""
    ws = ctx.ws

    def show(name: str | None, step: str | None) -> list[Any]:
        players = preview_players(ws, (name or "").strip(), step) if step else []
        return [gr.update(value=players[i]["audio"], label=players[i]["label"], visible=True) if i < len(players)
                else gr.update(value=None, visible=False) for i in range(MAX_PREVIEW_PLAYERS)]

    section.save.input(show, [exp, section.save], section.players, show_progress="hidden")

    def send(name: str | None, steps: list[str] | None, clip: str | None) -> str:
        name = (name or "").strip()
        try:
            request = ab_request(ws, name, steps, clip or "")
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        n = len(request["checkpoints"])
        return submit_job(ctx, "ab.render", request, title=f"A/B: {n} saves of '{name}'")

    tabs = ctx.extras.get("tabs")
    for button, with_steps in ((section.ab_selected, True), (section.ab_all, False)):
        inputs = [exp, section.ab_saves, section.ab_clip] if with_steps else [exp, section.ab_clip]
        handler = send if with_steps else (lambda name, clip: send(name, None, clip))
        event = button.click(handler, inputs, ctx.job_id)
        if tabs is not None:  # show the comparison: the A/B tab opens it when the job ends
            event.success(lambda: gr.Tabs(selected="tab-ab"), None, tabs)

    def previews_api(exp_name: str) -> list:
        """Every save's previews of an experiment: epoch, step, model, and each clip's kind, source and output."""
        return client_json(read_previews(ws, exp_name.strip()))

    def previews_to_ab(exp_name: str, saves: str = "all", clip: str = "") -> str:
        """Compare saves of an experiment in A/B Listen: saves = "all" or steps separated by commas; clip = one
        of the previews' sources (default: yours, else the first held-out clip). Returns the ab.render job id."""
        steps = None if saves.strip().lower() in ("", "all") else [s.strip() for s in saves.split(",") if s.strip()]
        try:
            if clip.strip():
                clip = str(confine(ws, clip.strip(), "preview clip"))
            return ctx.runner.submit("ab.render", ab_request(ws, exp_name.strip(), steps, clip),
                                     title=f"A/B: saves of '{exp_name.strip()}' (API)")
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    gr.api(previews_api, api_name="rvc_train_previews")
    gr.api(previews_to_ab, api_name="rvc_previews_to_ab")
