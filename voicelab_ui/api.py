"""API-only endpoints (no widgets) for scripts using gradio_client: job status, log, cancel, workers."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import gradio as gr

from engines.core.errors import InvalidInputError
from voicelab_ui.context import UIContext


def client_json(obj: Any) -> Any:
    """``obj`` as JSON for API clients: string keys, and ``"path"`` keys renamed ``"location"``.

    gradio_client takes any dict with a string ``path`` for a file to download,
    so records that merely mention a folder must not use that key.
    """
    if isinstance(obj, dict):
        return {("location" if k == "path" else str(k)): client_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [client_json(v) for v in obj]
    return obj


JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def job_id_arg(job_id: Any) -> str:
    """A job id from an API client, or an InvalidInputError saying what a job id looks like."""
    if not isinstance(job_id, str) or not job_id.strip():
        raise InvalidInputError(f"job_id must be a job id (text), got {job_id!r}.",
                                "Job ids look like 20260101-120000-abc123 (the value a job endpoint returned).")
    if not JOB_ID.match(job_id.strip()):
        raise InvalidInputError(f"'{job_id[:80]}' is not a job id.", "Job ids look like 20260101-120000-abc123.")
    return job_id.strip()


def register(ctx: UIContext) -> None:
    def job_status(job_id: str) -> dict:
        """A job's record: state, progress, message, result paths, error."""
        rec = ctx.runner.get(job_id_arg(job_id))
        if rec is None:
            raise gr.Error(f"No job with id {job_id}.")
        return client_json(dataclasses.asdict(rec))

    def job_log(job_id: str) -> str:
        """The job's whole log so far."""
        return ctx.runner.read_log(job_id_arg(job_id))

    def cancel_job(job_id: str) -> bool:
        """Ask a queued or running job to stop; False when it already ended."""
        return ctx.runner.cancel(job_id_arg(job_id))

    def workers() -> list:
        """The worker processes: lane, device, pid, busy with which job, idle for how long."""
        return ctx.runner.workers()

    def free_workers(lane: str = "") -> int:
        """Stop idle workers (all, or of one lane: training, listening, cpu); frees the memory they hold."""
        return ctx.runner.free_workers(lane.strip() or None)

    gr.api(job_status, api_name="job_status")
    gr.api(workers, api_name="workers")
    gr.api(free_workers, api_name="free_workers")
    gr.api(job_log, api_name="job_log")
    gr.api(cancel_job, api_name="cancel_job")
