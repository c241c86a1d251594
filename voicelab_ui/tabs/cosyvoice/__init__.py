"""CosyVoice tab: status, transcripts, data preparation, fine-tuning, averaging/assembly, synthesis.

One module per step; ``build`` lays them out in order. Every long step is a
job (``engines.cosyvoice.ops``): the buttons submit it and put its id in the
shared job panel; when the followed job ends (``ctx.job_finished``) each
step's handler for that operation shows the result read from the job
record. Quick edits (transcript text, drop, import, presets) run directly.
"""

from __future__ import annotations

import gradio as gr

from engines.cosyvoice.catalog import checkpoint_rows, list_experiments, synth_model_dirs
from voicelab_ui.context import UIContext

from . import assemble, prepare, status, synth, train, transcripts
from .parts import Parts, job_result
from .status import doctor_markdown
from .train import metrics_frames
from .transcripts import table_value, transcript_rows

__all__ = ["build", "checkpoint_rows", "doctor_markdown", "list_experiments", "metrics_frames", "synth_model_dirs",
           "table_value", "transcript_rows"]


def build(ctx: UIContext) -> None:
    parts = Parts(ctx)
    for step in (status, transcripts, prepare, train, assemble, synth):
        step.build(ctx, parts)
    c = parts.c
    outputs = [o for o in parts.outputs() if o is not c["status"]]
    inputs = {"dataset": c["dataset"], "model": c["model"], "check": c["check_dir"]}

    def after_job(marker: str, *values) -> dict:
        rec = job_result(ctx, marker)
        # Gradio reads an empty dict as one value: always name at least one output.
        out: dict = {c["status"]: gr.update()}
        if rec is None:
            return out
        given = dict(zip(inputs, values))
        for handler in parts.handlers.get(rec.op, []):
            out.update(handler(rec, given))
        return out

    ctx.job_finished.change(after_job, [ctx.job_finished, *inputs.values()], [c["status"], *outputs])
