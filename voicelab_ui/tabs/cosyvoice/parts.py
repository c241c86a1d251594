"""What the CosyVoice tab's step modules share: components other steps update, and job results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from voicelab_ui.context import UIContext
from voicelab_ui.widgets import outcome_line

# (finished job record, values of the result inputs) -> {component: update}
JobHandler = Callable[[Any, dict], dict]


@dataclass
class Parts:
    """Components by name (``parts.c["dataset"]``), the result inputs, and one handler per operation."""

    ctx: UIContext
    c: dict[str, Any] = field(default_factory=dict)
    handlers: dict[str, list[JobHandler]] = field(default_factory=dict)
    _outputs: list[Any] = field(default_factory=list)

    def on_job(self, op: str, outputs: list[Any], handler: JobHandler) -> None:
        """Run ``handler`` when a followed ``op`` job ends; it may update ``outputs``.

        An output may be named (a key of ``c``) when a later step creates it.
        """
        self.handlers.setdefault(op, []).append(handler)
        self._outputs.extend(outputs)

    def outputs(self) -> list[Any]:
        """Every component a job handler may update (names resolved), each once."""
        out: list[Any] = []
        for o in self._outputs:
            comp = self.c[o] if isinstance(o, str) else o
            if all(comp is not x for x in out):
                out.append(comp)
        return out


def job_result(ctx: UIContext, marker: str) -> Any:
    """The finished job record named by a ``ctx.job_finished`` value ("<id>:<state>:<time>")."""
    job_id = (marker or "").split(":", 1)[0]
    return ctx.runner.get(job_id) if job_id else None


def result_markdown(rec: Any) -> str:
    return outcome_line(rec)
