"""What every tab needs: the workspace, the job runner and the shared job panel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engines.core.jobs import JobRunner
from engines.core.settings import Workspace


@dataclass
class UIContext:
    ws: Workspace
    runner: JobRunner
    # Filled by widgets.job_panel(): the BrowserState holding the followed job id,
    # and a hidden textbox that changes to a job's id when that job finishes.
    demo: Any = None  # the gr.Blocks being built (for load events)
    job_id: Any = None
    job_finished: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
